"""PA-EDSR: EDSR with one pyramid attention block in the middle, for super-resolution."""

from __future__ import annotations

import torch
from torch import nn

from panet_cli.networks.blocks import MeanShift, Upsampler, attention_body, conv
from panet_cli.networks.pyramid_attention import PyramidAttention


class PAEDSR(nn.Module):
    """mean shift -> head -> n/2 ReLU blocks -> attention -> n/2 blocks -> conv (+ head) -> upsampler -> conv.

    Published: ``n_resblocks=32, n_feats=256, res_scale=0.1, reduction=8``. The attention
    module is registered twice (``msa`` and ``body.N``) exactly as the reference, so published
    state_dicts, which store it under both names, load strictly.
    """

    def __init__(
        self,
        scale: int = 4,
        n_resblocks: int = 32,
        n_feats: int = 256,
        n_colors: int = 3,
        res_scale: float = 0.1,
        reduction: int = 8,
        window: int | None = None,
        window_overlap: int = 8,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.sub_mean = MeanShift(sign=-1)
        self.msa = PyramidAttention(n_feats, reduction, res_scale, window=window, window_overlap=window_overlap)
        self.add_mean = MeanShift(sign=1)
        self.head = nn.Sequential(conv(n_colors, n_feats, 3))
        self.body = attention_body(n_resblocks, n_feats, lambda: nn.ReLU(True), lambda: self.msa, res_scale)
        self.tail = nn.Sequential(Upsampler(scale, n_feats), conv(n_feats, n_colors, 3))

    @property
    def attention(self) -> PyramidAttention:
        return self.msa

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(self.sub_mean(x))
        return self.add_mean(self.tail(self.body(features) + features))
