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

from panet_cli.networks.windows import WindowGrid

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
        if self.backend == "chunked" and 4 * b * self._local_bytes(h, w) <= self.max_chunk_bytes:
            return self._attend_local(x)
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

        The windows are cut with one copy and merged with one scatter-add (:class:`WindowGrid`);
        groups are sized so that a group's score matrices stay within ``max_chunk_bytes``.
        """
        b, c, h, w = x.shape
        grid = WindowGrid(h, w, min(self.window, h), min(self.window, w), self.window_overlap)
        windows = grid.partition(x)
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        group = max(1, self.group_budget // self._local_bytes(grid.size_y, grid.size_x))
        if len(windows) <= group:
            return grid.merge(self._attend_group(windows), channels_last)
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            attended = torch.cat([self._attend_group(windows[i : i + group]) for i in range(0, len(windows), group)])
        else:
            first = self._attend_group(windows[:group])  # its dtype is the one autocast gives
            attended = torch.empty(windows.shape, dtype=first.dtype, device=first.device, memory_format=torch.channels_last)
            attended[:group] = first
            for i in range(group, len(windows), group):
                self._attend_group(windows[i : i + group], out=attended[i : i + group])
        return grid.merge(attended, channels_last)

    # Windows per group: the shifted adds and the softmax run from cache when a group's (queries x keys)
    # matrix stays near 2 MiB (measured 4x faster per window at 8 windows of 12 x 12 than at 66).
    window_group_bytes = 2 * 2**20

    @property
    def group_budget(self) -> int:
        """Bytes of one window group's (queries x keys) matrix (a group holds at least one window), which the
        tiler's memory estimate also counts."""
        return min(self.max_chunk_bytes, self.window_group_bytes)

    def _local_bytes(self, h: int, w: int) -> int:
        """Bytes of one fp32 (queries x keys) matrix of :meth:`_attend_local` per h x w image (it holds ~4)."""
        return 4 * h * w * sum(a * b for a, b in self._level_sizes(h, w))

    def _level_sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        return [(int(h * s), int(w * s)) for s in self.scales]  # as F.interpolate sizes them

    def _attend_group(self, windows: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The attention term of a batch of windows, each over its own pyramid (tests replace it)."""
        return self._attend_local(windows, out)

    def _resampling(self, h: int, w: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Per level, the bicubic resizing of an h x w map as (rows (h', h), columns (w', w)) fp32 matrices.

        Taken from ``F.interpolate`` itself on unit impulses along one axis (the other scaled by 1, which
        bicubic leaves exact), so the coefficients and border clamping are exactly the reference's.
        """
        key = (h, w, str(device))
        cache = self.__dict__.setdefault("_resampling_cache", {})
        if key not in cache:
            mats = []
            for s in self.scales:
                if s == 1:
                    mats.append(None)
                    continue
                eye_h = torch.eye(h, device=device).view(h, 1, h, 1)
                eye_w = torch.eye(w, device=device).view(w, 1, 1, w)
                rows = F.interpolate(eye_h, scale_factor=(s, 1.0), mode="bicubic")[:, 0, :, 0].t()
                cols = F.interpolate(eye_w, scale_factor=(1.0, s), mode="bicubic")[:, 0, 0, :].t()
                mats.append((rows.contiguous(), cols.contiguous()))
            cache[key] = mats
        return cache[key]

    def _attend_local(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`attend` for small inputs (windows), with per-pixel matmuls instead of patch matmuls.

        A 3x3 patch score is the sum of 9 pixel scores along a diagonal of the pixel score matrix G
        (query pixel + d against key pixel + d, zero outside), so G = q k^T costs a ninth of the patch
        matmul and needs no unfold; pasting value patches (fold of w v) is likewise M v with M the
        same diagonal 3x3 sum of the softmax weights w. The 1x1 convs commute with bicubic resizing
        (both linear, bicubic weights summing to one), so every level is resized from the level-1
        pre-activations. Works channels-last: (windows, pixels, channels) matrices throughout.
        Returns (N, C, h, w), channels-last in memory (or written into ``out``).
        """
        n, c, hq, wq = x.shape
        nq = hq * wq
        mc = self.conv_match[0].out_channels
        track = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        xt = x.permute(0, 2, 3, 1).reshape(n * nq, c)
        base, match, assembly = self.conv_match_L_base, self.conv_match, self.conv_assembly
        q = F.prelu(torch.addmm(base[0].bias, xt, base[0].weight.view(mc, c).t()), base[1].weight).view(n, nq, mc)
        kv_weight = torch.cat([match[0].weight, assembly[0].weight]).flatten(1)
        kv_bias = torch.cat([match[0].bias, assembly[0].bias])
        slopes = torch.cat([match[1].weight.expand(mc), assembly[1].weight.expand(assembly[0].out_channels)])
        z = torch.addmm(kv_bias, xt, kv_weight.t())  # level-1 pre-activations (N * Q, C' + C)
        ckv = z.shape[1]
        levels = self._level_sizes(hq, wq)
        sizes = [a * b for a, b in levels]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        n_keys = sum(sizes)
        pre = z.new_empty(n, n_keys, ckv)
        zf = None
        for (ho, wo), off, mats in zip(levels, offsets, self._resampling(hq, wq, x.device)):
            if mats is None:
                pre[:, off : off + nq] = z.view(n, nq, ckv)
                continue
            if zf is None:  # resized in fp32 as F.interpolate computes it, rounded once
                zf = z.view(n * hq, wq, ckv).float()
            rows, cols = mats
            with torch.autocast(x.device.type, enabled=False):
                t = torch.matmul(cols, zf).view(n, hq, wo * ckv)  # along x: (N * h, w', C)
                pre[:, off : off + ho * wo] = torch.matmul(rows, t).view(n, ho * wo, ckv)  # along y
        kv = F.prelu(pre.view(n * n_keys, ckv), slopes).view(n, n_keys, ckv)
        k, v = kv[:, :, :mc], kv[:, :, mc:]
        sumsq = torch.linalg.vector_norm(k, dim=2, dtype=torch.float32).square()  # (N, L)
        g = torch.bmm(q, k.transpose(1, 2)).float()  # pixel scores (N, Q, L), summed in fp32 below
        scores = g.new_empty(n, nq, n_keys, dtype=torch.float32)
        ratios = []
        for (ho, wo), off, size in zip(levels, offsets, sizes):
            box = F.avg_pool2d(sumsq[:, off : off + size].view(n, 1, ho, wo), 3, stride=1, padding=1, divisor_override=1)
            ratios.append(self.softmax_scale / box.sqrt().clamp_min(self.escape_NaN).view(n, 1, size))
            _diagonal_sum(g[:, :, off : off + size].view(n, hq, wq, ho, wo),
                          scores[:, :, off : off + size].view(n, hq, wq, ho, wo))
        ratio = torch.cat(ratios, dim=2)
        scores = scores * ratio if track else scores.mul_(ratio)
        weights = torch.softmax(scores, dim=2)
        pasted = weights.new_empty(weights.shape) if track else scores  # the scores are no longer needed
        for (ho, wo), off, size in zip(levels, offsets, sizes):
            _diagonal_sum(weights[:, :, off : off + size].view(n, hq, wq, ho, wo),
                          pasted[:, :, off : off + size].view(n, hq, wq, ho, wo))
        pasted = pasted.to(v.dtype)
        if out is None:
            result = torch.bmm(pasted, v).div_(4.0)
        else:
            result = torch.bmm(pasted, v, out=out.permute(0, 2, 3, 1).view(n, nq, c)).div_(4.0)
        return result.view(n, hq, wq, c).permute(0, 3, 1, 2)


def _diagonal_sum(g: torch.Tensor, out: torch.Tensor) -> None:
    """out[., y, x, ky, kx] = sum over dy, dx in {-1, 0, 1} of g[., y+dy, x+dx, ky+dy, kx+dx] (zero outside).

    Separable: three shifted adds along (x, kx) into a temporary, then three along (y, ky) into ``out``.
    """
    t = g.clone()
    t[:, :, 1:, :, 1:] += g[:, :, :-1, :, :-1]
    t[:, :, :-1, :, :-1] += g[:, :, 1:, :, 1:]
    out.copy_(t)
    out[:, 1:, :, 1:] += t[:, :-1, :, :-1]
    out[:, :-1, :, :-1] += t[:, 1:, :, 1:]


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
