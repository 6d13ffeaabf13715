"""``panet denoise | sr | car | demosaic``: four commands, one implementation.

Each command expands its inputs, loads the model once, then reads, restores and writes image by
image: a bad image costs one error line and the run goes on; the exit code is 1 if anything
failed. Progress and messages go to stderr so ``-o -`` can stream the image on stdout.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import typer

from panet_cli.cli.inputs import (
    Job,
    UsageError,
    check_output_target,
    check_outputs,
    drop_own_outputs,
    expand_inputs,
    plan_outputs,
)
from panet_cli.cli.options import (
    build_command,
    parse_memory,
    parse_tile,
    print_error,
    print_note,
    stderr_console,
    usage_error,
)

DOCS = {
    "denoise": "Remove Gaussian-like noise (blind by default; --sigma picks a level-specific model if installed).",
    "sr": "Super-resolve: upscale 2x, 3x or 4x (PA-EDSR).",
    "car": "Remove JPEG compression artifacts (writes PNG unless told otherwise).",
    "demosaic": "Reconstruct colour from a Bayer mosaic (one-channel CFA, or RGB with zeros where unsampled).",
}
# Name tag of outputs written next to their input; sr adds its factor (photo_x4.png).
SUFFIXES = {"denoise": "_denoised", "car": "_car", "demosaic": "_demosaiced"}
# car re-encoding as JPEG would bring the artifacts back: its auto-named outputs are PNG.
FORCED_FORMATS = {"car": "PNG"}


def run_task(task: str, values: dict[str, Any]) -> None:
    """The body of every task command (see the module docstring)."""
    console = stderr_console()
    quiet: bool = values["quiet"]
    try:
        tile = parse_tile(values["tile"])
        max_memory = parse_memory(values["max_memory"])
    except ValueError as e:
        raise usage_error(console, str(e)) from None
    if values["model"] and values["weights"]:
        raise usage_error(console, "use --model NAME or --weights FILE, not both")
    if values["inputs"].count("-") > 1:
        raise usage_error(console, "stdin (-) can be read only once")
    fmt = values["format"].value if values["format"] is not None else None

    from panet_cli.errors import ModelUnavailable, PanetError
    from panet_cli.images import normalize_format

    try:
        fmt = normalize_format(fmt) if fmt else None
        jobs, many = expand_inputs(values["inputs"], values["recursive"])
        check_output_target(values["output"], many=many, count=len(jobs))
    except UsageError as e:
        raise usage_error(console, str(e)) from None
    try:
        descriptor, device = _load(task, values)
    except ModelUnavailable as e:
        print_error(console, _with_weights_hint(str(e)))
        raise typer.Exit(1) from None
    except PanetError as e:
        print_error(console, str(e))
        raise typer.Exit(1) from None

    suffix = f"_x{descriptor.scale}" if task == "sr" else SUFFIXES[task]
    plan_outputs(jobs, values["output"], many=many, suffix=suffix, format=fmt, force_format=FORCED_FORMATS.get(task))
    jobs = drop_own_outputs(jobs)
    check_outputs(jobs, overwrite=values["overwrite"], skip_existing=values["skip_existing"])
    runner = _Run(task, values, descriptor, device, tile, max_memory, console, quiet)
    failed = runner.all(jobs)
    if failed:
        raise typer.Exit(1)


def _load(task: str, values: dict[str, Any]):
    """Device and model, once per run (their errors end the run before any image is touched)."""
    from panet_cli.devices import select_device
    from panet_cli.inference import resolve_model

    if values["threads"]:
        import torch

        torch.set_num_threads(values["threads"])
    device = select_device(values["device"])
    source = Path(values["weights"]).expanduser() if values["weights"] else values["model"]
    level = values.get("sigma") if task == "denoise" else values.get("quality") if task == "car" else None
    descriptor = resolve_model(task, source, level=level, scale=values.get("scale"), device=device)
    return descriptor, device


def _with_weights_hint(message: str) -> str:
    return message if "--weights" in message else f"{message} (or pass --weights FILE)"


class _Run:
    """Processes jobs one by one with progress bars and a summary, counting failures."""

    def __init__(self, task, values, descriptor, device, tile, max_memory, console, quiet) -> None:
        self.task, self.values, self.descriptor, self.device = task, values, descriptor, device
        self.tile, self.max_memory = tile, max_memory
        self.console, self.quiet = console, quiet
        self.notes: set[str] = set()
        self.done = self.failed = self.skipped = 0
        self.megapixels = 0.0
        self.progress = None

    def all(self, jobs: list[Job]) -> int:
        started = time.perf_counter()
        stdin = sys.stdin.buffer.read() if any(j.source is None and not j.error for j in jobs) else b""
        # Bars only on a terminal: in logs and pipes they would be noise.
        self.progress = _progress(self.console) if self.console.is_terminal and not self.quiet else None
        with self.progress or nullcontext():
            images = self.progress.add_task("images", total=len(jobs)) if self.progress else None
            for job in jobs:
                self.one(job, stdin)
                if self.progress is not None:
                    self.progress.advance(images)
        seconds = time.perf_counter() - started
        if not self.quiet:
            rate = self.megapixels / seconds if seconds > 0 else 0.0
            self.console.print(
                f"{self.done} done, {self.failed} failed, {self.skipped} skipped in {seconds:.1f} s "
                f"({rate:.3f} MP/s)", markup=False, highlight=False,
            )
        return self.failed

    def one(self, job: Job, stdin: bytes) -> None:
        from panet_cli.errors import PanetError
        from panet_cli.images import encode_image, read_image, write_image
        from panet_cli.inference import restore

        if job.error:
            self._fail(job.error)
            return
        if job.skip:
            self.skipped += 1
            return
        tiles = self.progress.add_task(f"  {_short(job.display)}", total=None) if self.progress else None
        try:
            loaded = read_image(stdin if job.source is None else job.source, name=job.display)
            v = self.values
            restored = restore(
                loaded.pixels, self.task, model=self.descriptor, scale=v.get("scale"),
                pattern=v["pattern"].value if "pattern" in v else "RGGB", device=self.device,
                precision=v["precision"].value, tile=self.tile, tile_overlap=v["tile_overlap"],
                max_memory=self.max_memory, tta=v["tta"], notice=self._note,
                progress=(lambda d, t: self.progress.update(tiles, completed=d, total=t)) if tiles is not None else None,
            )
            result = _finish(loaded, restored)
            if job.output is None:
                sys.stdout.buffer.write(encode_image(result, job.format or "PNG"))
                sys.stdout.buffer.flush()
            else:
                write_image(job.output, result, format=job.format, overwrite=v["overwrite"])
            self.done += 1
            self.megapixels += loaded.megapixels
        except PanetError as e:
            self._fail(str(e))
        finally:
            if tiles is not None:
                self.progress.remove_task(tiles)

    def _fail(self, message: str) -> None:
        self.failed += 1
        print_error(self.console, message)

    def _note(self, message: str) -> None:
        if not self.quiet and message not in self.notes:
            self.notes.add(message)
            print_note(self.console, message)


def _finish(loaded, restored):
    """The output image: restored pixels, alpha resized to match, metadata carried over."""
    from panet_cli.images import resize_alpha

    h, w = restored.shape[:2]
    alpha = loaded.alpha
    if alpha is not None and alpha.shape != (h, w):
        alpha = resize_alpha(alpha, h, w)
    icc = loaded.icc_profile
    if restored.shape[2] != loaded.channels:  # a grey CFA became colour: a grey profile no longer fits
        icc = None
    return loaded.replace(pixels=restored, alpha=alpha, icc_profile=icc)


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )


def register(app: typer.Typer) -> None:
    for task in ("denoise", "sr", "car", "demosaic"):
        app.command(task, help=DOCS[task])(build_command(task, run_task, DOCS[task]))
