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



def _axis_windows(length: int, size: int, overlap: int) -> tuple[list[int], int, torch.Tensor]:
    """Starts, stride of the regularly spaced ones (all but the last) and blending factors along one axis."""
    starts = window_starts(length, size, overlap)
    ramps = [ramp(size, overlap, a == 0, a + size >= length, dtype=torch.float64) for a in starts]
    total = torch.zeros(length, dtype=torch.float64)
    for a, r in zip(starts, ramps):
        total[a : a + size] += r
    factors = torch.stack([r / total[a : a + size] for a, r in zip(starts, ramps)])
    return starts, size - overlap, factors


class WindowGrid:
    """The windows of :func:`window_starts` along both axes of a (height, width) canvas, as one batch.

    :meth:`partition` cuts a (B, C, H, W) map into (B * n_windows, C, h, w) windows (batch-major, then
    window rows, then columns) with one copy; :meth:`merge` blends such windows back with the weights of
    :func:`blend_weights`, normalised by their sum, in one scaling pass and one scatter-add.
    Both are differentiable.
    """

    def __init__(self, height: int, width: int, size_y: int, size_x: int, overlap: int) -> None:
        self.height, self.width, self.size_y, self.size_x = height, width, size_y, size_x
        self.starts_y, self.stride_y, self.factor_y = _axis_windows(height, size_y, overlap)
        self.starts_x, self.stride_x, self.factor_x = _axis_windows(width, size_x, overlap)
        self.ny, self.nx = len(self.starts_y), len(self.starts_x)
        self._index = None

    def __len__(self) -> int:
        return self.ny * self.nx

    def _pieces(self, x: torch.Tensor):
        """(destination rows, destination columns, source view (B, C, rows, cols, h, w)) of each block of
        windows: the regularly spaced ones are strided views of ``x`` (unfold), the last row/column not."""
        ny, nx, sy, sx = self.ny, self.nx, self.size_y, self.size_x
        rows = [(slice(0, ny - 1), lambda t: t.unfold(2, sy, self.stride_y)[:, :, : ny - 1]),
                (slice(ny - 1, ny), lambda t: t[:, :, self.height - sy :].unfold(2, sy, sy))]
        cols = [(slice(0, nx - 1), lambda t: t.unfold(3, sx, self.stride_x)[:, :, :, : nx - 1]),
                (slice(nx - 1, nx), lambda t: t[:, :, :, self.width - sx :].unfold(3, sx, sx))]
        for r, cut_rows in rows:
            if r.stop == r.start:
                continue
            for c, cut_cols in cols:
                if c.stop == c.start:
                    continue
                yield r, c, cut_cols(cut_rows(x))  # (B, C, rows, cols, h, w)

    def partition(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B * n_windows, C, h, w) windows, channels-last in memory (one copy)."""
        b, c = x.shape[:2]
        sy, sx = self.size_y, self.size_x
        if not torch.is_grad_enabled() or not x.requires_grad:
            out = x.new_empty(b, self.ny, self.nx, sy, sx, c)
            for r, col, piece in self._pieces(x):
                out[:, r, col].copy_(piece.permute(0, 2, 3, 4, 5, 1))
        else:
            blocks = {}
            for r, col, piece in self._pieces(x):
                blocks.setdefault(r.start, []).append(piece.permute(0, 2, 3, 4, 5, 1))
            out = torch.cat([torch.cat(v, dim=2) for _, v in sorted(blocks.items())], dim=1)
        return out.view(b * self.ny * self.nx, sy, sx, c).permute(0, 3, 1, 2)

    def flat_index(self, device) -> torch.Tensor:
        """Canvas position (y * width + x) of every window pixel, in (rows, cols, h, w) order."""
        if self._index is None or self._index.device != device:
            ys = torch.tensor(self.starts_y)[:, None] + torch.arange(self.size_y)
            xs = torch.tensor(self.starts_x)[:, None] + torch.arange(self.size_x)
            index = ys[:, None, :, None] * self.width + xs[None, :, None, :]
            self._index = index.reshape(-1).to(device)
        return self._index

    def merge(self, windows: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """(B * n_windows, C, h, w) -> (B, C, H, W): the normalised blend of the windows.

        ``channels_last`` gives the result in that memory format (from channels-last windows, without
        a transposing copy).
        """
        n, c, sy, sx = windows.shape
        b = n // len(self)
        factor = (self.factor_y[:, None, :, None] * self.factor_x[None, :, None, :]).to(windows.device, windows.dtype)
        track = torch.is_grad_enabled() and windows.requires_grad
        index = self.flat_index(windows.device)
        if channels_last:
            source = windows.permute(0, 2, 3, 1).reshape(b, -1, c)
            scaled = source * factor.view(-1, 1)
            out = windows.new_zeros(b, self.height * self.width, c)
            out.index_add_(1, index, scaled)
            return out.view(b, self.height, self.width, c).permute(0, 3, 1, 2)
        source = windows.view(b, self.ny, self.nx, c, sy, sx) if windows.is_contiguous() else (
            windows.permute(0, 2, 3, 1).reshape(b, self.ny, self.nx, sy, sx, c).permute(0, 1, 2, 5, 3, 4))
        source = source.permute(0, 3, 1, 2, 4, 5)  # (B, C, rows, cols, h, w)
        if not track:
            scaled = windows.new_empty(b, c, self.ny, self.nx, sy, sx)
            torch.mul(source, factor, out=scaled)
        else:
            scaled = source * factor
        out = windows.new_zeros(b, c, self.height * self.width)
        out.index_add_(2, index, scaled.reshape(b, c, -1))
        return out.view(b, c, self.height, self.width)
