"""restore(): the one path from an image array to a restored one, used by the CLI, eval and tests.

It owns everything between "a float image" and "a network forward pass": choosing and checking
the model, device and precision, channel adaptation, Bayer pattern alignment, tiling with
out-of-memory retries, and the x8 flip/rotate self-ensemble. Arrays are float32 (H, W, C) in
[0, 1]; alpha is the caller's business (see :mod:`panet_cli.images`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from panet_cli.errors import IncompatibleModel, PanetError
from panet_cli.tasks import BAYER_PATTERNS, task_spec

from panet_cli.runner import Notice, Progress, Runner, weights_as

if TYPE_CHECKING:
    import torch

    from panet_cli.loading import ModelDescriptor

PATTERNS = BAYER_PATTERNS


# --------------------------------------------------------------------------------------------- models


def resolve_model(
    task: str,
    model: ModelDescriptor | str | Path | None = None,
    *,
    level: float | None = None,
    scale: int | None = None,
    colors: int | None = None,
    device: str | torch.device = "cpu",
) -> ModelDescriptor:
    """The model to use: a descriptor as given, a weights file, a registry name, or the task's default.

    Checks that it serves ``task`` (and ``scale`` for sr); raises IncompatibleModel otherwise,
    ModelUnavailable when nothing suitable is installed (the message says what to do).
    """
    from panet_cli.loading import ModelDescriptor, load_model

    task_spec(task)
    if isinstance(model, ModelDescriptor):
        descriptor = model
    elif isinstance(model, Path) or (isinstance(model, str) and Path(model).expanduser().is_file()):
        descriptor = load_model(Path(model).expanduser(), device=device)
    else:
        from panet_cli.registry import find_model

        path = find_model(task, name=model, level=level, scale=scale, colors=colors)
        descriptor = load_model(path, device=device)
    check_compatible(descriptor, task, scale=scale)
    return descriptor


def check_compatible(descriptor: ModelDescriptor, task: str, *, scale: int | None = None) -> None:
    """IncompatibleModel (one line, naming the model) when it cannot do ``task`` at ``scale``."""
    spec = task_spec(task)
    if spec.name not in descriptor.tasks:
        serves = "/".join(descriptor.tasks) or "no known task"
        raise IncompatibleModel(f"{descriptor.source}: {descriptor.name} is a model for {serves}, not {spec.name}")
    if spec.scaled and scale is not None and descriptor.scale != scale:
        raise IncompatibleModel(f"{descriptor.source}: {descriptor.name} upscales x{descriptor.scale}, not x{scale}")
    if spec.bayer and descriptor.n_colors != 3:
        raise IncompatibleModel(f"{descriptor.source}: {descriptor.name} is a grayscale model; demosaicing needs colour")


def model_pattern(descriptor: ModelDescriptor) -> str:
    """The Bayer pattern a demosaicing model was trained on (RGGB unless its metadata says otherwise)."""
    meta = descriptor.metadata or {}
    recipe = meta.get("recipe") if isinstance(meta.get("recipe"), dict) else {}
    pattern = str(meta.get("pattern") or recipe.get("pattern") or "RGGB").upper()
    return pattern if pattern in PATTERNS else "RGGB"


# --------------------------------------------------------------------------------------------- restore


@dataclass(frozen=True)
class RestoreOptions:
    """How :func:`restore` treats an image: everything but the image, the task, the model and the device.

    The CLI builds one per run and hands it down unchanged (to Ray actors too: it is picklable).

    Attributes:
        level, scale: what the model is chosen for when none is given (noise sigma or JPEG quality; sr's factor).
        pattern: Bayer pattern of a demosaic input, which is either a one-channel CFA or a
            three-channel image with zeros where the sensor did not sample. Models are trained on
            one pattern (RGGB); other patterns are brought into phase by padding one reflected
            row and/or column on the top/left, which shifts the pattern, and cropping it off after.
        precision: ``fp32``/``bf16``/``fp16``, or ``auto`` (bf16 where the device computes it natively, else
            fp32); one the device cannot run well falls back (reported through ``notice``).
        tile: input pixels per tile side, 0 for the whole image, or ``"auto"``: the largest tile
            whose estimated memory fits ``max_memory`` bytes (default: from free RAM / GPU memory),
            up to the model's ``tile_hint`` (512; 128 where attention spans the whole tile, as in
            the published models). Out-of-memory errors retry with half the tile.
        tta: average the eight flips/rotations of the input (about 8x the time, a little better).
        batch_tiles: tiles per forward pass (default: 1 on CPU, as many as fit, up to 8, on a GPU).
    """

    level: float | None = None
    scale: int | None = None
    pattern: str = "RGGB"
    precision: str = "fp32"
    tile: int | str = "auto"
    tile_overlap: int = 16
    max_memory: int | None = None
    tta: bool = False
    batch_tiles: int | None = None

    def replace(self, **changes: Any) -> RestoreOptions:
        return dataclasses.replace(self, **changes)


def restore(
    image: np.ndarray,
    task: str,
    *,
    options: RestoreOptions | None = None,
    model: ModelDescriptor | str | Path | None = None,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
    notice: Notice | None = None,
    **settings: Any,
) -> np.ndarray:
    """Restore ``image`` (float32 (H, W, C) in [0, 1], C = 1 or 3) for ``task``.

    Args:
        options: how (see :class:`RestoreOptions`); ``settings``, its fields as keywords
            (``tile=0, precision="bf16"``), override it: ``restore(image, "sr", scale=2)``.
        model: a loaded descriptor (moved to ``device`` if needed), a weights file, a model name,
            or None for the task's default model (``level``/``scale`` help choose it).
        device: ``auto``/``cpu``/``cuda``/``mps`` or a torch device.
        progress: ``progress(tiles_done, tiles_total)`` over all passes.
        notice: receives one-line messages worth showing the user (precision fallback, retries).

    Channels: a grey image through a colour model runs on the grey value replicated to three
    channels, and the three outputs are averaged back to one. A colour image through a grey
    model runs on the luma (Y of full-range YCbCr, as JPEG) for car and sr and keeps the
    chroma (bicubically upscaled for sr); for denoising each colour channel is run separately.

    Returns:
        float32 (H*s, W*s, C) in [0, 1]; C = 3 for demosaicing.
    """
    from panet_cli.devices import resolve_precision, select_device

    o = options or RestoreOptions()
    if settings:
        try:
            o = o.replace(**settings)
        except TypeError:
            unknown = ", ".join(sorted(set(settings) - {f.name for f in dataclasses.fields(RestoreOptions)}))
            raise TypeError(f"restore() got unexpected keyword arguments: {unknown}") from None
    spec = task_spec(task)
    array = _check_image(image)
    dev = select_device(device) if isinstance(device, str) else device
    colors = 3 if spec.bayer else array.shape[2]
    descriptor = resolve_model(spec.name, model, level=o.level, scale=o.scale, colors=colors, device=dev)
    dtype, fallback = resolve_precision(dev, o.precision)
    if fallback and notice is not None:
        notice(fallback)
    runner = Runner(descriptor, dev, dtype, o.tile, o.tile_overlap, o.max_memory, o.batch_tiles, progress, notice)
    # oneDNN's convolutions run ~1.5x faster on NHWC (weights and the inputs of _forward); same results.
    with weights_as(descriptor.model, dev, dtype, channels_last=dev.type == "cpu"):
        if spec.bayer:
            pattern = _check_pattern(o.pattern)
            align = math.lcm(2, descriptor.alignment)  # whole 2x2 cells, and what the network needs
            h, w = (_fit(side, descriptor.min_side, align) for side in array.shape[:2])
            runner.plan(h + 2, w + 2, 8 if o.tta else 1, align=align)
            out = _demosaic(array, pattern, model_pattern(descriptor), runner, o.tta)
        else:
            out = _run_adapted(array, spec.channelwise, descriptor, runner, o.tta)
    if not np.isfinite(out).all():  # clip() keeps NaN, and NaN would be written as black
        raise PanetError(f"{descriptor.name} produced NaN or infinite values for this image (damaged weights, "
                         "or an overflow: try --precision fp32)")
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def _fit(side: int, min_side: int, alignment: int) -> int:
    """The side an input is padded to: at least ``min_side``, a multiple of ``alignment``."""
    return -(-max(side, min_side) // alignment) * alignment


def _check_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise PanetError(f"expected an (H, W, 1) or (H, W, 3) image, got shape {tuple(np.shape(image))}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise PanetError("the image is empty")
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_pattern(pattern: str) -> str:
    key = str(pattern).upper()
    if key not in PATTERNS:
        raise PanetError(f"unknown Bayer pattern {pattern!r}; use one of {', '.join(PATTERNS)}")
    return key


# ------------------------------------------------------------------------------- channel adaptation


def _run_adapted(array: np.ndarray, channelwise: bool, descriptor: ModelDescriptor, runner: Runner,
                 tta: bool) -> np.ndarray:
    """Match the image's channels to the model's (see :func:`restore`) and run it.

    ``channelwise`` (the task row's): a colour image through a grey model runs channel by channel, not on its luma.
    """
    c, n = array.shape[2], descriptor.n_colors
    passes = 8 if tta else 1
    h, w = (_fit(side, descriptor.min_side, descriptor.alignment) for side in array.shape[:2])
    if c == n:
        runner.plan(h, w, passes)
        return _run_padded(array, runner, tta)
    if c == 1:  # grey image, colour model
        runner.plan(h, w, passes)
        return _run_padded(np.repeat(array, 3, axis=2), runner, tta).mean(axis=2, keepdims=True)
    if channelwise:  # colour image, grey model: e.g. noisy channels are independent noisy images
        runner.plan(h, w, passes * 3)
        return np.concatenate([_run_padded(array[:, :, i : i + 1], runner, tta) for i in range(3)], axis=2)
    runner.plan(h, w, passes)
    ycc = rgb_to_ycbcr(array)
    luma = _run_padded(ycc[:, :, :1], runner, tta)
    chroma = ycc[:, :, 1:]
    if descriptor.scale > 1:
        chroma = _bicubic(chroma, descriptor.scale)
    return ycbcr_to_rgb(np.concatenate([luma, chroma], axis=2))


BT601_LUMA = (0.299, 0.587, 0.114)  # R, G, B weights of luma (ITU-R BT.601, as JPEG)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Full-range YCbCr (ITU-R BT.601, as JPEG), all channels in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    kr, kg, kb = BT601_LUMA
    y = kr * r + kg * g + kb * b
    cb = 0.5 + (b - y) * (0.5 / 0.886)
    cr = 0.5 + (r - y) * (0.5 / 0.701)
    return np.stack([y, cb, cr], axis=-1).astype(np.float32)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`."""
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 0.5, ycc[..., 2] - 0.5
    r = y + cr * (0.701 / 0.5)
    b = y + cb * (0.886 / 0.5)
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return np.stack([r, g, b], axis=-1).astype(np.float32)


def _bicubic(array: np.ndarray, scale: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None]
    y = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return y[0].permute(1, 2, 0).numpy()


def _run_padded(array: np.ndarray, runner: Runner, tta: bool) -> np.ndarray:
    """Pad to the model's size requirements (reflected, bottom/right), run, crop."""
    h, w = array.shape[:2]
    d = runner.descriptor
    padded = _pad_to(array, _fit(h, d.min_side, d.alignment), _fit(w, d.min_side, d.alignment))
    out = _ensemble(padded, runner, tta)
    s = runner.scale
    return out[: h * s, : w * s]


def _pad_to(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad the bottom/right (reflection keeps a Bayer mosaic's pattern in phase)."""
    h, w = array.shape[:2]
    if (h, w) == (height, width):
        return array
    return np.pad(array, ((0, height - h), (0, width - w), (0, 0)), mode="reflect")


# ------------------------------------------------------------------------------------- self-ensemble


def _transform(array: np.ndarray, index: int) -> np.ndarray:
    """The ``index``-th of the 8 flips/rotations (HW axes first)."""
    flipped = array[:, ::-1] if index >= 4 else array
    return np.rot90(flipped, index % 4, axes=(0, 1))


def _inverse(array: np.ndarray, index: int) -> np.ndarray:
    back = np.rot90(array, -(index % 4), axes=(0, 1))
    return back[:, ::-1] if index >= 4 else back


def _ensemble(array: np.ndarray, runner: Runner, tta: bool) -> np.ndarray:
    if not tta:
        return runner.run(array)
    total = None
    for i in range(8):
        out = _inverse(runner.run(np.ascontiguousarray(_transform(array, i))), i)
        total = out.copy() if total is None else total + out
    return total / 8


# ----------------------------------------------------------------------------------------- demosaic


def _pattern_grid(pattern: str) -> np.ndarray:
    """2x2 grid of channel indices (R 0, G 1, B 2) of a pattern name."""
    return np.array(["RGB".index(c) for c in pattern]).reshape(2, 2)


def _pattern_name(grid: np.ndarray) -> str:
    return "".join("RGB"[int(i)] for i in np.asarray(grid).reshape(-1))


def _mosaic(array: np.ndarray, pattern: str) -> np.ndarray:
    """(H, W, 3) mosaic with zeros where ``pattern`` does not sample (from a CFA or a masked RGB)."""
    from panet_cli.degradations import bayer_masks

    masks = bayer_masks(pattern, *array.shape[:2]).permute(1, 2, 0).numpy()
    source = array if array.shape[2] == 3 else np.repeat(array, 3, axis=2)
    return source * masks


def _demosaic(array: np.ndarray, pattern: str, trained: str, runner: Runner, tta: bool) -> np.ndarray:
    """Even-sized mosaic, each TTA transform brought into the model's pattern, run, undone."""
    h, w = array.shape[:2]
    d = runner.descriptor
    align = math.lcm(2, d.alignment)
    mosaic = _pad_to(_mosaic(array, pattern), _fit(h, d.min_side, align), _fit(w, d.min_side, align))
    grid = _pattern_grid(pattern)
    total = None
    for i in range(8 if tta else 1):
        # With even sides, flipping/rotating the image flips/rotates its 2x2 pattern cell alike.
        moved = np.ascontiguousarray(_transform(mosaic, i))
        out = _inverse(_run_in_phase(moved, _pattern_name(_transform(grid, i)), trained, runner), i)
        total = out.copy() if total is None else total + out
    assert total is not None
    return (total / (8 if tta else 1))[:h, :w]


def _phase(pattern: str, trained: str) -> tuple[int, int]:
    """Rows/columns to pad on top/left so that ``pattern`` reads as ``trained``."""
    have, want = _pattern_grid(pattern), _pattern_grid(trained)
    for dy in (0, 1):
        for dx in (0, 1):
            if np.array_equal(np.roll(have, (dy, dx), axis=(0, 1)), want):
                return dy, dx
    raise PanetError(f"Bayer pattern {pattern} cannot be brought into phase with {trained}")


def _run_in_phase(mosaic: np.ndarray, pattern: str, trained: str, runner: Runner) -> np.ndarray:
    dy, dx = _phase(pattern, trained)
    h, w = mosaic.shape[:2]
    # One reflected row/column on top/left shifts the pattern by one; one more at the bottom/right
    # keeps the sides even so tiles (at even offsets) stay in phase.
    padded = np.pad(mosaic, ((dy, dy), (dx, dx), (0, 0)), mode="reflect")
    return runner.run(padded)[dy : dy + h, dx : dx + w]
