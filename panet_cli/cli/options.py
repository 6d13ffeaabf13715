"""Options shared by the task commands, defined once, and how errors reach the user.

The task commands' shared options are ``Annotated`` aliases (:data:`Inputs`, :data:`Output` ...), and
:func:`with_task_options` adds a task row's own (``--sigma``), so the four commands cannot drift apart.
Nothing here imports torch: ``--help`` stays fast.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Any, Optional

import typer

from panet_cli.tasks import Option, Task, TaskSpec  # noqa: F401 - Task: the commands' --task choices


class Precision(str, Enum):
    auto = "auto"
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


_IO = "Input and output"
_MODEL = "Model and device"
_TILES = "Tiling"
_SCALE = "Scaling out"

# The task commands' shared options, each defined once (see panet_cli.cli.restore.task_command).
Inputs = Annotated[list[str], typer.Argument(
    help="Image files, folders, glob patterns (quote them), or - for stdin.", show_default=False)]
Output = Annotated[Optional[str], typer.Option(
    "--output", "-o", show_default=False, rich_help_panel=_IO,
    help="Output file (one input), folder (mirrors sub-folders), or - for stdout. "
         "Default: next to each input, e.g. photo_denoised.png.")]
FormatOption = Annotated[Optional[ImageFormat], typer.Option(
    "--format", "-f", case_sensitive=False, show_default=False, rich_help_panel=_IO,
    help="Output format (default: the output name's, else the input's; PNG for stdout).")]
Recursive = Annotated[bool, typer.Option(
    "--recursive", "-r", rich_help_panel=_IO, help="Include images in sub-folders of folder inputs.")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", rich_help_panel=_IO, help="Replace existing outputs (and inputs, if -o points at them).")]
SkipExisting = Annotated[bool, typer.Option(
    "--skip-existing", rich_help_panel=_IO, help="Skip images whose output exists (resume a folder run).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel=_IO, help="Print nothing but errors.")]
ModelName = Annotated[Optional[str], typer.Option(
    "--model", "-m", show_default=False, rich_help_panel=_MODEL,
    help="Model name (see `panet models list`); default: the task's default model.")]
Weights = Annotated[Optional[str], typer.Option(
    "--weights", "-w", show_default=False, rich_help_panel=_MODEL,
    help="Weights file: a published PANet/PA-EDSR .pt or our .safetensors.")]
Device = Annotated[str, typer.Option("--device", rich_help_panel=_MODEL, help="auto, cpu, cuda, cuda:N or mps.")]
PrecisionOption = Annotated[Precision, typer.Option(
    "--precision", case_sensitive=False, rich_help_panel=_MODEL,
    help="Arithmetic precision. auto: bf16 where the device computes it natively (same 8-bit output, several times "
         "faster), fp32 elsewhere and for 16-bit files; a precision the device cannot run well falls back, with a notice.")]
Tta = Annotated[bool, typer.Option(
    "--tta", rich_help_panel=_MODEL, help="Average the 8 flips/rotations (x8 slower, slightly better).")]
Threads = Annotated[int, typer.Option(
    "--threads", min=0, rich_help_panel=_MODEL, help="CPU threads for torch (0 = torch's default).")]
Tile = Annotated[str, typer.Option(
    "--tile", rich_help_panel=_TILES,
    help="Input pixels per tile side, 0 = whole image, auto = largest that fits --max-memory.")]
TileOverlap = Annotated[int, typer.Option(
    "--tile-overlap", min=0, rich_help_panel=_TILES, help="Pixels shared by neighbouring tiles (blended).")]
MaxMemory = Annotated[Optional[str], typer.Option(
    "--max-memory", show_default=False, rich_help_panel=_TILES,
    help="Memory for tiles in flight, e.g. 4G or 512M (default: from free RAM / GPU memory).")]
Shard = Annotated[Optional[str], typer.Option(
    "--shard", metavar="I/N", show_default=False, rich_help_panel=_SCALE,
    help="Process only shard I of N (input k goes to shard k mod N): one per job-array member.")]
ReportFile = Annotated[Optional[str], typer.Option(
    "--report", metavar="FILE", show_default=False, rich_help_panel=_SCALE,
    help="Write one JSON line per input (path, output, status, reason) to FILE.")]
Ray = Annotated[Optional[str], typer.Option(
    "--ray", metavar="[ADDRESS]", show_default=False, rich_help_panel=_SCALE,
    help="Run on Ray: alone (or 'local') starts a local cluster; 'auto', HOST:PORT or ray://HOST:PORT "
         "joins a running one. Needs pip install \"panet\\[ray]\".")]  # \\[: a bracket, not rich markup
RayActors = Annotated[int, typer.Option(
    "--ray-actors", min=0, metavar="N", rich_help_panel=_SCALE,
    help="Ray actors (0 = one per GPU, else one per --threads CPUs of the cluster).")]


def _one_of(choices: tuple[Any, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"use one of {', '.join(map(str, choices))}")
        return value

    return check


def _task_param(option: Option) -> inspect.Parameter:
    """A task row's own option (see :mod:`panet_cli.tasks`) as a Typer parameter named by the field it sets."""
    if option.kind == "pattern":
        annotation: Any = Annotated[Pattern, typer.Option(*option.flags, case_sensitive=False, help=option.help)]
        default: Any = Pattern(option.default)
    else:
        kind = {"float": float, "int": int}[option.kind]
        check = _one_of(option.choices) if option.choices else None
        annotation = Annotated[Optional[kind], typer.Option(  # type: ignore[valid-type]
            *option.flags, min=option.low, max=option.high, callback=check, show_default=False, help=option.help)]
        default = option.default
    return inspect.Parameter(option.field, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def with_task_options(command: Callable[..., None], spec: TaskSpec) -> Callable[..., None]:
    """``command`` showing Typer the shared options plus ``spec``'s own (right after the inputs), and no others.

    ``command`` declares the shared options and, with defaults, every field a task's own option may set
    (``level``, ``scale``, ``pattern``); those the task has no option for keep their defaults.
    """
    own = {option.field for option in spec.options}
    shared = [p for p in inspect.signature(command, eval_str=True).parameters.values()
              if p.annotation is not inspect.Parameter.empty and _is_typer(p.annotation)]
    parameters = [shared[0], *(_task_param(option) for option in spec.options), *shared[1:]]
    assert own.isdisjoint(p.name for p in shared), "a task's own option shadows a shared one"
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters])
    command.__doc__ = spec.summary
    command.__name__ = f"{spec.name}_command"
    return command


def _is_typer(annotation: Any) -> bool:
    from typer.models import ParameterInfo

    return any(isinstance(extra, ParameterInfo) for extra in getattr(annotation, "__metadata__", ()))


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
