"""Options shared by the task commands, defined once, and how errors reach the user.

Each task command is built from :data:`COMMON` plus its entry in :data:`TASK_OPTIONS`, so the
four commands cannot drift apart. Nothing here imports torch: ``--help`` stays fast.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, Optional

import typer

from panet_cli.tasks import TASKS, Option, Task  # noqa: F401 - Task: the commands' --task choices


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class ImageFormat(str, Enum):
    png = "png"
    jpg = "jpg"
    jpeg = "jpeg"
    tif = "tif"
    tiff = "tiff"
    webp = "webp"
    bmp = "bmp"


class Pattern(str, Enum):
    RGGB = "RGGB"
    BGGR = "BGGR"
    GRBG = "GRBG"
    GBRG = "GBRG"


def parse_tile(value: str) -> str | int:
    """'auto', or a whole number of pixels (0 = the whole image at once)."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if not (text.isascii() and text.isdigit()):  # str.isdigit() also takes '²' and other scripts' digits
        raise ValueError(f"--tile {value}: use a number of pixels (0 = whole image) or auto")
    from panet_cli.tiling import MIN_TILE  # imports torch: a real run is starting anyway

    number = int(text)
    if 0 < number < MIN_TILE:
        raise ValueError(f"--tile {value}: tiles below {MIN_TILE} pixels leave no room for context; "
                         f"use 0, auto or >= {MIN_TILE}")
    return number


def parse_memory(value: str | None) -> int | None:
    """'4G', '512M', '1.5GB', '2048' (MiB) -> bytes."""
    if value is None:
        return None
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    factor = 2**20
    if text and text[-1] in units:
        factor, text = units[text[-1]], text[:-1]
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"--max-memory {value}: not a size; write e.g. 4G or 512M") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"--max-memory {value}: the size must be positive")
    return int(number * factor)


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


_IO = "Input and output"
_MODEL = "Model and device"
_TILES = "Tiling"
_SCALE = "Scaling out"

COMMON: list[inspect.Parameter] = [
    _param("inputs", list[str], typer.Argument(
        ..., help="Image files, folders, glob patterns (quote them), or - for stdin.", show_default=False)),
    _param("output", Optional[str], typer.Option(
        None, "--output", "-o", show_default=False, rich_help_panel=_IO,
        help="Output file (one input), folder (mirrors sub-folders), or - for stdout. "
             "Default: next to each input, e.g. photo_denoised.png.")),
    _param("format", Optional[ImageFormat], typer.Option(
        None, "--format", "-f", case_sensitive=False, show_default=False, rich_help_panel=_IO,
        help="Output format (default: the output name's, else the input's; PNG for stdout).")),
    _param("recursive", bool, typer.Option(
        False, "--recursive", "-r", rich_help_panel=_IO, help="Include images in sub-folders of folder inputs.")),
    _param("overwrite", bool, typer.Option(
        False, "--overwrite", rich_help_panel=_IO, help="Replace existing outputs (and inputs, if -o points at them).")),
    _param("skip_existing", bool, typer.Option(
        False, "--skip-existing", rich_help_panel=_IO, help="Skip images whose output exists (resume a folder run).")),
    _param("quiet", bool, typer.Option(
        False, "--quiet", "-q", rich_help_panel=_IO, help="Print nothing but errors.")),
    _param("model", Optional[str], typer.Option(
        None, "--model", "-m", show_default=False, rich_help_panel=_MODEL,
        help="Model name (see `panet models list`); default: the task's default model.")),
    _param("weights", Optional[str], typer.Option(
        None, "--weights", "-w", show_default=False, rich_help_panel=_MODEL,
        help="Weights file: a published PANet/PA-EDSR .pt or our .safetensors.")),
    _param("device", str, typer.Option(
        "auto", "--device", rich_help_panel=_MODEL, help="auto, cpu, cuda, cuda:N or mps.")),
    _param("precision", Precision, typer.Option(
        Precision.fp32, "--precision", case_sensitive=False, rich_help_panel=_MODEL,
        help="Arithmetic precision; one the device cannot run well falls back, with a notice.")),
    _param("tta", bool, typer.Option(
        False, "--tta", rich_help_panel=_MODEL, help="Average the 8 flips/rotations (x8 slower, slightly better).")),
    _param("threads", int, typer.Option(
        0, "--threads", min=0, rich_help_panel=_MODEL, help="CPU threads for torch (0 = torch's default).")),
    _param("tile", str, typer.Option(
        "auto", "--tile", rich_help_panel=_TILES,
        help="Input pixels per tile side, 0 = whole image, auto = largest that fits --max-memory.")),
    _param("tile_overlap", int, typer.Option(
        16, "--tile-overlap", min=0, rich_help_panel=_TILES, help="Pixels shared by neighbouring tiles (blended).")),
    _param("max_memory", Optional[str], typer.Option(
        None, "--max-memory", show_default=False, rich_help_panel=_TILES,
        help="Memory for tiles in flight, e.g. 4G or 512M (default: from free RAM / GPU memory).")),
    _param("shard", Optional[str], typer.Option(
        None, "--shard", metavar="I/N", show_default=False, rich_help_panel=_SCALE,
        help="Process only shard I of N (input k goes to shard k mod N): one per job-array member.")),
    _param("report", Optional[str], typer.Option(
        None, "--report", metavar="FILE", show_default=False, rich_help_panel=_SCALE,
        help="Write one JSON line per input (path, output, status, reason) to FILE.")),
    _param("ray", Optional[str], typer.Option(
        None, "--ray", metavar="[ADDRESS]", show_default=False, rich_help_panel=_SCALE,
        help="Run on Ray: alone (or 'local') starts a local cluster; 'auto', HOST:PORT or ray://HOST:PORT "
             "joins a running one. Needs pip install \"panet\\[ray]\".")),  # \\[: a bracket, not rich markup
    _param("ray_actors", int, typer.Option(
        0, "--ray-actors", min=0, metavar="N", rich_help_panel=_SCALE,
        help="Ray actors (0 = one per GPU, else one per --threads CPUs of the cluster).")),
]

def _one_of(choices: tuple[Any, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"use one of {', '.join(map(str, choices))}")
        return value

    return check


def _task_param(option: Option) -> inspect.Parameter:
    """A task row's own option (see :mod:`panet_cli.tasks`) as a Typer parameter."""
    if option.kind == "pattern":
        return _param(option.name, Pattern, typer.Option(
            Pattern(option.default), *option.flags, case_sensitive=False, help=option.help))
    kind = {"float": float, "int": int}[option.kind]
    check = _one_of(option.choices) if option.choices else None
    return _param(option.name, Optional[kind], typer.Option(
        option.default, *option.flags, min=option.low, max=option.high, callback=check, show_default=False,
        help=option.help))


TASK_OPTIONS: dict[str, list[inspect.Parameter]] = {
    spec.name: [_task_param(option) for option in spec.options] for spec in TASKS
}


RAY_LOCAL = "local"


def ray_address_optional(args: list[str]) -> list[str]:
    """``--ray`` not followed by an address gets ``local``, so ``--ray`` works alone (Typer has no optional values).

    ``panet denoise --ray photos/`` thus reads photos/ as an input; ``--ray auto``, ``--ray HOST:PORT``,
    ``--ray ray://HOST:PORT`` and ``--ray=ADDRESS`` name a cluster. Arguments after ``--`` are left alone.
    """
    from panet_cli.scaleout.ray_job import is_address

    out: list[str] = []
    for k, arg in enumerate(args):
        if arg == "--":
            return out + args[k:]
        if arg == "--ray" and (k + 1 >= len(args) or not is_address(args[k + 1])):
            out.append(f"--ray={RAY_LOCAL}")
        else:
            out.append(arg)
    return out


def task_command_class():
    """The Typer command class of the task commands: lets ``--ray`` go without a value."""
    from typer.core import TyperCommand

    class TaskCommand(TyperCommand):
        def parse_args(self, ctx, args: list[str]) -> list[str]:
            return super().parse_args(ctx, ray_address_optional(list(args)))

    return TaskCommand


def build_command(task: str, run: Callable[[str, dict[str, Any]], None], doc: str) -> Callable[..., None]:
    """A Typer command for ``task``: common options plus the task's own, handled by ``run(task, values)``."""
    parameters = COMMON[:1] + TASK_OPTIONS[task] + COMMON[1:]

    def command(**values: Any) -> None:
        run(task, values)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = doc
    command.__name__ = f"{task}_command"
    return command


def stderr_console():
    """Rich console on stderr (stdout stays clean for pipes); never wraps, so an error stays one line."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


def print_error(console, message: str) -> None:
    """One line, no traceback: what failed and why (the message names the file or model)."""
    console.print(f"error: {' '.join(str(message).split())}", style="red", markup=False, highlight=False)


def usage_error(console, message: str) -> typer.Exit:
    """Report a usage error as one line; raise the returned Exit (code 2, as for bad options)."""
    print_error(console, message)
    return typer.Exit(2)


def print_note(console, message: str) -> None:
    console.print(f"note: {message}", style="yellow", markup=False, highlight=False)


@contextmanager
def user_errors(console=None) -> Iterator[None]:
    """PanetError -> its message as one stderr line and exit 1, as every panet command does."""
    from panet_cli.errors import PanetError

    try:
        yield
    except PanetError as error:
        print_error(console or stderr_console(), str(error))
        raise typer.Exit(1) from None
