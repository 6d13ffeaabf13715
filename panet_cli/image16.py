"""16-bit samples where Pillow falls short: it keeps only the high byte of 16-bit colour PNGs (the low
bytes come from a second decode with the byte order swapped) and cannot write them (a small encoder
here), and some 16-bit TIFF layouts it cannot open or write go through ``tifffile``.

Used by :mod:`panet_cli.images`; arrays here are uint16 samples, (H, W) or (H, W, C).
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from collections.abc import Callable
from typing import BinaryIO

import numpy as np

from panet_cli.errors import ImageReadError, ImageWriteError
from panet_cli.image_input import _bomb


def _file_bits(im) -> int:
    """16 when the file stores 16-bit samples (by its header, not its pixel values), else 8."""
    if im.mode.startswith("I;16") or (im.mode == "I" and im.format == "PNG"):
        return 16
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return 16 if bits and bits[0] == 16 and im.mode != "I" else 8
    if im.format == "PNG" and im.tile and ";16" in _rawmode(im.tile[0]):
        return 16
    return 8


def _read_16bit(im, data: bytes, label: str) -> np.ndarray:
    """uint16 samples of a 16-bit PNG or TIFF: (H, W) or (H, W, C)."""
    if im.mode.startswith("I"):
        return np.asarray(im).astype(np.uint16)
    from PIL import Image

    def decode(rawmode_of: Callable[[str], str]) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as again:
            again.tile = [_with_rawmode(t, rawmode_of) for t in again.tile]
            return np.asarray(again, dtype=np.uint16)

    if im.format == "PNG" and im.mode == "RGBA" and _rawmode(im.tile[0]) == "LA;16B":
        # Grey+alpha (opened as RGBA): 4 bytes per pixel, read raw as "RGBA" = Lhi, Llo, Ahi, Alo.
        raw = decode(lambda _: "RGBA")
        return raw[:, :, 0::2] * 256 + raw[:, :, 1::2]
    # Pillow keeps only the high bytes of 16-bit colour. Decoding again with the byte order
    # swapped yields the low bytes (same filters and pixel size, so the same decoder path).
    return np.asarray(im, dtype=np.uint16) * 256 + decode(_swap_byte_order)


def _rawmode(tile) -> str:
    return tile.args if isinstance(tile.args, str) else tile.args[0]


def _with_rawmode(tile, rawmode_of: Callable[[str], str]):
    if isinstance(tile.args, str):
        return tile._replace(args=rawmode_of(tile.args))
    return tile._replace(args=(rawmode_of(tile.args[0]), *tile.args[1:]))


def _swap_byte_order(rawmode: str) -> str:
    """'RGB;16B' <-> 'RGB;16L'; native ('16N') becomes the opposite of this machine's order."""
    if rawmode.endswith("16N"):
        return rawmode[:-1] + ("L" if sys.byteorder == "big" else "B")
    if rawmode.endswith("16B"):
        return rawmode[:-1] + "L"
    if rawmode.endswith("16L"):
        return rawmode[:-1] + "B"
    raise ValueError(f"unexpected 16-bit layout {rawmode}")


def _read_tiff16(data: bytes, label: str, max_pixels: int = 0) -> np.ndarray:
    """uint16 samples of the first page, refused before decoding when its tags declare too many pixels."""
    try:
        import tifffile
    except ImportError:
        raise ImageReadError(f"{label}: this TIFF layout needs the tifffile package") from None
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        width, height = int(page.imagewidth), int(page.imagelength)
        if max_pixels and width * height * max(1, int(page.imagedepth)) > max_pixels:
            raise ImageReadError(_bomb(label, width, height, max_pixels))
        array = page.asarray()
        if page.planarconfig == 2 and array.ndim == 3:  # separate planes: (C, H, W)
            array = np.moveaxis(array, 0, -1)
    if array.dtype != np.uint16:
        raise ImageReadError(f"{label}: unsupported TIFF sample type {array.dtype}")
    return array


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _write_png16(out: BinaryIO, samples: np.ndarray, icc: bytes | None, exif: bytes | None) -> None:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA), which Pillow cannot write for colour."""
    h, w, c = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = samples.astype(">u2").reshape(h, w * c).view(np.uint8)
    # "Sub" filter (difference to the pixel on the left): compresses photos well, vectorises.
    step = 2 * c
    filtered = rows.copy()
    filtered[:, step:] -= rows[:, :-step]
    raw = np.concatenate([np.ones((h, 1), np.uint8), filtered], axis=1).tobytes()
    out.write(b"\x89PNG\r\n\x1a\n")
    out.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)))
    if icc:
        out.write(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if exif:
        out.write(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    out.write(_png_chunk(b"IDAT", zlib.compress(raw, 6)))
    out.write(_png_chunk(b"IEND", b""))


def _write_tiff16(out: BinaryIO, samples: np.ndarray, icc: bytes | None) -> None:
    """A 16-bit TIFF through tifffile (EXIF is not carried into 16-bit TIFFs)."""
    try:
        import tifffile
    except ImportError:
        raise ImageWriteError("writing 16-bit TIFF needs the tifffile package; write PNG instead") from None
    c = samples.shape[2]
    photometric = "minisblack" if c <= 2 else "rgb"
    extras = {"extrasamples": [2]} if c in (2, 4) else {}  # 2 = unassociated alpha
    data = samples[:, :, 0] if c == 1 else samples
    tifffile.imwrite(out, data, photometric=photometric, compression="zlib", iccprofile=icc, **extras)
