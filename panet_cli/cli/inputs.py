"""From the command line's inputs and ``-o`` to a list of jobs: which file goes where.

Inputs are files, folders (their images; sub-folders with ``--recursive``), glob patterns and
``-`` (stdin). Outputs go next to the input with a task suffix, into a folder (mirroring the
inputs' sub-folders), to one named file, or to stdout. Nothing here reads pixels or imports torch.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from panet_cli.images import FORMATS, SUFFIXES, is_image_file, list_images

STDIN = "-"
_GLOB_CHARS = set("*?[")


class UsageError(Exception):
    """An impossible combination of inputs and ``-o`` (the CLI exits 2)."""


@dataclass
class Job:
    """One input image and where its result goes."""

    source: Path | None  # None = stdin
    display: str  # how messages name it
    relative: Path  # path under its folder or glob root: mirrored inside an output folder
    error: str | None = None  # known to fail before reading (missing input ...)
    output: Path | None = None  # None = stdout
    format: str | None = None  # explicit output format (None: from the output's suffix)
    skip: bool = False  # --skip-existing and the output exists


def expand_inputs(items: list[str], recursive: bool = False) -> tuple[list[Job], bool]:
    """Jobs for the inputs (in order, duplicates dropped), and whether more than one was meant."""
    jobs: list[Job] = []
    seen: set[Path] = set()
    many = len(items) > 1

    def add(path: Path, relative: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            jobs.append(Job(path, str(path), relative))

    for item in items:
        if item == STDIN:
            jobs.append(Job(None, "<stdin>", Path("stdin")))
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            many = True
            found = list_images(path, recursive)
            if not found:
                hint = "" if recursive else " (use --recursive for sub-folders)"
                jobs.append(Job(path, item, Path(path.name), error=f"{item}: no images found in this folder{hint}"))
            for file in found:
                add(file, file.relative_to(path))
        elif path.exists() or not _GLOB_CHARS & set(item):
            # A missing file is a job that fails with one line, like any unreadable input.
            add(path, Path(path.name))
        else:
            many = True
            root = _glob_root(item)
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if is_image_file(Path(m)))
            if not matches:
                jobs.append(Job(None, item, Path("glob"), error=f"{item}: no image files match this pattern"))
            for file in matches:
                add(file, file.relative_to(root) if file.is_relative_to(root) else Path(file.name))
    return jobs, many


def _glob_root(pattern: str) -> Path:
    """The folder a glob pattern starts from: its leading components without wildcards."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def plan_outputs(
    jobs: list[Job],
    output: str | None,
    *,
    many: bool,
    suffix: str,
    format: str | None,
    force_format: str | None = None,
) -> None:
    """Fill in each job's output path (None = stdout) and format.

    ``suffix`` is the task's name tag for outputs written next to their input
    (``photo_denoised.png``); ``format`` an explicit ``--format``; ``force_format`` the task's own
    choice for auto-named outputs (car writes PNG: re-encoding JPEG would bring the artifacts back).
    """
    check_output_target(output, many=many, count=len(jobs))
    if output == STDIN:
        jobs[0].output, jobs[0].format = None, format or "PNG"
        return
    into_folder = output is not None and _is_folder(output, many)
    for job in jobs:
        job.format = format
        if output is None:
            if job.source is None:  # stdin without -o: the result goes to stdout
                job.format = format or "PNG"
                continue
            ext = _suffix(format or force_format, job.source.suffix)
            job.output = job.source.with_name(f"{job.source.stem}{suffix}{ext}")
        elif into_folder:
            ext = _suffix(format or force_format, job.relative.suffix or ".png")
            job.output = Path(output).expanduser() / job.relative.with_suffix(ext)
        else:
            job.output = Path(output).expanduser()


def check_output_target(output: str | None, *, many: bool, count: int) -> None:
    """UsageError when ``-o`` cannot take these inputs (one file or stdout for several)."""
    if output == STDIN:
        if many or count != 1:
            raise UsageError("-o - (stdout) takes exactly one input image")
    elif output is not None and not _is_folder(output, many) and (many or count > 1):
        raise UsageError(f"-o {output} names one file, but there are several inputs: give a folder instead")


def check_output_format(output: str | None, *, many: bool, format: str | None) -> None:
    """UsageError when ``-o`` names one file of a format panet cannot write (``x.gif``) and no --format says one."""
    if output is None or output == STDIN or format is not None or _is_folder(output, many):
        return
    suffix = Path(output).suffix
    if suffix.lower() not in FORMATS:
        known = ", ".join(sorted({s.lstrip(".") for s in FORMATS}))
        raise UsageError(f"-o {output}: panet cannot write {suffix} files; name a {known} file, or give --format")


def check_report(report: str | None, jobs: list[Job], *, overwrite: bool) -> None:
    """UsageError when ``--report`` names an input or an output of the run, or an existing file without --overwrite."""
    if report is None:
        return
    path = Path(report).expanduser()
    try:
        target = path.resolve()
        for job in jobs:
            for role, other in (("input", job.source), ("output", job.output)):
                if other is not None and other.resolve() == target:
                    raise UsageError(f"--report {report} is an {role} of this run ({job.display}): "
                                     "name another file for the report")
        exists = path.exists()
    except OSError as e:
        raise UsageError(f"--report {report}: unusable path ({e.strerror or e})") from None
    if exists and path.is_dir():
        raise UsageError(f"--report {report} is a folder: name a file")
    if exists and path.is_file() and not overwrite:  # a device or a pipe (/dev/stdout) is written, not replaced
        raise UsageError(f"--report {report} already exists (use --overwrite to replace it, or name another file)")


def _is_folder(output: str, many: bool) -> bool:
    """-o names a folder when it is one, ends with a separator, has no image suffix, or inputs are many."""
    path = Path(output).expanduser()
    if output.endswith(("/", os.sep)) or path.is_dir():
        return True
    return path.suffix.lower() not in FORMATS and (many or not path.suffix)


def _suffix(format: str | None, original: str) -> str:
    if format:
        return SUFFIXES[format]
    return original if original.lower() in FORMATS else ".png"


def drop_own_outputs(jobs: list[Job]) -> list[Job]:
    """Inputs that are another input's planned output (a re-run over the same folder) are not inputs."""
    produced = {_resolved(job.output): job for job in jobs if job.output is not None}

    def is_output_of_another(job: Job) -> bool:
        maker = produced.get(_resolved(job.source)) if job.source is not None else None
        return maker is not None and maker is not job

    return [job for job in jobs if job.error or not is_output_of_another(job)]


def check_outputs(jobs: list[Job], *, overwrite: bool, skip_existing: bool) -> None:
    """Mark jobs whose output exists (skipped, or failed without --overwrite) or collides."""
    claimed: dict[Path, str] = {}
    for job in jobs:
        if job.error or job.output is None:
            continue
        try:
            _check_output(job, claimed, overwrite=overwrite, skip_existing=skip_existing)
        except OSError as e:  # a name too long for the file system, a path through a file ...
            job.error = f"{job.display}: cannot write its output {job.output} ({e.strerror or e})"


def _check_output(job: Job, claimed: dict[Path, str], *, overwrite: bool, skip_existing: bool) -> None:
    assert job.output is not None
    target = job.output.resolve()
    if target in claimed:
        job.error = f"{job.display}: its output {job.output} is also the output of {claimed[target]}"
        return
    claimed[target] = job.display
    if job.source is not None and target == job.source.resolve() and not overwrite:
        job.error = f"{job.display}: the output would replace the input (use -o, or --overwrite)"
    elif job.output.exists():
        if skip_existing:
            job.skip = True
        elif not overwrite:
            job.error = f"{job.output}: already exists (use --overwrite, or --skip-existing to keep it)"


def _resolved(path: Path) -> Path:
    """``path.resolve()``, or ``path`` made absolute when the file system refuses it (a name too long)."""
    try:
        return path.resolve()
    except OSError:
        return path.absolute()
