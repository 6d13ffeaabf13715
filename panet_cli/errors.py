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
