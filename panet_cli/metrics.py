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


def y_channel_8bit(image: torch.Tensor) -> torch.Tensor:
    """Y of an RGB image rounded to 8 bits, as MATLAB's ``rgb2ycbcr`` returns it for uint8 files.

    The classic SR tables are computed this way (Set5 x4 bicubic: 28.42 dB with the rounding,
    28.43 without); a one-channel image is returned unchanged.
    """
    if image.shape[-3] == 1:
        return image
    return rgb_to_y(image).mul(255).round().div(255)


def ssim_available() -> bool:
    """Whether :func:`ssim` can run here (scikit-image is in the ``[bench]`` extra, not a base dependency)."""
    try:
        from skimage.metrics import structural_similarity  # noqa: F401
    except ImportError:
        return False
    return True


def ssim(output: torch.Tensor, target: torch.Tensor, shave: int = 0, y_channel: bool = False) -> float:
    """SSIM of images in [0, 1] shaped (..., C, H, W), mean over a batch; scikit-image's implementation.

    Parameters are the usual ones of Wang et al. (Gaussian window sigma 1.5, 11 x 11, population
    covariance, K1 0.01, K2 0.03), so values match MATLAB's ``ssim`` used by the papers. Colour
    images are scored per channel and averaged. Requires scikit-image (the ``[bench]`` extra).
    """
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        from panet_cli.errors import PanetError

        raise PanetError("SSIM needs scikit-image: pip install 'panet[bench]'") from None
    if y_channel and output.shape[-3] == 3:
        output, target = rgb_to_y(output), rgb_to_y(target)
    if shave:
        output = output[..., shave:-shave, shave:-shave]
        target = target[..., shave:-shave, shave:-shave]
    outs = output.detach().double().cpu().reshape(-1, *output.shape[-3:]).numpy()
    tgts = target.detach().double().cpu().reshape(-1, *target.shape[-3:]).numpy()
    values = [
        structural_similarity(
            o, t, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=0
        )
        for o, t in zip(outs, tgts)
    ]
    return float(sum(values) / len(values))
