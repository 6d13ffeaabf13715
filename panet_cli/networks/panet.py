"""PANet: the residual network of the paper for denoising, demosaicing and JPEG artifacts."""

from __future__ import annotations

import torch
from torch import nn

from panet_cli.networks.blocks import MeanShift, attention_body, conv
from panet_cli.networks.pyramid_attention import PyramidAttention


class PANet(nn.Module):
    """head conv -> n/2 PReLU blocks -> pyramid attention -> n/2 blocks -> conv (+ head) -> tail conv.

    The published models use ``n_resblocks=80, n_feats=64, reduction=2`` and no input skip.
    Our own smaller models add ``input_skip`` (the network predicts the correction to its input,
    which trains much faster) and restrict attention to a ``window``.
    ``sub_mean``/``add_mean`` exist only so published checkpoints load strictly; PANet never applies them.
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
    ) -> None:
        super().__init__()
        self.input_skip = input_skip
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
        return self.body[(len(self.body) - 2) // 2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        out = self.tail(self.body(features) + features)
        return out + x if self.input_skip else out

