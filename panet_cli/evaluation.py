"""``panet eval``'s machinery: the papers' protocols, the scoring loop and its report.

Every method (our model and the classical baselines) sees exactly the same degraded input per
image, made once from the clean file, and is scored the same way: its output rounded to 8 bits
(what a user's file holds), then PSNR and SSIM in the protocol's colour space. Time is measured
per method and image and reported as seconds per megapixel of output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from panet_cli.errors import PanetError
from panet_cli.images import list_images, natural_order
from panet_cli.tasks import BAYER_PATTERNS, task_spec

if TYPE_CHECKING:
    import torch

    from panet_cli.loading import ModelDescriptor

# Methods are warmed up on a crop of this side before timing (first calls pay one-off costs).
WARMUP_SIDE = 48

Progress = Callable[[int, int, str], None]
# Receives each image's sample, its outputs by method name and its scores (``panet eval --save``).
Keep = Callable[["Sample", "dict[str, np.ndarray]", "ImageResult"], None]


# ------------------------------------------------------------------------------------- protocols


@dataclass(frozen=True)
class Protocol:
    """How clean images become inputs and how outputs are scored, per task (see ../shared/data/README.md).

    ``colors`` is the colour space images are scored in: 3 for RGB, 1 for grey / the Y channel
    (grey JPEG artifact reduction). ``y_channel`` scores the Y of RGB outputs (SR); ``shave``
    drops that many border pixels first.
    """

    task: str
    level: float | None = None  # noise sigma (0-255 scale) or JPEG quality
    scale: int = 1
    colors: int = 3
    float_noise: bool = False
    pattern: str = "RGGB"
    seed: int = 0
    shave: int = 0
    y_channel: bool = False

    @classmethod
    def for_task(
        cls,
        task: str,
        *,
        sigma: float = 25.0,
        quality: int = 10,
        scale: int = 4,
        colors: int | None = None,
        float_noise: bool = False,
        pattern: str = "RGGB",
        seed: int = 0,
    ) -> Protocol:
        """The paper's protocol for ``task`` (its row in :mod:`panet_cli.tasks`); ``colors`` is the model's
        channel count when known. ``sigma`` / ``quality`` is the level of the task that has that level."""
        spec = task_spec(task)
        level = None
        if spec.level is not None:
            level = float(spec.level.check({"sigma": sigma, "quality": quality}[spec.level.name]))
        if spec.bayer and pattern.upper() not in BAYER_PATTERNS:
            raise PanetError(f"unknown Bayer pattern {pattern!r}; use one of {', '.join(BAYER_PATTERNS)}")
        if spec.scaled and scale < 2:
            raise PanetError(f"SR scale {scale} must be 2 or more")
        return cls(spec.name, level=level, scale=scale if spec.scaled else 1,
                   colors=3 if spec.bayer or spec.y_channel else colors or spec.score_colors,
                   float_noise=float_noise,
                   pattern=pattern.upper() if spec.bayer else "RGGB", seed=seed,
                   shave=scale if spec.y_channel else 0, y_channel=spec.y_channel)

    def describe(self) -> str:
        """One line naming the protocol, for table titles."""
        space = "Y" if self.y_channel or self.colors == 1 else "RGB"
        shaved = f", {self.shave} px shaved" if self.shave else ""
        what = task_spec(self.task).describe(self)
        return f"{what}; PSNR dB / SSIM on {space}{shaved}; outputs rounded to 8 bits"


# ---------------------------------------------------------------------------------------- images


def collect_images(paths: Sequence[str | Path], limit: int | None = None) -> list[Path]:
    """Image files among ``paths`` (folders are listed in natural name order), the first ``limit`` of them."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(list_images(p, key=natural_order))
        elif p.is_file():
            found.append(p)
        else:
            raise PanetError(f"{p}: no such file or folder")
    if not found:
        raise PanetError(f"no images found in {', '.join(map(str, paths))}")
    return found[:limit] if limit else found


def _chw(array: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))


def _hwc(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.permute(1, 2, 0).numpy(), dtype=np.float32)


def clean_image(pixels: np.ndarray, protocol: Protocol) -> np.ndarray:
    """The clean target in the protocol's colours: grey replicated for RGB, Y (8-bit) for grey."""
    from panet_cli.metrics import y_channel_8bit

    if protocol.colors == 3 and pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    if protocol.colors == 1 and pixels.shape[2] == 3:
        # MATLAB rgb2ycbcr of the uint8 image, as the JPEG benchmarks' Y is made
        return _hwc(y_channel_8bit(_chw(pixels)))
    return pixels.astype(np.float32, copy=False)


@dataclass
class Sample:
    """One test image: what every method receives and what it is scored against."""

    name: str
    degraded: np.ndarray  # float32 (h, w, c): noisy / JPEG / CFA (H, W, 1) / LR
    target: np.ndarray  # float32 (H, W, C), the clean image


def make_sample(name: str, pixels: np.ndarray, protocol: Protocol) -> Sample:
    """Degrade one clean image (float32 HWC in [0, 1]) by the protocol; noise is seeded per image name."""
    import torch

    from panet_cli.degradations import image_seed

    target = clean_image(pixels, protocol)
    x = _chw(target)
    generator = torch.Generator().manual_seed(image_seed(name, protocol.seed))
    degraded, kept = task_spec(protocol.task).degrade(
        x, level=protocol.level, scale=protocol.scale, pattern=protocol.pattern, generator=generator,
        float_noise=protocol.float_noise)
    return Sample(name, _hwc(degraded), target if kept is x else _hwc(kept))


# --------------------------------------------------------------------------------------- scoring


def score(output: np.ndarray, target: np.ndarray, protocol: Protocol) -> tuple[float, float]:
    """(PSNR dB, SSIM) of an output against its target, by the protocol (output rounded to 8 bits).

    SSIM is NaN (None in JSON, "-" in tables) without scikit-image: PSNR needs nothing beyond the base install.
    """
    from panet_cli.degradations import quantize_8bit
    from panet_cli.metrics import psnr, ssim, ssim_available, y_channel_8bit

    if output.shape != target.shape:
        raise PanetError(f"output shape {output.shape} differs from the target's {target.shape}")
    out, ref = quantize_8bit(_chw(output)), _chw(target)
    if protocol.y_channel:
        out, ref = y_channel_8bit(out), y_channel_8bit(ref)
    structural = ssim(out, ref, shave=protocol.shave) if ssim_available() else float("nan")
    return psnr(out, ref, shave=protocol.shave), structural


@dataclass
class Score:
    """One method on one image (or summed over a set, for the mean row)."""

    psnr: float
    ssim: float
    seconds: float
    megapixels: float

    @property
    def seconds_per_mp(self) -> float:
        return self.seconds / self.megapixels if self.megapixels else float("nan")

    def as_dict(self) -> dict[str, float | None]:
        """Plain numbers; an infinite PSNR (identical images) becomes None, which strict JSON can hold."""
        values = {**asdict(self), "s_per_mp": self.seconds_per_mp}
        return {k: (v if np.isfinite(v) else None) for k, v in values.items()}


@dataclass
class Method:
    """Anything that maps a degraded input to a restored image, with a name for the table."""

    name: str
    run: Callable[[np.ndarray], np.ndarray]


@dataclass
class ImageResult:
    name: str
    width: int  # of the target
    height: int
    scores: dict[str, Score] = field(default_factory=dict)


@dataclass
class EvalReport:
    """Per-image scores of every method, and their means (s/MP: total seconds over total megapixels)."""

    protocol: Protocol
    dataset: str
    methods: list[str]
    images: list[ImageResult]
    model: dict[str, Any] | None = None
    machine: dict[str, Any] = field(default_factory=dict)

    def mean(self, method: str) -> Score:
        scores = [im.scores[method] for im in self.images]
        return Score(
            psnr=float(np.mean([s.psnr for s in scores])),
            ssim=float(np.mean([s.ssim for s in scores])),
            seconds=float(sum(s.seconds for s in scores)),
            megapixels=float(sum(s.megapixels for s in scores)),
        )

    def markdown_means(self, first_column: str = "method") -> str:
        """The mean row of every method as a markdown table (PSNR, SSIM, s/MP), for benchmarks and cards."""
        lines = [f"| {first_column} | PSNR (dB) | SSIM | s/MP |", "| --- | --- | --- | --- |"]
        for m in self.methods:
            s = self.mean(m)
            structural = f"{s.ssim:.4f}" if np.isfinite(s.ssim) else "-"
            lines.append(f"| {m} | {s.psnr:.3f} | {structural} | {s.seconds_per_mp:.1f} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "dataset": self.dataset,
            "protocol": {**asdict(self.protocol), "description": self.protocol.describe()},
            "model": self.model,
            "machine": self.machine,
            "methods": self.methods,
            "images": [
                {"name": im.name, "width": im.width, "height": im.height,
                 "scores": {m: s.as_dict() for m, s in im.scores.items()}}
                for im in self.images
            ],
            "mean": {m: self.mean(m).as_dict() for m in self.methods},
        }


# ------------------------------------------------------------------------------------- methods


def model_method(
    descriptor: ModelDescriptor,
    protocol: Protocol,
    *,
    device: str = "auto",
    precision: str = "fp32",
    tile: int | str | None = None,
    tile_overlap: int | None = None,
    tta: bool = False,
    name: str | None = None,
) -> Method:
    """Our model through :func:`panet_cli.inference.restore`, exactly as the CLI runs it.

    ``tile``/``tile_overlap`` of None keep restore's defaults (the model's own tiling); ``tta`` scores the
    x8 flip/rotate self-ensemble the task commands' ``--tta`` runs, so its gain can be weighed against its time.
    """
    from panet_cli.inference import RestoreOptions, restore

    spec = task_spec(protocol.task)
    defaults = RestoreOptions()
    options = RestoreOptions(
        level=protocol.level if spec.level is not None else None, scale=protocol.scale if spec.scaled else None,
        pattern=protocol.pattern, precision=precision, tile=defaults.tile if tile is None else tile,
        tile_overlap=defaults.tile_overlap if tile_overlap is None else tile_overlap, tta=tta,
    )

    def run(image: np.ndarray) -> np.ndarray:
        return restore(image, protocol.task, options=options, model=descriptor, device=device)

    return Method(name or descriptor.name, run)


def baseline_methods(protocol: Protocol, notice: Callable[[str], None] | None = None) -> list[Method]:
    """The classical methods for the protocol's task whose packages are installed.

    A missing package drops that baseline with one ``notice`` line saying how to install it.
    """
    from panet_cli.baselines import BASELINES, BaselineUnavailable

    methods = []
    for baseline in (BASELINES[name] for name in task_spec(protocol.task).baselines):
        try:
            baseline.check()
        except BaselineUnavailable as e:
            if notice is not None:
                notice(str(e))
            continue
        methods.append(Method(baseline.name, lambda image, b=baseline: b.run(image, protocol)))
    return methods


def machine_info() -> dict[str, Any]:
    """What s/MP figures depend on: CPU features and threads (and the GPU when one is used)."""
    import platform

    import torch

    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


# -------------------------------------------------------------------------------------- the loop


def _warm_up(methods: Sequence[Method], sample: Sample) -> None:
    """Run every method once on a small crop so one-off costs (imports, allocator) stay out of the times."""
    side = WARMUP_SIDE
    crop = sample.degraded[:side, :side]
    for method in methods:
        method.run(np.ascontiguousarray(crop))


def evaluate(
    paths: Sequence[str | Path],
    protocol: Protocol,
    methods: Sequence[Method],
    *,
    dataset: str | None = None,
    model: dict[str, Any] | None = None,
    progress: Progress | None = None,
    warm_up: bool = True,
    keep: Keep | None = None,
) -> EvalReport:
    """Score every method on every image of ``paths`` (files; see :func:`collect_images`).

    ``progress(done, total, label)`` is called before each (image, method) run and at the end;
    ``keep(sample, outputs, result)`` once per image, after its last method, while its outputs are in memory.
    """
    from panet_cli.images import read_image

    if not methods:
        raise PanetError("nothing to evaluate: no model and no baseline available")
    files = [Path(p) for p in paths]
    report = EvalReport(protocol, dataset or (files[0].parent.name if files else ""), [m.name for m in methods],
                        [], model=model, machine=machine_info())
    total, done = len(files) * len(methods), 0
    for index, path in enumerate(files):
        sample = make_sample(path.stem, read_image(path).pixels, protocol)
        if index == 0 and warm_up:
            _warm_up(methods, sample)
        h, w = sample.target.shape[:2]
        result = ImageResult(path.stem, w, h)
        outputs: dict[str, np.ndarray] = {}
        for method in methods:
            if progress is not None:
                progress(done, total, f"{path.stem}: {method.name}")
            start = time.perf_counter()
            output = method.run(sample.degraded)
            seconds = time.perf_counter() - start
            output = np.asarray(output, dtype=np.float32)
            p, s = score(output, sample.target, protocol)
            result.scores[method.name] = Score(p, s, seconds, h * w / 1e6)
            if keep is not None:
                outputs[method.name] = output
            done += 1
        if keep is not None:
            keep(sample, outputs, result)
        report.images.append(result)
    if progress is not None:
        progress(done, total, "done")
    return report
