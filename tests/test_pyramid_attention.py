"""The memory-efficient pyramid attention equals the published (direct) formulation.

Tiny channel counts keep the direct form (full score map) cheap; sizes are odd (37x53) so that
every pyramid level has a different, non-square, odd shape.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from panet_cli.networks import PyramidAttention, pyramid_attention_direct
from panet_cli.networks.windows import WindowGrid, blend_weights, window_starts

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


def assert_same_gradients(layer, x, ours, reference) -> None:
    """Input and parameter gradients of a weighted sum of the outputs agree between two forms of ``layer``."""
    grads = []
    for forward in (ours, reference):
        layer.zero_grad()
        xi = x.clone().requires_grad_(True)
        (forward(xi) * torch.linspace(-1, 1, x.shape[-1])).sum().backward()
        grads.append([xi.grad.clone()] + [p.grad.clone() for p in layer.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)


def test_gradients_match_direct() -> None:
    """Training backpropagates through the chunked form (in-place softmax included)."""
    layer = make_layer(channel=8, reduction=2, max_chunk_bytes=4096)
    x = torch.randn(2, 8, 13, 17, generator=torch.Generator().manual_seed(3))
    assert_same_gradients(layer, x, layer, lambda t: pyramid_attention_direct(layer, t))


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
    monkeypatch.setattr(layer, "_attend_group", lambda patches, out=None: patches if out is None else out.copy_(patches))
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


def chunked_attend(layer: PyramidAttention, x: torch.Tensor) -> torch.Tensor:
    """The attention term by the unfold / chunked-matmul formulation (the implementation before windows
    got per-pixel matmuls), whatever the input size."""
    h, w = x.shape[2:]
    q = F.unfold(layer.conv_match_L_base(x), 3, padding=1)
    k, v = layer.keys_values(x)
    return F.fold(layer._chunked(q, k, v), (h, w), 3, padding=1) / 4.0


def windowed_reference(layer: PyramidAttention, x: torch.Tensor, attend=chunked_attend) -> torch.Tensor:
    """Straightforward windowed attention: every window on its own, blended with per-window weights."""
    b, c, h, w = x.shape
    sy, sx = min(layer.window, h), min(layer.window, w)
    out = torch.zeros_like(x)
    total = x.new_zeros(1, 1, h, w)
    for y in window_starts(h, sy, layer.window_overlap):
        for x0 in window_starts(w, sx, layer.window_overlap):
            weight = blend_weights(sy, sx, y, x0, h, w, layer.window_overlap, dtype=x.dtype)
            out[:, :, y : y + sy, x0 : x0 + sx] += attend(layer, x[:, :, y : y + sy, x0 : x0 + sx]) * weight
            total[:, :, y : y + sy, x0 : x0 + sx] += weight
    return out / total + x * layer.res_scale


WINDOW_CASES = [(12, 0, (37, 53)), (12, 0, (24, 36)), (16, 4, (37, 53)), (9, 3, (23, 31)), (8, 6, (19, 26)),
                (7, 0, (7, 30))]


@pytest.mark.parametrize("window,overlap,size", WINDOW_CASES)
@pytest.mark.parametrize("batch", [1, 2])
def test_windowed_matches_the_straightforward_form(window: int, overlap: int, size: tuple[int, int], batch: int) -> None:
    layer = make_layer(window=window, window_overlap=overlap)
    x = smooth_input(batch, size=size) + 0.3 * random_input(batch, size=size)
    with torch.no_grad():
        ours = layer(x)
        reference = windowed_reference(layer, x)
    assert ours.shape == x.shape
    assert (ours - reference).abs().max().item() < 1e-5
    assert (reference - x * (1 + layer.res_scale)).abs().max().item() > 0.1


def test_windowed_matches_direct_per_window() -> None:
    layer = make_layer(window=12, window_overlap=0)
    x = random_input(2, size=(29, 41))
    with torch.no_grad():
        ours = layer(x)
        direct = windowed_reference(layer, x, lambda l, t: pyramid_attention_direct(l, t) - t * l.res_scale)
    assert (ours - direct).abs().max().item() < TOL


def test_windowed_groups_and_channels_last_give_the_same_result() -> None:
    layer = make_layer(channel=16, window=10, window_overlap=2)
    x = random_input(2, channel=16, size=(33, 47))
    with torch.no_grad():
        whole = layer(x)
        last = layer(x.contiguous(memory_format=torch.channels_last))
        layer.window_group_bytes = 1  # one window per group
        grouped = layer(x)
    assert last.is_contiguous(memory_format=torch.channels_last)
    assert (whole - last).abs().max().item() < 1e-5
    assert (whole - grouped).abs().max().item() < 1e-5


@pytest.mark.parametrize("window,overlap", [(6, 0), (6, 2), (64, 0)])
def test_windowed_gradients_match_the_straightforward_form(window: int, overlap: int) -> None:
    layer = make_layer(window=window, window_overlap=overlap)
    layer.window_group_bytes = 40_000  # several groups
    x = torch.randn(2, 8, 13, 17, generator=torch.Generator().manual_seed(3))
    assert_same_gradients(layer, x, layer, lambda t: windowed_reference(layer, t))


def test_windowed_bf16_is_as_close_as_the_straightforward_form() -> None:
    layer = make_layer(channel=16, window=12, window_overlap=0)
    x = smooth_input(1, channel=16, size=(30, 40))
    with torch.no_grad():
        reference = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours = layer(x).float()
            theirs = windowed_reference(layer, x).float()
    assert torch.isfinite(ours).all()
    assert (ours - reference).abs().max().item() <= 1.5 * (theirs - reference).abs().max().item() + 1e-3


@pytest.mark.parametrize("size,window,overlap", [((37, 53), 12, 0), ((23, 31), 9, 3), ((20, 20), 10, 0), ((5, 30), 8, 7)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_window_grid_partitions_and_merges_back(size, window: int, overlap: int, channels_last: bool) -> None:
    h, w = size
    sy, sx = min(window, h), min(window, w)
    grid = WindowGrid(h, w, sy, sx, overlap)
    x = random_input(2, size=size)
    windows = grid.partition(x)
    slices = [x[i : i + 1, :, y : y + sy, x0 : x0 + sx] for i in range(2)
              for y in window_starts(h, sy, overlap) for x0 in window_starts(w, sx, overlap)]
    assert torch.equal(windows, torch.cat(slices))
    merged = grid.merge(windows, channels_last)
    assert merged.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert torch.allclose(merged, x, atol=1e-6)
