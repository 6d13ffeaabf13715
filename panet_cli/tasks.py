"""The task table: what each restoration task is, in one row, so that a new task is one new row.

Everything that differs between denoising, super-resolution, JPEG artifact reduction and demosaicing
lives here: the CLI option that names a model's level and its range, the output name tag and forced
format, the architectures that serve it, how ``panet eval`` degrades and scores, the classical
baselines and the default model. The rest of the package asks the row (``task_spec("sr").scaled``)
and never compares task names. Nothing here imports torch at import time: ``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from panet_cli.errors import PanetError

if TYPE_CHECKING:
    import torch

BAYER_PATTERNS: tuple[str, ...] = ("RGGB", "BGGR", "GRBG", "GBRG")


class Task(str, Enum):
    """The tasks, in the order the CLI lists them."""

    denoise = "denoise"
    sr = "sr"
    car = "car"
    demosaic = "demosaic"


@dataclass(frozen=True)
class Level:
    """The degradation strength a model can be made for: noise sigma or JPEG quality.

    ``name`` is the keyword and option (``--sigma``), also the prefix of the training recipe's keys
    (``sigma_min``, ``sigma_max``, ``val_sigma``); ``word`` is how listings write it (``sigma 25``, ``q 10``).
    """

    name: str
    word: str
    label: str  # for messages: "noise sigma"
    low: float
    high: float
    default: float  # what eval uses when neither the option nor the model says
    integer: bool = False

    def check(self, value: float) -> float:
        """``value`` if it is within range, else PanetError naming the range."""
        if not self.low <= value <= self.high:
            raise PanetError(f"{self.label} {value:g} is outside {self.low:g}-{self.high:g}")
        return value


@dataclass(frozen=True)
class Option:
    """A task command's own option (besides the shared ones); ``kind`` is float, int or pattern.

    ``keyword`` is the field of ``inference.RestoreOptions`` (a ``restore()`` keyword) it sets: ``--sigma``
    and ``--quality`` set ``level``; by default the option's name.
    """

    name: str
    flags: tuple[str, ...]
    kind: str
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    default: Any = None
    keyword: str = ""

    @property
    def field(self) -> str:
        return self.keyword or self.name


@dataclass(frozen=True)
class TaskSpec:
    """One task. See the module docstring; fields are read by the modules named in their comments."""

    name: str
    summary: str  # the task command's help line (cli.restore)
    options: tuple[Option, ...]  # the task command's own options (cli.options)
    level: Level | None = None  # what a model is made for and restore(level=...) means; None: no level
    scaled: bool = False  # output larger than the input by the model's scale (sr)
    bayer: bool = False  # input is a Bayer mosaic: needs a colour model, has a pattern (inference)
    channelwise: bool = False  # colour image, grey model: each channel alone (else: the luma) (inference)
    suffix: str = ""  # name tag of outputs next to their input; ``{scale}`` is the model's factor (cli.restore)
    forced_format: str | None = None  # format of auto-named outputs whatever the input's (cli.restore)
    archs: tuple[str, ...] = ()  # architectures that can serve it (loading.convert, cli.train)
    model_colors: int | None = None  # channels eval wants of the model; None: any (cli.evaluate)
    score_colors: int = 3  # eval scores RGB (3) or grey/Y (1) unless the model is colour (evaluation)
    y_channel: bool = False  # eval scores the Y of RGB outputs, shaving ``scale`` pixels (evaluation)
    degrade: Callable[..., tuple[Any, Any]] | None = None  # clean -> (input, target); see _noisy (evaluation, training)
    describe: Callable[[Any], str] | None = None  # a protocol in words (evaluation)
    validation: str = ""  # the training validation in words, formatted with a stored recipe (card plots)
    baselines: tuple[str, ...] = ()  # names in panet_cli.baselines.BASELINES (evaluation)
    default_model: str = ""  # the registry's first choice when nothing more specific fits (registry)

    def output_suffix(self, scale: int = 1) -> str:
        return self.suffix.format(scale=scale)

    def level_of(self, **given: float | None) -> float | None:
        """The level among a command's options (``level_of(sigma=25, quality=None)``), None when the task has none."""
        return None if self.level is None else given.get(self.level.name)


# ------------------------------------------------------------------------------------ degradations
# Each takes a clean (..., C, H, W) tensor in [0, 1] and keywords (level, scale, pattern, generator,
# float_noise; unused ones ignored) and returns (input, target). ``level`` is one number or one per item.


def _noisy(clean: torch.Tensor, *, level: Any, generator: Any = None, float_noise: bool = False, **_: Any):
    from panet_cli.degradations import add_gaussian_noise

    return add_gaussian_noise(clean, level, generator, clip_round=not float_noise), clean


def _jpeg(clean: torch.Tensor, *, level: Any, **_: Any):
    import torch

    from panet_cli.degradations import jpeg_compress

    if isinstance(level, (int, float)):
        return jpeg_compress(clean, int(level)), clean
    return torch.stack([jpeg_compress(c, int(q)) for c, q in zip(clean, level)]), clean


def _downscaled(clean: torch.Tensor, *, scale: int, **_: Any):
    from panet_cli.degradations import bicubic_downscale, crop_to_multiple, quantize_8bit

    target = crop_to_multiple(clean, scale)
    return quantize_8bit(bicubic_downscale(target, scale)), target


def _cfa(clean: torch.Tensor, *, pattern: str = "RGGB", **_: Any):
    """The one-channel CFA a sensor records (networks take it spread out: degradations.cfa_to_mosaic)."""
    from panet_cli.degradations import bayer_cfa

    return bayer_cfa(clean, pattern), clean


def _describe_denoise(p: Any) -> str:
    noise = "float noise, unclipped" if p.float_noise else "8-bit noise, clipped and rounded"
    return f"denoise sigma {p.level:g} ({noise}, seed {p.seed})"


# ------------------------------------------------------------------------------------------- table

TASKS: tuple[TaskSpec, ...] = (
    TaskSpec(
        "denoise",
        "Remove Gaussian-like noise (blind by default; --sigma picks a level-specific model if installed).",
        (Option("sigma", ("--sigma", "-s"), "float", low=0, high=255,
                help="Noise level, 0-255 scale: picks a model made for it when one is installed (default: blind).",
                keyword="level"),),
        level=Level("sigma", "sigma", "noise sigma", 0, 255, default=25.0),
        channelwise=True, suffix="_denoised", archs=("PANet", "HalfResPANet"),
        degrade=_noisy, describe=_describe_denoise, validation="noise sigma {val_sigma:g}",
        baselines=("CBM3D", "NLM (OpenCV)"), default_model="panet-denoise",
    ),
    TaskSpec(
        "sr",
        "Super-resolve: upscale 2x, 3x or 4x (PA-EDSR).",
        (Option("scale", ("--scale", "-x"), "int", choices=(2, 3, 4),
                help="Upscaling factor 2, 3 or 4 (default: 4, or the --weights' own)."),),
        scaled=True, suffix="_x{scale}", archs=("PAEDSR",), model_colors=3, y_channel=True,
        degrade=_downscaled, describe=lambda p: f"SR x{p.scale} (MATLAB bicubic LR)",
        validation="x{scale}, PSNR on Y",
        baselines=("Bicubic",), default_model="panet-sr-x4",
    ),
    TaskSpec(
        "car",
        "Remove JPEG compression artifacts (writes PNG unless told otherwise).",
        (Option("quality", ("--quality",), "int", low=1, high=100,
                help="JPEG quality the image was saved with: picks a model made for it when one is installed.",
                keyword="level"),),
        level=Level("quality", "q", "JPEG quality", 1, 100, default=10, integer=True),
        # re-encoding as JPEG would bring the artifacts back
        suffix="_car", forced_format="PNG", archs=("PANet", "HalfResPANet"),
        score_colors=1,  # the papers' JPEG benchmarks are grey (Y); a colour model is scored on RGB
        degrade=_jpeg, validation="JPEG q{val_quality}",
        describe=lambda p: f"JPEG q{p.level:g} ({'grey Y' if p.colors == 1 else 'colour 4:2:0'}, Pillow)",
        baselines=("JPEG (decoded)",), default_model="panet-car-gray",
    ),
    TaskSpec(
        "demosaic",
        "Reconstruct colour from a Bayer mosaic (one-channel CFA, or RGB with zeros where unsampled).",
        (Option("pattern", ("--pattern", "-p"), "pattern", choices=BAYER_PATTERNS, default="RGGB",
                help="Bayer pattern of the input (a one-channel CFA, or RGB with zeros at unsampled positions)."),),
        bayer=True, suffix="_demosaiced", archs=("PANet", "HalfResPANet"), model_colors=3,
        degrade=_cfa, describe=lambda p: f"demosaic {p.pattern} (Bayer mosaic of the 8-bit RGB)",
        validation="{pattern} mosaic",
        baselines=("Menon2007", "Malvar2004", "demosaicnet"), default_model="panet-demosaic",
    ),
)

TASK_NAMES: tuple[str, ...] = tuple(spec.name for spec in TASKS)
_BY_NAME = {spec.name: spec for spec in TASKS}
assert TASK_NAMES == tuple(t.value for t in Task), "the Task enum and the table list the same tasks"


def task_spec(task: str | Task | TaskSpec) -> TaskSpec:
    """The row of ``task`` (a name, a Task or a row); PanetError listing the tasks for an unknown one."""
    if isinstance(task, TaskSpec):
        return task
    name = task.value if isinstance(task, Task) else str(task)
    try:
        return _BY_NAME[name]
    except KeyError:
        raise PanetError(f"unknown task {name!r}; use one of {', '.join(TASK_NAMES)}") from None


def tasks_for_arch(arch: str) -> tuple[str, ...]:
    """Names of the tasks an architecture can serve, in table order."""
    return tuple(spec.name for spec in TASKS if arch in spec.archs)
