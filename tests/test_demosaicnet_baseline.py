"""The demosaicnet peer baseline: every Bayer pattern brought into its GRBG phase, full-size output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panet_cli.degradations import bayer_mosaic
from panet_cli.metrics import psnr

pytest.importorskip("demosaicnet")


def _smooth_image(h: int = 52, w: int = 70) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([0.5 + 0.4 * np.sin(x / 9), 0.5 + 0.4 * np.cos(y / 7), 0.5 + 0.3 * np.sin((x + y) / 11)], -1)


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_every_pattern_demosaics_at_full_size(pattern):
    from panet_cli.baselines import demosaicnet

    clean = _smooth_image()
    tensor = torch.from_numpy(clean).permute(2, 0, 1)
    cfa = bayer_mosaic(tensor[None], pattern)[0].sum(0, keepdim=True).permute(1, 2, 0).numpy()
    out = demosaicnet(cfa, pattern)
    assert out.shape == clean.shape
    # a wrong phase swaps red and blue samples with green ones: far below 30 dB on this smooth image
    assert psnr(torch.from_numpy(out).permute(2, 0, 1)[None], tensor[None]) > 35
