"""The memory-efficient pyramid attention equals the published (direct) formulation.

Tiny channel counts keep the direct form (full score map) cheap; sizes are odd (37x53) so that
every pyramid level has a different, non-square, odd shape.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from panet_cli.networks import PyramidAttention, pyramid_attention_direct
from panet_cli.networks.windows import window_starts

H, W = 37, 53
TOL = 1e-4


def make_layer(channel: int = 8, reduction: int = 2, seed: int = 0, **kwargs) -> PyramidAttention:
    torch.manual_seed(seed)
    layer = PyramidAttention(channel, reduction, **kwargs).eval()
    with torch.no_grad():  # PReLU slopes other than the default 0.25, so they matter
        for block in (layer.conv_match_L_base, layer.conv_match, layer.conv_assembly):
            block[1].weight.uniform_(0.05, 0.5)
    return layer


def random_input(batch: int, channel: int = 8, seed: int = 1, size: tuple[int, int] = (H, W)) -> torch.Tensor:
    return torch.randn(batch, channel, *size, generator=torch.Generator().manual_seed(seed))


def smooth_input(batch: int, channel: int = 8, seed: int = 2, size: tuple[int, int] = (H, W)) -> torch.Tensor:
    """Image-like features: low-frequency content plus a ramp, so many patches look alike."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channel, 5, 7, generator=g)
    smooth = F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
    ramp = torch.linspace(0, 1, size[1]).view(1, 1, 1, size[1])
    return smooth + 0.5 * ramp


@pytest.mark.parametrize("backend", ["chunked", "sdpa"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("make_input", [random_input, smooth_input], ids=["random", "smooth"])
def test_matches_direct(backend: str, batch: int, make_input) -> None:
    layer = make_layer(backend=backend)
    x = make_input(batch)
    with torch.no_grad():
        ours = layer(x)
        reference = pyramid_attention_direct(layer, x)
    assert ours.shape == x.shape
    assert (ours - reference).abs().max().item() < TOL
    # the attention term is not negligible next to the residual, so the comparison means something
    assert (reference - x).abs().max().item() > 0.1


def test_independent_of_batch() -> None:
    layer = make_layer()
    x = smooth_input(3, size=(23, 31))
    with torch.no_grad():
        together = layer(x)
        alone = torch.cat([layer(x[i : i + 1]) for i in range(3)])
    assert (together - alone).abs().max().item() < 1e-5


def test_many_small_chunks_give_the_same_result() -> None:
    layer = make_layer()
    x = random_input(2, size=(23, 31))
    with torch.no_grad():
        whole = layer(x)
        n_keys = layer.keys_values(x)[0].shape[2]
        # 61 queries per chunk: 713 = 11 * 61 + 42, so the last chunk is partial
        layer.min_chunk_queries = 1
        layer.max_chunk_bytes = 61 * 2 * n_keys * 4 + 3
        chunked = layer(x)
    assert (whole - chunked).abs().max().item() < 1e-5


def test_sdpa_uses_a_fused_kernel() -> None:
    """Fused kernels need unit last stride on q, k and v; a math fallback would hold every score."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    layer = make_layer(backend="sdpa")
    x = smooth_input(1, size=(23, 31))
    with torch.no_grad(), sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        out = layer(x)
    assert (out - pyramid_attention_direct(layer, x).detach()).abs().max().item() < TOL


def test_gradients_match_direct() -> None:
    """Training backpropagates through the chunked form (in-place softmax included)."""
    layer = make_layer(channel=8, reduction=2, max_chunk_bytes=4096)
    x = torch.randn(2, 8, 13, 17, generator=torch.Generator().manual_seed(3))
    grads = []
    for forward in (layer, lambda t: pyramid_attention_direct(layer, t)):
        layer.zero_grad()
        xi = x.clone().requires_grad_(True)
        (forward(xi) * torch.linspace(-1, 1, 17)).sum().backward()
        grads.append([xi.grad.clone()] + [p.grad.clone() for p in layer.parameters()])
    for ours, reference in zip(*grads):
        assert torch.allclose(ours, reference, atol=1e-4, rtol=1e-3)


def test_bf16_stays_close() -> None:
    layer = make_layer()
    x = smooth_input(1, size=(23, 31))
    with torch.no_grad():
        reference = layer(x)
        low = layer.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    assert torch.isfinite(low).all()
    assert (low - reference).abs().max().item() < 0.05 * reference.abs().max().item()


def test_disabled_is_identity() -> None:
    layer = make_layer()
    layer.enabled = False
    x = random_input(1, size=(5, 7))
    assert torch.equal(layer(x), x)


# ----- windowed attention (our own models) -----

def test_window_larger_than_input_is_the_plain_attention() -> None:
    plain = make_layer()
    windowed = make_layer(window=64)
    x = smooth_input(2, size=(23, 31))
    with torch.no_grad():
        assert torch.equal(windowed(x), plain(x))


def test_windows_cover_the_input_and_blend_to_a_partition_of_unity(monkeypatch) -> None:
    """With the attention replaced by the identity, blending must give back the input exactly:
    every pixel is covered and the weights sum to one, so there can be no seams."""
    layer = make_layer(window=16, window_overlap=4)
    for length in (H, W):
        starts = window_starts(length, 16, 4)
        covered = torch.zeros(length, dtype=torch.bool)
        for s in starts:
            covered[s : s + 16] = True
        assert covered.all() and len(starts) > 1
    x = smooth_input(2)
    monkeypatch.setattr(layer, "attend", lambda patches: patches)
    with torch.no_grad():
        out = layer(x)
    assert torch.allclose(out, x * (1 + layer.res_scale), atol=1e-5)


def test_windowed_attention_is_local_and_finite() -> None:
    layer = make_layer(window=16, window_overlap=4)
    x = smooth_input(1)
    with torch.no_grad():
        out = layer(x)
        whole = make_layer()(x)
        first_window = layer.attend(x[:, :, :16, :16]) + x[:, :, :16, :16] * layer.res_scale
    assert torch.isfinite(out).all()
    # pixels only the first window covers (before the overlap ramps) are that window's attention
    assert torch.allclose(out[:, :, :11, :11], first_window[:, :, :11, :11], atol=1e-5)
    # and restricting the attention to windows does change the result
    assert (out - whole).abs().max().item() > 1e-3
