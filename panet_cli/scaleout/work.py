"""The unit of work of every restoration job: read one file, restore it, write it.

The local CLI loop and each Ray actor run the same :class:`FileWorker`, so a file restored on a
cluster goes through exactly the code of a local run: :func:`panet_cli.images.read_image`,
:func:`panet_cli.inference.restore` and the atomic :func:`panet_cli.images.write_image`, and
16-bit samples, alpha, EXIF and ICC profiles come out alike.

:meth:`FileWorker.process` overlaps the three steps: the next image is decoded on one helper
thread and the previous result encoded on another while the current image is restored. Pillow's
codecs, zlib and torch's kernels release the GIL, so on a GPU the device is not left waiting for
the CPU to decode or encode; at most three images are in memory at once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from panet_cli.errors import PanetError
from panet_cli.inference import RestoreOptions

if TYPE_CHECKING:
    import torch

    from panet_cli.images import LoadedImage
    from panet_cli.loading import ModelDescriptor

DONE, FAILED, SKIPPED = "done", "failed", "skipped"

Progress = Callable[[int, int], None]
# Per job: a context manager giving the tile-progress callback for its restore() (or None).
TileProgress = Callable[["FileJob"], AbstractContextManager["Progress | None"]]


class FileJob(Protocol):
    """What the worker needs to know about one input (``panet_cli.cli.inputs.Job`` is one)."""

    source: Path | str | None  # None: the bytes given to the worker as stdin
    display: str  # how messages and reports name it
    output: Path | str | None  # None: the worker's stdout
    format: str | None  # explicit output format; None: from the output's suffix
    error: str | None  # known to fail before reading
    skip: bool  # its output exists and --skip-existing was given


@dataclass
class Item:
    """A :class:`FileJob` rebuilt from plain values (a row of a Ray dataset)."""

    source: str | None
    display: str
    output: str | None
    format: str | None = None
    error: str | None = None
    skip: bool = False


@dataclass(frozen=True)
class Settings:
    """What a worker does with each file: the task, the run's :class:`RestoreOptions` as the command built
    them (handed to ``restore()`` unchanged), and whether outputs may be replaced. Picklable: travels to Ray actors."""

    task: str
    options: RestoreOptions = field(default_factory=RestoreOptions)
    overwrite: bool = False

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


@dataclass
class Outcome:
    """What became of one job."""

    job: FileJob
    status: str  # DONE, FAILED or SKIPPED
    reason: str | None = None  # one line naming the file, for failures
    megapixels: float = 0.0  # input size, for done jobs restored in this attempt
    written: bool = False  # this attempt wrote the output (False: it was already there from an earlier attempt)
    notes: tuple[str, ...] = field(default_factory=tuple)  # notices from a remote worker (precision fallback ...)


def failure_reason(job: FileJob, error: BaseException) -> str:
    """One line naming the file and the cause.

    Our errors carry a complete message (reading errors name the file already; restore() errors
    such as "the image is empty" get the file prepended). Anything else is a bug; it is only
    contained on a cluster, where one odd file must not stop ten thousand others, and says so.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, PanetError):
        return text if job.display in text else f"{job.display}: {text}"
    return f"{job.display}: unexpected {type(error).__name__}: {text}"


def finish_image(loaded: LoadedImage, restored) -> LoadedImage:
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


class _Inline:
    """An executor that runs each call at once: the worker without overlap (``prefetch=False``)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as error:  # noqa: BLE001 - delivered through the future, as a thread pool does
            future.set_exception(error)
        return future

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class FileWorker:
    """A loaded model on its device, restoring files one by one with the run's settings.

    Args:
        notice: receives one-line notices worth showing (precision fallback, out-of-memory retries).
        stdin, stdout: the bytes of a ``-`` input, and where a ``-o -`` result goes.
        contain: errors that fail one file and let the rest go on. Locally only our own errors
            (anything else is a bug and should show its traceback); Ray actors contain every
            ``Exception``.
        written_since: makes each job idempotent when it may run twice (a Ray task retried after
            its actor died): an output that exists and was not there when the job was planned
            (without ``--overwrite`` the plan rejects or skips existing outputs; with it, an
            output modified after ``written_since``, the job's start) is this job's own earlier
            write and is not redone.
        prefetch: overlap decoding, restoring and encoding on threads (see the module docstring).
    """

    def __init__(
        self,
        descriptor: ModelDescriptor,
        device: torch.device,
        settings: Settings,
        *,
        notice: Callable[[str], None] | None = None,
        stdin: bytes = b"",
        stdout: BinaryIO | None = None,
        contain: tuple[type[BaseException], ...] = (PanetError,),
        written_since: float | None = None,
        prefetch: bool = True,
    ) -> None:
        self.descriptor, self.device, self.settings = descriptor, device, settings
        self.notice = notice
        self.stdin, self.stdout = stdin, stdout
        self.contain = contain
        self.written_since = written_since
        self.prefetch = prefetch

    # -- the three steps ---------------------------------------------------------------------------

    def read(self, job: FileJob) -> LoadedImage:
        from panet_cli.images import read_image

        loaded = read_image(self.stdin if job.source is None else job.source, name=job.display)
        for note in loaded.notes:  # animated file, corrupt EXIF ignored ...: one line each, not a warning
            if self.notice is not None:
                self.notice(note)
        return loaded

    def restore(self, loaded: LoadedImage, progress: Progress | None = None) -> LoadedImage:
        from panet_cli.inference import restore

        options = self.settings.options
        if options.precision == "auto" and loaded.bit_depth > 8:
            options = options.replace(precision="fp32")  # bf16 keeps 8 bits of mantissa: not enough for 16-bit files
        restored = restore(loaded.pixels, self.settings.task, options=options, model=self.descriptor,
                           device=self.device, notice=self.notice, progress=progress)
        return finish_image(loaded, restored)

    def write(self, job: FileJob, image: LoadedImage) -> bool:
        """Encode ``image`` to the job's output (atomically) or to stdout; True once written."""
        from panet_cli.images import encode_image, write_image

        if job.output is None:
            if self.stdout is None:
                raise PanetError(f"{job.display}: no output file and no stdout to write to")
            self.stdout.write(encode_image(image, job.format or "PNG"))
            self.stdout.flush()
        else:
            write_image(job.output, image, format=job.format, overwrite=self.settings.overwrite)
        return True

    def already_written(self, job: FileJob) -> bool:
        """Whether an earlier attempt of this same job wrote its output (see ``written_since``)."""
        if self.written_since is None or job.output is None:
            return False
        try:
            modified = os.stat(job.output).st_mtime
        except OSError:
            return False
        return not self.settings.overwrite or modified >= self.written_since

    # -- the loop ---------------------------------------------------------------------------------

    def process(self, jobs: Iterable[FileJob], *, tiles: TileProgress | None = None) -> Iterator[Outcome]:
        """Outcomes of ``jobs``, in their order, decoding ahead and encoding behind (see the module docstring).

        A failing file yields a FAILED outcome and the loop goes on; an error outside
        ``contain`` propagates. Closing the generator early waits for the write in flight.
        """
        jobs = list(jobs)
        work = [k for k, job in enumerate(jobs) if not (job.error or job.skip)]
        following = dict(zip(work, work[1:]))  # the next job that will need reading
        pools = (ThreadPoolExecutor(1, "panet-read"), ThreadPoolExecutor(1, "panet-write")) if self.prefetch else (
            _Inline(), _Inline())
        with pools[0] as reader, pools[1] as writer:
            reads: dict[int, Future] = {}
            writing: tuple[FileJob, Future, float] | None = None

            def fetch(k: int | None) -> None:
                if self.prefetch and k is not None and k not in reads and not self.already_written(jobs[k]):
                    reads[k] = reader.submit(self.read, jobs[k])

            for k, job in enumerate(jobs):
                outcome: Outcome | None = None
                if job.error:
                    outcome = Outcome(job, FAILED, job.error)
                elif job.skip:
                    outcome = Outcome(job, SKIPPED)
                elif self.already_written(job):
                    outcome = Outcome(job, DONE, written=False)
                else:
                    reading = reads.pop(k, None) or reader.submit(self.read, job)
                    fetch(following.get(k))  # decode the next image while this one is restored
                    try:
                        loaded = reading.result()
                        with (tiles(job) if tiles is not None else nullcontext()) as progress:
                            result = self.restore(loaded, progress)
                    except self.contain as error:
                        outcome = Outcome(job, FAILED, failure_reason(job, error))
                    else:
                        if writing is not None:  # one write in flight at most: memory stays bounded
                            yield self._settle(*writing)
                        writing = (job, writer.submit(self.write, job, result), loaded.megapixels)
                        continue
                if writing is not None:
                    yield self._settle(*writing)
                    writing = None
                yield outcome
            if writing is not None:
                yield self._settle(*writing)

    def _settle(self, job: FileJob, future: Future, megapixels: float) -> Outcome:
        try:
            written = future.result()
        except self.contain as error:
            return Outcome(job, FAILED, failure_reason(job, error))
        return Outcome(job, DONE, megapixels=megapixels, written=written)
