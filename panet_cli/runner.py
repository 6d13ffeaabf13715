"""The tile runner behind :func:`panet_cli.inference.restore`: a network over a host image in tiles.

It owns device transfer, precision, the memory budget and tile choice, batched tiles, out-of-memory
retries and progress; :func:`weights_as` runs a model's weights on a device and dtype for one call and
gives them back. Arrays are float32 (H, W, C) in [0, 1]; the tiling itself is :mod:`panet_cli.tiling`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from panet_cli.errors import PanetError

if TYPE_CHECKING:
    import torch

    from panet_cli.loading import ModelDescriptor
    from panet_cli.tiling import NetworkCost

# Host memory for the image, the output canvas and its blending weights is left out of the
# budget for tiles on CPU: floats per output pixel (canvas + weights + TTA sum, slack included).
_HOST_FLOATS_PER_OUTPUT_PIXEL = 8

Progress = Callable[[int, int], None]
Notice = Callable[[str], None]


def network_cost(descriptor: ModelDescriptor) -> NetworkCost:
    """The network's shape as the memory estimate needs it, read off the model itself."""
    from panet_cli.tiling import NetworkCost

    net = descriptor.model
    attention = net.attention
    n_feats = int(net.head[0].out_channels)
    matching = int(attention.conv_match[0].out_channels)
    return NetworkCost(
        n_feats=n_feats,
        n_colors=descriptor.n_colors,
        scale=descriptor.scale,
        reduction=max(1, n_feats // max(1, matching)),
        window=attention.window,
        window_overlap=attention.window_overlap,
        chunk_bytes=attention.max_chunk_bytes,
        attention=bool(attention.enabled),
        fold=int(getattr(net, "feature_fold", 1)),
        group_bytes=attention.group_budget,
    )


@contextmanager
def weights_as(model, device: torch.device, dtype: torch.dtype, *, channels_last: bool) -> Iterator[None]:
    """Run ``model`` with its weights on ``device`` in ``dtype`` (and NHWC), then give it back its own tensors.

    Casting in place and back would leave fp16/bf16-rounded weights behind (and the NHWC layout, and the
    device), so a second call with other settings would not compute what the first did.
    """
    import torch

    kept = []
    try:
        for tensor in (*model.parameters(), *model.buffers()):
            data = tensor.data
            moved = data.to(device=device, dtype=dtype if data.is_floating_point() else data.dtype)
            if channels_last and moved.ndim == 4:
                moved = moved.contiguous(memory_format=torch.channels_last)
            kept.append((tensor, data))
            tensor.data = moved
        yield
    finally:
        for tensor, data in kept:
            tensor.data = data


class Runner:
    """Runs the network over a host array in tiles: device transfer, precision, OOM retries, progress."""

    def __init__(
        self,
        descriptor: ModelDescriptor,
        device: torch.device,
        dtype: torch.dtype,
        tile: int | str,
        overlap: int,
        max_memory: int | None,
        batch_tiles: int | None,
        progress: Progress | None,
        notice: Notice | None,
    ) -> None:
        self.descriptor = descriptor
        self.device = device
        self.dtype = dtype
        self.scale = descriptor.scale
        self.requested_tile = tile
        self.overlap = max(0, int(overlap))
        self.max_memory = max_memory
        self.batch = batch_tiles
        self.progress = progress
        self.notice = notice
        self.align = 1
        self.tile = 0
        self.done = 0
        self.passes_left = 1
        self.total = 0

    # -- planning -------------------------------------------------------------------------------

    def plan(self, height: int, width: int, passes: int, align: int = 1) -> None:
        """Choose tile size and batch for an image of this size, and the progress total."""
        from panet_cli.tiling import MAX_AUTO_TILE, MIN_TILE, choose_tile, estimate_tile_bytes, memory_budget

        self.align = align = math.lcm(align, self.descriptor.alignment)  # tile offsets and sides
        self.passes_left = passes
        cost = network_cost(self.descriptor)
        value_bytes = self._value_bytes()
        budget = self.max_memory if self.max_memory else memory_budget(self.device)
        if self.device.type == "cpu":
            budget -= _HOST_FLOATS_PER_OUTPUT_PIXEL * 4 * height * width * self.scale**2
        budget = max(budget, 64 * 2**20)
        requested = self.requested_tile
        if isinstance(requested, str) and requested.strip().isdigit():
            requested = int(requested)
        if isinstance(requested, str):
            if requested.strip().lower() != "auto":
                raise PanetError(f"tile must be a number of pixels, 0 or 'auto', not {requested!r}")
            # The descriptor's hint caps it: whole-input attention costs time per pixel with the tile's area.
            cap = min(MAX_AUTO_TILE, self.descriptor.tile_hint)
            self.tile = choose_tile(height, width, budget, cost, value_bytes, cap=cap)
        else:
            if 0 < requested < MIN_TILE:
                raise PanetError(f"tile {requested} is too small: use 0 (whole image) or at least {MIN_TILE}")
            self.tile = max(0, int(requested))
        if align > 1:
            self.tile -= self.tile % align
            self.overlap -= self.overlap % align
        if self.batch is None:
            self.batch = 1
            if self.device.type != "cpu" and self.tile:
                per_tile = estimate_tile_bytes(cost, min(self.tile, height), min(self.tile, width), value_bytes)
                self.batch = int(max(1, min(8, budget // max(1, per_tile))))
        self.total = self.done + passes * self._tiles(height, width)

    def _value_bytes(self) -> int:
        import torch

        return 2 if self.dtype in (torch.float16, torch.bfloat16) else 4

    def _tiles(self, height: int, width: int) -> int:
        from panet_cli.tiling import tile_count

        return tile_count(height, width, self.tile, self.overlap)

    # -- running --------------------------------------------------------------------------------

    def run(self, array: np.ndarray) -> np.ndarray:
        """One pass over an (H, W, C) array: returns (H*s, W*s, C') float32."""
        import torch

        from panet_cli.tiling import run_tiled, run_with_retry

        h, w = array.shape[:2]
        image = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]
        start = self.done

        def attempt(tile: int) -> torch.Tensor:
            # Passes may differ in tile count (rotated, padded, retried): keep the total honest.
            self.tile, self.done = tile, start
            self.total = start + self.passes_left * self._tiles(h, w)
            return run_tiled(image, self._forward, scale=self.scale, tile=tile, overlap=self.overlap,
                             batch=self.batch or 1, align=self.align, progress=self.progress,
                             done=start, total=self.total)

        out = run_with_retry(attempt, self.tile, max(h, w), on_retry=self._retrying, align=self.align)
        self.done = start + self._tiles(h, w)
        self.passes_left = max(1, self.passes_left - 1)
        return out[0].permute(1, 2, 0).numpy()

    def _retrying(self, old: int, new: int) -> None:
        self.batch = 1
        if self.notice is not None:
            what = f"{old}-pixel tiles" if old else "the whole image"
            self.notice(f"out of memory with {what} on {self.device.type}; retrying with {new}-pixel tiles")

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        import torch

        x = batch.to(self.device, self.dtype, non_blocking=True)
        if self.device.type == "cpu":
            # oneDNN's convolutions run ~1.5x faster on NHWC; same results (measured 1e-6 in fp32).
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self.descriptor(x)
        return y.float().cpu()
