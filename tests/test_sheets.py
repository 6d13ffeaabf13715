"""Comparison sheets: ``panet eval --save`` for every task and ``panet compare``, on tiny images and models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from panet_cli.cli.app import app
from panet_cli.errors import PanetError
from panet_cli.eval_save import method_folders
from panet_cli.evaluation import Protocol, baseline_methods
from panet_cli.loading.checkpoint import save_safetensors
from panet_cli.networks import PAEDSR, PANet
from panet_cli.sheets import GAP, LINE_HEIGHT, differ_most, enlarge

H, W = 36, 44  # the tiny clean images


pytestmark = pytest.mark.usefixtures("isolated_registry")  # no shipped or user models, one thread


def _clean(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / max(H, W)
    img = np.stack([0.5 + 0.35 * np.sin(6 * xx + 4 * yy + p) for p in rng.uniform(0, 6, 3)], axis=-1)
    return np.round(img * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bench")
    for i, name in enumerate(("a", "b")):
        Image.fromarray(_clean(i)).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny model per task (attention off: instant)."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    specs = {"denoise": ("PANet", {"n_colors": 3, "input_skip": True}), "car": ("PANet", {"n_colors": 1, "input_skip": True}),
             "demosaic": ("PANet", {"n_colors": 3, "input_skip": True}), "sr": ("PAEDSR", {"n_colors": 3, "scale": 2})}
    paths = {}
    for task, (arch, config) in specs.items():
        config = {"n_resblocks": 2, "n_feats": 8, **config}
        net = (PANet if arch == "PANet" else PAEDSR)(**config)
        meta = {"arch": arch, "config": config, "task": task, "attention_enabled": False, "name": f"tiny-{task}"}
        if arch == "PAEDSR":
            meta["scale"] = config["scale"]
        paths[task] = folder / f"{task}.safetensors"
        save_safetensors(paths[task], net.state_dict(), meta)
    return paths


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


# ---------------------------------------------------------------------------------- eval --save

# task -> (extra options, protocol, crop side, input shape)
CASES = {
    "denoise": (["--sigma", "25"], {"sigma": 25}, 36, (H, W, 3)),
    "car": (["--quality", "10"], {"quality": 10}, 36, (H, W)),
    "demosaic": ([], {}, 36, (H, W)),
    "sr": ([], {"scale": 2}, 32, (H // 2, W // 2, 3)),  # crop: 44 x 36 less 2 x 2 shaved pixels
}


@pytest.mark.parametrize("task", list(CASES))
def test_eval_save_writes_outputs_and_a_sheet_per_image(task, bench, models, tmp_path):
    options, protocol, side, input_shape = CASES[task]
    installed = [m.name for m in baseline_methods(Protocol.for_task(task, **protocol))]
    assert installed or task == "demosaic"  # the others' baselines need nothing beyond the test extra
    baselines = [method_folders(installed)[m] for m in installed]
    out = tmp_path / "saved"
    result = CliRunner().invoke(app, ["eval", str(bench), "--weights", str(models[task]), "--baselines",
                                      "--save", str(out), *options])
    assert result.exit_code == 0, result.output
    assert f"2 comparison sheets in {out / 'sheets'}" in result.stderr
    target_shape = (H, W) if task == "car" else (H, W, 3)  # grey JPEG protocol: Y only
    for name in ("a", "b"):
        assert _png(out / "input" / f"{name}.png").shape == input_shape
        for method in [f"tiny-{task}", *baselines]:
            assert _png(out / method / f"{name}.png").shape == target_shape, method
        sheet = _png(out / "sheets" / f"{name}.png")
        panels = 2 + 1 + len(baselines)  # input, ours, baselines, clean
        width = GAP + panels * (2 * side + GAP)
        height = GAP + 2 * LINE_HEIGHT + GAP + 2 * LINE_HEIGHT + 2 * side + GAP  # title, labels, crops at x2
        assert sheet.shape == (height, width, 3)
        # the clean panel (last) is the clean image's crop, enlarged x2, pasted pixel for pixel
        clean = _clean(0 if name == "a" else 1)
        top = height - GAP - 2 * side
        panel = sheet[top:top + 2 * side, width - GAP - 2 * side:width - GAP]
        if task != "car":
            assert any(np.array_equal(panel, enlarge(clean[y:y + side, x:x + side], 2))
                       for y in range(H - side + 1) for x in range(W - side + 1))


def test_eval_save_refuses_to_replace_an_earlier_run(bench, models, tmp_path):
    out = tmp_path / "saved"
    args = ["eval", str(bench), "--weights", str(models["car"]), "--save", str(out)]
    runner = CliRunner()
    assert runner.invoke(app, args).exit_code == 0
    before = (out / "sheets" / "a.png").stat().st_mtime_ns
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and isinstance(again.exception, SystemExit)
    assert "already exists" in again.stderr and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.output
    assert (out / "sheets" / "a.png").stat().st_mtime_ns == before
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_the_crop_is_where_the_images_differ_most():
    a = np.zeros((40, 50, 3), np.float32)
    b = a.copy()
    b[20:28, 30:38] = 1  # the only difference
    assert differ_most([a, b], 8) == (20, 30)
    assert differ_most([a, b], 8, step=3) in {(18, 30), (21, 30)}  # corners on multiples of 3
    assert differ_most([a], 8, reference=b) == (20, 30)  # one image: where it is furthest from the reference
    y, x = differ_most([a, b], 16, margin=10)  # inside the margin, still holding all of the difference
    assert 12 <= y <= 14 and 22 <= x <= 24
    with pytest.raises(PanetError):
        differ_most([a, b], 30, margin=6)


# -------------------------------------------------------------------------------------- compare


def _save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path)
    return path


def _random(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def test_compare_side_by_side_shows_both_images_unchanged(tmp_path):
    a, b = _random(30, 40, seed=1), _random(30, 40, seed=2)
    pa, pb = _save(tmp_path / "photo.png", a), _save(tmp_path / "photo_denoised.png", b)
    result = CliRunner().invoke(app, ["compare", str(pa), str(pb)])
    assert result.exit_code == 0, result.output
    sheet = _png(tmp_path / "photo_denoised_compare.png")  # the default name: next to B
    top = GAP + LINE_HEIGHT
    assert sheet.shape == (top + 30 + GAP, GAP + 40 + GAP + 40 + GAP, 3)
    assert np.array_equal(sheet[top:top + 30, GAP:GAP + 40], a)
    assert np.array_equal(sheet[top:top + 30, 2 * GAP + 40:2 * GAP + 80], b)


def test_compare_split_halves_are_the_inputs_and_sr_inputs_are_enlarged(tmp_path):
    small, big = _random(15, 20, 1, seed=3), _random(30, 40, seed=4)
    pa, pb = _save(tmp_path / "lr.png", small), _save(tmp_path / "sr.png", big)
    out = tmp_path / "sheet.png"
    result = CliRunner().invoke(app, ["compare", str(pa), str(pb), "--split", "-o", str(out)])
    assert result.exit_code == 0, result.output
    sheet = _png(out)
    top = GAP + LINE_HEIGHT
    enlarged = np.repeat(enlarge(small, 2), 3, axis=2)  # grey shown as RGB, x2 nearest to the result's size
    assert np.array_equal(sheet[top:top + 30, GAP:GAP + 20], enlarged[:, :20])  # left half: A
    assert np.array_equal(sheet[top:top + 30, 2 * GAP + 20:2 * GAP + 40], big[:, 20:])  # right half: B
    assert sheet.shape[1] == GAP + 20 + GAP + 20 + GAP  # the halves and a divider between them


def test_compare_never_replaces_files_unasked(tmp_path):
    pa, pb = _save(tmp_path / "a.png", _random(12, 16, seed=5)), _save(tmp_path / "b.png", _random(12, 16, seed=6))
    runner = CliRunner()
    out = tmp_path / "sheet.png"
    out.write_bytes(b"mine")
    taken = runner.invoke(app, ["compare", str(pa), str(pb), "-o", str(out)])
    assert taken.exit_code == 1 and isinstance(taken.exception, SystemExit)
    assert "already exists" in taken.stderr and out.read_bytes() == b"mine"
    onto_input = runner.invoke(app, ["compare", str(pa), str(pb), "-o", str(pa), "--overwrite"])
    assert onto_input.exit_code == 2 and isinstance(onto_input.exception, SystemExit)
    assert "one of the images compared" in onto_input.stderr and _png(pa).shape == (12, 16, 3)
    assert runner.invoke(app, ["compare", str(pa), str(pb), "-o", str(out), "--overwrite"]).exit_code == 0
    assert _png(out).ndim == 3
    assert not list(tmp_path.glob(".panet-*"))  # no temporary file left behind


def test_compare_errors_are_one_line(tmp_path):
    pa, pb = _save(tmp_path / "a.png", _random(12, 16)), _save(tmp_path / "b.png", _random(13, 16))
    runner = CliRunner()
    sizes = runner.invoke(app, ["compare", str(pa), str(pb)])
    assert sizes.exit_code == 1 and isinstance(sizes.exception, SystemExit)
    assert "16x12 and 16x13" in sizes.stderr and len(sizes.stderr.strip().splitlines()) == 1
    missing = runner.invoke(app, ["compare", str(pa), str(tmp_path / "nope.png")])
    assert missing.exit_code == 1 and "nope.png" in missing.stderr and "Traceback" not in missing.output
    assert not (tmp_path / "nope_compare.png").exists()


def test_readme_pictures_are_made_by_the_commands_shown_beside_them():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    script = (root / "examples" / "make_examples.sh").read_text().splitlines()
    section = readme.split("### What it does, one picture per task")[1].split("\n## ")[0]
    shown = [line.strip("`") for line in section.splitlines()
             if line.startswith("`panet ") and line.endswith("`") and line.count("`") == 2]
    assert [c.split()[1] for c in shown] == ["denoise", "sr", "car", "demosaic"]
    for command in shown:
        assert command in script, command  # run verbatim, with the default model (no --model / --weights)
        assert "--model" not in command and "--weights" not in command
    for picture in ("denoise", "sr", "car", "demosaic"):
        assert f"](examples/readme/{picture}.png)" in section and (root / "examples" / "readme" / f"{picture}.png").is_file()
