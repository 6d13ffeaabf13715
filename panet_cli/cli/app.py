"""The root Typer app: joins the command modules. Heavy imports happen inside commands only."""

from __future__ import annotations

from typing import Optional

import typer

from panet_cli import __version__
from panet_cli.cli import train
from panet_cli.cli import compare
from panet_cli.cli import degrade
from panet_cli.cli import evaluate
from panet_cli.cli import models
from panet_cli.cli import restore
from panet_cli.cli.feedback import OneLineErrors, quiet_libraries, terminate_like_interrupt

app = typer.Typer(
    cls=OneLineErrors,  # Typer's own usage errors as one line, exit 2
    name="panet",
    help="Image restoration with Pyramid Attention Networks: denoise, super-resolve, remove JPEG artifacts, demosaic.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
restore.register(app)  # first: the four task commands are what people look for in --help
train.register(app)
degrade.register(app)
evaluate.register(app)
compare.register(app)
models.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"panet {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Image restoration with Pyramid Attention Networks."""
    quiet_libraries()


def main() -> None:
    terminate_like_interrupt()
    app()
