"""``panet models list|info|download|import|remove``: thin wrappers over :mod:`panet_cli.registry`.

Tables and JSON go to stdout; progress and messages to stderr. ``list`` and ``info`` never touch the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer

from panet_cli.cli.options import Task, user_errors

if TYPE_CHECKING:
    from rich.console import Console

    from panet_cli.registry import ModelSpec

models_app = typer.Typer(
    name="models",
    help="List, inspect, download, import and remove models.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


STATUS_TEXT = {
    "shipped": "shipped",
    "imported": "imported",
    "cached": "cached",
    "downloadable": "downloadable",
    "manual": "manual",
    "missing": "not trained",
}
STATUS_STYLE = {"shipped": "green", "imported": "green", "cached": "green", "downloadable": "cyan",
                "manual": "yellow", "missing": "dim"}


def _status_text(spec: "ModelSpec", status: str) -> str:
    if status == "missing" and spec.origin == "imported":
        return "file missing"
    return STATUS_TEXT[status]


def _stderr() -> "Console":
    from rich.console import Console

    return Console(stderr=True)


def _params(count: int | None) -> str:
    if not count:
        return "-"
    return f"{count / 1e6:.2f} M" if count >= 1e5 else f"{count / 1e3:.1f} k"


def _size(spec: "ModelSpec") -> str:
    size = spec.size or (spec.imported or {}).get("size")
    if size:
        return f"{size / 2**20:.1f} MB"
    approx = spec.raw.get("approx_size")
    return f"~{approx / 2**20:.0f} MB" if approx else "-"


def list_command(
    task: Optional[Task] = typer.Option(None, "--task", "-t", help="Only models for this task."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (name, task, level, status, ...) instead."),
) -> None:
    """Known models and whether they are here (works offline: never touches the network)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from panet_cli import registry

    with user_errors():
        specs = [s for s in registry.all_specs() if task is None or task.value in s.tasks]
        rows = [(s, registry.status(s)) for s in specs]
    if as_json:
        out = [{"name": s.name, "task": s.task, "tasks": list(s.tasks), "level": s.level_text, "params": s.params,
                "size": s.size or (s.imported or {}).get("size"), "status": st} for s, st in rows]
        typer.echo(json.dumps(out, indent=2))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for header, justify in (("name", "left"), ("task", "left"), ("level", "left"), ("params", "right"),
                            ("size", "right"), ("status", "left")):
        table.add_column(header, justify=justify, no_wrap=True)
    for spec, st in rows:
        table.add_row(spec.name, spec.task, spec.level_text, _params(spec.params), _size(spec),
                      f"[{STATUS_STYLE[st]}]{_status_text(spec, st)}[/]")
    console = Console()
    console.print(table)
    if any(st == "manual" for _, st in rows):
        console.print("manual: the authors' file; fetch it by hand, then `panet models import FILE`",
                      markup=False, highlight=False, soft_wrap=True)


def info_command(
    name: str = typer.Argument(..., help="Model name (see `panet models list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest entry as JSON."),
) -> None:
    """Everything the manifest says about a model, with its status and local file."""
    from rich.console import Console
    from rich.table import Table

    from panet_cli import registry

    with user_errors():
        spec = registry.get_spec(name)
        st = registry.status(spec)
        where = registry.local_path(spec, verify=False)
        file = registry.hub_file(spec)
    entry: dict[str, Any] = dict(spec.raw)
    entry["status"] = st
    entry["path"] = str(where) if where else None
    if file is not None:
        entry["hub_file"] = {"repo": file.repo, "filename": file.filename, "revision": file.revision}
    if as_json:
        typer.echo(json.dumps(entry, indent=2))
        return
    table = Table(show_header=False, title=spec.name, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in entry.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        table.add_row(key, text)
    Console().print(table)


def download_command(
    names: Optional[List[str]] = typer.Argument(None, help="Model names to download."),
    all_models: bool = typer.Option(False, "--all", help="Every model that has a hub copy."),
    repo: Optional[str] = typer.Option(None, "--repo", help="Hub repo holding panet's weights (or PANET_HUB_REPO)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Revision in that repo (or PANET_HUB_REVISION)."),
) -> None:
    """Download models from the Hugging Face hub into its cache (HF_HOME), checking each file's sha256."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from panet_cli import registry

    console = _stderr()
    if not names and not all_models:
        console.print("name a model to download, or pass --all (see `panet models list`)", soft_wrap=True)
        raise typer.Exit(2)
    with user_errors():
        if all_models:
            specs = [s for s in registry.all_specs() if registry.hub_file(s, repo=repo, revision=revision)]
        else:
            specs = [registry.get_spec(n) for n in names or []]
    if not specs:
        console.print("no model has a hub copy in this version of panet", soft_wrap=True)
    failures = 0
    for spec in specs:
        with user_errors():
            st = registry.status(spec)
            if st in ("shipped", "imported") and repo is None and revision is None:
                console.print(f"{spec.name}: already installed ({st})", soft_wrap=True)
                continue
            if registry.hub_file(spec, repo=repo, revision=revision) is None:
                console.print(f"{spec.name} has no hub copy: {registry.advice(spec)}", markup=False, soft_wrap=True)
                failures += 1
                continue
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            bar = progress.add_task(spec.name, total=None)

            def report(done: int, total: int | None, bar: Any = bar) -> None:
                progress.update(bar, completed=done, total=total)

            try:
                with user_errors():
                    path = registry.resolve(spec, download=True, progress=report, repo=repo, revision=revision)
            except typer.Exit:
                failures += 1
                continue
        console.print(f"{spec.name}: {path}", markup=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


def import_command(
    path: Path = typer.Argument(..., help="A published .pt/.pth checkpoint or one of our .safetensors files."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Name to use with --model (default: from the file)."),
    task: Optional[Task] = typer.Option(None, "--task", "-t", help="What the model is for, when the file cannot say."),
    level: Optional[float] = typer.Option(None, "--level", help="Sigma or JPEG quality it was trained for."),
    force: bool = typer.Option(False, "--force", help="Replace an imported model of the same name."),
) -> None:
    """Convert a checkpoint into your model folder (PANET_HOME) so that --model NAME finds it."""
    from panet_cli import registry

    with user_errors():
        spec = registry.import_model(path, name=name, task=task.value if task else None, level=level, force=force)
    detail = f"{spec.task} {spec.level_text}".strip()
    _stderr().print(f"imported {path.name} as {spec.name} ({spec.arch}, {detail}, {_params(spec.params)} parameters)",
                    markup=False, soft_wrap=True)


def remove_command(name: str = typer.Argument(..., help="An imported or downloaded model.")) -> None:
    """Delete an imported model or a downloaded copy (shipped models stay)."""
    from panet_cli import registry

    with user_errors():
        message = registry.remove_model(name)
    _stderr().print(message, markup=False, soft_wrap=True)


models_app.command("list")(list_command)
models_app.command("info")(info_command)
models_app.command("download")(download_command)
models_app.command("import")(import_command)
models_app.command("remove")(remove_command)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
