"""Overlapping windows over a 2-D grid and the weights that blend them back seamlessly.

Used twice: by the attention layer of our own models (attention restricted to windows)
and by image-level tiling (:mod:`panet_cli.tiling`), so both share one definition.
"""

from __future__ import annotations

import torch


def window_starts(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets of windows of ``size`` covering ``[0, length)`` with at least ``overlap`` shared.

    The last window is aligned to the end, so every window is full-size (when ``size <= length``)
    and the whole range is covered.
    """
    if size >= length:
        return [0]
    if not 0 <= overlap < size:
        raise ValueError(f"overlap {overlap} must be in [0, {size})")
    stride = size - overlap
    starts = list(range(0, length - size, stride))
    starts.append(length - size)
    return starts


def ramp(size: int, overlap: int, at_start: bool, at_end: bool, device=None, dtype=None) -> torch.Tensor:
    """1-D blending weights: 1 inside, linear ramps over ``overlap`` pixels on interior edges.

    Ramps are strictly positive so every pixel keeps a non-zero total weight; edges that touch
    the image border get no ramp (nothing overlaps them there).
    """
    w = torch.ones(size, device=device, dtype=dtype)
    n = min(overlap, size // 2)
    if n > 0:
        up = torch.arange(1, n + 1, device=device, dtype=dtype) / (n + 1)
        if not at_start:
            w[:n] = up
        if not at_end:
            w[size - n :] = up.flip(0)
    return w


def blend_weights(
    h: int, w: int, y0: int, x0: int, height: int, width: int, overlap: int, device=None, dtype=None
) -> torch.Tensor:
    """2-D weight map (h, w) for the window at (y0, x0) inside a (height, width) canvas."""
    wy = ramp(h, overlap, y0 == 0, y0 + h >= height, device, dtype)
    wx = ramp(w, overlap, x0 == 0, x0 + w >= width, device, dtype)
    return wy[:, None] * wx[None, :]
