"""HalfResPANet: the CPU model family (body on 2x2-folded pixels) loads, runs any size and tiles seamlessly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panet_cli.inference import restore
from panet_cli.loading.architectures import detect_architecture
from panet_cli.loading.checkpoint import save_safetensors
from panet_cli.loading.descriptor import load_model
from panet_cli.networks import HalfResPANet
from panet_cli.networks.panet import bayer_bilinear_demosaic


def _tiny(**overrides) -> HalfResPANet:
    torch.manual_seed(0)
    config = dict(n_resblocks=2, n_feats=8, n_colors=3, reduction=2, window=6, window_overlap=0) | overrides
    return HalfResPANet(**config)


@pytest.mark.parametrize("size", [(16, 16), (17, 23), (9, 30)])
def test_any_size_in_is_the_same_size_out(size):
    x = torch.rand(1, 3, *size)
    assert _tiny()(x).shape == x.shape


def test_the_residual_is_computed_on_folded_pixels():
    """Shifting the input by one pixel changes the 2x2 grouping, so the output is not simply shifted."""
    model = _tiny().eval()
    with torch.no_grad():
        for p in model.tail.parameters():
            p.normal_(0, 0.1)
        x = torch.rand(1, 3, 32, 32)
        a = model(x)[..., 2:30, 2:30]
        b = model(torch.roll(x, 1, dims=-1))[..., 2:30, 3:31]
    assert not torch.allclose(a, b, atol=1e-4)


def test_demosaic_skip_is_the_bilinear_demosaic():
    model = _tiny(skip_filter="bayer_bilinear").eval()
    with torch.no_grad():
        model.tail[0].weight.zero_()
        mosaic = torch.rand(1, 3, 20, 20)
        assert torch.allclose(model(mosaic), bayer_bilinear_demosaic(mosaic))


def test_detected_from_tensors_alone():
    arch, config = detect_architecture(_tiny(n_colors=1).state_dict())
    assert arch == "HalfResPANet"
    assert config == {"n_resblocks": 2, "n_feats": 8, "n_colors": 1, "reduction": 2}


def test_our_file_restores_odd_images_and_tiles_match_whole(tmp_path):
    model = _tiny()
    with torch.no_grad():
        for p in model.tail.parameters():
            p.normal_(0, 0.05)
    path = tmp_path / "half.safetensors"
    config = dict(n_resblocks=2, n_feats=8, n_colors=3, reduction=2, window=6, window_overlap=0)
    save_safetensors(path, model.state_dict(),
                     {"arch": "HalfResPANet", "config": config, "task": "denoise", "attention_enabled": False})
    descriptor = load_model(path)
    assert descriptor.arch == "HalfResPANet" and descriptor.tasks == ("denoise",)
    image = np.random.default_rng(0).random((45, 61, 3), dtype=np.float32)
    whole = restore(image, "denoise", model=descriptor, device="cpu", tile=0)
    tiled = restore(image, "denoise", model=descriptor, device="cpu", tile=32, tile_overlap=16)
    assert whole.shape == image.shape
    assert np.abs(whole - image).max() > 1e-3  # the network did something
    # tiles start on even offsets (the 2x2 folding is in phase); blending hides the tiles' zero-padded edges
    assert np.abs(whole - tiled).mean() < 0.01 * np.abs(whole - image).mean()
