"""Errors a user can cause. The CLI prints ``str(error)`` as one line and exits non-zero.

Library code raises these (never prints or exits); anything else is a bug and may show a traceback.
"""

from __future__ import annotations


class PanetError(Exception):
    """Base class: the message is complete, user-facing and names the file or model concerned."""


class ImageReadError(PanetError):
    """An input that is missing, empty, truncated, not an image, too large, or of an unsupported mode."""


class ImageWriteError(PanetError):
    """An output that cannot be written (existing file without --overwrite, unknown format, ...)."""


class CheckpointError(PanetError):
    """A weights file that is unsafe, unreadable, or fits no known architecture."""


class ModelUnavailable(PanetError):
    """A model that is unknown, not installed and not downloadable now; the message says what to do."""


class IncompatibleModel(PanetError):
    """Weights for another task, scale or number of colours than the command asked for."""


def one_line(error: BaseException, *, last: bool = False, limit: int = 200) -> str:
    """What an exception says, fit for the middle of a one-line message.

    Its first non-empty line (``last``: its last one, where Ray puts the cause after a traceback), white
    space folded, cut to ``limit`` characters; the exception's type name when it says nothing.
    """
    lines = [" ".join(line.split()) for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[-1] if last else lines[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
