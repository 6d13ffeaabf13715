"""``--ray``: a folder job on a local Ray cluster gives the local run's bytes, and survives failures.

One module-scoped cluster (``ray.init(num_cpus=2)``) and a tiny model keep this to well under a
minute of Ray jobs. Tests that need Ray skip without it (``pip install "panet[ray]"``); the plan
and address helpers are plain functions and always run.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from typer.testing import CliRunner

from panet_cli.cli.app import app
from panet_cli.errors import PanetError
from panet_cli.images import LoadedImage, write_image
from panet_cli.loading.checkpoint import save_safetensors
from panet_cli.networks import PANet
from panet_cli.scaleout import ray_job
from panet_cli.scaleout.ray_job import Plan, is_address, plan_actors
from panet_cli.inference import RestoreOptions
from panet_cli.scaleout.work import DONE, FAILED, SKIPPED, Item, Settings
from cli_results import assert_clean_exit, read_report

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


pytestmark = pytest.mark.usefixtures("isolated_registry")  # no shipped or user models, one thread


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny denoiser with its windowed attention on."""
    torch.manual_seed(0)
    config = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "input_skip": True, "window": 16, "window_overlap": 4}
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_safetensors(path, PANet(**config).state_dict(),
                     {"arch": "PANet", "config": config, "task": "denoise", "attention_enabled": True})
    return path


def photo(h: int, w: int, c: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([0.5 + 0.3 * np.sin(x / (5 + i) + y / (9 + i)) for i in range(c)], axis=2)
    return np.clip(base + rng.normal(0, 0.08, (h, w, c)), 0, 1).astype(np.float32)


def make_inputs(folder: Path) -> list[Path]:
    """Six files covering what must survive a cluster: 8 and 16 bits, grey, alpha, EXIF rotation, ICC."""
    folder.mkdir(parents=True)
    u8 = lambda a: np.rint(a * 255).astype(np.uint8)  # noqa: E731
    Image.fromarray(u8(photo(24, 32, 3, 0))).save(folder / "a.png")
    write_image(folder / "deep.png", LoadedImage(photo(28, 30, 3, 1), bit_depth=16))
    Image.fromarray(u8(photo(26, 20, 1, 2))[:, :, 0]).save(folder / "grey.png")
    rgba = np.concatenate([photo(24, 24, 3, 3), np.linspace(0, 1, 24 * 24).reshape(24, 24, 1)], axis=2)
    Image.fromarray(u8(rgba)).save(folder / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "TestCam"
    Image.fromarray(u8(photo(20, 36, 3, 4))).save(folder / "rotated.jpg", exif=exif, icc_profile=SRGB, quality=90)
    Image.fromarray(u8(photo(30, 22, 3, 5))).save(folder / "z.webp", lossless=True)
    return sorted(folder.iterdir())


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model) -> tuple[Path, Path]:
    """The inputs and their outputs from a local run: what every Ray run must reproduce byte for byte."""
    root = tmp_path_factory.mktemp("reference")
    make_inputs(root / "in")
    torch.set_num_threads(1)
    result = invoke("denoise", root / "in", "-o", root / "local", "-w", model, "--threads", "1", "-q")
    assert result.exit_code == 0, result.stderr
    return root / "in", root / "local"


def copy_inputs(reference: tuple[Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(reference[0], tmp_path / "in"))


def assert_same_as_local(out: Path, local: Path) -> None:
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in local.iterdir()), names  # no temporaries, nothing missing
    for name in names:
        assert (out / name).read_bytes() == (local / name).read_bytes(), f"{name} differs from the local run"


def jobs_for(folder: Path, out: Path) -> list[Item]:
    return [Item(str(p), str(p), str(out / p.name)) for p in sorted(folder.iterdir())]


def wait_for_actors_to_leave(ray, cpus: float = 2.0, timeout: float = 60.0) -> None:
    """A stopped pipeline's actors are gone once their CPUs are free again."""
    deadline = time.monotonic() + timeout
    while ray.available_resources().get("CPU", 0) < cpus:
        assert time.monotonic() < deadline, "the stopped job's actors are still alive"
        time.sleep(0.2)


TWO_CPU_ACTORS = Plan(actors=2, cpus_per_actor=1.0, gpus_per_actor=0.0, batch_size=1, device="cpu")


# ----------------------------------------------------------------------------------- the same bytes


def test_folder_job_on_ray_gives_the_local_bytes(cluster, reference, model, tmp_path):
    folder = copy_inputs(reference, tmp_path)
    result = invoke("denoise", folder, "-o", tmp_path / "out", "-w", model, "--ray", "--report", tmp_path / "r.jsonl")
    assert result.exit_code == 0, result.stderr
    assert "CPU actors" in result.stderr and "6 done, 0 failed" in result.stderr
    assert_same_as_local(tmp_path / "out", reference[1])
    lines = read_report(tmp_path / "r.jsonl")
    assert sorted(Path(line["path"]).name for line in lines) == sorted(p.name for p in folder.iterdir())
    assert {line["status"] for line in lines} == {DONE}


def test_corrupt_file_is_reported_and_the_others_written(cluster, reference, model, tmp_path):
    folder = copy_inputs(reference, tmp_path)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    report = tmp_path / "r.jsonl"
    result = invoke("denoise", folder, "-o", tmp_path / "out", "-w", model, "--ray", "--report", report)
    assert result.exit_code == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "broken.png" in errors[0] and "not an image" in errors[0], result.stderr
    assert_clean_exit(result, 1, "broken.png")
    failed = [line for line in read_report(report) if line["status"] != DONE]
    assert len(failed) == 1 and failed[0]["status"] == FAILED
    assert failed[0]["path"].endswith("broken.png") and "broken.png: not an image" in failed[0]["reason"]
    assert_same_as_local(tmp_path / "out", reference[1])


# ------------------------------------------------------------------------------------ interruptions


# What `panet denoise` without options hands the workers (its precision is auto, the library's fp32).
AS_THE_CLI = Settings("denoise", RestoreOptions(precision="auto"))


def slow_actor(seconds: float):
    """RestoreActor taking ``seconds`` longer per call, so a job can be stopped midway (defined here: pickled by value)."""

    class SlowActor(ray_job.RestoreActor):
        def __call__(self, batch):
            time.sleep(seconds)
            return super().__call__(batch)

    return SlowActor


def test_interrupted_job_resumes_with_skip_existing(cluster, reference, model, tmp_path):
    folder = copy_inputs(reference, tmp_path)
    out = tmp_path / "out"
    outcomes = ray_job.run(jobs_for(folder, out), AS_THE_CLI, model, TWO_CPU_ACTORS,
                           actor_class=slow_actor(0.7))
    first = [next(outcomes), next(outcomes)]
    outcomes.close()  # the driver stops (Ctrl-C, a lost login): the pipeline and its actors go
    wait_for_actors_to_leave(cluster)
    assert all(o.status == DONE for o in first)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir()}
    assert 2 <= len(before) < 6, sorted(before)  # midway
    assert not [p for p in out.iterdir() if p.name.startswith(".panet-")]  # what exists is complete

    report = tmp_path / "resume.jsonl"
    result = invoke("denoise", folder, "-o", out, "-w", model, "--ray", "--skip-existing", "--report", report)
    assert result.exit_code == 0, result.stderr
    lines = read_report(report)
    assert sorted(Path(line["output"]).name for line in lines if line["status"] == SKIPPED) == sorted(before)
    assert len([line for line in lines if line["status"] == DONE]) == 6 - len(before)
    # Nothing written twice: the first run's files are the very same files (inode and mtime) ...
    assert {name: (out / name).stat().st_ino for name in before} == {n: v[0] for n, v in before.items()}
    assert {name: (out / name).stat().st_mtime_ns for name in before} == {n: v[1] for n, v in before.items()}
    # ... and every output is complete and equal to the local run's.
    assert_same_as_local(out, reference[1])


def flaky_actor(log: Path, markers: Path, kill_after_writing: str, kill_while_writing: str):
    """RestoreActor whose process dies once right after writing one output and once halfway through writing another.

    Every completed write is appended to ``log``, so a second write of any output would show.
    """
    from panet_cli.files import atomic_path
    from panet_cli.scaleout.work import FileWorker

    class LoggingWorker(FileWorker):
        def write(self, job, image):
            name = Path(job.output).name
            if name == kill_while_writing and not (markers / "while").exists():
                (markers / "while").touch()
                with atomic_path(job.output) as tmp:
                    tmp.write_bytes(b"half an image")
                    os._exit(1)
            written = super().write(job, image)
            with open(log, "a", encoding="utf-8") as f:
                f.write(name + "\n")
            if name == kill_after_writing and not (markers / "after").exists():
                (markers / "after").touch()
                os._exit(1)  # the output is there, the row never gets back to the driver
            return written

    class FlakyActor(ray_job.RestoreActor):
        worker_class = LoggingWorker

    return FlakyActor


def test_killed_actor_loses_and_duplicates_nothing(cluster, reference, model, tmp_path):
    folder = copy_inputs(reference, tmp_path)
    out, log, markers = tmp_path / "out", tmp_path / "writes.log", tmp_path / "markers"
    markers.mkdir()
    jobs = jobs_for(folder, out)
    actor = flaky_actor(log, markers, kill_after_writing="deep.png", kill_while_writing="rotated.jpg")
    outcomes = list(ray_job.run(jobs, AS_THE_CLI, model, TWO_CPU_ACTORS, actor_class=actor))
    assert (markers / "after").exists() and (markers / "while").exists()  # both actors really died
    assert sorted(o.job.display for o in outcomes) == sorted(j.display for j in jobs)  # each row once
    assert all(o.status == DONE for o in outcomes), [o.reason for o in outcomes]
    assert [o.written for o in outcomes if o.job.display.endswith("deep.png")] == [False]  # found, not redone
    written = log.read_text().split()
    assert sorted(written) == sorted(Path(j.output).name for j in jobs)  # each output written exactly once
    assert_same_as_local(out, reference[1])  # the half-written temporary is gone too


# ---------------------------------------------------------------------------- plans and addresses


def test_plan_one_actor_per_gpu_else_per_threads():
    gpu = plan_actors({"CPU": 32, "GPU": 4})
    assert (gpu.actors, gpu.gpus_per_actor, gpu.device, gpu.batch_size) == (4, 1.0, "cuda", ray_job.GPU_BATCH)
    assert gpu.cpus_per_actor == 4.0 and plan_actors({"CPU": 4, "GPU": 4}).cpus_per_actor == 1.0
    assert plan_actors({"CPU": 32, "GPU": 4}, threads=2).cpus_per_actor == 2.0
    assert plan_actors({"CPU": 32, "GPU": 4}, device="cuda:1").device == "cuda"
    cpu = plan_actors({"CPU": 32, "GPU": 4}, device="cpu", threads=4)
    assert (cpu.actors, cpu.cpus_per_actor, cpu.gpus_per_actor, cpu.device, cpu.batch_size) == (8, 4.0, 0.0, "cpu", 1)
    assert plan_actors({"CPU": 2}).actors == 2 and plan_actors({"CPU": 2}, actors=1).actors == 1
    with pytest.raises(PanetError, match="no GPUs"):
        plan_actors({"CPU": 8}, device="cuda")


@pytest.mark.parametrize("word,address", [
    ("auto", True), ("local", True), ("10.1.2.3:6379", True), ("head-node:6379", True), ("ray://head:10001", True),
    ("photos/", False), ("photo.png", False), ("C:\\photos", False), ("dir/x:1", False), ("*.png", False),
])
def test_is_address(word, address):
    assert is_address(word) is address
