"""``panet eval``: score a model (and the classical tools, ``--baselines``) on a folder of clean images.

The table (or ``--json``) goes to stdout; progress and messages to stderr. The work is in
:mod:`panet_cli.evaluation`; this module only turns options into a protocol and a report into text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer

from panet_cli.cli.options import Pattern, Precision, Task, Tta, print_note, stderr_console, usage_error, user_errors
from panet_cli.tasks import task_spec

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from panet_cli.eval_save import EvalSaver
    from panet_cli.evaluation import EvalReport, Method, Protocol
    from panet_cli.loading import ModelDescriptor


def _task_of_model(source: str, weights: bool = False) -> str | None:
    """The task of a weights file (``weights``: it must be one) or registry name, for when --task is not given."""
    from panet_cli.errors import ModelUnavailable

    if weights or Path(source).expanduser().is_file():
        from panet_cli.loading import load_model

        descriptor = load_model(Path(source).expanduser())
        return descriptor.task or (descriptor.tasks[0] if descriptor.tasks else None)
    from panet_cli.registry import get_spec

    try:
        tasks = get_spec(source).tasks
    except ModelUnavailable:
        return None
    return tasks[0] if tasks else None


def model_info(descriptor: ModelDescriptor) -> dict[str, Any]:
    """What the report says about the model scored."""
    return {
        "name": descriptor.name,
        "source": descriptor.source,
        "arch": descriptor.arch,
        "parameters": descriptor.parameters,
        "attention_enabled": descriptor.attention_enabled,
        "window": descriptor.window,
        "level": descriptor.level,
        "scale": descriptor.scale,
        "n_colors": descriptor.n_colors,
        "step": descriptor.metadata.get("step"),
    }


def _fmt(value: float, digits: int) -> str:
    return "inf" if math.isinf(value) else "-" if math.isnan(value) else f"{value:.{digits}f}"


def render_table(report: EvalReport) -> RenderableType:
    """A title line, then rows: images, the mean, s/MP; one column per method with 'PSNR / SSIM'. Best mean in bold."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = Text(f"{report.dataset}: {report.protocol.describe()}", style="bold")
    table = Table()
    table.add_column("image")
    for method in report.methods:
        table.add_column(method, justify="right")
    for image in report.images:
        table.add_row(image.name, *(
            f"{_fmt(image.scores[m].psnr, 2)} / {_fmt(image.scores[m].ssim, 4)}" for m in report.methods))
    means = {m: report.mean(m) for m in report.methods}
    best = max(report.methods, key=lambda m: means[m].psnr)
    table.add_section()
    table.add_row(f"mean ({len(report.images)})", *(
        ("[bold]" if m == best and len(report.methods) > 1 else "") + f"{_fmt(means[m].psnr, 2)} / {_fmt(means[m].ssim, 4)}"
        for m in report.methods))
    table.add_row("s/MP", *(f"{means[m].seconds_per_mp:.2f}" for m in report.methods))
    return Group(title, table)


def eval_command(
    folder: List[Path] = typer.Argument(..., help="Folder(s) of clean images, e.g. ../shared/data/bench/CBSD68."),
    task: Optional[Task] = typer.Option(None, "--task", "-t", help="Protocol to run (default: the model's task)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name (see `panet models list`)."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Weights file (ours or published .pt)."),
    sigma: Optional[float] = typer.Option(None, min=0, help="denoise: noise std on the 0-255 scale (default: the model's, else 25)."),
    float_noise: bool = typer.Option(False, "--float-noise", help="denoise: unclipped float noise (the paper's protocol) instead of 8-bit files."),
    quality: Optional[int] = typer.Option(None, min=1, max=100, help="car: JPEG quality (default: the model's, else 10)."),
    scale: Optional[int] = typer.Option(None, min=2, max=8, help="sr: upscaling factor (default: the model's, else 4)."),
    pattern: Pattern = typer.Option(Pattern.RGGB, case_sensitive=False, help="demosaic: Bayer pattern of the mosaic."),
    seed: int = typer.Option(0, help="Seed of the noise (each image gets its own, from its name)."),
    baselines: bool = typer.Option(False, "--baselines", help="Also score the classical tools on the same inputs."),
    baselines_only: bool = typer.Option(False, "--baselines-only", help="Score only the classical tools (no model)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N images (sorted by name)."),
    tile: Optional[str] = typer.Option(None, help="Tile side in input pixels, 0 = whole image, or auto (default: the model's)."),
    tile_overlap: Optional[int] = typer.Option(None, min=0, help="Pixels shared by neighbouring tiles (default: the model's)."),
    window: Optional[int] = typer.Option(None, min=0, help="Override the attention window (pixels; 0 = whole tile), to measure its effect."),
    no_attention: bool = typer.Option(False, "--no-attention", help="Bypass the attention block, to measure its worth."),
    tta: Tta = False,  # the task commands' own option: eval scores exactly what they run
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps."),
    precision: Precision = typer.Option(Precision.auto, help="Arithmetic on the device, as the task commands: auto is bf16 where native (falls back where unsupported)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
    save: Optional[Path] = typer.Option(None, "--save", metavar="DIR", help="Write every method's output and a labelled comparison sheet per image under DIR."),
    crop: int = typer.Option(96, "--crop", min=8, help="--save: side of the sheets' crop in output pixels (where the methods differ most)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="--save: replace files an earlier run left in DIR."),
) -> None:
    """Score a model on a benchmark folder with the paper's protocol for its task, optionally beside the classical tools.

    Every method gets the same degraded input; outputs are rounded to 8 bits, then scored.
    """
    console = stderr_console()
    if model and weights:
        raise usage_error(console, "give --model or --weights, not both")
    source = str(weights) if weights else model
    if baselines_only and source:
        raise usage_error(console, "--baselines-only scores no model: drop --model/--weights")
    from panet_cli.metrics import ssim_available

    if not ssim_available():
        print_note(console, "SSIM needs scikit-image, in the [bench] extra (pip install 'panet[bench]'): "
                            "scoring PSNR only")
    with user_errors(console):
        task_name = task.value if task else (_task_of_model(source, weights is not None) if source else None)
        if task_name is None:
            raise usage_error(console, "say which protocol to run with --task (or give --weights / --model)")
        descriptor = None
        if not baselines_only:
            descriptor = _load(task_name, source, sigma, quality, scale, window, no_attention)
        protocol = _protocol(task_name, descriptor, sigma, float_noise, quality, scale, pattern.value, seed)
        methods = []
        if descriptor is not None:
            from panet_cli.evaluation import model_method

            label = descriptor.name + (" (no attention)" if no_attention else "")
            if window is not None and not no_attention:
                label += f" (window {window or 'tile'})"
            if tta:
                label += " (tta)"
            methods.append(model_method(descriptor, protocol, device=device, precision=precision.value, tile=tile,
                                        tile_overlap=tile_overlap, tta=tta, name=label))
        if baselines or baselines_only:
            from panet_cli.evaluation import baseline_methods

            methods.extend(baseline_methods(protocol, notice=lambda line: print_note(console, line)))
        saver = None
        if save is not None:
            from panet_cli.eval_save import EvalSaver

            saver = EvalSaver(save, protocol, [m.name for m in methods], crop=crop, overwrite=overwrite)
        report = _evaluate(console, folder, limit, protocol, methods, descriptor, saver)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        from rich.console import Console

        Console().print(render_table(report))
    if saver is not None:
        from panet_cli.eval_save import INPUT, SHEETS

        count = len(saver.sheets)
        console.print(f"{count} comparison sheet{'s' if count != 1 else ''} in {saver.folder / SHEETS}; inputs in "
                      f"{saver.folder / INPUT}, outputs in {', '.join(str(saver.folder / f) for f in saver.folders.values())}",
                      markup=False, highlight=False)


def _load(task: str, source: str | None, sigma: float | None, quality: int | None, scale: int | None,
          window: int | None, no_attention: bool) -> ModelDescriptor:
    """The model to score, loaded on the CPU (restore runs it on --device), as a variant when overridden."""
    from panet_cli.inference import resolve_model

    spec = task_spec(task)
    level = spec.level_of(sigma=sigma, quality=quality)
    descriptor = resolve_model(task, source, level=level, scale=scale if spec.scaled else None,
                               colors=spec.model_colors, device="cpu")
    if no_attention or window is not None:
        descriptor = descriptor.with_attention(descriptor.attention_enabled and not no_attention,
                                               window if window is not None else ...)
    return descriptor


def _protocol(task: str, descriptor: ModelDescriptor | None, sigma: float | None, float_noise: bool,
              quality: int | None, scale: int | None, pattern: str, seed: int) -> Protocol:
    """Options, else the model's own level / scale / channels, else the usual benchmark settings."""
    from panet_cli.evaluation import Protocol

    level = descriptor.level if descriptor is not None else None
    model_scale = descriptor.scale if descriptor is not None and descriptor.scale > 1 else None
    return Protocol.for_task(
        task,
        sigma=sigma if sigma is not None else (level if level is not None else 25.0),
        quality=quality if quality is not None else int(level if level is not None else 10),
        scale=scale or model_scale or 4,
        colors=descriptor.n_colors if descriptor is not None else None,
        float_noise=float_noise, pattern=pattern, seed=seed,
    )


def _evaluate(console: Console, folders: list[Path], limit: int | None, protocol: Protocol, methods: list[Method],
              descriptor: ModelDescriptor | None, saver: EvalSaver | None = None) -> EvalReport:
    """Run the evaluation with a transient progress bar on stderr (``saver``: --save, checked before any work)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from panet_cli.evaluation import collect_images, evaluate

    files = collect_images(folders, limit)
    dataset = folders[0].name if len(folders) == 1 and folders[0].is_dir() else ", ".join(f.name for f in folders)
    if saver is not None:
        saver.dataset = dataset
        saver.plan(files)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        job = bar.add_task("evaluating", total=len(files) * max(1, len(methods)))

        def progress(done: int, total: int, label: str) -> None:
            bar.update(job, completed=done, total=total, description=label)

        return evaluate(files, protocol, methods, dataset=dataset,
                        model=model_info(descriptor) if descriptor is not None else None, progress=progress,
                        keep=saver)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
