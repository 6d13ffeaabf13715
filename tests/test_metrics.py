"""PSNR / SSIM / Y conversion against values known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from panet_cli.metrics import psnr, rgb_to_y, ssim, y_channel_8bit


def _image(seed: int = 0, shape: tuple[int, ...] = (3, 32, 40)) -> torch.Tensor:
    """Random values in [0.1, 0.9], float64 so that closed-form values hold to 1e-9."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.8 + 0.1


def test_psnr_of_identical_images_is_infinite_and_of_an_offset_is_exact():
    img = _image()
    assert psnr(img, img) == math.inf
    for offset in (0.1, 0.01, 4 / 255):
        # MSE = offset^2, so PSNR = -20 log10(offset)
        assert psnr(img + offset, img) == pytest.approx(-20 * math.log10(offset), abs=1e-6)


def test_psnr_shave_ignores_the_border_and_batches_average():
    img = _image()
    damaged = img.clone()
    damaged[:, :2] += 0.2
    damaged[:, :, -2:] -= 0.2
    assert psnr(damaged, img) < 30
    assert psnr(damaged, img, shave=2) == math.inf
    a, b = _image(1), _image(2)
    batch = psnr(torch.stack([a + 0.1, b + 0.01]), torch.stack([a, b]))
    assert batch == pytest.approx((20 + 40) / 2, abs=1e-6)


def test_y_channel_is_matlab_rgb2ycbcr():
    black, white = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
    assert rgb_to_y(black).item() == pytest.approx(16 / 255)
    assert rgb_to_y(white).item() == pytest.approx(235 / 255)
    y8 = y_channel_8bit(_image()) * 255
    assert y8.shape == (1, 32, 40) and torch.allclose(y8, y8.round(), atol=1e-4)
    grey = _image(shape=(1, 8, 8))
    assert torch.equal(y_channel_8bit(grey), grey)


def test_ssim_of_identical_images_is_one():
    img = _image()
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img[:1], img[:1]) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_flat_images_with_an_offset_is_the_luminance_term():
    """For flat images only the luminance term is left: (2 mu1 mu2 + C1) / (mu1^2 + mu2^2 + C1), C1 = 0.01^2."""
    a, b = torch.full((1, 24, 24), 0.5, dtype=torch.float64), torch.full((1, 24, 24), 0.6, dtype=torch.float64)
    c1 = 0.01**2
    assert ssim(a, b) == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1), abs=1e-9)


def test_ssim_falls_with_noise_and_respects_y_and_shave():
    img = _image()
    g = torch.Generator().manual_seed(3)
    light = img + 0.02 * torch.randn(img.shape, generator=g)
    heavy = img + 0.2 * torch.randn(img.shape, generator=g)
    assert 1 > ssim(light, img) > ssim(heavy, img) > 0
    damaged = img.clone()
    damaged[:, :3] = 0
    assert ssim(damaged, img, shave=3) == pytest.approx(1.0, abs=1e-12)
    # y_channel scores MATLAB's Y, written out here independently of rgb_to_y
    def matlab_y(x: torch.Tensor) -> torch.Tensor:
        return ((16 + 65.481 * x[0] + 128.553 * x[1] + 24.966 * x[2]) / 255)[None]

    assert ssim(light, img, y_channel=True) == pytest.approx(ssim(matlab_y(light), matlab_y(img)), abs=1e-12)
    assert psnr(light, img, y_channel=True) == pytest.approx(psnr(matlab_y(light), matlab_y(img)), abs=1e-9)


def test_ssim_agrees_with_scikit_image():
    """The Gaussian-window SSIM of the papers (Wang et al. 2004), as scikit-image computes it."""
    metrics = pytest.importorskip("skimage.metrics")
    img = _image(shape=(1, 48, 40))
    noisy = (img + 0.05 * torch.randn(img.shape, generator=torch.Generator().manual_seed(4))).clamp(0, 1)
    expected = metrics.structural_similarity(noisy[0].numpy(), img[0].numpy(), data_range=1.0, gaussian_weights=True,
                                             sigma=1.5, use_sample_covariance=False)
    assert ssim(noisy, img) == pytest.approx(expected, abs=1e-3)
