"""Reading and writing users' image files as float arrays, keeping what a photo carries.

Pixels are float32 ``(H, W, C)`` in [0, 1] with C = 1 (grey) or 3 (colour); alpha travels
separately so models only ever see colour. The file's sample type decides the bit depth
(8 or 16) that is written back, never the pixel values: a dark 16-bit photo stays 16-bit.
EXIF orientation is applied on reading (and the tag reset to 1 so viewers don't rotate twice);
EXIF and the ICC profile are written back unchanged otherwise.

Pillow does the work. Its 16-bit gaps (colour PNGs, some TIFF layouts) are filled by
:mod:`panet_cli.image16`; bounded reading is :mod:`panet_cli.image_input`, and orientation, colour keys,
CMYK and notes :mod:`panet_cli.image_meta`. This module joins them and keeps every public name.
"""

from __future__ import annotations

import dataclasses
import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from panet_cli.errors import ImageReadError, ImageWriteError, one_line
from panet_cli.files import atomic_open
from panet_cli.image16 import (  # noqa: F401 - _png_chunk: tests build PNGs with it
    _file_bits,
    _png_chunk,
    _read_16bit,
    _read_tiff16,
    _write_png16,
    _write_tiff16,
)
from panet_cli.image_input import _bomb, _read_bytes, _too_long, max_input_bytes
from panet_cli.image_meta import (
    _cmyk_to_rgb,
    _colour_key,
    _frame_notes,
    _orient,
    _orientation,
    _reset_orientation,
    _warning_notes,
    _with_colour_key,
)

# File suffix -> Pillow format name, for the formats we read and write.
FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
# Format name -> the suffix used for new files.
SUFFIXES: dict[str, str] = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp"}
SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}
ALPHA_FORMATS = {"PNG", "TIFF", "WEBP"}
# JPEG outputs: high quality and no chroma subsampling, so restoring doesn't add new artifacts
# (WebP is written lossless: its lossy mode always subsamples chroma).
JPEG_QUALITY = 95


@dataclass
class LoadedImage:
    """An image as restoration sees it, plus everything needed to write it back faithfully."""

    pixels: np.ndarray  # float32 (H, W, C), C = 1 or 3, in [0, 1]
    bit_depth: int = 8  # sample type of the file: 8 or 16
    alpha: np.ndarray | None = None  # float32 (H, W) in [0, 1]
    format: str | None = None  # Pillow format name of the source ("PNG", "JPEG", ...)
    exif: bytes | None = None  # raw EXIF with the orientation already reset to 1
    icc_profile: bytes | None = None
    name: str = "<image>"  # for messages: the path, or "<stdin>"
    notes: tuple[str, ...] = ()  # one-line remarks worth showing (animated file, corrupt EXIF ignored ...)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def megapixels(self) -> float:
        return self.height * self.width / 1e6

    def replace(self, **changes: object) -> LoadedImage:
        """A copy with some fields changed (e.g. restored pixels and a resized alpha)."""
        return dataclasses.replace(self, **changes)


def format_for_path(path: str | Path) -> str | None:
    """The format a file name asks for, from its suffix (None when unknown)."""
    return FORMATS.get(Path(path).suffix.lower())


def normalize_format(name: str) -> str:
    """'jpg', '.JPEG', 'png' ... -> Pillow's format name; ImageWriteError for anything else."""
    key = "." + name.lower().lstrip(".")
    try:
        return FORMATS[key]
    except KeyError:
        known = ", ".join(sorted({s.lstrip(".") for s in FORMATS}))
        raise ImageWriteError(f"unknown image format {name!r} (known: {known})") from None


def is_image_file(path: Path) -> bool:
    """A file with one of the suffixes of :data:`FORMATS`."""
    return path.suffix.lower() in FORMATS and path.is_file()


def list_images(folder: str | Path, recursive: bool = False, *, key: Callable[[Path], Any] | None = None) -> list[Path]:
    """The image files (by suffix) of ``folder``, with ``recursive`` those of its sub-folders too, sorted
    (by ``key`` when given); hidden files and folders, our temporaries among them, are skipped.

    The one folder lister of the task commands, ``panet eval`` and ``panet degrade``.
    """
    folder = Path(folder)
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = (p for p in candidates
             if is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return sorted(found, key=key)


def natural_order(path: Path) -> list[Any]:
    """Sort key putting "2.png" before "10.png" (McMaster's names are numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


# --------------------------------------------------------------------------------------------- reading


def read_image(source: str | Path | bytes, *, name: str | None = None, max_pixels: int | None = None) -> LoadedImage:
    """Decode a file (or its bytes) into a :class:`LoadedImage`.

    ``max_pixels`` guards against decompression bombs (default: Pillow's ``MAX_IMAGE_PIXELS``); it also
    bounds how much of the input is read (:func:`max_input_bytes`), so a link to ``/dev/zero`` or an
    endless pipe costs a bounded read. Every failure (missing, empty, truncated, not an image,
    unsupported mode, too large) raises :class:`ImageReadError` with one line naming the file and the
    cause. Decoders' warnings (Pillow's corrupt EXIF ...) become the image's ``notes``, never stderr.
    """
    from PIL import Image

    label = name or ("<bytes>" if isinstance(source, bytes) else str(source))
    limit = max_pixels if max_pixels is not None else (Image.MAX_IMAGE_PIXELS or 0)
    budget = max_input_bytes(limit)
    data = source if isinstance(source, bytes) else _read_bytes(Path(source), label, budget, limit)
    if not data:
        raise ImageReadError(f"{label}: empty file")
    if budget is not None and len(data) > budget:
        raise ImageReadError(_too_long(label, budget, limit))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = _open_and_decode(data, label, limit)
    notes = tuple(dict.fromkeys(image.notes + _warning_notes(caught, label)))
    return image.replace(notes=notes) if notes != image.notes else image


def _open_and_decode(data: bytes, label: str, limit: int) -> LoadedImage:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if limit and im.width * im.height > limit:
                raise ImageReadError(_bomb(label, im.width, im.height, limit))
            return _decode(im, data, label)
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(f"{label}: too many pixels (decompression bomb protection)") from None
    except Image.UnidentifiedImageError:
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _decode_tiff_layout(data, label, limit)
        raise ImageReadError(f"{label}: not an image, or a format that cannot be read") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error, IndexError) as e:
        raise ImageReadError(f"{label}: truncated or corrupt image data ({one_line(e)})") from None


def _decode(im, data: bytes, label: str) -> LoadedImage:
    """Pixels first (reading metadata may decode a PNG and drop what the 16-bit path needs)."""
    icc = im.info.get("icc_profile") or None
    if im.mode == "CMYK":
        icc = None  # converted to RGB below: the CMYK profile no longer describes the pixels
    array, bits = _pixels(im, data, label)
    if array.ndim == 2:
        array = array[:, :, None]
    pixels, alpha = _split_alpha(array)
    orientation = _orientation(im)
    pixels, alpha = _orient(pixels, orientation), None if alpha is None else _orient(alpha, orientation)
    fmt = "JPEG" if im.format == "MPO" else im.format
    return LoadedImage(
        pixels=np.ascontiguousarray(pixels),
        bit_depth=bits,
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        format=fmt,
        # A TIFF's "EXIF" from Pillow is its own header (strip offsets ...): not worth carrying.
        exif=_reset_orientation(im.info.get("exif")) if fmt != "TIFF" else None,
        icc_profile=icc,
        name=label,
        notes=_frame_notes(im, label),
    )


def _pixels(im, data: bytes, label: str) -> tuple[np.ndarray, int]:
    """Float32 samples in [0, 1] (alpha last) and the file's bit depth, by Pillow mode."""
    bits = _file_bits(im)
    if bits == 16:
        return _with_colour_key(im, _read_16bit(im, data, label)).astype(np.float32) / 65535.0, 16
    mode = im.mode
    if mode == "CMYK":
        im = _cmyk_to_rgb(im, im.info.get("icc_profile"))
        mode = "RGB"
    if mode in _MODE_NAMES or mode.startswith("I;"):
        raise ImageReadError(f"{label}: unsupported image mode {mode} ({_MODE_NAMES.get(mode, 'not 8 or 16-bit')})")
    target = _EIGHT_BIT.get(mode) or _CONVERTED.get(mode)
    if mode == "P" and "transparency" in im.info:
        target = "RGBA"
    elif mode in ("L", "RGB") and _colour_key(im) is not None:
        target = "RGBA" if mode == "RGB" else "LA"  # the key colour becomes transparent
    if target is None:
        raise ImageReadError(f"{label}: unsupported image mode {mode}")
    return np.asarray(im.convert(target) if target != mode else im, dtype=np.float32) / 255.0, 8


# Pillow modes read as 8-bit and the mode we convert them to.
_EIGHT_BIT = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "RGB": "RGB", "RGBX": "RGB", "RGBA": "RGBA", "RGBa": "RGBA"}
# Modes converted on reading (palette, other colour spaces).
_CONVERTED = {"P": "RGB", "PA": "RGBA", "YCbCr": "RGB", "HSV": "RGB"}
_MODE_NAMES = {"I": "32-bit integer", "F": "32-bit float"}


def _decode_tiff_layout(data: bytes, label: str, max_pixels: int = 0) -> LoadedImage:
    """TIFF layouts Pillow does not open (e.g. 16-bit grey + alpha), read with tifffile.

    tifffile's own errors (a truncated file, garbage after the magic bytes) become one line like Pillow's.
    """
    try:
        samples = _read_tiff16(data, label, max_pixels)
        array = samples.astype(np.float32) / 65535.0
        array = array[:, :, None] if array.ndim == 2 else array
        if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
            raise ImageReadError(f"{label}: unsupported TIFF layout {samples.shape}")
        import tifffile

        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            icc = tif.pages[0].tags.get(34675)
            icc_bytes = bytes(icc.value) if icc is not None else None
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError(f"{label}: too large to decode in the memory available") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError, OSError, EOFError,
            zlib.error, struct.error) as e:  # tifffile.TiffFileError is a ValueError
        raise ImageReadError(f"{label}: truncated or corrupt TIFF data ({one_line(e)})") from None
    pixels, alpha = _split_alpha(array)
    return LoadedImage(pixels=np.ascontiguousarray(pixels), bit_depth=16, alpha=alpha, format="TIFF",
                       icc_profile=icc_bytes, name=label)


def _split_alpha(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if array.shape[2] in (2, 4):
        return array[:, :, :-1], array[:, :, -1]
    return array, None


# --------------------------------------------------------------------------------------------- writing


def write_image(
    path: str | Path,
    image: LoadedImage,
    *,
    format: str | None = None,
    bit_depth: int | None = None,
    overwrite: bool = False,
) -> None:
    """Encode ``image`` to ``path`` atomically (temporary file in the same folder, then rename).

    The format comes from ``format`` or the path's suffix; the bit depth from ``bit_depth`` or
    the image's own, capped at 8 for formats that have no 16-bit samples.
    """
    path = Path(path)
    fmt = normalize_format(format) if format else format_for_path(path)
    if fmt is None:
        raise ImageWriteError(f"{path}: unknown image format {path.suffix!r}; use one of {', '.join(SUFFIXES)}")
    exists = f"{path}: already exists (use --overwrite to replace it)"
    if path.exists() and not overwrite:
        raise ImageWriteError(exists)
    _check_finite(image, str(path))
    try:
        # Without overwrite, a file that appears meanwhile is kept: the temporary is published with link().
        with atomic_open(path, replace=overwrite) as f:
            encode_image(image, fmt, f, bit_depth=bit_depth)
    except FileExistsError:
        raise ImageWriteError(exists) from None
    except OSError as e:
        raise ImageWriteError(f"{path}: cannot write ({one_line(e)})") from None


def encode_image(image: LoadedImage, format: str, out: BinaryIO | None = None, *, bit_depth: int | None = None) -> bytes:
    """Encode to ``format`` into ``out`` (or return the bytes when ``out`` is None)."""
    fmt = normalize_format(format)
    _check_finite(image, image.name)
    target = out if out is not None else io.BytesIO()
    depth = bit_depth or image.bit_depth
    if fmt not in SIXTEEN_BIT_FORMATS:
        depth = 8
    alpha = image.alpha if fmt in ALPHA_FORMATS else None
    if depth == 16:
        samples = _samples(image.pixels, alpha, 65535, np.uint16)
        if fmt == "PNG":
            _write_png16(target, samples, image.icc_profile, image.exif)
        else:
            _write_tiff16(target, samples, image.icc_profile)
    else:
        _save_8bit(target, _samples(image.pixels, alpha, 255, np.uint8), fmt, image)
    return b"" if out is not None else target.getvalue()


def _check_finite(image: LoadedImage, label: str) -> None:
    """NaN or infinite samples have no integer value: refuse them rather than write zeros."""
    if not np.isfinite(image.pixels).all() or (image.alpha is not None and not np.isfinite(image.alpha).all()):
        raise ImageWriteError(f"{label}: the image has NaN or infinite values; nothing written")


def _samples(pixels: np.ndarray, alpha: np.ndarray | None, top: int, dtype) -> np.ndarray:
    """Rounded (not truncated) integer samples, alpha appended as the last channel."""
    array = pixels if alpha is None else np.concatenate([pixels, alpha[:, :, None]], axis=2)
    return np.rint(np.clip(array, 0.0, 1.0) * top).astype(dtype)


def _save_8bit(out: BinaryIO, samples: np.ndarray, fmt: str, image: LoadedImage) -> None:
    from PIL import Image

    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[samples.shape[2]]
    pil = Image.fromarray(samples[:, :, 0] if mode == "L" else samples, mode=mode)
    options: dict[str, object] = {}
    if image.icc_profile and fmt != "BMP":
        options["icc_profile"] = image.icc_profile
    if image.exif and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        options["exif"] = image.exif
    if fmt == "JPEG":
        options.update(quality=JPEG_QUALITY, subsampling=0)
    elif fmt == "WEBP":
        options.update(lossless=True, exact=True)
    elif fmt == "TIFF":
        options.update(compression="tiff_deflate")
    elif fmt == "BMP" and mode == "LA":
        pil = pil.convert("L")
    pil.save(out, format=fmt, **options)


def resize_alpha(alpha: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubically resize an alpha plane (for super-resolution outputs)."""
    from PIL import Image

    resized = Image.fromarray(alpha.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
