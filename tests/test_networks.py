"""PANet and PA-EDSR: layouts of the published checkpoints, shapes, and the golden vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from panet_cli.loading import load_model
from panet_cli.networks import PAEDSR, PANet

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"
needs_shared = pytest.mark.skipif(not OFFICIAL.is_dir(), reason="../shared/fixtures/official not present")

FULL_SIZE = {
    "panet_rgb": (PANet, {"n_resblocks": 80, "n_feats": 64, "n_colors": 3}),
    "panet_gray": (PANet, {"n_resblocks": 80, "n_feats": 64, "n_colors": 1}),
    "paedsr_x2": (PAEDSR, {"scale": 2}),
    "paedsr_x3": (PAEDSR, {"scale": 3}),
    "paedsr_x4": (PAEDSR, {"scale": 4}),
}


@needs_shared
@pytest.mark.parametrize("layout", sorted(FULL_SIZE))
def test_full_size_networks_have_the_published_tensor_names_and_shapes(layout: str) -> None:
    cls, config = FULL_SIZE[layout]
    with torch.device("meta"):  # no memory for 43M parameters
        ours = {k: list(v.shape) for k, v in cls(**config).state_dict().items()}
    published = json.loads((OFFICIAL / f"keys_{layout}_full.json").read_text())
    assert ours == published


@needs_shared
@pytest.mark.parametrize("name", ["panet_rgb_r4", "panet_gray_r4", "paedsr_x2_r2"])
def test_golden_vectors(name: str) -> None:
    """The reference implementation's output for its own checkpoint, within 1e-4 (fp32, CPU)."""
    desc = load_model(OFFICIAL / f"{name}.pt")
    x = torch.from_numpy(np.load(OFFICIAL / f"{name}_in.npy"))
    expected = np.load(OFFICIAL / f"{name}_out.npy")
    with torch.no_grad():
        out = desc.model(x).numpy()
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() < 1e-4


@pytest.mark.parametrize("n_colors", [1, 3])
def test_panet_keeps_the_input_size(n_colors: int) -> None:
    net = PANet(n_resblocks=2, n_feats=8, n_colors=n_colors).eval()
    with torch.no_grad():
        assert net(torch.rand(2, n_colors, 13, 18)).shape == (2, n_colors, 13, 18)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_paedsr_upscales(scale: int) -> None:
    net = PAEDSR(scale=scale, n_resblocks=2, n_feats=8, reduction=2).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 7, 9)).shape == (1, 3, 7 * scale, 9 * scale)


def test_paedsr_attention_is_one_module_under_two_names() -> None:
    net = PAEDSR(scale=2, n_resblocks=4, n_feats=8, reduction=2)
    assert net.attention is net.msa is net.body[2]
    keys = net.state_dict().keys()
    assert "msa.conv_match.0.weight" in keys and "body.2.conv_match.0.weight" in keys


def test_panet_attention_sits_in_the_middle() -> None:
    net = PANet(n_resblocks=6, n_feats=8)
    assert net.attention is net.body[3]


def test_odd_block_count_is_refused() -> None:
    with pytest.raises(ValueError):
        PANet(n_resblocks=3, n_feats=8)
    with pytest.raises(ValueError):
        PAEDSR(n_resblocks=3, n_feats=8)


def test_input_skip_adds_the_input() -> None:
    torch.manual_seed(0)
    plain = PANet(n_resblocks=2, n_feats=8).eval()
    skip = PANet(n_resblocks=2, n_feats=8, input_skip=True).eval()
    skip.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.allclose(skip(x), plain(x) + x, atol=1e-6)


def test_bypassed_attention_changes_the_output() -> None:
    torch.manual_seed(0)
    net = PANet(n_resblocks=2, n_feats=8).eval()
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        on = net(x)
        net.attention.enabled = False
        off = net(x)
    assert (on - off).abs().max().item() > 1e-4


def test_bayer_bilinear_skip_is_bilinear_demosaicing_in_any_phase():
    """With a zero tail the demosaicing PANet returns bilinear interpolation, whatever the pattern's phase:
    sampled values are kept and each gap gets the mean of the sampled values around it (borders reflected)."""
    from panet_cli.degradations import bayer_mosaic

    model = PANet(2, 8, 3, input_skip=True, skip_filter="bayer_bilinear", window=8, window_overlap=2).eval()
    torch.nn.init.zeros_(model.tail[0].weight)
    torch.nn.init.zeros_(model.tail[0].bias)
    image = torch.rand(1, 3, 12, 10)
    for pattern in ("RGGB", "BGGR", "GRBG", "GBRG"):
        mosaic = bayer_mosaic(image, pattern)
        masks = bayer_mosaic(torch.ones_like(image), pattern)
        with torch.no_grad():
            out = model(mosaic)
        sums = torch.nn.functional.unfold(torch.nn.functional.pad(mosaic, (1, 1, 1, 1), mode="reflect"), 3)
        counts = torch.nn.functional.unfold(torch.nn.functional.pad(masks, (1, 1, 1, 1), mode="reflect"), 3)
        mean = (sums.view(1, 3, 9, -1).sum(2) / counts.view(1, 3, 9, -1).sum(2)).view_as(image)
        expected = torch.where(masks.bool(), image, mean)
        assert torch.allclose(out, expected, atol=1e-6), pattern


def test_a_demosaicing_model_with_the_bilinear_skip_loads_and_runs(tmp_path):
    """Our loader builds networks on the meta device: the skip's fixed kernel must not depend on init."""
    from panet_cli.inference import restore
    from panet_cli.loading.checkpoint import save_safetensors

    config = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "reduction": 2, "input_skip": True, "window": 8,
              "window_overlap": 2, "skip_filter": "bayer_bilinear"}
    model = PANet(**config)
    torch.nn.init.zeros_(model.tail[0].weight)
    torch.nn.init.zeros_(model.tail[0].bias)
    path = tmp_path / "demosaic.safetensors"
    save_safetensors(path, model.state_dict(), {"arch": "PANet", "config": config, "task": "demosaic"})
    descriptor = load_model(path)
    image = np.random.default_rng(0).random((12, 10, 3), dtype=np.float32)
    out = restore(image, "demosaic", model=descriptor, device="cpu")
    masks = np.zeros_like(image)
    masks[0::2, 0::2, 0] = masks[0::2, 1::2, 1] = masks[1::2, 0::2, 1] = masks[1::2, 1::2, 2] = 1
    assert out.shape == image.shape
    assert np.allclose(out[masks == 1], image[masks == 1], atol=1e-5)  # sampled values kept (zero tail)
