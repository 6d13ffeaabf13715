"""Tiles: coverage, exact SR coordinates, seamless blending, memory estimates, OOM retries."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from panet_cli.errors import PanetError
from panet_cli.tiling import (
    NetworkCost,
    choose_tile,
    estimate_tile_bytes,
    is_out_of_memory,
    run_tiled,
    run_with_retry,
    tile_count,
    tile_grid,
    tile_weights,
)


def _image(h: int = 70, w: int = 100, c: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, c, h, w, generator=g)


@pytest.mark.parametrize("h,w,tile,overlap", [(70, 100, 32, 8), (64, 64, 64, 16), (33, 97, 20, 6), (10, 10, 64, 16)])
def test_grid_covers_image_with_full_size_tiles(h, w, tile, overlap):
    tiles = tile_grid(h, w, tile, overlap)
    covered = torch.zeros(h, w)
    for t in tiles:
        assert (t.height, t.width) == (min(tile, h), min(tile, w))
        assert 0 <= t.y and t.y + t.height <= h and 0 <= t.x and t.x + t.width <= w
        covered[t.y : t.y + t.height, t.x : t.x + t.width] += 1
    assert covered.min() >= 1
    assert tile_count(h, w, tile, overlap) == len(tiles)


def test_grid_zero_is_whole_image_and_align_keeps_even_starts():
    assert len(tile_grid(50, 60, 0, 16)) == 1
    tiles = tile_grid(100, 130, 32, 8, align=2)
    assert len(tiles) > 4 and all(t.y % 2 == 0 and t.x % 2 == 0 for t in tiles)
    with pytest.raises(ValueError):
        tile_grid(101, 130, 32, 8, align=2)


def test_identity_is_reproduced_exactly():
    x = _image()
    out = run_tiled(x, lambda t: t, tile=32, overlap=8)
    assert torch.allclose(out, x, atol=1e-6)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_sr_tiles_land_on_scaled_coordinates(scale):
    """A nearest-neighbour upscaler is position-exact: any misplaced tile would show."""
    x = _image(45, 61)

    def up(t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)

    out = run_tiled(x, up, scale=scale, tile=24, overlap=6)
    assert out.shape == (1, 3, 45 * scale, 61 * scale)
    assert torch.allclose(out, up(x), atol=1e-6)


def test_blending_a_convolution_is_close_to_the_whole_and_seams_are_smooth():
    """Tiles of a local operator differ from the whole only near tile borders, and only a little."""
    torch.manual_seed(0)
    weight = torch.randn(3, 3, 5, 5) / 25

    def conv(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, weight, padding=2), weight, padding=2)

    x = _image(80, 120)
    whole = conv(x)
    hard = run_tiled(x, conv, tile=40, overlap=0)
    assert (hard - whole).abs().max() > 1e-3  # tile borders do matter for this operator
    # its reach is 4 pixels: the dropped margin (overlap // 4 = 4) removes every border effect
    tiled = run_tiled(x, conv, tile=40, overlap=16)
    assert torch.allclose(tiled, whole, atol=1e-5)
    # a shorter overlap leaves some error, still well below hard seams
    short = run_tiled(x, conv, tile=40, overlap=8)
    assert (short - whole).pow(2).mean() < (hard - whole).pow(2).mean() / 4


def test_every_pixel_has_weight_and_interior_margins_are_dropped():
    height, width, overlap = 70, 100, 16
    total = torch.zeros(height, width)
    for t in tile_grid(height, width, 32, overlap):
        w = tile_weights(t.height, t.width, t.y, t.x, height, width, overlap)
        assert w.min() >= 0
        if t.y > 0:
            assert w[: overlap // 4].abs().max() == 0
        if t.y == 0 and t.x == 0:
            assert w[0, 0] == 1  # image borders keep their pixels
        total[t.y : t.y + t.height, t.x : t.x + t.width] += w
    assert total.min() > 0.05


def test_batching_does_not_change_the_result_and_progress_counts_every_tile():
    x = _image()
    calls: list[tuple[int, int]] = []
    one = run_tiled(x, lambda t: t * 2, tile=32, overlap=8, batch=1)
    many = run_tiled(x, lambda t: t * 2, tile=32, overlap=8, batch=5, progress=lambda d, t: calls.append((d, t)))
    assert torch.allclose(one, many)
    n = tile_count(70, 100, 32, 8)
    assert calls[-1] == (n, n) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_wrong_output_size_is_an_error():
    with pytest.raises(RuntimeError):
        run_tiled(_image(), lambda t: t[:, :, :-1], tile=32, overlap=8)


def test_memory_estimate_grows_with_tile_and_window_bounds_attention():
    whole = NetworkCost(n_feats=64, n_colors=3)
    windowed = NetworkCost(n_feats=64, n_colors=3, window=32)
    sizes = [32, 64, 128, 256]
    estimates = [estimate_tile_bytes(whole, s, s) for s in sizes]
    assert estimates == sorted(estimates)
    # chunked attention: keys and values grow with the area, the score chunk has its own cap
    assert 2.5 < estimates[-1] / estimates[-2] < 4.5
    no_attention = NetworkCost(n_feats=64, n_colors=3, attention=False)
    # whole-input attention: 3.3 keys per pixel of 9C/r + 9C values each dwarf the backbone's few feature maps
    assert estimate_tile_bytes(no_attention, 256, 256) * 5 < estimates[-1]
    # windowed attention scores pixels a window group at a time: a few more feature maps, not unfolded patches
    assert estimate_tile_bytes(no_attention, 256, 256) < estimate_tile_bytes(windowed, 256, 256)
    assert estimate_tile_bytes(windowed, 256, 256) < 3 * estimate_tile_bytes(no_attention, 256, 256)
    sr = NetworkCost(n_feats=64, n_colors=3, scale=4, attention=False)
    assert estimate_tile_bytes(sr, 64, 64) > estimate_tile_bytes(no_attention, 64, 64)


def test_choose_tile_fits_the_budget():
    cost = NetworkCost(n_feats=64, n_colors=3)
    assert choose_tile(100, 80, 2**40, cost) == 0  # small image, huge budget: no tiling
    tile = choose_tile(2000, 3000, 2**30, cost)
    assert 32 <= tile <= 512
    assert estimate_tile_bytes(cost, tile, tile) <= 2**30
    assert estimate_tile_bytes(cost, tile + 32, tile + 32) > 2**30
    assert choose_tile(2000, 3000, 1, cost) == 32  # nothing fits: the smallest, and let OOM retries decide


def test_out_of_memory_detection():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(RuntimeError("[enforce fail] DefaultCPUAllocator: not enough memory: you tried ..."))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_retry_halves_the_tile_until_it_fits():
    tried: list[int] = []
    retries: list[tuple[int, int]] = []

    def run(tile: int) -> torch.Tensor:
        tried.append(tile)
        if tile == 0 or tile > 64:
            raise RuntimeError("CUDA out of memory")
        return torch.zeros(1)

    run_with_retry(run, 0, 500, on_retry=lambda old, new: retries.append((old, new)), align=2)
    assert tried == [0, 250, 124, 62]  # halves of the longest side, kept even by align
    assert retries[0] == (0, 250)

    with pytest.raises(PanetError, match="out of memory"):
        run_with_retry(lambda t: (_ for _ in ()).throw(MemoryError()), 128, 500)
    with pytest.raises(ValueError):
        run_with_retry(lambda t: (_ for _ in ()).throw(ValueError("not memory")), 128, 500)


def test_half_resolution_features_are_estimated_at_their_own_size():
    """The demosaicer (12/0 windows on 2x2-folded features) was estimated at 10.4 GB for a 500 x 500
    McMaster image (measured peak: 0.2 GB), so with half the free RAM under that it was cut into four 480 px
    tiles and ran 4x slower (session 21). Estimates stay upper bounds of the measured peaks."""
    half_res = NetworkCost(n_feats=96, n_colors=3, window=12, window_overlap=0, chunk_bytes=64 * 2**20, fold=2)
    assert 0.2 * 2**30 < estimate_tile_bytes(half_res, 502, 502) < 0.5 * 2**30
    assert 0.66 * 2**30 < estimate_tile_bytes(half_res, 1002, 1002) < 1.3 * 2**30
    assert choose_tile(502, 502, 2 * 2**30, half_res, cap=512) == 0
    full_res = NetworkCost(n_feats=96, n_colors=3, window=12, window_overlap=0, chunk_bytes=64 * 2**20)
    assert estimate_tile_bytes(full_res, 502, 502) > 3 * estimate_tile_bytes(half_res, 502, 502)


def test_runner_reads_the_feature_fold_off_the_network(tmp_path):
    from panet_cli.loading import load_model
    from panet_cli.loading.checkpoint import save_safetensors
    from panet_cli.networks.half_res import HalfResPANet
    from panet_cli.runner import network_cost

    model = HalfResPANet(n_resblocks=2, n_feats=8, n_colors=3, window=4, window_overlap=0)
    path = tmp_path / "half.safetensors"
    save_safetensors(path, model.state_dict(), {"arch": "HalfResPANet", "task": "denoise", "config": {
        "n_resblocks": 2, "n_feats": 8, "n_colors": 3, "window": 4, "window_overlap": 0}})
    assert network_cost(load_model(path)).fold == 2
