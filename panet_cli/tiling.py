"""Overlapping tiles: run a network on images larger than memory allows, without visible seams.

The whole image and the output canvas stay in host memory; only the tiles in flight are handed
to the network function (which moves them to the device). Neighbouring tiles overlap and are
blended with the smooth window of :mod:`panet_cli.networks.windows` (the same one the attention
uses for its own windows). Super-resolution tiles land at exactly ``scale`` times their input
coordinates, with the blending ramps scaled alike.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from panet_cli.errors import PanetError
from panet_cli.networks.windows import blend_weights, window_starts

# Largest tile "auto" picks: beyond it the attention of whole-input models costs far more time
# than the tile saves, and no model here gains from more context.
MAX_AUTO_TILE = 512
# Smallest tile "auto" picks, and that an out-of-memory retry goes down to before giving up.
MIN_AUTO_TILE = 32
# Smallest tile a user may ask for: below it no room is left for context or blending.
MIN_TILE = 16
# Key patches per pixel of a five-level pyramid (1.0, 0.9, 0.8, 0.7, 0.6): 1 + .81 + .64 + .49 + .36.
KEYS_PER_PIXEL = 3.3

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Tile:
    """A rectangle of the input image, in input pixels."""

    y: int
    x: int
    height: int
    width: int


@dataclass(frozen=True)
class NetworkCost:
    """What the memory estimate needs to know about a network (read off the model itself)."""

    n_feats: int
    n_colors: int
    scale: int = 1
    reduction: int = 2
    window: int | None = None  # attention window; None = attention over the whole tile
    window_overlap: int = 8
    chunk_bytes: int = 256 * 2**20  # the attention's budget for one chunk of scores
    attention: bool = True  # False when the attention layer is bypassed
    fold: int = 1  # image pixels per side of one feature position (2 for the half-resolution networks)
    group_bytes: int = 2 * 2**20  # windowed attention: one group's (queries x keys) matrix, at least a window's


def tile_grid(height: int, width: int, tile: int, overlap: int, align: int = 1) -> list[Tile]:
    """Full-size overlapping tiles covering the image; ``tile`` 0 means one tile (the whole image).

    ``align`` makes every start a multiple of it (2 keeps a Bayer pattern in phase); the caller
    passes height, width, tile and overlap that are multiples of ``align``.
    """
    if tile <= 0:
        return [Tile(0, 0, height, width)]
    size_y, size_x = min(tile, height), min(tile, width)
    ys = window_starts(height, size_y, min(overlap, size_y - 1))
    xs = window_starts(width, size_x, min(overlap, size_x - 1))
    if align > 1 and any(v % align for v in (*ys, *xs)):
        raise ValueError(f"tile starts are not multiples of {align}: make sizes and overlap multiples of it")
    return [Tile(y, x, size_y, size_x) for y in ys for x in xs]


def run_tiled(
    image: torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    scale: int = 1,
    tile: int = 0,
    overlap: int = 16,
    batch: int = 1,
    align: int = 1,
    progress: Progress | None = None,
    done: int = 0,
    total: int | None = None,
) -> torch.Tensor:
    """``fn`` applied tile by tile to a (1, C, H, W) host tensor, blended into a host canvas.

    ``fn`` maps a (B, C, h, w) batch to (B, C', h*scale, w*scale) on the host. ``progress`` is
    called as ``progress(done + tiles finished, total)`` so several passes can share one count.
    """
    _, _, height, width = image.shape
    tiles = tile_grid(height, width, tile, overlap, align)
    total = len(tiles) if total is None else total
    blend = min(overlap, max(0, min(tiles[0].height, tiles[0].width) - 1)) * scale
    canvas: torch.Tensor | None = None
    weight_sum = torch.zeros(1, 1, height * scale, width * scale)
    for start in range(0, len(tiles), max(1, batch)):
        group = tiles[start : start + max(1, batch)]
        crops = torch.cat([image[:, :, t.y : t.y + t.height, t.x : t.x + t.width] for t in group])
        outputs = fn(crops).float().cpu()
        if canvas is None:
            canvas = torch.zeros(1, outputs.shape[1], height * scale, width * scale)
        for t, out in zip(group, outputs):
            y, x, h, w = t.y * scale, t.x * scale, t.height * scale, t.width * scale
            if out.shape[-2:] != (h, w):
                raise RuntimeError(f"network returned {tuple(out.shape[-2:])} for a tile expecting {(h, w)}")
            weight = tile_weights(h, w, y, x, height * scale, width * scale, blend)
            canvas[:, :, y : y + h, x : x + w] += out * weight
            weight_sum[:, :, y : y + h, x : x + w] += weight
        done += len(group)
        if progress is not None:
            progress(done, total)
    assert canvas is not None
    return canvas / weight_sum


def tile_weights(h: int, w: int, y0: int, x0: int, height: int, width: int, overlap: int) -> torch.Tensor:
    """Blending weights of one output tile: zero on an outer margin, then the shared smooth ramp.

    A network sees zero padding at a tile's edges where the whole image has real pixels, so a
    tile's outermost pixels are its worst. Interior edges drop a margin of ``overlap // 4``
    pixels (the neighbour's ramp covers them) and ramp over the rest of the overlap; edges on
    the image border keep everything. Measured on a tiny PANet, 300x200, 64-pixel tiles: 47 dB
    agreement with the whole-image output without the margin, 52 dB with it.
    """
    m = overlap // 4
    top, bottom = (m if y0 > 0 else 0), (m if y0 + h < height else 0)
    left, right = (m if x0 > 0 else 0), (m if x0 + w < width else 0)
    weight = torch.zeros(h, w)
    weight[top : h - bottom, left : w - right] = blend_weights(
        h - top - bottom, w - left - right, y0 + top, x0 + left, height, width, overlap - 2 * m
    )
    return weight


def tile_count(height: int, width: int, tile: int, overlap: int) -> int:
    """Number of tiles :func:`run_tiled` will run (for progress totals)."""
    return len(tile_grid(height, width, tile, overlap))


# --------------------------------------------------------------------------------------- memory budget


def estimate_tile_bytes(cost: NetworkCost, height: int, width: int, bytes_per_value: int = 4) -> int:
    """Rough peak memory of one forward pass on a ``height`` x ``width`` tile (an upper bound, not a fit).

    Everything but the image-sized buffers lives on the features, ``fold`` times smaller per side than the
    tile. Backbone activations are a few feature maps of ``n_feats`` channels; the upsampler holds
    ``n_feats * scale**2`` channels at input size. Whole-input attention stores unfolded keys and values
    for ~3.3 keys per pixel (``9C/r + 9C`` values each), the unfolded queries and pasted patches, plus one
    chunk of scores bounded by its own budget. Windowed attention computes pixel scores window group by
    window group (no unfolding): the windows cut out in one copy, attended into another, merged into a
    feature map, plus one group's fp32 score matrices (``group_bytes`` each, or one window's).
    """
    n = height * width
    fh, fw = -(-height // cost.fold), -(-width // cost.fold)
    nf = fh * fw
    f, r, b = cost.n_feats, max(1, cost.reduction), bytes_per_value
    backbone = 6 * f * nf + (2 * f * cost.scale**2 * nf if cost.scale > 1 else 0) + 4 * cost.n_colors * n * cost.scale**2
    if not cost.attention:
        return int(backbone * b)
    if cost.window is None or (fh <= cost.window and fw <= cost.window):
        keys = KEYS_PER_PIXEL * nf
        patch = 9 * f * (1 + 1 / r)  # one key (9C/r) plus one value (9C)
        # keys and values are concatenated, transposed and normalised: about two copies of each.
        attention = 2 * keys * patch + nf * patch + keys * f * (1 + 1 / r)
        scores = min(cost.chunk_bytes, 2 * nf * keys * b)
        return int((backbone + attention) * b + scores)
    step = max(1, cost.window - cost.window_overlap)
    regions = math.ceil(max(1, fh - cost.window_overlap) / step) * math.ceil(max(1, fw - cost.window_overlap) / step)
    area = min(cost.window, fh) * min(cost.window, fw)
    attention = 2 * regions * area * f + nf * f
    per_window = 4 * area * KEYS_PER_PIXEL * area  # one fp32 (queries x keys) matrix; a group holds ~4
    scores = 4 * max(per_window, min(cost.group_bytes, regions * per_window))
    return int((backbone + attention) * b + scores)


def choose_tile(
    height: int,
    width: int,
    budget: int,
    cost: NetworkCost,
    bytes_per_value: int = 4,
    cap: int = MAX_AUTO_TILE,
) -> int:
    """The largest tile (0 = whole image) whose estimated memory fits ``budget`` bytes."""
    if max(height, width) <= cap and estimate_tile_bytes(cost, height, width, bytes_per_value) <= budget:
        return 0
    for size in range(cap, MIN_AUTO_TILE - 1, -32):
        if estimate_tile_bytes(cost, min(size, height), min(size, width), bytes_per_value) <= budget:
            return size
    return MIN_AUTO_TILE


def memory_budget(device: torch.device) -> int:
    """Bytes the tiles in flight may use: most of the free GPU memory, half the free RAM otherwise."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.8)
    return int(available_ram() * 0.5)


def available_ram() -> int:
    """Free RAM in bytes (MemAvailable on Linux; free physical pages elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


# ------------------------------------------------------------------------------------ out of memory


def is_out_of_memory(error: BaseException) -> bool:
    """True for the errors torch raises when an allocation fails, on any device."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "not enough memory" in text)


def run_with_retry(
    run: Callable[[int], torch.Tensor],
    tile: int,
    largest_side: int,
    *,
    on_retry: Callable[[int, int], None] | None = None,
    align: int = 1,
) -> torch.Tensor:
    """``run(tile)``, halving the tile after each out-of-memory error down to :data:`MIN_AUTO_TILE`.

    ``tile`` 0 (whole image) first falls back to half the image's longer side.
    ``on_retry(old, new)`` lets the caller say so and reset its progress.
    """
    while True:
        try:
            return run(tile)
        except Exception as error:  # noqa: BLE001 - only out-of-memory errors are handled
            if not is_out_of_memory(error):
                raise
            current = tile if tile > 0 else largest_side
            smaller = max(MIN_AUTO_TILE, current // 2 // max(align, 1) * max(align, 1))
            if current <= MIN_AUTO_TILE or smaller >= current:
                raise PanetError(
                    f"out of memory even with {current}-pixel tiles; try --device cpu or a smaller --max-memory"
                ) from None
        _free_cached_memory()
        if on_retry is not None:
            on_retry(tile, smaller)
        tile = smaller


def _free_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

