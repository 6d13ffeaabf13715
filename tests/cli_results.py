"""Checks of a CliRunner result that can fail.

CliRunner never prints a traceback: an exception that escapes a command is kept in ``result.exception``
(with exit code 1), so ``"Traceback" not in result.output`` holds whatever happened. A command that ended
on purpose raised SystemExit (typer.Exit, click's usage errors) with its code; anything else is a bug.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def assert_clean_exit(result: Any, code: int, *messages: str) -> None:
    """``result`` ended with ``code`` on purpose, and its stderr holds each of ``messages``."""
    shown = f"exit {result.exit_code}, exception {result.exception!r}, stderr: {result.stderr}"
    assert result.exit_code == code, shown
    if code == 0:
        assert result.exception is None, shown
    else:
        assert isinstance(result.exception, SystemExit) and result.exception.code == code, shown
    for message in messages:
        assert message in result.stderr, shown


def invoke(*args: Any, input: bytes | None = None) -> Any:
    """``panet ARGS`` under CliRunner (stderr kept apart)."""
    from typer.testing import CliRunner

    from panet_cli.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def errors(result: Any) -> list[str]:
    """The ``error:`` lines of a result's stderr."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_clean(result: Any) -> None:
    """The command ended through its own exit (any code), not through an exception that escaped it."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def read_report(path: str | Path) -> list[dict[str, Any]]:
    """The JSON lines of a ``--report`` file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
