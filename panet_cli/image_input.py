"""Bounded reading of image files: how many bytes an image within the pixel limit can need, and reading
at most that many, so a link to ``/dev/zero`` or an endless pipe costs a bounded read; one-line reasons.

Used by :func:`panet_cli.images.read_image`; nothing here decodes pixels.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from panet_cli.errors import ImageReadError, one_line


# Bytes an input may have per pixel of the pixel limit (16-bit RGBA, uncompressed) plus room for
# metadata: anything longer (a link to /dev/zero, an endless pipe) is refused without reading it all.
_BYTES_PER_PIXEL = 8
_METADATA_BYTES = 16 * 2**20


def max_input_bytes(max_pixels: int | None = None) -> int | None:
    """The most bytes an image file within ``max_pixels`` (default: Pillow's limit) can need; None: no limit."""
    if max_pixels is None:
        from PIL import Image

        max_pixels = Image.MAX_IMAGE_PIXELS or 0
    return max_pixels * _BYTES_PER_PIXEL + _METADATA_BYTES if max_pixels else None


def _too_long(label: str, budget: int, limit: int) -> str:
    return (f"{label}: more than {budget / 2**20:.0f} MB, more than an image within the limit of {limit} pixels "
            "can need (decompression bomb protection)")


def _bomb(label: str, width: int, height: int, limit: int) -> str:
    return f"{label}: {width}x{height} pixels is more than the limit of {limit} (decompression bomb protection)"


def _read_bytes(path: Path, label: str, budget: int | None = None, limit: int = 0) -> bytes:
    """The file's bytes, at most ``budget`` + 1 of them (a longer input is refused by the caller)."""
    try:
        with path.open("rb") as f:
            info = os.fstat(f.fileno())
            if budget is not None and stat.S_ISREG(info.st_mode) and info.st_size > budget:
                raise ImageReadError(_too_long(label, budget, limit))
            return f.read(budget + 1) if budget is not None else f.read()
    except FileNotFoundError:
        raise ImageReadError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{label}: is a folder, not an image") from None
    except PermissionError:
        raise ImageReadError(f"{label}: permission denied") from None
    except MemoryError:
        raise ImageReadError(f"{label}: too large to read into memory") from None
    except OSError as e:
        raise ImageReadError(f"{label}: cannot read ({one_line(e)})") from None


