"""Reading and writing real-world files: bit depths, modes, alpha, EXIF/ICC, errors, atomic writes."""

from __future__ import annotations

import io
import os
import struct
import zlib
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from panet_cli.errors import ImageReadError, ImageWriteError
from panet_cli.images import LoadedImage, encode_image, read_image, resize_alpha, write_image

RNG = np.random.default_rng(0)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _u8(h: int = 12, w: int = 17, c: int = 3) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, c), dtype=np.uint8)


def _u16(h: int = 12, w: int = 17, c: int = 3, top: int = 65535) -> np.ndarray:
    return RNG.integers(0, top + 1, (h, w, c), dtype=np.uint16)


def _samples(image: LoadedImage, top: int) -> np.ndarray:
    array = image.pixels if image.alpha is None else np.concatenate([image.pixels, image.alpha[:, :, None]], 2)
    return np.rint(array * top).astype(np.int64)


def _png_bit_depth(data: bytes) -> int:
    assert data[12:16] == b"IHDR"
    return data[24]


def _png16(samples: np.ndarray) -> bytes:
    """An independent 16-bit PNG writer (filter 0), so reading is not tested against our own encoder."""
    h, w, c = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------- 8-bit


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_8bit_lossless_round_trip(fmt):
    samples = _u8()
    buf = io.BytesIO()
    Image.fromarray(samples).save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    image = read_image(buf.getvalue())
    assert image.bit_depth == 8 and image.pixels.dtype == np.float32 and image.pixels.shape == (12, 17, 3)
    assert np.array_equal(_samples(image, 255), samples)
    again = read_image(encode_image(image, fmt))
    assert np.array_equal(_samples(again, 255), samples)


def test_8bit_output_is_rounded_not_truncated():
    pixels = np.full((2, 2, 1), 100.6 / 255, np.float32)
    out = np.asarray(Image.open(io.BytesIO(encode_image(LoadedImage(pixels), "png"))))
    assert out.dtype == np.uint8 and (out == 101).all()


def test_grayscale_stays_grayscale():
    buf = io.BytesIO()
    Image.fromarray(_u8(c=1)[:, :, 0], "L").save(buf, "PNG")
    image = read_image(buf.getvalue())
    assert image.channels == 1
    assert Image.open(io.BytesIO(encode_image(image, "png"))).mode == "L"
    assert Image.open(io.BytesIO(encode_image(image, "jpg"))).mode == "L"


def test_rgba_alpha_is_carried_and_resized():
    samples = _u8(c=4)
    buf = io.BytesIO()
    Image.fromarray(samples, "RGBA").save(buf, "PNG")
    image = read_image(buf.getvalue())
    assert image.channels == 3 and image.alpha is not None
    assert np.array_equal(_samples(image, 255), samples)
    assert Image.open(io.BytesIO(encode_image(image, "png"))).mode == "RGBA"
    assert Image.open(io.BytesIO(encode_image(image, "jpg"))).mode == "RGB"  # JPEG has no alpha
    big = resize_alpha(image.alpha, 36, 51)
    assert big.shape == (36, 51) and 0 <= big.min() and big.max() <= 1


def test_palette_with_transparency_becomes_rgba():
    im = Image.fromarray(_u8()).convert("P")
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=0)
    image = read_image(buf.getvalue())
    assert image.channels == 3 and image.alpha is not None


def test_cmyk_jpeg_becomes_rgb():
    buf = io.BytesIO()
    Image.fromarray(_u8(16, 16)).convert("CMYK").save(buf, "JPEG", quality=95)
    image = read_image(buf.getvalue())
    assert image.channels == 3 and image.format == "JPEG" and image.icc_profile is None
    assert Image.open(io.BytesIO(encode_image(image, "jpg"))).mode == "RGB"


def test_jpeg_output_quality_95_without_chroma_subsampling():
    from PIL import JpegImagePlugin

    smooth = np.linspace(0, 1, 64 * 64 * 3, dtype=np.float32).reshape(64, 64, 3)
    out = Image.open(io.BytesIO(encode_image(LoadedImage(smooth), "jpeg")))
    assert JpegImagePlugin.get_sampling(out) == 0
    # quality 95: the luminance table's DC step is 2 (libjpeg scaling of 16 by 10%)
    assert out.quantization[0][0] == 2


# ------------------------------------------------------------------------------------------ 16-bit


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_keeps_every_bit(channels):
    samples = _u16(c=channels)
    image = read_image(_png16(samples))
    assert image.bit_depth == 16
    assert image.channels == (1 if channels <= 2 else 3) and (image.alpha is not None) == (channels in (2, 4))
    assert np.array_equal(_samples(image, 65535), samples)
    data = encode_image(image, "png")
    assert _png_bit_depth(data) == 16
    assert np.array_equal(_samples(read_image(data), 65535), samples)


def test_dark_16bit_image_stays_16bit():
    """Decided by the file's sample type, never by pixel values (all of these are below 256)."""
    samples = _u16(c=3, top=200)
    image = read_image(_png16(samples))
    assert image.bit_depth == 16 and image.pixels.max() < 256 / 65535
    data = encode_image(image, "png")
    assert _png_bit_depth(data) == 16
    assert np.array_equal(_samples(read_image(data), 65535), samples)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_tiff_round_trip(channels):
    tifffile = pytest.importorskip("tifffile")
    samples = _u16(c=channels)
    buf = io.BytesIO()
    extra = {"extrasamples": [2]} if channels == 4 else {}
    tifffile.imwrite(buf, samples[:, :, 0] if channels == 1 else samples,
                     photometric="minisblack" if channels == 1 else "rgb", **extra)
    image = read_image(buf.getvalue())
    assert image.bit_depth == 16 and np.array_equal(_samples(image, 65535), samples)
    again = read_image(encode_image(image, "tiff", bit_depth=None))
    assert again.bit_depth == 16 and np.array_equal(_samples(again, 65535), samples)


def test_16bit_into_an_8bit_format_is_rounded_to_8_bits():
    samples = _u16(c=3)
    out = read_image(encode_image(read_image(_png16(samples)), "bmp"))
    assert out.bit_depth == 8
    assert np.abs(_samples(out, 255) - np.rint(samples / 257)).max() == 0


# ----------------------------------------------------------------------------------- EXIF and ICC


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_and_reset_metadata_kept(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"
    buf = io.BytesIO()
    Image.fromarray(_u8(6, 9)).save(buf, "PNG", exif=exif, icc_profile=SRGB)
    data = buf.getvalue()
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    image = read_image(data)
    assert np.array_equal(_samples(image, 255), expected)
    for fmt in ("png", "jpg", "webp"):
        out = Image.open(io.BytesIO(encode_image(image, fmt)))
        assert out.size == (expected.shape[1], expected.shape[0])
        assert out.getexif().get(0x0112) == 1 and out.getexif().get(0x010F) == "TestCam"
        assert out.info.get("icc_profile") == SRGB


def test_16bit_png_keeps_icc_and_exif():
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    image = LoadedImage(np.zeros((4, 5, 3), np.float32), bit_depth=16, icc_profile=SRGB, exif=exif.tobytes())
    out = Image.open(io.BytesIO(encode_image(image, "png")))
    assert out.info.get("icc_profile") == SRGB and out.getexif().get(0x010F) == "TestCam"


# ------------------------------------------------------------------------------------------ errors


def _one_line(error: pytest.ExceptionInfo, name: str) -> None:
    text = str(error.value)
    assert "\n" not in text and name in text


def test_missing_empty_folder_and_non_image(tmp_path):
    with pytest.raises(ImageReadError, match="no such file") as e:
        read_image(tmp_path / "missing.png")
    _one_line(e, "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty") as e:
        read_image(tmp_path / "empty.png")
    _one_line(e, "empty.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)
    (tmp_path / "notes.png").write_text("hello, not an image")
    with pytest.raises(ImageReadError, match="not an image") as e:
        read_image(tmp_path / "notes.png")
    _one_line(e, "notes.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(_u8(64, 64)).save(buf, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageReadError, match="truncated") as e:
        read_image(path)
    _one_line(e, "cut.")


def test_unsupported_mode(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(RNG.random((8, 8)).astype(np.float32), "F").save(path)
    with pytest.raises(ImageReadError, match="unsupported image mode F") as e:
        read_image(path)
    _one_line(e, "float.tif")


def test_decompression_bomb(tmp_path):
    """A tiny file declaring 100000 x 100000 pixels is refused before anything is decoded."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path = tmp_path / "bomb.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="decompression bomb") as e:
        read_image(path)
    _one_line(e, "bomb.png")
    with pytest.raises(ImageReadError, match="limit of 32"):
        read_image(_png16(_u16(8, 8, 1)), max_pixels=32)


# ------------------------------------------------------------------------------------------ writing


def test_write_is_atomic_and_refuses_to_overwrite(tmp_path, monkeypatch):
    target = tmp_path / "out dir" / "result.png"
    image = LoadedImage(RNG.random((5, 6, 3)).astype(np.float32))
    write_image(target, image)
    before = target.read_bytes()
    with pytest.raises(ImageWriteError, match="already exists"):
        write_image(target, LoadedImage(np.zeros((5, 6, 3), np.float32)))
    assert target.read_bytes() == before

    import panet_cli.images as images

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(images, "encode_image", broken)
    with pytest.raises(ImageWriteError, match="disk full"):
        write_image(target, image, overwrite=True)
    assert target.read_bytes() == before  # the old file is intact ...
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.png"]  # ... and no temp file is left


def test_unknown_output_format(tmp_path):
    with pytest.raises(ImageWriteError, match="unknown image format"):
        write_image(tmp_path / "x.gif", LoadedImage(np.zeros((2, 2, 3), np.float32)))
    assert not (tmp_path / "x.gif").exists()


def test_non_ascii_paths(tmp_path):
    path = tmp_path / "фото ü 写真.png"
    image = LoadedImage(RNG.random((5, 6, 3)).astype(np.float32))
    write_image(path, image)
    back = read_image(path)
    assert back.name == str(path) and back.pixels.shape == (5, 6, 3)
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not the temp file's private 0600
