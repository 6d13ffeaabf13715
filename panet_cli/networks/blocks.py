"""Building blocks shared by PANet and PA-EDSR.

Submodule names and ordering follow the published checkpoints' tensor names
(``body.0``, ``body.1`` ...), so a published state_dict loads with ``strict=True``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn


def conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """A 'same'-padded convolution with bias, as every conv in the paper."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=True)


class MeanShift(nn.Conv2d):
    """Fixed 1x1 conv that subtracts (sign=-1) or adds (sign=+1) the dataset RGB mean.

    Present in every published checkpoint; only PA-EDSR applies it in forward.
    """

    def __init__(
        self,
        rgb_range: float = 1.0,
        rgb_mean: tuple[float, float, float] = (0.4488, 0.4371, 0.4040),
        sign: int = -1,
    ) -> None:
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(rgb_mean))
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    """conv - activation - conv, scaled and added to the input (EDSR style)."""

    def __init__(self, n_feats: int, act: nn.Module, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(n_feats, n_feats, 3), act, conv(n_feats, n_feats, 3))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mul(self.res_scale) + x


class Upsampler(nn.Sequential):
    """Sub-pixel upsampler: (conv to 4C, shuffle 2) per factor of 2, or conv to 9C and shuffle 3."""

    def __init__(self, scale: int, n_feats: int) -> None:
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [conv(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv(n_feats, 9 * n_feats, 3), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"unsupported upscaling factor {scale}; expected 2, 3, 4 or 8")
        super().__init__(*layers)


def attention_body(
    n_resblocks: int,
    n_feats: int,
    activation: Callable[[], nn.Module],
    attention: Callable[[], nn.Module],
    res_scale: float = 1.0,
) -> nn.Sequential:
    """``n/2`` residual blocks, the attention, ``n/2`` blocks and a conv: the body of PANet and PA-EDSR.

    The attention sits at ``body[n/2]``, where the published checkpoints store it. It is built by
    ``attention()`` after the blocks, so seeded initialisation stays what it always was.
    """
    if n_resblocks % 2:
        raise ValueError("n_resblocks must be even: the attention sits in the middle")
    blocks = [ResBlock(n_feats, activation(), res_scale) for _ in range(n_resblocks)]
    half = n_resblocks // 2
    return nn.Sequential(*blocks[:half], attention(), *blocks[half:], conv(n_feats, n_feats, 3))


def body_attention(body: nn.Sequential) -> nn.Module:
    """The attention of an ``attention_body``: after n/2 blocks, before the other n/2 and the closing conv."""
    return body[(len(body) - 2) // 2]
