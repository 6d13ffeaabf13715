"""The task's classical methods scored on a model's own validation crops: the lines a learning curve is read against.

    python benchmarks/val_baselines.py weights/panet_demosaic.safetensors
    python benchmarks/val_baselines.py weights/panet_sr_x4.safetensors --baselines Bicubic --stage 0

A curve's validation PSNR means something only beside what a classical method scores on the same crops;
those crops depend on the run's settings (folders, held-out count, crop size, shrinking), which change
between training designs. This rebuilds them exactly as the trainer does (``validation_set``), from the
settings stored with the weights (its last training stage and recipe), and scores the task row's baselines
the way the trainer scores the model. Paste the printed JSON into ``benchmarks/card_figures.json``.
The training folders default to the names stored in the file, under ``../shared/data/train``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from panet_cli.training.loop import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TRAIN_DATA = ROOT.parent / "shared" / "data" / "train"


def validation_config(meta: dict[str, Any], stage: int = -1, folders: list[Path] | None = None) -> TrainConfig:
    """The TrainConfig of one training stage of the file (default: its last), as far as the validation crops
    depend on it (a curve whose validation changed part-way needs each part's baselines). ``folders`` default
    to the file's training folders; a missing stage or folder raises PanetError."""
    from panet_cli.errors import PanetError
    from panet_cli.training.loop import TrainConfig
    from panet_cli.training.tasks import DegradationRecipe

    if "recipe" not in meta or "task" not in meta:
        raise PanetError("no training recipe stored (not written by panet train)")
    stages = (meta.get("training") or {}).get("stages") or [{}]
    if not -len(stages) <= stage < len(stages):
        raise PanetError(f"no training stage {stage}: the file records {len(stages)}")
    folders = folders or training_folders(meta)
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing or not folders:
        raise PanetError(f"training folder not found: {', '.join(missing) or 'none named'} (name them with --data)")
    chosen = stages[stage]
    return TrainConfig(
        data=folders, out=Path("unused"), task=meta["task"], network=dict(meta.get("config") or {}),
        recipe=DegradationRecipe(**meta["recipe"]), shrink=chosen.get("shrink", 1),
        shrink_jpeg_only=chosen.get("shrink_jpeg_only", False), val_holdout=chosen.get("val_holdout", 8),
        val_crop=chosen.get("val_crop", 96))


def score_baselines(config: TrainConfig, names: list[str]) -> dict[str, float]:
    """{baseline name: validation PSNR}, each method given the input the model gets, scored as validate() scores."""
    from panet_cli.baselines import BASELINES
    from panet_cli.metrics import psnr
    from panet_cli.tasks import task_spec
    from panet_cli.training.loop import validation_set

    spec = task_spec(config.task)
    inputs, target = validation_set(config)
    if spec.bayer:  # the trainer spreads the mosaic over three channels; the baselines take the CFA itself
        inputs = inputs.sum(1, keepdim=True)
    level = None if spec.level is None else getattr(config.recipe, f"val_{spec.level.name}")
    setting = SimpleNamespace(level=level, scale=config.recipe.scale, pattern=config.recipe.pattern)
    scale = config.recipe.scale if spec.scaled else 1
    scores = {}
    for name in names:
        baseline = BASELINES[name]
        baseline.check()
        outs = [baseline.run(np.ascontiguousarray(x.permute(1, 2, 0).numpy()), setting) for x in inputs]
        out = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).float().clamp(0, 1)
        scores[name] = psnr(out, target, shave=scale if spec.y_channel else 0, y_channel=spec.y_channel)
    return scores


def training_folders(meta: dict[str, Any], names: list[str] | None = None) -> list[Path]:
    """The training folders by name (default: those the file names), under ../shared/data/train."""
    names = names or [name.strip() for name in str(meta.get("data", "")).split(",") if name.strip()]
    return [TRAIN_DATA / name for name in names]


def baselines_on_validation(meta: dict[str, Any], names: list[str] | None = None, stage: int = -1,
                            folders: list[Path] | None = None) -> dict[str, float]:
    """{baseline: PSNR} on the validation crops of one stage of a weights file (metadata ``meta``); ``names``
    default to the task row's baselines."""
    from panet_cli.tasks import task_spec

    config = validation_config(meta, stage, folders)
    return score_baselines(config, names or list(task_spec(config.task).baselines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, help="a weights file written by panet train (its metadata is read)")
    parser.add_argument("--data", nargs="*", type=Path, help="the training folders (default: the file's, under "
                                                             f"{TRAIN_DATA})")
    parser.add_argument("--baselines", nargs="*", help="baseline names (default: the task row's)")
    parser.add_argument("--stage", type=int, default=-1, help="the training stage whose validation crops to use "
                                                              "(0: the first; default -1, the last)")
    args = parser.parse_args(argv)
    from panet_cli.baselines import BaselineUnavailable
    from panet_cli.errors import PanetError
    from panet_cli.loading.checkpoint import read_safetensors
    from panet_cli.tasks import task_spec

    try:
        _, meta = read_safetensors(args.weights)
        config = validation_config(meta, args.stage, args.data)
        scores = score_baselines(config, args.baselines or list(task_spec(config.task).baselines))
    except (PanetError, BaselineUnavailable, OSError) as e:
        print(f"error: {args.weights}: {e}", file=sys.stderr)
        return 1
    except KeyError as e:
        print(f"error: no baseline named {e}", file=sys.stderr)
        return 1
    print(f"{args.weights.name}: validation crops of stage {args.stage}: {len(config.folders)} folder(s), "
          f"{config.val_holdout} held out of each, {config.val_crop} px centre crops, "
          f"shrink {config.shrink}{' (JPEG only)' if config.shrink_jpeg_only else ''}")
    print(json.dumps({"val_baselines": {name: round(value, 2) for name, value in scores.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
