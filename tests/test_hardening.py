"""Runs that must not damage anything or end in a traceback (issue 16).

Items 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 18 and 19 of the hardening issue: reports that would replace an
input, manifest paths outside the model folder, outputs that appear during the write, non-finite weights,
too-long names, malformed manifests, unwritable model folders, tile and format options, stale temporaries
and SIGTERM, eval without scikit-image, and Typer's own usage errors.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_results import assert_clean, errors, invoke
from panet_cli.errors import CheckpointError, ImageWriteError, PanetError
from panet_cli.images import LoadedImage, write_image
from panet_cli.loading import load_model
from panet_cli.loading.checkpoint import save_safetensors
from panet_cli.networks import PANet
from cli_results import read_report

CONFIG = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "input_skip": True}
META = {"arch": "PANet", "config": CONFIG, "task": "denoise", "attention_enabled": False}


@pytest.fixture(autouse=True)
def isolated(isolated_registry, tmp_path, monkeypatch):
    """The shared registry fixture, with a model folder of this test's own (some tests break it)."""
    monkeypatch.setenv("PANET_HOME", str(tmp_path / "home"))
    yield


def one_error(result, code: int, *needles: str) -> str:
    assert result.exit_code == code, result.output
    assert_clean(result)
    lines = errors(result)
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def png(path: Path, h: int = 20, w: int = 24, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


# ------------------------------------------------------------------------------------ 1: --report


@pytest.mark.parametrize("which", ["input", "output"])
def test_report_may_not_name_an_input_or_an_output(tmp_path, tiny_denoiser, which):
    source = png(tmp_path / "rin.png")
    before = source.read_bytes()
    target = tmp_path / "out.png"
    report = source if which == "input" else target
    result = invoke("denoise", source, "-o", target, "-w", tiny_denoiser, "--report", report)
    one_error(result, 2, "--report", report.name)
    assert source.read_bytes() == before and not target.exists()


def test_an_existing_report_is_replaced_only_with_overwrite(tmp_path, tiny_denoiser):
    source = png(tmp_path / "a.png")
    report = tmp_path / "run.jsonl"
    report.write_text("keep me\n")
    result = invoke("denoise", source, "-w", tiny_denoiser, "--report", report)
    one_error(result, 2, "run.jsonl", "--overwrite")
    assert report.read_text() == "keep me\n" and not (tmp_path / "a_denoised.png").exists()
    result = invoke("denoise", source, "-w", tiny_denoiser, "--report", report, "--overwrite")
    assert result.exit_code == 0, result.output
    assert [line["status"] for line in read_report(report)] == ["done"]


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs the /dev/full device")
def test_a_report_that_cannot_be_written_is_one_line(tmp_path, tiny_denoiser):
    result = invoke("denoise", png(tmp_path / "a.png"), "-w", tiny_denoiser, "--report", "/dev/full")
    one_error(result, 1, "/dev/full", "cannot write the report")


def test_report_is_written_line_by_line_as_the_run_goes(tmp_path, tiny_denoiser, monkeypatch):
    from panet_cli.scaleout.work import FileWorker

    for k in range(3):
        png(tmp_path / "in" / f"img{k}.png", seed=k)
    report = tmp_path / "run.jsonl"
    seen: list[int] = []
    original = FileWorker.restore

    def restore(self, loaded, progress=None):
        seen.append(len(read_report(report)) if report.exists() else -1)
        if len(seen) == 3:
            raise KeyboardInterrupt  # killed during the third image
        return original(self, loaded, progress)

    monkeypatch.setattr(FileWorker, "restore", restore)
    result = invoke("denoise", tmp_path / "in", "-o", tmp_path / "out", "-w", tiny_denoiser, "--report", report)
    assert result.exit_code != 0
    assert seen[0] == 0 and seen[2] >= 1  # lines are on disk while the run goes on
    done = read_report(report)  # and the interrupted run left what it did
    assert done and all(line["status"] == "done" for line in done)


# -------------------------------------------------------------------------- 3: manifest paths


def evil_manifest(tmp_path: Path, tiny_denoiser: Path, file: str) -> Path:
    folder = tmp_path / "home" / "models"
    folder.mkdir(parents=True)
    entry = {"name": "evil", "task": "denoise", "arch": "PANet", "config": CONFIG, "colors": 3, "origin": "imported",
             "imported": {"file": file, "sha256": "0" * 64, "size": 1}}
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "models": [entry]}))
    return folder


@pytest.mark.parametrize("escape", ["../../victim.txt", "/ABSOLUTE/victim.txt"])
def test_manifest_paths_outside_the_model_folder_are_refused(tmp_path, tiny_denoiser, escape):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    evil_manifest(tmp_path, tiny_denoiser, escape.replace("/ABSOLUTE", str(tmp_path)))
    removed = invoke("models", "remove", "evil")
    one_error(removed, 1, "evil", "outside")
    assert victim.read_text() == "precious"
    used = invoke("denoise", png(tmp_path / "a.png"), "--model", "evil")
    one_error(used, 1, "outside")
    assert victim.read_text() == "precious"


# -------------------------------------------------------------------------- 4: no-replace publish


def test_a_file_that_appears_during_the_write_is_not_replaced(tmp_path, monkeypatch):
    import panet_cli.images as images

    target = tmp_path / "out.png"
    original = images.encode_image

    def racing(image, fmt, out=None, **kwargs):
        if not target.exists():
            target.write_bytes(b"someone else's file")
        return original(image, fmt, out, **kwargs)

    monkeypatch.setattr(images, "encode_image", racing)
    image = LoadedImage(pixels=np.full((4, 4, 3), 0.5, np.float32))
    with pytest.raises(ImageWriteError, match="already exists"):
        write_image(target, image)
    assert target.read_bytes() == b"someone else's file"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary left behind
    write_image(target, image, overwrite=True)  # asked for: replaced
    assert Image.open(target).size == (4, 4)


# -------------------------------------------------------------------------- 5: non-finite weights


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load_and_import(tmp_path, bad):
    state = PANet(**CONFIG).state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key][0] = bad
    weights = tmp_path / "broken.safetensors"
    save_safetensors(weights, state, META)
    with pytest.raises(CheckpointError, match=f"broken.safetensors: .*{key}.*NaN or infinite"):
        load_model(weights)
    pickled = tmp_path / "broken.pt"
    torch.save(state, pickled)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_model(pickled)

    result = invoke("denoise", png(tmp_path / "a.png"), "-w", weights)
    one_error(result, 1, "broken.safetensors", "NaN or infinite")
    assert not (tmp_path / "a_denoised.png").exists()
    imported = invoke("models", "import", pickled, "--task", "denoise")
    one_error(imported, 1, "NaN or infinite")
    assert not (tmp_path / "home" / "models").exists() or not list((tmp_path / "home" / "models").iterdir())


def test_non_finite_output_is_refused_at_restore(tmp_path, tiny_denoiser):
    from panet_cli.inference import restore

    descriptor = load_model(tiny_denoiser)
    with torch.no_grad():
        descriptor.model.tail[-1].weight.fill_(float("inf"))
    with pytest.raises(PanetError, match="NaN or infinite"):
        restore(np.full((16, 16, 3), 0.5, np.float32), "denoise", model=descriptor, device="cpu", tile=0)


# ---------------------------------------------------------------------------- 7: too-long names


def test_an_output_name_too_long_fails_that_image_and_the_run_goes_on(tmp_path, tiny_denoiser):
    folder = tmp_path / "in"
    long_one = png(folder / ("x" * 245 + ".png"))
    png(folder / "short.png", seed=1)
    result = invoke("denoise", folder, "-w", tiny_denoiser)
    line = one_error(result, 1, long_one.name[:40])
    assert "too long" in line.lower()
    assert (folder / "short_denoised.png").is_file()


# ----------------------------------------------------------------------- 8: malformed user manifest


@pytest.mark.parametrize("entry,field", [
    ({"name": 5, "task": "denoise"}, "name"),
    ({"name": "x", "task": "denoise", "imported": "x"}, "imported"),
    ({"name": "x", "task": "denoise", "tasks": "denoise"}, "tasks"),
    ({"name": "x", "task": "denoise", "level": "high"}, "level"),
    ("not an object", "models[0]"),
])
def test_a_malformed_user_manifest_is_one_line_from_every_command(tmp_path, tiny_denoiser, entry, field):
    manifest = tmp_path / "home" / "models" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"format": 1, "models": [entry]}))
    source = png(tmp_path / "a.png")
    for args in (("models", "list"), ("models", "info", "x"), ("models", "remove", "x"), ("denoise", source),
                 ("models", "import", tiny_denoiser, "--name", "other")):
        one_error(invoke(*args), 1, str(manifest), field)


# ------------------------------------------------------------------------ 9: unwritable model folder


def test_import_when_panet_home_is_a_file(tmp_path, tiny_denoiser, monkeypatch):
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    monkeypatch.setenv("PANET_HOME", str(home))
    one_error(invoke("models", "import", tiny_denoiser, "--name", "tiny"), 1, "home-file")
    assert home.read_text() == "not a folder"


def test_import_on_a_full_disk(tmp_path, tiny_denoiser, monkeypatch):
    real_open = open

    def full(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        if "w" in mode and Path(path).name.startswith(".panet-"):
            f.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return f

    monkeypatch.setattr("builtins.open", full)
    result = invoke("models", "import", tiny_denoiser, "--name", "tiny")
    monkeypatch.undo()
    one_error(result, 1, "No space left on device")
    folder = tmp_path / "home" / "models"
    assert not folder.exists() or not [p for p in folder.iterdir()]


# --------------------------------------------------------------------------- 15, 16: tile and format


def test_tile_overlap_at_or_above_the_tile_is_a_usage_error(tmp_path):
    source = png(tmp_path / "a.png")
    result = invoke("denoise", source, "--tile", "32", "--tile-overlap", "32", "-w", tmp_path / "missing.safetensors")
    one_error(result, 2, "--tile-overlap")
    ok = invoke("denoise", source, "--tile", "0", "--tile-overlap", "32", "-w", tmp_path / "missing.safetensors")
    assert ok.exit_code == 1  # whole image: the overlap does not matter, the missing weights do


def test_an_output_format_panet_cannot_write_is_a_usage_error_before_loading(tmp_path):
    source = png(tmp_path / "a.png")
    result = invoke("denoise", source, "-o", tmp_path / "x.gif", "-w", tmp_path / "missing.safetensors")
    one_error(result, 2, "x.gif", ".gif")
    assert not (tmp_path / "x.gif").exists()


@pytest.mark.parametrize("value", ["²", "٣٢", "1e3"])
def test_tile_values_that_are_not_plain_digits_name_the_option(tmp_path, value):
    result = invoke("denoise", png(tmp_path / "a.png"), "--tile", value, "-w", tmp_path / "missing.safetensors")
    line = one_error(result, 2, "--tile")
    assert "invalid literal" not in line


# ----------------------------------------------------------------------- 17: temporaries and SIGTERM


def test_stale_temporaries_of_ours_are_removed_by_the_next_run(tmp_path, tiny_denoiser):
    import fcntl

    png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert invoke("denoise", tmp_path / "in", "-o", out, "-w", tiny_denoiser).exit_code == 0
    stale = out / ".panet-k2j4_x9q.png"
    stale.write_bytes(b"half an image")
    live = out / ".panet-abcd1234.png"
    live.write_bytes(b"being written")
    os.utime(stale, (time.time() - 600, time.time() - 600))
    os.utime(live, (time.time() - 600, time.time() - 600))
    other = out / ".panet-notes.txt"  # not a name we make
    other.write_text("mine")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # its writer is alive
        result = invoke("denoise", tmp_path / "in", "-o", out, "-w", tiny_denoiser, "--skip-existing")
    assert result.exit_code == 0, result.output
    assert not stale.exists() and live.exists() and other.exists()


SIGTERM_SCRIPT = """
import sys, time
from pathlib import Path
import panet_cli.images as images
from panet_cli.cli.app import main
original = images.encode_image
marker = Path(sys.argv[1])
def slow(image, fmt, out=None, **kw):
    marker.write_text("writing")
    time.sleep(3)
    return original(image, fmt, out, **kw)
images.encode_image = slow
sys.argv = ["panet", *sys.argv[2:]]
main()
"""


def test_sigterm_cleans_up_like_sigint(tmp_path, tiny_denoiser):
    source = png(tmp_path / "in" / "a.png")
    png(tmp_path / "in" / "b.png", seed=1)
    out, marker = tmp_path / "out", tmp_path / "marker"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_SCRIPT, str(marker), "denoise", str(source.parent),
                             "-o", str(out), "-w", str(tiny_denoiser), "--threads", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    assert list(out.glob(".panet-*"))  # the write is in flight
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert b"Traceback" not in stderr, stderr
    assert not list(out.glob(".panet-*")), list(out.iterdir())


# ------------------------------------------------------------------------ 18: eval without skimage


def test_eval_without_scikit_image_reports_psnr_and_names_the_extra(tmp_path, tiny_denoiser, monkeypatch):
    png(tmp_path / "bench" / "1.png", 24, 24)
    for name in ("skimage", "skimage.metrics"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if it were not installed
    result = invoke("eval", tmp_path / "bench", "-w", tiny_denoiser, "--task", "denoise", "--json")
    assert result.exit_code == 0, result.output
    assert_clean(result)
    data = json.loads(result.stdout)
    mean = data["mean"][data["methods"][0]]
    assert mean["psnr"] > 0 and mean["ssim"] is None
    assert "[bench]" in result.stderr and "SSIM" in result.stderr
    table = invoke("eval", tmp_path / "bench", "-w", tiny_denoiser, "--task", "denoise")
    assert table.exit_code == 0, table.output
    assert "nan" not in table.stdout.lower()


# ---------------------------------------------------------------------- 19: Typer's own usage errors


@pytest.mark.parametrize("args,option", [
    (("sr", "{a}", "--scale", "5"), "--scale"),
    (("car", "{a}", "--quality", "0"), "--quality"),
    (("denoise", "{a}", "--sigma", "-3"), "--sigma"),
    (("denoise", "{a}", "--no-such-option"), "--no-such-option"),
    (("denoise", "{a}", "--precision", "fp8"), "--precision"),
    (("models", "info"), "name"),
    (("degrade", "{a}", "-o", "x", "--jpeg", "0"), "--jpeg"),
])
def test_typers_usage_errors_are_one_line(tmp_path, args, option):
    a = png(tmp_path / "a.png")
    result = invoke(*[s.format(a=a) for s in args])
    assert result.exit_code == 2, result.output
    assert_clean(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0], result.stderr


def test_no_arguments_still_shows_the_help():
    result = invoke()
    assert "Usage" in result.output and "denoise" in result.output
