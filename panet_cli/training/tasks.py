"""Training pairs per task: degrade a clean batch on the fly."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from panet_cli import degradations
from panet_cli.degradations import QUALITY_SAMPLINGS  # noqa: F401 - the choices of --quality-sampling
from panet_cli.tasks import Level, task_spec


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


def sample_qualities(recipe: DegradationRecipe, n: int, generator: torch.Generator) -> torch.Tensor:
    """JPEG qualities for one batch by the recipe (see :func:`panet_cli.degradations.sample_qualities`)."""
    qualities = degradations.sample_qualities(n, recipe.quality_min, recipe.quality_max, generator,
                                              sampling=recipe.quality_sampling)
    return torch.tensor(qualities, dtype=torch.int64)


def _levels(recipe: DegradationRecipe, level: Level, n: int, generator: torch.Generator,
            validation: bool) -> torch.Tensor:
    """One level per batch item: the recipe's ``val_<level>``, else drawn from ``<level>_min``-``<level>_max``."""
    if validation:
        return torch.full((n,), getattr(recipe, f"val_{level.name}"))
    if level.integer:  # JPEG qualities, which also have a choice of sampling
        return sample_qualities(recipe, n, generator)
    return degradations.sample_sigmas(n, getattr(recipe, f"{level.name}_min"), getattr(recipe, f"{level.name}_max"),
                                      generator)


def make_pair(
    recipe: DegradationRecipe, clean: torch.Tensor, generator: torch.Generator, validation: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(network input, target) for a clean batch in [0, 1], degraded as the task's row says (as eval does)."""
    spec = task_spec(recipe.task)
    level = None if spec.level is None else _levels(recipe, spec.level, clean.shape[0], generator, validation)
    inputs, target = spec.degrade(clean, level=level, scale=recipe.scale, pattern=recipe.pattern, generator=generator)
    if spec.bayer:  # networks take the mosaic spread over three channels
        inputs = degradations.cfa_to_mosaic(inputs, recipe.pattern)
    return inputs, target
