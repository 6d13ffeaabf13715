"""Degradations used to train and evaluate: pure functions with explicit seeds.

Images are float tensors in [0, 1], shaped (..., C, H, W). Noise levels use the 0-255 scale
of the papers.
"""

from __future__ import annotations

import torch


def quantize_8bit(image: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to the 256 levels of an 8-bit file, as users' images are."""
    return image.clamp(0, 1).mul(255).round().div(255)


def add_gaussian_noise(
    image: torch.Tensor,
    sigma: float | torch.Tensor,
    generator: torch.Generator | None = None,
    clip_round: bool = True,
) -> torch.Tensor:
    """Add white Gaussian noise of std ``sigma``/255 to a clean image.

    ``sigma`` may be a tensor with one value per batch item (blind training). With
    ``clip_round`` (the default) the result is clipped and rounded to 8 bits, since a model
    trained on unclipped float noise loses about 0.6 dB on real 8-bit files.
    """
    sigma_t = torch.as_tensor(sigma, dtype=image.dtype, device=image.device)
    if sigma_t.ndim == 1:
        sigma_t = sigma_t.view(-1, *([1] * (image.ndim - 1)))
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device)
    noisy = image + noise * (sigma_t / 255.0)
    return quantize_8bit(noisy) if clip_round else noisy
