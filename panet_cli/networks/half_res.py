"""HalfResPANet: PANet's residual body and pyramid attention on pixel-unshuffled (half-resolution) features.

Why: on a 2-core CPU the convolutions set the time per pixel. Folding each 2x2 block of pixels into
channels (as FFDNet and demosaicnet do) runs the body on a quarter of the positions, so inference and
training cost a quarter per image pixel, and an attention window of T features spans 2T image pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from panet_cli.networks.blocks import attention_body, body_attention, conv
from panet_cli.networks.panet import bayer_bilinear_demosaic, check_skip_filter
from panet_cli.networks.pyramid_attention import PyramidAttention

FOLD = 2  # pixels per side folded into one feature position


class HalfResPANet(nn.Module):
    """unshuffle 2x -> head conv -> n/2 ReLU blocks -> pyramid attention -> n/2 blocks -> conv (+ head)
    -> tail conv -> shuffle 2x, added to the input (or to the bilinear demosaic of a Bayer mosaic).

    Any input size works: odd sides are reflect-padded by one pixel and cropped back, so the tiler needs
    no alignment. A demosaicing model sees whole 2x2 Bayer cells only when tiles start on even offsets,
    which the Bayer-phase code of the tiler already guarantees.
    """

    # Tiles must start on multiples of this: at an odd offset the 2x2 folding groups other pixels.
    size_multiple = FOLD
    # Image pixels per side of one feature position: what the tiler's memory estimate divides by.
    feature_fold = FOLD

    def __init__(
        self,
        n_resblocks: int = 12,
        n_feats: int = 96,
        n_colors: int = 3,
        reduction: int = 2,
        window: int | None = 16,
        window_overlap: int = 2,
        skip_filter: str | None = None,
    ) -> None:
        super().__init__()
        self.skip_filter = check_skip_filter(skip_filter, n_colors)
        folded = n_colors * FOLD * FOLD
        self.head = nn.Sequential(conv(folded, n_feats, 3))
        self.body = attention_body(
            n_resblocks, n_feats, lambda: nn.ReLU(inplace=True),
            lambda: PyramidAttention(n_feats, reduction, 1.0, window=window, window_overlap=window_overlap),
        )
        self.tail = nn.Sequential(conv(n_feats, folded, 3))
        with torch.no_grad():  # start near the identity (output = input), not at a random correction
            self.tail[0].weight.mul_(0.1)
            self.tail[0].bias.zero_()

    @property
    def attention(self) -> PyramidAttention:
        """The attention layer, stored as ``body.N`` in the middle of the body."""
        return body_attention(self.body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = h % FOLD, w % FOLD
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x
        features = self.head(F.pixel_unshuffle(padded, FOLD))
        residual = F.pixel_shuffle(self.tail(self.body(features) + features), FOLD)[..., :h, :w]
        skip = x if self.skip_filter is None else bayer_bilinear_demosaic(x)
        return skip + residual
