"""How the whole CLI ends when something goes wrong: one line, a status code, nothing left behind.

Typer's own checks (``--scale 5``, ``--quality 0``, an unknown option) would print a usage box; here they
are one ``error:`` line with exit status 2 like every other usage error of panet. Library chatter
(warnings, tifffile's log lines) is silenced: what matters about an image reaches the user as its note.
SIGTERM ends a run the way Ctrl-C does, so temporaries are removed and finished work is kept.
"""

from __future__ import annotations

import logging
import signal
import sys
import warnings
from typing import Any

import typer
from typer.core import TyperGroup

try:
    from typer import _click as click  # recent Typer carries its own copy of click: its exceptions are these
except ImportError:
    import click

from panet_cli.cli.options import print_error, stderr_console


class OneLineErrors(TyperGroup):
    """The root group: click's usage errors and aborts as one line each (see the module docstring)."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as error:
            sys.exit(error.exit_code)  # the help was printed already
        except click.ClickException as error:
            print_error(stderr_console(), one_line(error))
            sys.exit(error.exit_code)
        except typer.Abort:
            print_error(stderr_console(), "aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def one_line(error: click.ClickException) -> str:
    """The error's message with where to look for help, e.g. ``Invalid value for '--scale': ... (see panet sr -h)``."""
    message = " ".join(error.format_message().split())
    ctx = getattr(error, "ctx", None)
    if ctx is not None and ctx.help_option_names:
        message += f" (see {ctx.command_path} {ctx.help_option_names[0]})"
    return message


def quiet_libraries() -> None:
    """Warnings and library log lines never reach stderr (notes carry what matters about an image)."""
    warnings.simplefilter("ignore")
    tifffile = logging.getLogger("tifffile")
    if not any(isinstance(h, logging.NullHandler) for h in tifffile.handlers):
        tifffile.addHandler(logging.NullHandler())
    tifffile.propagate = False


def terminate_like_interrupt() -> None:
    """SIGTERM (a scheduler's or ``kill``'s stop) unwinds like Ctrl-C: temporaries removed, exit 143."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (an embedding program): its own handling stands
        pass
