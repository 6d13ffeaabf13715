"""The task commands end to end: the installed ``panet`` in a subprocess, and Typer's runner."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from typer.testing import CliRunner

from panet_cli.cli.app import app
from panet_cli.loading import load_model
from panet_cli.loading.checkpoint import save_safetensors
from panet_cli.networks import PAEDSR, PANet
from cli_results import assert_clean_exit

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"
needs_official = pytest.mark.skipif(not OFFICIAL.is_dir(), reason="../shared/fixtures/official is absent")
PANET = shutil.which("panet") or str(Path(sys.executable).with_name("panet"))
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


pytestmark = pytest.mark.usefixtures("isolated_registry")  # no shipped or user models, one thread


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny models for each task, saved in our format. Attention off keeps them instant."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    specs = {
        "denoise": ("PANet", {"n_colors": 3, "input_skip": True}, False),
        "windowed": ("PANet", {"n_colors": 3, "input_skip": True, "window": 16, "window_overlap": 4}, True),
        "car": ("PANet", {"n_colors": 1, "input_skip": True}, False),
        "demosaic": ("PANet", {"n_colors": 3, "input_skip": True}, False),
        "sr": ("PAEDSR", {"n_colors": 3, "scale": 2}, False),
    }
    paths = {}
    for key, (arch, config, attention) in specs.items():
        config = {"n_resblocks": 2, "n_feats": 8, **config}
        net = (PANet if arch == "PANet" else PAEDSR)(**config)
        task = "denoise" if key == "windowed" else key
        meta = {"arch": arch, "config": config, "task": task, "attention_enabled": attention}
        if arch == "PAEDSR":
            meta["scale"] = config["scale"]
        paths[key] = folder / f"{key}.safetensors"
        save_safetensors(paths[key], net.state_dict(), meta)
    return paths


def photo(h: int = 40, w: int = 50, c: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([0.5 + 0.3 * np.sin(x / (7 + i) + y / (11 + i)) for i in range(c)], axis=2)
    return np.clip(base + rng.normal(0, 0.08, (h, w, c)), 0, 1)


def save(path: Path, array: np.ndarray | None = None, **options) -> Path:
    array = photo() if array is None else array
    u8 = np.rint(array * 255).astype(np.uint8)
    Image.fromarray(u8[:, :, 0] if u8.shape[2] == 1 else u8).save(path, **options)
    return path


def invoke(*args: str, input: bytes | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def run(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PANET, *map(str, args)], cwd=cwd, input=stdin, capture_output=True, timeout=300,
                          env=os.environ.copy())


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(peak**2 / max(mse, 1e-12)))


# ------------------------------------------------------------------------------ installed entry point


def test_subprocess_file_and_pipe(tmp_path, models):
    source = save(tmp_path / "photo.png")
    done = run("denoise", source, "--weights", models["denoise"], "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"" and b"1 done" in done.stderr
    written = tmp_path / "photo_denoised.png"
    out = Image.open(written)
    assert out.size == (50, 40) and out.mode == "RGB"

    piped = subprocess.run(
        f'cat "{source}" | "{PANET}" denoise - -o - --weights "{models["denoise"]}" > "{tmp_path / "piped.png"}"',
        shell=True, capture_output=True, timeout=300,
    )
    assert piped.returncode == 0, piped.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "piped.png")), np.asarray(out))


def test_subprocess_folder_with_subfolders(tmp_path, models):
    (tmp_path / "in" / "sub" / "deeper").mkdir(parents=True)
    save(tmp_path / "in" / "a.png")
    save(tmp_path / "in" / "sub" / "b.jpg", photo(seed=1))
    save(tmp_path / "in" / "sub" / "deeper" / "c.png", photo(seed=2))
    done = run("denoise", tmp_path / "in", "-r", "-o", tmp_path / "out", "--weights", models["denoise"], "-q")
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""  # --quiet
    found = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert found == ["a.png", "sub/b.jpg", "sub/deeper/c.png"]
    assert Image.open(tmp_path / "out" / "sub" / "b.jpg").format == "JPEG"


def test_folder_without_recursive_takes_only_its_own_images(tmp_path, models):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    save(tmp_path / "in" / "a.png")
    save(tmp_path / "in" / "sub" / "b.png")
    result = invoke("denoise", tmp_path / "in", "-o", tmp_path / "out", "-w", models["denoise"])
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in (tmp_path / "out").rglob("*")] == ["a.png"]


def test_glob(tmp_path, models):
    for i, name in enumerate(["a.png", "b.png", "c.jpg"]):
        save(tmp_path / name, photo(seed=i))
    result = invoke("denoise", str(tmp_path / "*.png"), "-w", models["denoise"])
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*_denoised.*")) == ["a_denoised.png", "b_denoised.png"]
    missing = invoke("denoise", str(tmp_path / "*.gif"), "-w", models["denoise"])
    assert missing.exit_code == 1 and "no image files match" in missing.stderr


# ------------------------------------------------------------------------------------------ tasks


def test_every_task_names_and_shapes_its_output(tmp_path, models):
    source = save(tmp_path / "photo.png")
    assert invoke("denoise", source, "-w", models["denoise"], "--sigma", "25").exit_code == 0
    assert Image.open(tmp_path / "photo_denoised.png").size == (50, 40)

    result = invoke("sr", source, "-w", models["sr"], "--scale", "2")
    assert result.exit_code == 0, result.stderr
    assert Image.open(tmp_path / "photo_x2.png").size == (100, 80)

    jpeg = save(tmp_path / "shot.jpg", quality=20)
    result = invoke("car", jpeg, "-w", models["car"], "--quality", "20")
    assert result.exit_code == 0, result.stderr
    car = Image.open(tmp_path / "shot_car.png")
    assert car.format == "PNG" and car.mode == "RGB" and car.size == (50, 40)

    cfa = photo(c=1)
    save(tmp_path / "raw.png", cfa)
    result = invoke("demosaic", tmp_path / "raw.png", "-w", models["demosaic"], "--pattern", "gbrg")
    assert result.exit_code == 0, result.stderr
    colour = Image.open(tmp_path / "raw_demosaiced.png")
    assert colour.mode == "RGB" and colour.size == (50, 40)


def test_explicit_output_file_and_format(tmp_path, models):
    source = save(tmp_path / "photo.png")
    assert invoke("denoise", source, "-w", models["denoise"], "-o", tmp_path / "x" / "result.webp").exit_code == 0
    assert Image.open(tmp_path / "x" / "result.webp").format == "WEBP"
    assert invoke("denoise", source, "-w", models["denoise"], "--format", "jpg").exit_code == 0
    out = Image.open(tmp_path / "photo_denoised.jpg")
    assert out.format == "JPEG"


@needs_official
def test_golden_model_output_through_the_cli(tmp_path):
    """--weights of the reference checkpoint, --tile 0: the file equals the golden network's output, rounded."""
    path = OFFICIAL / "panet_rgb_r4.pt"
    model = load_model(path)
    x = np.load(OFFICIAL / "panet_rgb_r4_in.npy")
    with torch.no_grad():
        assert np.abs(model.model(torch.from_numpy(x)).numpy() - np.load(OFFICIAL / "panet_rgb_r4_out.npy")).max() < 1e-4
        u8 = np.rint(x[0].transpose(1, 2, 0) * 255).astype(np.uint8)
        quantized = torch.from_numpy(u8.astype(np.float32) / 255).permute(2, 0, 1)[None]
        expected = np.rint(model.model(quantized)[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255)
    Image.fromarray(u8).save(tmp_path / "in.png")
    result = invoke("denoise", tmp_path / "in.png", "--weights", path, "--tile", "0", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.stderr
    got = np.asarray(Image.open(tmp_path / "out.png")).astype(np.int64)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1


def test_tiled_cli_output_agrees_with_whole_image(tmp_path, models):
    source = save(tmp_path / "big.png", photo(200, 300))
    for tile in ("0", "64"):
        result = invoke("denoise", source, "-w", models["windowed"], "--tile", tile, "-o", tmp_path / f"t{tile}.png")
        assert result.exit_code == 0, result.stderr
    whole, tiled = (np.asarray(Image.open(tmp_path / f"t{t}.png")) for t in ("0", "64"))
    assert psnr(whole, tiled) >= 45


# ------------------------------------------------------------------------------------- bad inputs


def _bomb(path: Path) -> Path:
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _truncated(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(np.rint(photo(64, 64) * 255).astype(np.uint8)).save(buf, "PNG")
    path.write_bytes(buf.getvalue()[:600])
    return path


BAD_INPUTS = {
    "missing": (lambda p: p / "missing.png", "no such file"),
    "empty": (lambda p: (p / "empty.png").write_bytes(b"") and None or p / "empty.png", "empty"),
    "truncated": (lambda p: _truncated(p / "cut.png"), "truncated"),
    "not an image": (lambda p: (p / "text.png").write_text("hello") and None or p / "text.png", "not an image"),
    "unsupported mode": (
        lambda p: Image.fromarray(np.ones((8, 8), np.float32), "F").save(p / "float.tif") or p / "float.tif",
        "unsupported image mode",
    ),
    "bomb": (lambda p: _bomb(p / "bomb.png"), "decompression bomb"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_no_output(tmp_path, models, case):
    make, cause = BAD_INPUTS[case]
    path = make(tmp_path)
    result = invoke("denoise", path, "-w", models["denoise"])
    assert result.exit_code == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and path.name in errors[0] and cause in errors[0], result.stderr
    assert_clean_exit(result, 1, path.name)
    assert not list(tmp_path.glob("*_denoised*"))


@pytest.mark.parametrize("args,cause", [
    (("--weights", "{sr}"), "is a model for sr, not denoise"),
    (("--model", "no-such-model"), "unknown model"),
    (("--weights", "{missing}"), "missing.safetensors"),
    ((), "--weights"),  # no model installed: says what to do
])
def test_model_errors_are_one_line(tmp_path, models, args, cause):
    source = save(tmp_path / "photo.png")
    args = [a.format(sr=models["sr"], missing=tmp_path / "missing.safetensors") for a in args]
    result = invoke("denoise", source, *args)
    assert result.exit_code == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and cause in errors[0], result.stderr
    assert not (tmp_path / "photo_denoised.png").exists()


def test_wrong_scale_for_sr_weights(tmp_path, models):
    result = invoke("sr", save(tmp_path / "p.png"), "-w", models["sr"], "--scale", "4")
    assert result.exit_code == 1 and "x2, not x4" in result.stderr


@pytest.mark.parametrize("args", [
    ("{a}", "{b}", "-o", "{out}/one.png"),
    ("{a}", "--model", "x", "--weights", "y"),
    ("{a}", "--tile", "big"),
    ("{a}", "--tile", "4"),
    ("{a}", "--max-memory", "lots"),
    ("-", "-"),
])
def test_usage_errors_exit_2(tmp_path, models, args):
    a, b = save(tmp_path / "a.png"), save(tmp_path / "b.png")
    args = [s.format(a=a, b=b, out=tmp_path) for s in args]
    result = invoke("denoise", *args, "-w", models["denoise"]) if "--weights" not in args else invoke("denoise", *args)
    assert result.exit_code == 2, result.stderr
    assert invoke("sr", a, "--scale", "5").exit_code == 2


# ---------------------------------------------------------------------------------- real-world files


def _png16(samples: np.ndarray) -> bytes:
    h, w, c = samples.shape
    raw = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2}[c], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("top", [65535, 300])
def test_16bit_in_16bit_out(tmp_path, models, top):
    samples = np.rint(photo() * top).astype(np.uint16)
    (tmp_path / "deep.png").write_bytes(_png16(samples))
    result = invoke("denoise", tmp_path / "deep.png", "-w", models["denoise"])
    assert result.exit_code == 0, result.stderr
    data = (tmp_path / "deep_denoised.png").read_bytes()
    assert data[24] == 16  # IHDR bit depth
    from panet_cli.images import read_image

    out = read_image(data)
    assert out.bit_depth == 16 and out.pixels.shape == (40, 50, 3)
    values = np.unique(np.rint(out.pixels * 65535))
    assert len(values) > 256 and (values % 257 != 0).any()  # really 16-bit samples, not 8 in disguise


def test_grey_rgba_rotated_and_cmyk_inputs(tmp_path, models):
    save(tmp_path / "grey.png", photo(c=1))
    rgba = np.concatenate([photo(), np.linspace(0, 1, 40 * 50).reshape(40, 50, 1)], axis=2)
    save(tmp_path / "alpha.png", rgba)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "TestCam"
    save(tmp_path / "rotated.jpg", photo(), exif=exif, icc_profile=SRGB, quality=95)
    Image.fromarray(np.rint(photo() * 255).astype(np.uint8)).convert("CMYK").save(tmp_path / "print.jpg")
    result = invoke("denoise", tmp_path, "-o", tmp_path / "out", "-w", models["denoise"])
    assert result.exit_code == 0, result.stderr

    grey = Image.open(tmp_path / "out" / "grey.png")
    assert grey.mode == "L" and grey.size == (50, 40)
    alpha = Image.open(tmp_path / "out" / "alpha.png")
    assert alpha.mode == "RGBA"
    assert np.abs(np.asarray(alpha)[:, :, 3].astype(int) - np.rint(rgba[:, :, 3] * 255)).max() <= 1
    rotated = Image.open(tmp_path / "out" / "rotated.jpg")
    assert rotated.size == (40, 50)  # upright: width and height swapped
    assert rotated.getexif().get(0x0112) == 1 and rotated.getexif().get(0x010F) == "TestCam"
    assert rotated.info.get("icc_profile") == SRGB
    cmyk = Image.open(tmp_path / "out" / "print.jpg")
    assert cmyk.mode == "RGB" and cmyk.size == (50, 40)


def test_sr_resizes_alpha(tmp_path, models):
    rgba = np.concatenate([photo(), np.ones((40, 50, 1)) * 0.5], axis=2)
    save(tmp_path / "a.png", rgba)
    assert invoke("sr", tmp_path / "a.png", "-w", models["sr"]).exit_code == 0
    out = Image.open(tmp_path / "a_x2.png")
    assert out.mode == "RGBA" and out.size == (100, 80)
    assert np.abs(np.asarray(out)[:, :, 3].astype(int) - 128).max() <= 1


def test_non_ascii_paths(tmp_path, models):
    folder = tmp_path / "фото"
    folder.mkdir()
    source = save(folder / "ünïcödé 写真.png")
    result = invoke("denoise", source, "-w", models["denoise"])
    assert result.exit_code == 0, result.stderr
    assert (folder / "ünïcödé 写真_denoised.png").is_file()


# -------------------------------------------------------------------------------- folders and reruns


def test_folder_with_a_corrupt_image_then_skip_existing(tmp_path, models):
    folder = tmp_path / "in"
    folder.mkdir()
    save(folder / "a.png")
    save(folder / "b.png", photo(seed=1))
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = invoke("denoise", folder, "-w", models["denoise"])
    assert result.exit_code == 1
    assert len(error_lines(result.stderr)) == 1 and "c.png" in error_lines(result.stderr)[0]
    outputs = sorted(folder.glob("*_denoised.png"))
    assert [p.name for p in outputs] == ["a_denoised.png", "b_denoised.png"]
    stamps = [p.stat().st_mtime_ns for p in outputs]

    again = invoke("denoise", folder, "-w", models["denoise"], "--skip-existing")
    assert again.exit_code == 1  # the corrupt one still fails ...
    assert len(error_lines(again.stderr)) == 1 and "2 skipped" in again.stderr  # ... nothing else is redone
    assert [p.stat().st_mtime_ns for p in outputs] == stamps
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_denoised.png", "b.png", "b_denoised.png", "c.png"]


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, models):
    source = save(tmp_path / "p.png")
    (tmp_path / "p_denoised.png").write_bytes(b"precious")
    result = invoke("denoise", source, "-w", models["denoise"])
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert (tmp_path / "p_denoised.png").read_bytes() == b"precious"
    assert invoke("denoise", source, "-w", models["denoise"], "--overwrite").exit_code == 0
    assert Image.open(tmp_path / "p_denoised.png").size == (50, 40)
    same = invoke("denoise", source, "-w", models["denoise"], "-o", source)
    assert same.exit_code == 1 and "replace the input" in same.stderr


def test_task_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from panet_cli.cli.app import app\n"
        "for task in ('denoise', 'sr', 'car', 'demosaic'):\n"
        "    result = CliRunner().invoke(app, [task, '--help'])\n"
        "    assert result.exit_code == 0 and '--tile' in result.stdout, result.stdout\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_help_lists_the_task_commands_first():
    import click
    import typer

    from panet_cli.tasks import TASK_NAMES

    group = typer.main.get_command(app)
    assert group.list_commands(click.Context(group))[: len(TASK_NAMES)] == list(TASK_NAMES)
    result = CliRunner().invoke(app, ["--help"])
    assert_clean_exit(result, 0)
    where = [result.stdout.index(f" {name} ") for name in (*TASK_NAMES, "train", "eval", "models")]
    assert where == sorted(where), result.stdout


def test_each_task_command_hands_one_typed_options_object_to_restore(tmp_path, models, monkeypatch):
    """The command line becomes one frozen RestoreOptions, and restore() receives that very object."""
    import panet_cli.inference
    from panet_cli.inference import RestoreOptions

    seen: list[RestoreOptions] = []
    original = panet_cli.inference.restore

    def recording(image, task, *, options=None, **rest):
        seen.append(options)
        return original(image, task, options=options, **rest)

    monkeypatch.setattr(panet_cli.inference, "restore", recording)
    cases = [("denoise", ["--sigma", "30"], {"level": 30.0}), ("sr", ["--scale", "2"], {"scale": 2}),
             ("demosaic", ["--pattern", "GBRG"], {"pattern": "GBRG"})]
    for task, own, fields in cases:
        source = save(tmp_path / f"{task}.png")
        result = invoke(task, source, "-w", models[task], "--tile", "32", "--tile-overlap", "8", "--max-memory", "1G",
                        "--precision", "fp32", "-q", *own)
        assert result.exit_code == 0, result.output
        expected = RestoreOptions(tile=32, tile_overlap=8, max_memory=2**30, **fields)
        assert seen[-1] == expected, task


def test_default_precision_is_auto_for_8_bit_files_and_fp32_for_16_bit_ones(tmp_path, models, monkeypatch):
    """bf16 keeps 8 mantissa bits: enough for an 8-bit file, not for a 16-bit one."""
    import panet_cli.inference

    seen: list[str] = []
    original = panet_cli.inference.restore

    def recording(image, task, *, options=None, **rest):
        seen.append(options.precision)
        return original(image, task, options=options, **rest)

    monkeypatch.setattr(panet_cli.inference, "restore", recording)
    (tmp_path / "deep.png").write_bytes(_png16(np.rint(photo() * 65535).astype(np.uint16)))
    shallow = save(tmp_path / "shallow.png")
    for source in (shallow, tmp_path / "deep.png"):
        result = invoke("denoise", source, "-w", models["denoise"], "-q")
        assert result.exit_code == 0, result.output
    assert seen == ["auto", "fp32"]
