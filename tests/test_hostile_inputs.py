"""Hostile or unusual image files (issue 16): each is one line naming the file, or handled, never a traceback.

Items 2, 6, 10, 11, 12, 13 and 14 of the hardening issue: a bomb behind the tifffile path, broken TIFFs,
a downscale factor larger than the image, library warnings, unbounded inputs (/dev/zero, FIFOs, stdin),
PNG colour-key transparency and animated files.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cli_results import assert_clean, errors, invoke
from panet_cli.errors import ImageReadError
from panet_cli.images import LoadedImage, encode_image, read_image


pytestmark = pytest.mark.usefixtures("isolated_registry")  # no shipped or user models, one thread


def png(path: Path, h: int = 24, w: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def tiff_grey_alpha(width: int, height: int) -> bytes:
    """A zlib 16-bit grey + alpha TIFF (a layout only tifffile reads): tiny on disk whatever its size."""
    out = io.BytesIO()
    tifffile.imwrite(out, np.zeros((height, width, 2), np.uint16), photometric="minisblack", extrasamples=[2],
                     compression="zlib")
    return out.getvalue()


# ----------------------------------------------------------------------- 2: bombs on the tifffile path


def test_tifffile_path_checks_the_pixel_limit_before_decoding(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.tif"
    bomb.write_bytes(tiff_grey_alpha(400, 300))
    decoded = []
    original = tifffile.TiffPage.asarray
    monkeypatch.setattr(tifffile.TiffPage, "asarray", lambda self, *a, **k: decoded.append(1) or original(self, *a, **k))
    with pytest.raises(ImageReadError, match=r"bomb\.tif: 400x300 pixels is more than the limit of 100000"):
        read_image(bomb, max_pixels=100_000)
    assert not decoded
    assert read_image(bomb, max_pixels=120_000).pixels.shape == (300, 400, 1)  # within the limit it reads


def test_tifffile_bomb_through_the_cli_uses_pillows_limit(tmp_path, tiny_denoiser, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    bomb = tmp_path / "bomb.tif"
    bomb.write_bytes(tiff_grey_alpha(200, 100))
    result = invoke("denoise", bomb, "-w", tiny_denoiser)
    assert result.exit_code == 1
    assert_clean(result)
    assert len(errors(result)) == 1 and "bomb.tif" in errors(result)[0] and "decompression bomb" in errors(result)[0]


# ---------------------------------------------------------------------- 6: broken TIFFs, one line each


def broken_tiffs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    data = io.BytesIO()
    tifffile.imwrite(data, rng.integers(0, 65535, (64, 64, 2)).astype(np.uint16), photometric="minisblack",
                     extrasamples=[2], compression="zlib")
    cut = folder / "cut.tif"
    cut.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    garbage = folder / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    return [cut, garbage]


def test_broken_tiffs_are_one_line_each_and_the_folder_goes_on(tmp_path, tiny_denoiser):
    bad = broken_tiffs(tmp_path / "in")
    png(tmp_path / "in" / "good.png")
    result = invoke("denoise", tmp_path / "in", "-o", tmp_path / "out", "-w", tiny_denoiser)
    assert result.exit_code == 1
    assert_clean(result)
    lines = errors(result)
    assert len(lines) == 2 and all(any(p.name in line for line in lines) for p in bad), result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]


def test_degrade_reports_broken_tiffs_one_line_each(tmp_path):
    bad = broken_tiffs(tmp_path / "in")
    png(tmp_path / "in" / "good.png")
    result = invoke("degrade", tmp_path / "in", "-o", tmp_path / "out", "--noise", "10")
    assert result.exit_code == 1
    assert_clean(result)
    lines = errors(result)
    assert len(lines) == 2 and all(any(p.name in line for line in lines) for p in bad), result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]


# ------------------------------------------------------------------- 10: downscale beyond the image


def test_degrade_downscale_larger_than_the_image_fails_that_image_only(tmp_path):
    (tmp_path / "in").mkdir()
    png(tmp_path / "in" / "a_tiny.png", 5, 6)
    png(tmp_path / "in" / "b_big.png", 32, 32)
    result = invoke("degrade", tmp_path / "in", "-o", tmp_path / "out", "--downscale", "8")
    assert result.exit_code == 1
    assert_clean(result)
    lines = errors(result)
    assert len(lines) == 1 and "a_tiny.png" in lines[0] and "8" in lines[0], result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b_big.png"]
    assert Image.open(tmp_path / "out" / "b_big.png").size == (4, 4)


# ------------------------------------------------------------------------------- 11: library warnings


def corrupt_exif_jpeg(path: Path) -> Path:
    """A JPEG whose EXIF promises three entries and holds none: Pillow warns "Corrupt EXIF data"."""
    ifd = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 3)
    Image.fromarray(np.full((24, 32, 3), 120, np.uint8)).save(path, "JPEG", exif=b"Exif\x00\x00" + ifd)
    return path


def test_corrupt_exif_is_a_note_and_nothing_leaks_with_quiet(tmp_path, tiny_denoiser):
    source = corrupt_exif_jpeg(tmp_path / "exif.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping read_image would fail here
        image = read_image(source)
    assert any("exif.jpg" in note and "EXIF" in note for note in image.notes), image.notes

    loud = invoke("denoise", source, "-o", tmp_path / "a.png", "-w", tiny_denoiser)
    assert loud.exit_code == 0, loud.output
    assert_clean(loud)
    notes = [line for line in loud.stderr.splitlines() if "EXIF" in line]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "exif.jpg" in notes[0], loud.stderr
    assert "Warning" not in loud.stderr and "warn" not in loud.stderr

    quiet = invoke("denoise", source, "-o", tmp_path / "b.png", "-w", tiny_denoiser, "-q")
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr


def test_tifffile_log_lines_and_numpy_warnings_do_not_reach_stderr(tmp_path, tiny_denoiser, monkeypatch):
    import panet_cli.images as images

    source = tmp_path / "grey_alpha.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(source, rng.integers(0, 65535, (24, 32, 2)).astype(np.uint16), photometric="minisblack",
                     extrasamples=[2])
    original = images._read_tiff16

    def chatty(data, label, max_pixels):
        logging.getLogger("tifffile").warning("TiffPage 0: some complaint from tifffile")
        np.array([np.nan]).astype(np.uint8)  # numpy's "invalid value encountered in cast"
        return original(data, label, max_pixels)

    monkeypatch.setattr(images, "_read_tiff16", chatty)
    result = invoke("denoise", source, "-o", tmp_path / "out.tif", "-w", tiny_denoiser, "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == "", result.stderr


def test_non_finite_pixels_are_refused_on_writing_without_a_warning():
    image = LoadedImage(pixels=np.full((4, 4, 3), np.nan, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(Exception, match="NaN or infinite"):
            encode_image(image, "PNG")


# --------------------------------------------------------------------------- 12: bounded input reads


def test_a_link_to_dev_zero_is_refused_after_a_bounded_read(tmp_path, tiny_denoiser, monkeypatch):
    link = tmp_path / "z.png"
    link.symlink_to("/dev/zero")
    with pytest.raises(ImageReadError, match=r"z\.png: .*more than"):
        read_image(link, max_pixels=1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    result = invoke("denoise", link, "-o", tmp_path / "out.png", "-w", tiny_denoiser)
    assert result.exit_code == 1
    assert_clean(result)
    assert len(errors(result)) == 1 and "z.png" in errors(result)[0] and "more than" in errors(result)[0]


def test_a_fifo_is_read_only_as_far_as_the_limit(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    sent = []

    def feed() -> None:
        try:
            with open(fifo, "wb") as f:
                for _ in range(64):
                    f.write(b"\x00" * 2**20)
                    sent.append(1)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    with pytest.raises(ImageReadError, match=r"pipe\.png: .*more than"):
        read_image(fifo, max_pixels=1000)
    writer.join(timeout=30)
    assert len(sent) < 64  # the reader stopped early: the writer's pipe broke


def test_stdin_is_read_only_as_far_as_the_limit(tmp_path, tiny_denoiser, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    result = invoke("denoise", "-", "-o", tmp_path / "out.png", "-w", tiny_denoiser, input=b"\x00" * (40 * 2**20))
    assert result.exit_code == 1
    assert_clean(result)
    assert len(errors(result)) == 1 and "<stdin>" in errors(result)[0] and "more than" in errors(result)[0]


# ------------------------------------------------------------------------ 13: PNG colour-key alpha


@pytest.mark.parametrize("mode,key,other", [("RGB", (10, 20, 30), (200, 100, 50)), ("L", 7, 90)])
def test_png_colour_key_transparency_becomes_alpha(tmp_path, mode, key, other):
    im = Image.new(mode, (6, 4), key)
    im.putpixel((0, 0), other)
    im.save(tmp_path / "key.png", transparency=key)
    image = read_image(tmp_path / "key.png")
    assert image.alpha is not None
    assert image.alpha[0, 0] == 1.0 and np.all(image.alpha.ravel()[1:] == 0.0)
    assert image.channels == (3 if mode == "RGB" else 1)


def test_16bit_png_colour_key_becomes_alpha(tmp_path):
    from panet_cli.images import _png_chunk

    samples = np.full((3, 4, 3), 1000, np.uint16)
    samples[1, 2] = (1000, 1000, 1001)  # one sample off the key: opaque
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in samples)
    import zlib

    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 3, 16, 2, 0, 0, 0))
            + _png_chunk(b"tRNS", struct.pack(">HHH", 1000, 1000, 1000))
            + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))
    image = read_image(data)
    assert image.bit_depth == 16 and image.alpha is not None
    expected = np.zeros((3, 4), np.float32)
    expected[1, 2] = 1.0
    assert np.array_equal(image.alpha, expected)


def test_colour_key_png_keeps_its_transparency_through_the_cli(tmp_path, tiny_denoiser):
    im = Image.new("RGB", (24, 20), (10, 20, 30))
    im.paste((200, 100, 50), (0, 0, 12, 20))
    im.save(tmp_path / "key.png", transparency=(10, 20, 30))
    result = invoke("denoise", tmp_path / "key.png", "-w", tiny_denoiser)
    assert result.exit_code == 0, result.output
    out = Image.open(tmp_path / "key_denoised.png")
    assert out.mode == "RGBA"
    alpha = np.asarray(out)[:, :, 3]
    assert np.all(alpha[:, :12] == 255) and np.all(alpha[:, 12:] == 0)


# ---------------------------------------------------------------------------------- 14: animations


@pytest.mark.parametrize("fmt,suffix", [("GIF", ".gif"), ("WEBP", ".webp")])
def test_animated_input_says_only_the_first_frame_is_restored(tmp_path, tiny_denoiser, fmt, suffix):
    frames = [Image.fromarray(np.full((20, 24, 3), 40 * k, np.uint8)) for k in range(3)]
    source = tmp_path / f"anim{suffix}"
    frames[0].save(source, fmt, save_all=True, append_images=frames[1:])
    assert any("3 frames" in note for note in read_image(source).notes)
    result = invoke("denoise", source, "-o", tmp_path / "out.png", "-w", tiny_denoiser)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:") and "frames" in line]
    assert len(notes) == 1 and source.name in notes[0] and "first" in notes[0], result.stderr
