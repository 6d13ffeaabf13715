"""Training pairs per task: degrade a clean batch on the fly."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from panet_cli import degradations


@dataclass
class DegradationRecipe:
    """How inputs are made from clean crops during training and validation."""

    task: str
    sigma_min: float = 0.0
    sigma_max: float = 75.0
    val_sigma: float = 25.0
    quality_min: int = 10
    quality_max: int = 60
    val_quality: int = 10
    scale: int = 4
    pattern: str = "RGGB"


def make_pair(
    recipe: DegradationRecipe, clean: torch.Tensor, generator: torch.Generator, validation: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(network input, target) for a clean batch in [0, 1]."""
    task = recipe.task
    if task == "denoise":
        if validation:
            sigma = torch.full((clean.shape[0],), recipe.val_sigma)
        else:
            sigma = recipe.sigma_min + torch.rand(clean.shape[0], generator=generator) * (
                recipe.sigma_max - recipe.sigma_min
            )
        return degradations.add_gaussian_noise(clean, sigma, generator), clean
    if task == "sr":
        s = recipe.scale
        h, w = clean.shape[-2] // s * s, clean.shape[-1] // s * s
        target = clean[..., :h, :w]
        return degradations.quantize_8bit(degradations.bicubic_downscale(target, s)), target
    if task == "car":
        if validation:
            qualities = [recipe.val_quality] * clean.shape[0]
        else:
            qualities = torch.randint(recipe.quality_min, recipe.quality_max + 1, (clean.shape[0],), generator=generator)
        inputs = torch.stack([degradations.jpeg_compress(c, int(q)) for c, q in zip(clean, qualities)])
        return inputs, clean
    if task == "demosaic":
        return degradations.bayer_mosaic(clean, recipe.pattern), clean
    raise ValueError(f"unknown task {task!r}")
