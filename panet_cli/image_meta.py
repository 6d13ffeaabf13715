"""What a photo carries besides its samples, on reading: EXIF orientation (applied, then reset to 1),
CMYK to sRGB, PNG colour keys as alpha, animation frames and decoders' warnings as notes.

Used by :func:`panet_cli.images.read_image`.
"""

from __future__ import annotations

import io
import os
import struct
import warnings

import numpy as np


_ORIENTATION = 0x0112


def _warning_notes(caught: list[warnings.WarningMessage], label: str) -> tuple[str, ...]:
    """Pillow's warnings about the file (corrupt EXIF, skipped tags) as notes; everything else is dropped."""
    from PIL import Image

    notes = []
    for warning in caught:
        if issubclass(warning.category, Image.DecompressionBombWarning):
            continue  # our own limit decided already
        if f"{os.sep}PIL{os.sep}" in str(warning.filename):
            notes.append(f"{label}: {' '.join(str(warning.message).split())} (ignored)")
    return tuple(notes)


def _frame_notes(im, label: str) -> tuple[str, ...]:
    """Animated GIF/WebP/PNG (and multi-page TIFF): only the first frame is restored, and we say so.

    MPO (a camera JPEG with a preview or depth picture after the photo) is a photo, not an animation.
    """
    if im.format == "MPO" or not getattr(im, "is_animated", False):
        return ()
    return (f"{label}: {im.n_frames} frames; only the first is restored (panet restores still images)",)


def _colour_key(im) -> int | tuple[int, ...] | None:
    """A PNG's ``tRNS`` colour key (grey level or RGB, in the file's sample units), if it has one."""
    key = im.info.get("transparency") if im.format == "PNG" and im.mode != "P" else None
    return key if isinstance(key, (int, tuple)) else None


def _with_colour_key(im, samples: np.ndarray) -> np.ndarray:
    """16-bit grey or RGB samples with the colour key turned into an alpha channel (0 where it matches)."""
    key = _colour_key(im)
    grey = samples.ndim == 2
    if key is None or (grey and not isinstance(key, int)) or (not grey and (not isinstance(key, tuple)
                                                                             or samples.shape[2] != len(key))):
        return samples
    opaque = samples != key if grey else np.any(samples != np.asarray(key, np.uint16), axis=2)
    alpha = np.where(opaque, np.uint16(65535), np.uint16(0))
    return np.concatenate([samples.reshape(*samples.shape[:2], -1), alpha[:, :, None]], axis=2)


def _cmyk_to_rgb(im, icc: bytes | None):
    """CMYK (print JPEGs) to RGB, colour-managed to sRGB when the file has a CMYK profile."""
    if icc:
        from PIL import ImageCms

        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (OSError, ImageCms.PyCMSError):
            pass  # a broken profile: the plain conversion is still a usable picture
    return im.convert("RGB")


def _orientation(im) -> int:
    try:
        value = int(im.getexif().get(_ORIENTATION, 1))
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1
    return value if 1 <= value <= 8 else 1


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1-8 to an (H, W, ...) array (as Pillow's exif_transpose)."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, -1)
    if orientation == 7:
        return array[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, 1)
    return array


def _reset_orientation(exif: bytes | None) -> bytes | None:
    """EXIF bytes with the orientation tag set to 1, since the pixels are now upright."""
    if not exif:
        return None
    from PIL import Image

    parsed = Image.Exif()
    try:
        parsed.load(exif)
    except (ValueError, TypeError, OSError, SyntaxError, struct.error):
        return None  # unparseable EXIF: dropping it beats writing a wrong orientation
    if _ORIENTATION in parsed:
        parsed[_ORIENTATION] = 1
    return parsed.tobytes()
