"""Pyramid attention (Mei et al. 2020), computed without the full similarity map.

Every 3x3 patch of the input feature map (the query) is compared with every 3x3 patch of a
five-level bicubic pyramid of the same features (the keys, L2-normalised), the scores are
soft-maxed and the matching value patches are pasted back (overlap-added, divided by 4).

The published code builds the whole (H*W) x (number of pyramid patches) score map at once,
about 10 GB for a 128x128 feature map. Here queries are processed in chunks sized to a memory
budget (or by torch's fused ``scaled_dot_product_attention``), so peak memory grows with the
number of keys, not with its square. :func:`pyramid_attention_direct` keeps the published
formulation (conv2d matching, softmax, conv_transpose2d pasting) as the reference that
tests prove equality against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from panet_cli.networks.windows import blend_weights, window_starts

DEFAULT_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6)


def _basic_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv followed by a single-parameter PReLU (tensor names ``.0`` and ``.1``)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.PReLU())


class PyramidAttention(nn.Module):
    """Non-local attention over a multi-scale pyramid of the input's own features.

    Args:
        channel: feature channels of the input.
        reduction: the matching embedding has ``channel // reduction`` channels.
        res_scale: weight of the residual term (1 in PANet, 0.1 in PA-EDSR).
        scales: pyramid levels as bicubic rescaling factors.
        softmax_scale: temperature applied to cosine-like scores before the softmax.
        window: if set, attention is computed inside overlapping ``window`` x ``window`` windows
            (each with its own pyramid) and blended; ``None`` attends over the whole input, the
            published behaviour. Time per pixel grows with window**2, so this is the speed knob.
        window_overlap: pixels shared by neighbouring windows.
        backend: ``"chunked"`` (query chunks, plain matmuls) or ``"sdpa"`` (fused attention kernel).
        max_chunk_bytes: memory budget for one chunk's score matrix (batch x chunk x keys); chunks
            never go below ``min_chunk_queries`` rows, where matmuls become inefficient.
    """

    def __init__(
        self,
        channel: int = 64,
        reduction: int = 2,
        res_scale: float = 1.0,
        scales: tuple[float, ...] = DEFAULT_SCALES,
        softmax_scale: float = 10.0,
        window: int | None = None,
        window_overlap: int = 8,
        backend: str = "chunked",
        max_chunk_bytes: int = 64 * 2**20,
    ) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.res_scale = res_scale
        self.softmax_scale = softmax_scale
        self.window = window
        self.window_overlap = window_overlap
        self.backend = backend
        self.max_chunk_bytes = max_chunk_bytes
        self.min_chunk_queries = 128
        # Bypassed, the layer is the identity: used to train the backbone first.
        self.enabled = True
        # Stored in the published checkpoints: the floor of the key norms.
        self.register_buffer("escape_NaN", torch.tensor([1e-4]))
        self.conv_match_L_base = _basic_block(channel, channel // reduction)
        self.conv_match = _basic_block(channel, channel // reduction)
        self.conv_assembly = _basic_block(channel, channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        residual = x * self.res_scale
        _, _, h, w = x.shape
        if self.window is None or (h <= self.window and w <= self.window):
            return self.attend(x) + residual
        return self._attend_windows(x) + residual

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input rescaled to every pyramid level (bicubic, as the reference)."""
        return [x if s == 1 else F.interpolate(x, scale_factor=s, mode="bicubic") for s in self.scales]

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised key patches (B, 9*C/r, L) and value patches (B, 9*C, L) of all levels.

        Kept in ``F.unfold``'s channel-first layout: each level is one contiguous copy into the
        shared buffer (no transposing copy, which cost as much as a third of the layer's time for
        small windows), and the matmuls take the transposes as free strided views.
        """
        refs = self.pyramid(x)
        n_keys = sum(r.shape[2] * r.shape[3] for r in refs)
        b = x.shape[0]
        k = x.new_empty(b, 9 * self.conv_match[0].out_channels, n_keys)
        v = x.new_empty(b, 9 * self.conv_assembly[0].out_channels, n_keys)
        start = 0
        for ref in refs:
            n = ref.shape[2] * ref.shape[3]
            k[:, :, start : start + n] = F.unfold(self.conv_match(ref), 3, padding=1)
            v[:, :, start : start + n] = F.unfold(self.conv_assembly(ref), 3, padding=1)
            start += n
        norm = k.norm(dim=1, keepdim=True).clamp_min(self.escape_NaN.to(k.dtype))
        if k.requires_grad:
            return k / norm, v  # autograd needs the unnormalised keys
        return k.div_(norm), v

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The attention term (without the residual) over the whole of ``x``."""
        b, c, h, w = x.shape
        q = F.unfold(self.conv_match_L_base(x), 3, padding=1)  # (B, 9C/r, HW)
        k, v = self.keys_values(x)
        if self.backend == "sdpa":
            pasted = self._sdpa(q, k, v)
        else:
            pasted = self._chunked(q, k, v)
        out = F.fold(pasted, (h, w), 3, padding=1)
        return out / 4.0

    def _chunked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(scale * q^T k) v^T, a chunk of queries at a time, in (B, 9C, queries) layout.

        The softmax is done in place on the one (chunk x keys) matrix and its normalisation is
        applied to the pasted columns instead (9C values per query rather than one per key).
        """
        b, _, n = q.shape
        n_keys = k.shape[2]
        per_query = b * n_keys * q.element_size()
        # Below ~128 rows the matmuls lose efficiency (measured 25% slower at 78); 128 rows of
        # scores stay under a sixth of the keys and values already held, so the floor is cheap.
        chunk = min(n, max(self.min_chunk_queries, self.max_chunk_bytes // per_query))
        # cheaper to scale than the scores; in place when no gradient is recorded
        q = q * self.softmax_scale if q.requires_grad else q.mul_(self.softmax_scale)
        qt = q.transpose(1, 2)  # (B, HW, 9C/r) view
        out = q.new_empty(b, v.shape[1], n)
        for start in range(0, n, chunk):
            scores = torch.bmm(qt[:, start : start + chunk], k)  # (B, chunk, L)
            peak = scores.detach().amax(dim=2, keepdim=True)  # softmax is shift-invariant: no gradient
            weights = scores.sub_(peak).exp_()
            total = weights.sum(dim=2).unsqueeze(1)  # (B, 1, chunk)
            out[:, :, start : start + chunk] = torch.bmm(v, weights.transpose(1, 2)).div_(total)
        return out

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # The fused kernels want (B, 1, tokens, dim) with a unit last stride and equal head sizes:
        # zero-padding q and k leaves q.k unchanged.
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        pad = v.shape[2] - q.shape[2]
        if pad > 0:
            q, k = F.pad(q, (0, pad)), F.pad(k, (0, pad))
        out = F.scaled_dot_product_attention(
            q.unsqueeze(1), k.contiguous().unsqueeze(1), v.contiguous().unsqueeze(1), scale=self.softmax_scale
        )
        return out.squeeze(1).transpose(1, 2)

    def _attend_windows(self, x: torch.Tensor) -> torch.Tensor:
        """Attention inside overlapping windows, a group of windows per batch, blended back.

        Groups are sized so a group's keys, values and scores stay within ``max_chunk_bytes``:
        batching every window at once materialises 9*C values per key for the whole image
        (gigabytes for a 512 px tile) and runs several times slower from memory traffic alone.
        """
        b, c, h, w = x.shape
        size_y, size_x = min(self.window, h), min(self.window, w)
        corners = [(y, x0) for y in window_starts(h, size_y, self.window_overlap)
                   for x0 in window_starts(w, size_x, self.window_overlap)]
        n_keys = sum(int(size_y * s) * int(size_x * s) for s in self.scales)
        match_channels = self.conv_match[0].out_channels
        per_window = b * x.element_size() * n_keys * (2 * 9 * (c + match_channels) + size_y * size_x)
        group = max(1, self.max_chunk_bytes // per_window)
        out = torch.zeros_like(x)
        total = x.new_zeros(1, 1, h, w)
        for first in range(0, len(corners), group):
            chunk = corners[first : first + group]
            patches = torch.cat([x[:, :, y : y + size_y, x0 : x0 + size_x] for y, x0 in chunk])
            attended = self.attend(patches).view(len(chunk), b, c, size_y, size_x)
            for (y, x0), result in zip(chunk, attended):
                weight = blend_weights(size_y, size_x, y, x0, h, w, self.window_overlap, x.device, x.dtype)
                out[:, :, y : y + size_y, x0 : x0 + size_x] += result * weight
                total[:, :, y : y + size_y, x0 : x0 + size_x] += weight
        return out / total


def pyramid_attention_direct(layer: PyramidAttention, x: torch.Tensor) -> torch.Tensor:
    """The published formulation, one image at a time, materialising the full score map.

    Kept as the reference implementation for tests and benchmarks; memory is O((H*W)^2).
    Ignores ``window`` (the published models attend over the whole input).
    """
    outputs = []
    base = layer.conv_match_L_base(x)
    refs = layer.pyramid(x)
    matches = [layer.conv_match(r) for r in refs]
    assembled = [layer.conv_assembly(r) for r in refs]
    for i in range(x.shape[0]):
        kernels = []
        raw = []
        for m, a in zip(matches, assembled):
            ki = F.unfold(m[i : i + 1], 3, padding=1)  # (1, C'*9, L)
            kernels.append(ki.view(m.shape[1], 3, 3, -1).permute(3, 0, 1, 2))
            ri = F.unfold(a[i : i + 1], 3, padding=1)
            raw.append(ri.view(a.shape[1], 3, 3, -1).permute(3, 0, 1, 2))
        wi = torch.cat(kernels)
        norm = wi.pow(2).sum(dim=(1, 2, 3), keepdim=True).sqrt()
        wi = wi / torch.max(norm, layer.escape_NaN)
        scores = F.conv2d(F.pad(base[i : i + 1], (1, 1, 1, 1)), wi)  # (1, L, H, W)
        attn = F.softmax(scores * layer.softmax_scale, dim=1)
        outputs.append(F.conv_transpose2d(attn, torch.cat(raw), padding=1) / 4.0)
    return torch.cat(outputs) + x * layer.res_scale
