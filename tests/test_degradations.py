"""Degradations (noise, JPEG, MATLAB bicubic, Bayer) and the ``panet degrade`` command."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from panet_cli import degradations as d
from panet_cli.cli.app import app
from panet_cli.errors import PanetError
from panet_cli.metrics import psnr, y_channel_8bit
from cli_results import assert_clean_exit

SHARED = Path(__file__).resolve().parents[2] / "shared"
SET5 = SHARED / "data" / "bench" / "Set5"


def _texture(channels: int = 3, h: int = 64, w: int = 80, seed: int = 0) -> torch.Tensor:
    """A smooth image with edges and fine detail: JPEG and resizing behave as on photos."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = [0.5 + 0.3 * torch.sin(7 * xx + 5 * yy + k) + 0.15 * (xx > 0.5 + 0.1 * k) for k in range(channels)]
    img = torch.stack(base) + 0.05 * torch.rand(channels, h, w, generator=g)
    return d.quantize_8bit(img)


# --------------------------------------------------------------------------------------- noise


def test_noise_has_the_requested_std_and_is_seeded():
    clean = torch.full((3, 128, 128), 0.5)
    for sigma in (5.0, 25.0, 50.0):
        noisy = d.add_gaussian_noise(clean, sigma, torch.Generator().manual_seed(1), clip_round=False)
        assert ((noisy - clean) * 255).std().item() == pytest.approx(sigma, rel=0.03)
    a = d.add_gaussian_noise(clean, 25, torch.Generator().manual_seed(7))
    b = d.add_gaussian_noise(clean, 25, torch.Generator().manual_seed(7))
    c = d.add_gaussian_noise(clean, 25, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_noise_is_clipped_and_rounded_to_8_bit_levels_by_default():
    clean = torch.cat([torch.zeros(3, 16, 32), torch.ones(3, 16, 32)], dim=1)
    noisy = d.add_gaussian_noise(clean, 50, torch.Generator().manual_seed(0))
    assert noisy.min() >= 0 and noisy.max() <= 1
    levels = noisy * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert (noisy == 0).any() and (noisy == 1).any()  # clipping happened at both ends
    raw = d.add_gaussian_noise(clean, 50, torch.Generator().manual_seed(0), clip_round=False)
    assert raw.min() < 0 and raw.max() > 1


def test_per_item_sigmas_and_ranges():
    clean = torch.full((2, 3, 64, 64), 0.5)
    noisy = d.add_gaussian_noise(clean, torch.tensor([5.0, 40.0]), torch.Generator().manual_seed(0), clip_round=False)
    stds = ((noisy - clean) * 255).flatten(1).std(dim=1)
    assert stds[0].item() == pytest.approx(5, rel=0.05) and stds[1].item() == pytest.approx(40, rel=0.05)
    sigmas = d.sample_sigmas(1000, 10, 30, torch.Generator().manual_seed(0))
    assert sigmas.min() >= 10 and sigmas.max() <= 30 and sigmas.std() > 4
    qualities = d.sample_qualities(200, 10, 12, torch.Generator().manual_seed(0))
    assert set(qualities) == {10, 11, 12}
    with pytest.raises(PanetError):
        d.sample_sigmas(3, 30, 10)


def test_image_seed_depends_on_name_and_seed_only():
    assert d.image_seed("a.png", 0) == d.image_seed("a.png", 0)
    assert d.image_seed("a.png", 0) != d.image_seed("b.png", 0)
    assert d.image_seed("a.png", 0) != d.image_seed("a.png", 1)


# ---------------------------------------------------------------------------------------- JPEG


def test_jpeg_error_falls_as_quality_rises():
    clean = _texture()
    errors = [(d.jpeg_compress(clean, q) - clean).pow(2).mean().item() for q in (5, 10, 30, 60, 95)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] > 0


def test_jpeg_shapes_grey_colour_and_batches():
    grey, colour = _texture(1), _texture(3)
    out_grey = d.jpeg_compress(grey, 20)
    assert out_grey.shape == grey.shape and out_grey.dtype == grey.dtype
    assert torch.allclose(out_grey * 255, (out_grey * 255).round(), atol=1e-4)
    batch = torch.stack([colour, colour.flip(-1)])
    out = d.jpeg_compress(batch, 20)
    assert out.shape == batch.shape
    assert torch.equal(out[0], d.jpeg_compress(colour, 20))
    with pytest.raises(PanetError):
        d.jpeg_compress(torch.rand(2, 8, 8), 20)
    with pytest.raises(PanetError):
        d.jpeg_compress(colour, 0)


def test_colour_jpeg_uses_420_subsampling_and_grey_stays_grey():
    from PIL import JpegImagePlugin

    with Image.open(io.BytesIO(d.jpeg_bytes(d.to_uint8_hwc(_texture(3)), 30))) as im:
        assert im.mode == "RGB" and JpegImagePlugin.get_sampling(im) == 2  # 2 = 4:2:0
    with Image.open(io.BytesIO(d.jpeg_bytes(d.to_uint8_hwc(_texture(1)), 30))) as im:
        assert im.mode == "L"


# ------------------------------------------------------------------------------------- bicubic


def test_downscale_samples_block_centres_of_a_ramp():
    """Bicubic reproduces linear functions, so output j equals the ramp at its block centre j*s + (s-1)/2.

    This pins MATLAB's coordinate mapping (and the antialiased kernel summing to one) away from the borders.
    """
    for s in (2, 3, 4):
        ramp = torch.arange(96, dtype=torch.float64).expand(1, 12, 96)
        out = d.bicubic_downscale(ramp, s)
        assert out.shape == (1, 12 // s, 96 // s)
        j = torch.arange(out.shape[-1], dtype=torch.float64)
        interior = slice(3, -3)
        assert torch.allclose(out[0, 0, interior], (j * s + (s - 1) / 2)[interior], atol=1e-9)


def test_upscale_of_a_ramp_and_constants():
    s = 4
    ramp = torch.arange(20, dtype=torch.float64).expand(1, 5, 20)
    up = d.bicubic_upscale(ramp, s)
    assert up.shape == (1, 20, 80)
    x = torch.arange(80, dtype=torch.float64)
    interior = slice(8, -8)
    assert torch.allclose(up[0, 0, interior], ((x + 0.5) / s - 0.5)[interior], atol=1e-9)
    flat = torch.full((2, 3, 17, 23), 0.3)
    assert torch.allclose(d.bicubic_downscale(flat, 3), torch.full((2, 3, 6, 8), 0.3), atol=1e-6)


def test_bicubic_is_the_same_batched_or_not():
    img = _texture()
    batch = torch.stack([img, img.flip(-2)])
    assert torch.allclose(d.bicubic_downscale(batch, 4)[1], d.bicubic_downscale(img.flip(-2), 4), atol=1e-6)


@pytest.mark.skipif(not SET5.is_dir(), reason="needs ../shared/data/bench/Set5")
@pytest.mark.parametrize("scale, expected", [(4, 28.42), (2, 33.66)])
def test_set5_bicubic_matches_the_classic_numbers(scale, expected):
    values = []
    for path in sorted(SET5.glob("*.png")):
        with Image.open(path) as im:
            hr = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float() / 255
        hr = d.crop_to_multiple(hr, scale)
        lr = d.quantize_8bit(d.bicubic_downscale(hr, scale))
        sr = d.quantize_8bit(d.bicubic_upscale(lr, scale))
        values.append(psnr(y_channel_8bit(sr), y_channel_8bit(hr), shave=scale))
    assert np.mean(values) == pytest.approx(expected, abs=0.03)


# --------------------------------------------------------------------------------------- Bayer


@pytest.mark.parametrize("pattern", d.BAYER_PATTERNS)
def test_mosaic_keeps_exactly_the_sampled_colour(pattern):
    img = torch.rand(3, 6, 8) + 0.1  # no zeros, so a kept sample is never mistaken for a dropped one
    mosaic = d.bayer_mosaic(img, pattern)
    for y in range(6):
        for x in range(8):
            kept = "RGB".index(pattern[(y % 2) * 2 + x % 2])
            for c in range(3):
                assert mosaic[c, y, x] == (img[c, y, x] if c == kept else 0)
    counts = (mosaic > 0).sum(dim=(1, 2)).tolist()
    assert counts == [12, 24, 12]
    cfa = d.bayer_cfa(img, pattern)
    assert cfa.shape == (1, 6, 8)
    assert torch.equal(d.cfa_to_mosaic(cfa, pattern), mosaic)


def test_mosaic_batches_and_bad_patterns():
    img = torch.rand(2, 3, 4, 4)
    assert torch.equal(d.bayer_mosaic(img, "gbrg")[1], d.bayer_mosaic(img[1], "GBRG"))
    with pytest.raises(PanetError):
        d.bayer_mosaic(img, "RGBG")
    with pytest.raises(PanetError):
        d.bayer_mosaic(torch.rand(1, 4, 4))


# ------------------------------------------------------------------------------- panet degrade


@pytest.fixture()
def clean_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "clean"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(d.to_uint8_hwc(_texture(3, 36, 44, seed=i))).save(folder / f"im{i}.png")
    return folder


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_degrade_noise_writes_reproducible_8bit_pngs(clean_folder, tmp_path):
    runner = CliRunner()
    for out in ("a", "b"):
        result = runner.invoke(app, ["degrade", str(clean_folder), "--noise", "25", "-o", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
    first = _read(tmp_path / "a" / "im0.png")
    assert first.dtype == np.uint8 and first.shape == (36, 44, 3)
    assert np.array_equal(first, _read(tmp_path / "b" / "im0.png"))
    diff = first.astype(float) - _read(clean_folder / "im0.png")
    assert 20 < diff.std() < 30


def test_degrade_jpeg_writes_the_jpeg_itself(clean_folder, tmp_path):
    result = CliRunner().invoke(app, ["degrade", str(clean_folder / "im1.png"), "--jpeg", "10", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = (tmp_path / "im1.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == (44, 36)
    assert data == d.jpeg_bytes(_read(clean_folder / "im1.png"), 10)


def test_degrade_downscale_mosaic_and_grey(clean_folder, tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["degrade", str(clean_folder), "--downscale", "4", "-o", str(tmp_path / "lr")]).exit_code == 0
    assert _read(tmp_path / "lr" / "im0.png").shape == (9, 11, 3)
    assert runner.invoke(app, ["degrade", str(clean_folder), "--mosaic", "GRBG", "-o", str(tmp_path / "m")]).exit_code == 0
    cfa, clean = _read(tmp_path / "m" / "im0.png"), _read(clean_folder / "im0.png")
    assert cfa.shape == (36, 44)
    assert cfa[0, 0] == clean[0, 0, 1] and cfa[0, 1] == clean[0, 1, 0] and cfa[1, 0] == clean[1, 0, 2]
    result = runner.invoke(app, ["degrade", str(clean_folder), "--jpeg", "20", "--gray", "-o", str(tmp_path / "g")])
    assert result.exit_code == 0
    with Image.open(tmp_path / "g" / "im0.jpg") as im:
        assert im.mode == "L"


def test_degrade_reports_bad_inputs_one_line_each(clean_folder, tmp_path):
    bad = clean_folder / "broken.png"
    bad.write_bytes(b"not an image")
    result = CliRunner().invoke(app, ["degrade", str(clean_folder), str(tmp_path / "missing.png"),
                                      "--noise", "10", "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any("broken.png" in line for line in lines) and any("missing.png" in line for line in lines)
    assert_clean_exit(result, 1, "broken.png", "missing.png")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["im0.png", "im1.png"]


def test_degrade_needs_exactly_one_degradation(clean_folder, tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["degrade", str(clean_folder), "-o", str(tmp_path)]).exit_code == 2
    both = runner.invoke(app, ["degrade", str(clean_folder), "--noise", "5", "--jpeg", "5", "-o", str(tmp_path)])
    assert both.exit_code == 2


def test_degrade_refuses_to_overwrite(clean_folder, tmp_path):
    runner = CliRunner()
    args = ["degrade", str(clean_folder), "--noise", "5", "-o", str(tmp_path / "o")]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert runner.invoke(app, args + ["--overwrite"]).exit_code == 0
