"""Training pairs per task: degrade a clean batch on the fly."""

from __future__ import annotations

import math
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
    quality_sampling: str = "uniform"
    scale: int = 4
    pattern: str = "RGGB"


QUALITY_SAMPLINGS = ("uniform", "log")


def sample_qualities(recipe: DegradationRecipe, n: int, generator: torch.Generator) -> torch.Tensor:
    """JPEG qualities for one batch, integers in [quality_min, quality_max].

    ``log`` draws them log-uniformly: below 50 libjpeg's quantisation step is proportional to 1/quality,
    so this gives every factor of coarseness the same share of training (q 10-20 gets 41% of a 10-60 range
    instead of 22%), where the artifacts are worst and a fixed-capacity model has the most to learn.
    """
    lo, hi = recipe.quality_min, recipe.quality_max
    if recipe.quality_sampling == "uniform":
        return torch.randint(lo, hi + 1, (n,), generator=generator)
    if recipe.quality_sampling == "log":
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        q = torch.exp(math.log(lo) + u * (math.log(hi + 1) - math.log(lo)))
        return q.floor().long().clamp(lo, hi)
    raise ValueError(f"unknown quality sampling {recipe.quality_sampling!r}; use one of {QUALITY_SAMPLINGS}")


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
            qualities = sample_qualities(recipe, clean.shape[0], generator)
        inputs = torch.stack([degradations.jpeg_compress(c, int(q)) for c, q in zip(clean, qualities)])
        return inputs, clean
    if task == "demosaic":
        return degradations.bayer_mosaic(clean, recipe.pattern), clean
    raise ValueError(f"unknown task {task!r}")
