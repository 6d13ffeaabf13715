"""``panet denoise | sr | car | demosaic``: four commands, one implementation.

Each command expands its inputs, loads the model once, then reads, restores and writes image by
image (the next image decoded and the last one encoded while the current one is restored: see
:mod:`panet_cli.scaleout.work`): a bad image costs one error line and the run goes on; the exit
code is 1 if anything failed. ``--shard I/N`` keeps a slice of the inputs for job arrays, ``--ray``
runs the same jobs on a Ray cluster, ``--report`` writes one JSON line per input. Progress and
messages go to stderr so ``-o -`` can stream the image on stdout.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from panet_cli.cli.inputs import (
    STDIN,
    Job,
    UsageError,
    check_output_format,
    check_output_target,
    check_outputs,
    check_report,
    drop_own_outputs,
    expand_inputs,
    plan_outputs,
)
from panet_cli.cli.options import (
    Device,
    FormatOption,
    Inputs,
    MaxMemory,
    ModelName,
    Output,
    Overwrite,
    Pattern,
    Precision,
    PrecisionOption,
    Quiet,
    Ray,
    RayActors,
    Recursive,
    ReportFile,
    Shard,
    SkipExisting,
    Threads,
    Tile,
    TileOverlap,
    Tta,
    Weights,
    parse_memory,
    parse_tile,
    print_error,
    print_note,
    stderr_console,
    task_command_class,
    usage_error,
    with_task_options,
)
from panet_cli.tasks import TASKS, task_spec

if TYPE_CHECKING:
    from panet_cli.inference import RestoreOptions
    from panet_cli.scaleout.report import Report
    from panet_cli.scaleout.work import Outcome, Settings


@dataclass(frozen=True)
class TaskRun:
    """A task command's command line, typed: what to read and write, which model on which device, how
    to spread the work, and the :class:`~panet_cli.inference.RestoreOptions` handed to ``restore()``."""

    task: str
    inputs: tuple[str, ...]
    options: RestoreOptions
    output: str | None = None
    format: str | None = None
    recursive: bool = False
    overwrite: bool = False
    skip_existing: bool = False
    quiet: bool = False
    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    threads: int = 0
    shard: tuple[int, int] | None = None
    report: str | None = None
    ray: str | None = None  # None: locally; else the Ray address (``local`` for a cluster of its own)
    ray_actors: int = 0


def task_command(task: str) -> Callable[..., None]:
    """The thin command of one task row: its command line typed into a :class:`TaskRun` for :func:`run_task`."""

    def command(
        inputs: Inputs, output: Output = None, format: FormatOption = None, recursive: Recursive = False,
        overwrite: Overwrite = False, skip_existing: SkipExisting = False, quiet: Quiet = False,
        model: ModelName = None, weights: Weights = None, device: Device = "auto",
        precision: PrecisionOption = Precision.auto, tta: Tta = False, threads: Threads = 0, tile: Tile = "auto",
        tile_overlap: TileOverlap = 16, max_memory: MaxMemory = None, shard: Shard = None,
        report: ReportFile = None, ray: Ray = None, ray_actors: RayActors = 0,
        # set by the task's own option (tasks.Option.field), if it has one
        level: float | None = None, scale: int | None = None, pattern: str = Pattern.RGGB,
    ) -> None:
        from panet_cli.inference import RestoreOptions
        from panet_cli.scaleout.shards import parse_shard

        try:
            options = RestoreOptions(level=level, scale=scale, pattern=Pattern(pattern).value,
                                     precision=Precision(precision).value, tile=parse_tile(tile),
                                     tile_overlap=tile_overlap, max_memory=parse_memory(max_memory), tta=tta)
            part = parse_shard(shard) if shard is not None else None
        except ValueError as e:
            raise usage_error(stderr_console(), str(e)) from None
        run_task(TaskRun(
            task, tuple(inputs), options, output=output, format=format.value if format is not None else None,
            recursive=recursive, overwrite=overwrite, skip_existing=skip_existing, quiet=quiet, model=model,
            weights=weights, device=device, threads=threads, shard=part, report=report, ray=ray,
            ray_actors=ray_actors,
        ))

    return with_task_options(command, task_spec(task))


def run_task(run: TaskRun) -> None:
    """The body of every task command (see the module docstring)."""
    from panet_cli.scaleout.shards import take_shard

    console = stderr_console()
    on_ray = run.ray is not None
    tile = run.options.tile
    if isinstance(tile, int) and tile > 0 and run.options.tile_overlap >= tile:
        raise usage_error(console, f"--tile-overlap {run.options.tile_overlap} must be smaller than --tile {tile}")
    if run.model and run.weights:
        raise usage_error(console, "use --model NAME or --weights FILE, not both")
    if run.inputs.count("-") > 1:
        raise usage_error(console, "stdin (-) can be read only once")
    if on_ray and (STDIN in run.inputs or run.output == STDIN):
        raise usage_error(console, "--ray reads and writes files by path: stdin and stdout (-) cannot be used with it")

    from panet_cli.errors import ModelUnavailable, PanetError
    from panet_cli.images import normalize_format

    if on_ray:  # before anything is loaded: without the extra installed, say so at once
        from panet_cli.scaleout.ray_job import import_ray

        try:
            import_ray()
        except PanetError as e:
            print_error(console, str(e))
            raise typer.Exit(1) from None

    try:
        fmt = normalize_format(run.format) if run.format else None
        jobs, many = expand_inputs(list(run.inputs), run.recursive)
        check_output_target(run.output, many=many, count=len(jobs))
        check_output_format(run.output, many=many, format=fmt)  # before the model is loaded
    except UsageError as e:
        raise usage_error(console, str(e)) from None
    try:
        # With --ray the driver only checks the model and ships its file: the actors choose their devices.
        descriptor, device = _load(run, device="cpu" if on_ray else None)
    except ModelUnavailable as e:
        print_error(console, _with_weights_hint(str(e)))
        raise typer.Exit(1) from None
    except PanetError as e:
        print_error(console, str(e))
        raise typer.Exit(1) from None

    spec = task_spec(run.task)  # the output name tag (photo_denoised.png, photo_x4.png) and any forced format
    plan_outputs(jobs, run.output, many=many, suffix=spec.output_suffix(descriptor.scale), format=fmt,
                 force_format=spec.forced_format)
    jobs = drop_own_outputs(jobs)
    try:
        check_report(run.report, jobs, overwrite=run.overwrite)  # every shard's jobs
    except UsageError as e:
        raise usage_error(console, str(e)) from None
    if run.shard is not None:
        # After dropping our own outputs, before looking at existing ones: every member of a job
        # array slices the same list, whatever the others have written already.
        total = len(jobs)
        jobs = take_shard(jobs, *run.shard)
        if not run.quiet:
            print_note(console, f"shard {run.shard[0]}/{run.shard[1]}: {len(jobs)} of {total} inputs")
    check_outputs(jobs, overwrite=run.overwrite, skip_existing=run.skip_existing)
    _remove_stale_temporaries(jobs)

    from panet_cli.scaleout.report import Report
    from panet_cli.scaleout.work import Settings

    try:
        report = Report(run.report, overwrite=run.overwrite)
    except PanetError as e:
        print_error(console, str(e))
        raise typer.Exit(1) from None
    display = _Display(console, run.quiet, report)
    settings = Settings(run.task, run.options, overwrite=run.overwrite)
    try:
        try:
            if on_ray:
                failed = _on_ray(display, jobs, settings, descriptor, run)
            else:
                failed = _locally(display, jobs, settings, descriptor, device)
        finally:
            report.close()  # also when interrupted: the lines so far are the report of what was done
    except PanetError as e:
        print_error(console, str(e))
        raise typer.Exit(1) from None
    if failed:
        raise typer.Exit(1)


def _load(run: TaskRun, device: str | None = None):
    """Device and model, once per run (their errors end the run before any image is touched)."""
    from panet_cli.devices import select_device
    from panet_cli.inference import resolve_model

    if run.threads and device is None:
        import torch

        torch.set_num_threads(run.threads)
    device = select_device(device or run.device)
    source = Path(run.weights).expanduser() if run.weights else run.model
    descriptor = resolve_model(run.task, source, level=run.options.level, scale=run.options.scale, device=device)
    return descriptor, device


def _remove_stale_temporaries(jobs: list[Job]) -> None:
    """Temporaries that an earlier run, killed mid-write, left in the folders this run writes into."""
    from panet_cli.files import remove_stale_temporaries

    for folder in {job.output.parent for job in jobs if job.output is not None and not job.error}:
        remove_stale_temporaries(folder)


def _with_weights_hint(message: str) -> str:
    return message if "--weights" in message else f"{message} (or pass --weights FILE)"


def _locally(display: _Display, jobs: list[Job], settings: Settings, descriptor, device) -> int:
    from panet_cli.scaleout.work import FileWorker

    from panet_cli.images import max_input_bytes

    budget = max_input_bytes()  # one byte more than an image may have: read_image then refuses it
    wanted = any(j.source is None and not j.error for j in jobs)
    stdin = (sys.stdin.buffer.read(budget + 1) if budget is not None else sys.stdin.buffer.read()) if wanted else b""
    worker = FileWorker(descriptor, device, settings, notice=display.note, stdin=stdin, stdout=sys.stdout.buffer)
    return display.all(len(jobs), lambda tiles: worker.process(jobs, tiles=tiles))


def _on_ray(display: _Display, jobs: list[Job], settings: Settings, descriptor, run: TaskRun) -> int:
    """The jobs with work to do go to a Ray Data pipeline; failed and skipped ones are reported here."""
    from panet_cli.scaleout import ray_job
    from panet_cli.scaleout.work import FAILED, SKIPPED, Outcome

    written_since = time.time()
    decided = [Outcome(j, FAILED, j.error) if j.error else Outcome(j, SKIPPED) for j in jobs if j.error or j.skip]
    pending = [j for j in jobs if not (j.error or j.skip)]
    connected = ray_job.connect(run.ray, quiet=run.quiet) if pending else False
    try:
        plan = ray_job.plan_actors(ray_job.import_ray().cluster_resources(), device=run.device,
                                   threads=run.threads, actors=run.ray_actors) if pending else None
        if plan is not None:
            display.note(f"Ray: {len(pending)} images on {plan.describe()}")

        def outcomes(_tiles) -> Iterator[Outcome]:
            yield from decided
            finished: set[int] = set()
            try:
                for outcome in ray_job.run(pending, settings, descriptor.source, plan, written_since=written_since):
                    finished.add(id(outcome.job))
                    yield outcome
            except ray_job.RayJobStopped as stopped:
                left = [j for j in pending if id(j) not in finished]
                print_error(display.console, f"{stopped}; {len(left)} images not processed "
                                         "(run again with --skip-existing to resume)")
                for job in left:  # in the counts and the report, without a line each
                    display.record(Outcome(job, FAILED, f"{job.display}: not processed ({stopped})"), show=False)

        return display.all(len(jobs), outcomes)
    finally:
        if connected:
            ray_job.disconnect()


class _Display:
    """Shows outcomes as they come: progress bars, one line per failure, notes once, a summary; feeds the report."""

    def __init__(self, console, quiet: bool, report: Report) -> None:
        self.console, self.quiet, self.report = console, quiet, report
        self.notes: set[str] = set()
        self.done = self.failed = self.skipped = 0
        self.megapixels = 0.0
        self.progress = None

    def all(self, total: int, outcomes: Callable[[Callable | None], Iterable[Outcome]]) -> int:
        """Consume ``outcomes(tiles)`` (``tiles``: per-image tile progress, or None) and print the summary."""
        started = time.perf_counter()
        # Bars only on a terminal: in logs and pipes they would be noise.
        self.progress = _progress(self.console) if self.console.is_terminal and not self.quiet else None
        with self.progress or nullcontext():
            images = self.progress.add_task("images", total=total) if self.progress else None
            for outcome in outcomes(self._tiles if self.progress is not None else None):
                self.record(outcome)
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

    def record(self, outcome: Outcome, *, show: bool = True) -> None:
        """Count ``outcome`` and add it to the report; a failure prints its line unless ``show`` is False."""
        from panet_cli.scaleout.work import DONE, FAILED

        self.report.add(outcome)
        if outcome.status == DONE:
            self.done += 1
            self.megapixels += outcome.megapixels
        elif outcome.status == FAILED:
            self.failed += 1
            if show:
                print_error(self.console, outcome.reason or f"{outcome.job.display}: failed")
        else:
            self.skipped += 1
        for note in outcome.notes:
            self.note(note)

    @contextmanager
    def _tiles(self, job: Job) -> Iterator[Callable[[int, int], None]]:
        tiles = self.progress.add_task(f"  {_short(job.display)}", total=None)
        try:
            yield lambda done, total: self.progress.update(tiles, completed=done, total=total)
        finally:
            self.progress.remove_task(tiles)

    def note(self, message: str) -> None:
        if not self.quiet and message not in self.notes:
            self.notes.add(message)
            print_note(self.console, message)


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )


def register(app: typer.Typer) -> None:
    for spec in TASKS:
        app.command(spec.name, help=spec.summary, cls=task_command_class())(task_command(spec.name))
