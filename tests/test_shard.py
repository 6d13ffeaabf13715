"""Scaling out without Ray: ``--shard I/N`` for job arrays, ``--report``, and the overlapped file loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from panet_cli.cli.app import app
from panet_cli.cli.options import ray_address_optional
from panet_cli.errors import ImageReadError
from panet_cli.scaleout.shards import parse_shard, take_shard
from panet_cli.scaleout.work import DONE, FAILED, SKIPPED, FileWorker, Item, Settings
from cli_results import assert_clean_exit, read_report


pytestmark = pytest.mark.usefixtures("isolated_registry")  # no shipped or user models, one thread


def images(folder: Path, count: int, size: tuple[int, int] = (24, 32)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    paths = []
    for k in range(count):
        paths.append(folder / f"img{k:02d}.png")
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------------------ shards


def test_parse_shard():
    assert parse_shard("0/3") == (0, 3) and parse_shard(" 2/3 ") == (2, 3) and parse_shard("0/1") == (0, 1)
    for bad in ("3/3", "1/0", "-1/3", "a/3", "1", "1/2/3", ""):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 10])
def test_shards_cover_every_item_exactly_once(count):
    items = list(range(count))
    slices = [take_shard(items, i, 3) for i in range(3)]
    assert sorted(x for part in slices for x in part) == items
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_cli_shards_cover_every_input_once_even_as_outputs_appear(tmp_path, tiny_denoiser):
    """Three array members, one after the other, outputs next to the inputs: each image is done by exactly one."""
    inputs = images(tmp_path / "in", 7)
    done: dict[str, int] = {}
    for i in range(3):
        report = tmp_path / f"shard{i}.jsonl"
        result = invoke("denoise", tmp_path / "in", "-w", tiny_denoiser, "--shard", f"{i}/3", "--report", report)
        assert result.exit_code == 0, result.stderr
        assert f"shard {i}/3" in result.stderr
        for line in read_report(report):
            assert line["status"] == DONE, line
            done[line["path"]] = done.get(line["path"], 0) + 1
    assert done == {str(p): 1 for p in inputs}
    assert sorted(p.name for p in (tmp_path / "in").glob("*_denoised.png")) == [f"{p.stem}_denoised.png" for p in inputs]

    # A resubmitted member sees the same slice and, with --skip-existing, redoes nothing.
    again = tmp_path / "again.jsonl"
    assert invoke("denoise", tmp_path / "in", "-w", tiny_denoiser, "--shard", "1/3", "--skip-existing",
                  "--report", again).exit_code == 0
    lines = read_report(again)
    assert {line["status"] for line in lines} == {SKIPPED}
    assert sorted(line["path"] for line in lines) == sorted(str(p) for p in inputs[1::3])


@pytest.mark.parametrize("value", ["3/3", "x", "1/0"])
def test_bad_shard_is_a_usage_error(tmp_path, tiny_denoiser, value):
    result = invoke("denoise", images(tmp_path, 1)[0], "-w", tiny_denoiser, "--shard", value)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"--shard {value}" in errors[0], result.stderr


# ----------------------------------------------------------------------------------------- reports


def test_report_of_a_local_run_with_a_corrupt_file(tmp_path, tiny_denoiser):
    good = images(tmp_path / "in", 2)
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    report = tmp_path / "logs" / "run.jsonl"
    result = invoke("denoise", tmp_path / "in", "-o", tmp_path / "out", "-w", tiny_denoiser, "--report", report)
    assert result.exit_code == 1
    lines = {Path(line["path"]).name: line for line in read_report(report)}
    assert lines["bad.png"]["status"] == FAILED and "bad.png" in lines["bad.png"]["reason"]
    assert all(lines[p.name]["status"] == DONE and lines[p.name]["reason"] is None for p in good)
    assert lines[good[0].name]["output"] == str(tmp_path / "out" / good[0].name)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in good]
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".panet-")]


# ------------------------------------------------------------------------------ the overlapped loop


class _Recorder(FileWorker):
    """A FileWorker whose steps record when they run; with prefetch they insist on overlapping.

    Restoring j0 waits until j1 is being read; writing j0 waits until j1 is being restored (and
    j1 likewise for j2). Run one after the other, these waits time out and the test fails.
    """

    def __init__(self, events: list[str], **kwargs):
        super().__init__(None, torch.device("cpu"), Settings("denoise"), **kwargs)
        self.events = events
        self.started: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def _mark(self, what: str) -> None:
        with self.lock:
            self.events.append(what)
            self.started.setdefault(what, threading.Event())
        self.started[what].set()

    def _wait(self, what: str) -> None:
        with self.lock:
            event = self.started.setdefault(what, threading.Event())
        assert event.wait(10), f"{what} did not start while the step before it was still running"

    def read(self, job):
        self._mark(f"read {job.display}")
        if job.display == "bad":
            raise ImageReadError("bad: not an image")
        return type("Loaded", (), {"megapixels": 1.0, "display": job.display})()

    def restore(self, loaded, progress=None):
        self._mark(f"restore {loaded.display}")
        if self.prefetch and loaded.display in ("j0", "j1"):
            self._wait(f"read j{int(loaded.display[1]) + 1}")
        return loaded

    def write(self, job, image):
        self._mark(f"write {job.display}")
        if self.prefetch and job.display in ("j0", "j1"):
            self._wait(f"restore j{int(job.display[1]) + 1}")
        return True


@pytest.mark.parametrize("prefetch", [True, False])
def test_worker_overlaps_read_restore_write_and_keeps_order(prefetch):
    events: list[str] = []
    worker = _Recorder(events, prefetch=prefetch)
    jobs = [Item(None, "j0", "o0"), Item(None, "j1", "o1"), Item(None, "j2", "o2"),
            Item(None, "skipped", "o", skip=True), Item(None, "bad", "ob"),
            Item(None, "known", "ok", error="known: no such file"), Item(None, "j3", "o3")]
    outcomes = list(worker.process(jobs))
    assert [o.job.display for o in outcomes] == [j.display for j in jobs]  # input order, whatever overlapped
    assert [o.status for o in outcomes] == [DONE, DONE, DONE, SKIPPED, FAILED, FAILED, DONE]
    assert outcomes[4].reason == "bad: not an image" and outcomes[5].reason == "known: no such file"
    assert all(o.written and o.megapixels == 1.0 for o in outcomes if o.status == DONE)
    assert "read skipped" not in events and "read known" not in events
    if not prefetch:  # strictly one step after the other
        assert events[:6] == ["read j0", "restore j0", "write j0", "read j1", "restore j1", "write j1"]


def test_worker_already_written_is_not_redone(tmp_path):
    """With written_since (Ray retries), an output that appeared since the job was planned is not written again."""
    out = tmp_path / "o.png"
    out.write_bytes(b"from an earlier attempt")
    events: list[str] = []
    worker = _Recorder(events, written_since=time.time() - 60)
    [outcome] = worker.process([Item(None, "j0", str(out))])
    assert outcome.status == DONE and not outcome.written and events == []
    assert out.read_bytes() == b"from an earlier attempt"


# ------------------------------------------------------------------------------- --ray, as an option


@pytest.mark.parametrize("args,expected", [
    (["in", "--ray"], ["in", "--ray=local"]),
    (["--ray", "photos/", "-o", "out"], ["--ray=local", "photos/", "-o", "out"]),
    (["--ray", "auto", "in"], ["--ray", "auto", "in"]),
    (["in", "--ray", "10.0.0.5:6379"], ["in", "--ray", "10.0.0.5:6379"]),
    (["in", "--ray", "ray://head:10001"], ["in", "--ray", "ray://head:10001"]),
    (["in", "--ray=auto"], ["in", "--ray=auto"]),
    (["in", "--", "--ray"], ["in", "--", "--ray"]),
])
def test_ray_address_is_optional(args, expected):
    assert ray_address_optional(args) == expected


def test_ray_with_stdin_or_stdout_is_a_usage_error(tmp_path, tiny_denoiser):
    source = images(tmp_path, 1)[0]
    for args in (("-", "--ray"), (source, "-o", "-", "--ray")):
        result = invoke("denoise", *args, "-w", tiny_denoiser)
        assert result.exit_code == 2 and "--ray" in result.stderr, result.stderr


def test_ray_missing_is_one_line(tmp_path, tiny_denoiser, monkeypatch):
    """Without the extra installed, --ray says how to get it; nothing else imports Ray."""
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    source = images(tmp_path, 1)[0]
    result = invoke("denoise", source, "-w", tiny_denoiser, "--ray")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and 'pip install "panet[ray]"' in errors[0], result.stderr
    assert_clean_exit(result, 1, 'pip install "panet[ray]"')
    assert invoke("denoise", source, "-w", tiny_denoiser).exit_code == 0  # local runs never need it
