"""``panet train``: train PANet / PA-EDSR on a folder of clean images, degrading on the fly."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from panet_cli.cli.options import Pattern, Task, stderr_console, user_errors


def train_command(
    data: list[Path] = typer.Argument(
        ..., help="Folders of clean training images; the last images of each are held out for validation.",
        exists=True, file_okay=False),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the best weights (.safetensors)."),
    task: Task = typer.Option(Task.denoise, help="What to train for."),
    arch: str = typer.Option(
        "PANet", help="PANet (full resolution) | HalfResPANet (body on 2x2-folded pixels: a quarter of the cost)."),
    blocks: int = typer.Option(16, help="Residual blocks (even; attention sits in the middle)."),
    feats: int = typer.Option(64, help="Feature channels."),
    reduction: int = typer.Option(2, help="Attention matching channels = feats / reduction."),
    window: int = typer.Option(32, help="Attention window in pixels (0 = whole input)."),
    window_overlap: int = typer.Option(8, help="Pixels shared by neighbouring attention windows."),
    scale: int = typer.Option(4, help="Upscaling factor (task sr)."),
    res_scale: float = typer.Option(
        0.1, help="Residual scaling of PA-EDSR blocks (task sr): 0.1 as published for 256 features, 1.0 for small ones."
    ),
    attention: bool = typer.Option(True, "--attention/--no-attention", help="Train with the attention on or bypassed."),
    patch: int = typer.Option(48, help="Training crop size (of the target image)."),
    shrink: int = typer.Option(
        1, min=1, help="Downscale training images by this factor first: 2 makes JPEG 4:2:0 colour full resolution."
    ),
    shrink_jpeg_only: bool = typer.Option(False, help="Apply --shrink to JPEG files only (lossless ones keep full colour)."),
    sample_by_area: bool = typer.Option(False, help="Pick crops' images by pixel count, not uniformly (mixed-size folders)."),
    colour_aug: bool = typer.Option(
        False, help="Shuffle each crop's colour channels and scale its saturation (colour models: more saturated hues)."
    ),
    val_holdout: int = typer.Option(8, help="Images held out for validation from the end of each folder."),
    val_crop: int = typer.Option(96, help="Side of the centre crop validated per held-out image."),
    batch: int = typer.Option(16, help="Crops per step (per process under torchrun)."),
    hard_crops: int = typer.Option(
        0, min=0, help="Crops of each batch replayed from the previous step's hardest (online hard-patch mining; 0 = off)."
    ),
    loss: str = typer.Option("l1", help="Per-pixel loss: l1 | l2 (PSNR's own error: for fine-tuning at the end)."),
    steps: int = typer.Option(1000, help="Total step count to reach (a resumed run continues its count)."),
    lr: float = typer.Option(2e-4, help="Initial learning rate of this stage (cosine-decayed)."),
    warmup: int = typer.Option(0, min=0, help="Steps of linear learning-rate ramp at the start of the stage "
                               "(for --resume from a weights file: its Adam starts afresh)."),
    sigma_min: float = typer.Option(0.0, help="Noise range, 0-255 scale (task denoise)."),
    sigma_max: float = typer.Option(75.0),
    quality_min: int = typer.Option(10, help="JPEG quality range (task car)."),
    quality_max: int = typer.Option(60),
    quality_sampling: str = typer.Option(
        "uniform", help="uniform | log: log gives every factor of JPEG coarseness equal weight (more low qualities)."
    ),
    pattern: Pattern = typer.Option(Pattern.RGGB, help="Bayer pattern (task demosaic)."),
    colors: int = typer.Option(3, help="Image channels: 3 colour, 1 grayscale."),
    val_every: int = typer.Option(250, help="Validate (and save if best) every N steps."),
    precision: str = typer.Option("auto", help="auto | fp32 | bf16 (auto: fp32 where the device has no native bf16, else times both and keeps the faster)."),
    threads: int = typer.Option(0, help="Torch threads (0 = torch's default)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps (under torchrun: one GPU per process)."),
    compile_network: bool = typer.Option(False, "--compile", help="torch.compile the network (1.3x faster steps measured on CPU; a minute to compile)."),
    seed: int = typer.Option(0),
    resume: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="Continue from our .safetensors weights or a .state.pt file."),
    init_from: Optional[Path] = typer.Option(
        None, exists=True, dir_okay=False, help="Start a new model from another of ours (related task, 1/3 colours, other SR scale); step 0."
    ),
) -> None:
    """Train a model (see weights/README.md for the recipes behind the shipped weights)."""
    from panet_cli.tasks import task_spec
    from panet_cli.training.loop import TrainConfig, train
    from panet_cli.training.tasks import QUALITY_SAMPLINGS, DegradationRecipe

    console = stderr_console()
    task, pattern = task.value, pattern.value
    if precision not in ("auto", "fp32", "bf16"):
        raise typer.BadParameter("use auto, fp32 or bf16", param_hint="--precision")
    if colors not in (1, 3):
        raise typer.BadParameter("use 1 (grayscale) or 3 (colour)", param_hint="--colors")
    if quality_sampling not in QUALITY_SAMPLINGS:
        raise typer.BadParameter(f"use one of {', '.join(QUALITY_SAMPLINGS)}", param_hint="--quality-sampling")
    network: dict = {"n_resblocks": blocks, "n_feats": feats, "n_colors": colors, "window": window or None,
                     "window_overlap": window_overlap}
    row = task_spec(task)
    if row.scaled:
        arch = "PAEDSR"
        network.update(scale=scale, reduction=reduction, res_scale=res_scale)
    else:
        if arch not in row.archs:
            raise typer.BadParameter(f"use one of {', '.join(row.archs)}", param_hint="--arch")
        network.update(reduction=reduction)
        if arch == "PANet":
            network["input_skip"] = True  # HalfResPANet always adds its input
        if row.bayer:
            network["skip_filter"] = "bayer_bilinear"
    recipe = DegradationRecipe(task, sigma_min, sigma_max, quality_min=quality_min, quality_max=quality_max,
                               quality_sampling=quality_sampling, scale=scale, pattern=pattern)
    config = TrainConfig(data=data, out=out, task=task, arch=arch, network=network, recipe=recipe,
                         attention=attention, patch=patch, shrink=shrink, shrink_jpeg_only=shrink_jpeg_only,
                         sample_by_area=sample_by_area, colour_aug=colour_aug, hard_crops=hard_crops, loss=loss, val_holdout=val_holdout, val_crop=val_crop, batch=batch, steps=steps, lr=lr, warmup=warmup,
                         val_every=val_every, precision=precision, threads=threads, device=device, compile=compile_network, seed=seed,
                         resume=resume, init_from=init_from)
    with user_errors(console):
        train(config, log=lambda m: console.log(m))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
