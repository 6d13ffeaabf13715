"""PANet: the residual network of the paper for denoising, demosaicing and JPEG artifacts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from panet_cli.networks.blocks import MeanShift, attention_body, body_attention, conv
from panet_cli.networks.pyramid_attention import PyramidAttention


class PANet(nn.Module):
    """head conv -> n/2 PReLU blocks -> pyramid attention -> n/2 blocks -> conv (+ head) -> tail conv.

    The published models use ``n_resblocks=80, n_feats=64, reduction=2`` and no input skip.
    Our own smaller models add ``input_skip`` (the network predicts the correction to its input,
    which trains much faster) and restrict attention to a ``window``.
    ``sub_mean``/``add_mean`` exist only so published checkpoints load strictly; PANet never applies them.
    ``skip_filter="bayer_bilinear"`` (demosaicing) adds the bilinear demosaic of the zero-filled mosaic
    instead of the mosaic itself, so the network learns only what bilinear interpolation gets wrong.
    """

    def __init__(
        self,
        n_resblocks: int = 80,
        n_feats: int = 64,
        n_colors: int = 3,
        reduction: int = 2,
        input_skip: bool = False,
        window: int | None = None,
        window_overlap: int = 8,
        skip_filter: str | None = None,
    ) -> None:
        super().__init__()
        self.input_skip = input_skip
        self.skip_filter = check_skip_filter(skip_filter, n_colors)
        self.sub_mean = MeanShift(sign=-1)
        self.add_mean = MeanShift(sign=1)
        self.head = nn.Sequential(conv(n_colors, n_feats, 3))
        self.body = attention_body(
            n_resblocks, n_feats, nn.PReLU,
            lambda: PyramidAttention(n_feats, reduction, 1.0, window=window, window_overlap=window_overlap),
        )
        self.tail = nn.Sequential(conv(n_feats, n_colors, 3))

    @property
    def attention(self) -> PyramidAttention:
        """The attention layer (stored only as ``body.N``, as in the published checkpoints)."""
        return body_attention(self.body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        out = self.tail(self.body(features) + features)
        if not self.input_skip:
            return out
        if self.skip_filter is None:
            return out + x
        return out + bayer_bilinear_demosaic(x)


def check_skip_filter(skip_filter: str | None, n_colors: int) -> str | None:
    """``skip_filter`` if the networks know it (None or "bayer_bilinear", which needs colour), else ValueError."""
    if skip_filter not in (None, "bayer_bilinear"):
        raise ValueError(f"unknown skip_filter {skip_filter!r}")
    if skip_filter == "bayer_bilinear" and n_colors != 3:
        raise ValueError("a Bayer bilinear skip needs 3 colour channels")
    return skip_filter


def bayer_bilinear_demosaic(mosaic: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaic of a zero-filled (B, 3, H, W) Bayer mosaic, any phase.

    Borders are reflected, which keeps the Bayer phase (index -1 mirrors to 1, same parity). The kernel is
    rebuilt per call (27 numbers), not a buffer: nothing to store or load.
    """
    kernel = bayer_bilinear_kernel().to(device=mosaic.device, dtype=mosaic.dtype)
    return F.conv2d(F.pad(mosaic, (1, 1, 1, 1), mode="reflect"), kernel, groups=3)


def bayer_bilinear_kernel() -> torch.Tensor:
    """Depthwise 3x3 kernels that bilinearly demosaic a zero-filled RGB Bayer mosaic, whatever its phase.

    Red and blue sit on one pixel in four: the [1 2 1] x [1 2 1] / 4 tent fills the gaps and keeps
    sampled values. Green sits on one in two (a quincunx): the cross kernel does the same.
    """
    tent = torch.tensor([1.0, 2.0, 1.0])
    red_blue = torch.outer(tent, tent) / 4
    green = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4
    return torch.stack([red_blue, green, red_blue]).unsqueeze(1)

