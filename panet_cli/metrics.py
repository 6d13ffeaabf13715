"""Quality metrics with the papers' protocols."""

from __future__ import annotations

import math

import torch


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """Y of YCbCr (ITU-R BT.601, studio range [16, 235]/255) of an RGB image in [0, 1], as MATLAB's rgb2ycbcr."""
    r, g, b = image.unbind(-3)
    y = (65.481 * r + 128.553 * g + 24.966 * b + 16.0) / 255.0
    return y.unsqueeze(-3)


def psnr(output: torch.Tensor, target: torch.Tensor, shave: int = 0, y_channel: bool = False) -> float:
    """PSNR in dB of images in [0, 1] (mean over a batch of the per-image values).

    ``y_channel`` compares the luma only (super-resolution protocol); ``shave`` drops that many
    pixels from every border first.
    """
    if y_channel and output.shape[-3] == 3:
        output, target = rgb_to_y(output), rgb_to_y(target)
    if shave:
        output = output[..., shave:-shave, shave:-shave]
        target = target[..., shave:-shave, shave:-shave]
    mse = (output.double() - target.double()).pow(2).flatten(-3).mean(-1)
    values = [10 * math.log10(1.0 / m) if m > 0 else math.inf for m in mse.reshape(-1).tolist()]
    return sum(values) / len(values)
