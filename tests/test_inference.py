"""restore(): golden outputs, tiling agreement and seams, channels, Bayer phases, TTA, fallbacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from panet_cli.errors import IncompatibleModel, PanetError
from panet_cli.inference import restore, rgb_to_ycbcr, ycbcr_to_rgb
from panet_cli.loading import load_model
from panet_cli.loading.checkpoint import save_safetensors
from panet_cli.networks import PAEDSR, PANet
from panet_cli.tiling import tile_grid

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"
needs_official = pytest.mark.skipif(not OFFICIAL.is_dir(), reason="../shared/fixtures/official is absent")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and a busy machine makes OpenMP spin badly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(tmp_path: Path, arch: str = "PANet", task: str = "denoise", attention: bool = True, seed: int = 0, **config):
    """A small random model saved in our format (metadata carries window and task) and loaded."""
    torch.manual_seed(seed)
    config = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, **config}
    if arch == "PANet":
        config.setdefault("input_skip", True)  # outputs near the input, mostly inside [0, 1]
    net = (PANet if arch == "PANet" else PAEDSR)(**config)
    meta = {"arch": arch, "config": config, "task": task, "attention_enabled": attention}
    if arch == "PAEDSR":
        meta["scale"] = config["scale"]
    path = tmp_path / f"{arch}_{task}_{seed}_{len(list(tmp_path.iterdir()))}.safetensors"
    save_safetensors(path, net.state_dict(), meta)
    return load_model(path)


def photo(h: int, w: int, c: int = 3, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """Smooth shapes plus a little noise: seams would show on it, unlike on pure noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = [0.5 + 0.3 * np.sin(x / (9 + 4 * i) + y / (13 + 3 * i)) * np.cos(y / (17 + i)) for i in range(c)]
    image = np.stack(base, axis=2) + rng.normal(0, noise, (h, w, c))
    return np.clip(image, 0, 1).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-20)))


def seam_lines(length: int, tile: int, overlap: int, scale: int) -> set[int]:
    """Output rows (or columns) where a tile starts or ends inside the image."""
    lines = set()
    for t in tile_grid(length, 1, tile, overlap):
        for edge in (t.y, t.y + t.height):
            if 0 < edge < length:
                lines.add(edge * scale)
    return lines


def assert_seams_no_worse(tiled: np.ndarray, whole: np.ndarray, tile: int, overlap: int, scale: int) -> None:
    """The jump between neighbouring rows/columns that tiling adds is no larger at seams than elsewhere."""
    for axis, length in ((0, tiled.shape[0] // scale), (1, tiled.shape[1] // scale)):
        jump_t = np.abs(np.diff(tiled, axis=axis)).mean(axis=(1 - axis, 2))
        jump_w = np.abs(np.diff(whole, axis=axis)).mean(axis=(1 - axis, 2))
        extra = np.abs(jump_t - jump_w)  # extra[i] is the boundary between lines i and i+1
        seams = sorted(s - 1 for s in seam_lines(length, tile, overlap, scale))
        rest = np.delete(extra, seams)
        assert extra[seams].max() <= rest.max(), f"axis {axis}: seam jump {extra[seams].max()} > {rest.max()}"


# ------------------------------------------------------------------------------------------ golden


@needs_official
@pytest.mark.parametrize("name,task", [("panet_rgb_r4", "denoise"), ("panet_gray_r4", "car"), ("paedsr_x2_r2", "sr")])
def test_golden_outputs(name, task):
    model = load_model(OFFICIAL / f"{name}.pt")
    x = np.load(OFFICIAL / f"{name}_in.npy")[0].transpose(1, 2, 0)
    expected = np.clip(np.load(OFFICIAL / f"{name}_out.npy")[0].transpose(1, 2, 0), 0, 1)
    out = restore(x, task, model=model, device="cpu", tile=0)
    assert out.shape == expected.shape and out.dtype == np.float32
    assert np.abs(out - expected).max() < 1e-4


@needs_official
def test_golden_sr_x2_tiled_agrees_with_whole():
    model = load_model(OFFICIAL / "paedsr_x2_r2.pt")
    image = photo(40, 48)
    whole = restore(image, "sr", model=model, device="cpu", tile=0)
    tiled = restore(image, "sr", model=model, device="cpu", tile=32, tile_overlap=16)
    assert tiled.shape == whole.shape == (80, 96, 3)
    assert psnr(tiled, whole) >= 45


# ------------------------------------------------------------------------------------------ tiling


def test_tiling_300x200_agrees_with_whole_and_hides_seams(tmp_path):
    model = tiny(tmp_path, window=16, window_overlap=4, input_skip=True)
    image = photo(200, 300)
    whole = restore(image, "denoise", model=model, device="cpu", tile=0)
    tiled = restore(image, "denoise", model=model, device="cpu", tile=64, tile_overlap=16)
    assert psnr(tiled, whole) >= 45
    assert_seams_no_worse(tiled, whole, 64, 16, 1)


@pytest.mark.parametrize("scale", [3, 4])
def test_sr_tiling_300x200_agrees_with_whole(tmp_path, scale):
    model = tiny(tmp_path, "PAEDSR", "sr", scale=scale, window=16, window_overlap=4)
    image = photo(200, 300)
    whole = restore(image, "sr", model=model, device="cpu", tile=0)
    tiled = restore(image, "sr", model=model, device="cpu", tile=64, tile_overlap=16)
    assert tiled.shape == (200 * scale, 300 * scale, 3)
    assert psnr(tiled, whole) >= 45
    assert_seams_no_worse(tiled, whole, 64, 16, scale)


def test_auto_tile_respects_a_small_memory_budget(tmp_path):
    model = tiny(tmp_path, window=16, window_overlap=4)
    image = photo(560, 420)  # estimated near 0.1 GB: over the 64 MiB floor of any budget
    calls = []
    out = restore(image, "denoise", model=model, device="cpu", max_memory=8 * 2**20,
                  progress=lambda d, t: calls.append((d, t)))
    assert out.shape == image.shape
    assert calls[-1][0] == calls[-1][1] > 1  # tiled: several tiles, all reported
    whole = restore(image, "denoise", model=model, device="cpu", tile="auto", max_memory=2**34)
    assert psnr(out, whole) >= 45


def test_auto_tile_stops_at_the_hint_of_whole_input_attention(tmp_path):
    """Published-style attention spans the tile, so time per pixel grows with it: auto stops at 128."""
    image = photo(24, 140)
    for window, tiles in ((None, 2), (16, 1)):
        model = tiny(tmp_path, window=window, window_overlap=4)
        calls = []
        restore(image, "denoise", model=model, device="cpu", max_memory=2**34, progress=lambda d, t: calls.append(t))
        assert calls[-1] == tiles, (window, calls)


def test_out_of_memory_retries_with_smaller_tiles(tmp_path):
    model = tiny(tmp_path, attention=False)
    real = model.model.forward

    def picky(x):
        if x.shape[-1] > 40:
            raise RuntimeError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real(x)

    model.model.forward = picky
    notes: list[str] = []
    image = photo(70, 100)
    out = restore(image, "denoise", model=model, device="cpu", tile=0, notice=notes.append)
    assert out.shape == image.shape and any("out of memory" in n for n in notes)


# ---------------------------------------------------------------------------------------- channels


def test_grey_image_through_colour_model_is_the_mean_of_the_replicated_run(tmp_path):
    model = tiny(tmp_path, attention=False)
    grey = photo(30, 40, c=1)
    out = restore(grey, "denoise", model=model, device="cpu", tile=0)
    colour = restore(np.repeat(grey, 3, axis=2), "denoise", model=model, device="cpu", tile=0)
    assert out.shape == (30, 40, 1)
    inside = (colour > 0).all(axis=2) & (colour < 1).all(axis=2)  # clipping aside
    assert inside.mean() > 0.5
    np.testing.assert_allclose(out[:, :, 0][inside], colour.mean(axis=2)[inside], atol=1e-6)


def test_colour_image_through_grey_car_model_changes_only_luma(tmp_path):
    model = tiny(tmp_path, task="car", n_colors=1, attention=False)
    image = photo(30, 40)
    out = restore(image, "car", model=model, device="cpu", tile=0)
    assert out.shape == image.shape
    before, after = rgb_to_ycbcr(image), rgb_to_ycbcr(out)
    inside = (out > 0.01).all(axis=2) & (out < 0.99).all(axis=2)  # clipping aside, chroma is kept
    np.testing.assert_allclose(after[inside][:, 1:], before[inside][:, 1:], atol=2e-5)
    assert np.abs(after[..., 0] - before[..., 0]).max() > 1e-3
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(image)), image, atol=1e-5)


def test_colour_image_through_grey_denoiser_runs_each_channel(tmp_path):
    model = tiny(tmp_path, n_colors=1, attention=False)
    image = photo(30, 40)
    out = restore(image, "denoise", model=model, device="cpu", tile=0)
    green = restore(image[:, :, 1:2], "denoise", model=model, device="cpu", tile=0)
    np.testing.assert_allclose(out[:, :, 1:2], green, atol=1e-6)


def test_tiny_image_is_padded_and_cropped(tmp_path):
    model = tiny(tmp_path)
    out = restore(photo(5, 7), "denoise", model=model, device="cpu")
    assert out.shape == (5, 7, 3) and np.isfinite(out).all()
    sr = tiny(tmp_path, "PAEDSR", "sr", scale=2)
    assert restore(photo(3, 4), "sr", model=sr, device="cpu").shape == (6, 8, 3)


# ---------------------------------------------------------------------------------------- demosaic


def _rggb_mosaic(image: np.ndarray) -> np.ndarray:
    mosaic = np.zeros_like(image)
    mosaic[0::2, 0::2, 0] = image[0::2, 0::2, 0]
    mosaic[0::2, 1::2, 1] = image[0::2, 1::2, 1]
    mosaic[1::2, 0::2, 1] = image[1::2, 0::2, 1]
    mosaic[1::2, 1::2, 2] = image[1::2, 1::2, 2]
    return mosaic


@pytest.mark.parametrize("dy,dx,pattern", [(0, 0, "RGGB"), (0, 1, "GRBG"), (1, 0, "GBRG"), (1, 1, "BGGR")])
def test_every_bayer_pattern_is_brought_into_phase(tmp_path, dy, dx, pattern):
    """Cropping an RGGB mosaic by (dy, dx) gives the other patterns: results agree away from the edge."""
    model = tiny(tmp_path, task="demosaic", attention=False)
    mosaic = _rggb_mosaic(photo(40, 50, noise=0))
    reference = restore(mosaic, "demosaic", model=model, device="cpu", tile=0)
    shifted = restore(mosaic[dy:, dx:], "demosaic", model=model, device="cpu", tile=0, pattern=pattern)
    margin = 12  # beyond the tiny network's reach from the border
    np.testing.assert_allclose(shifted[margin:-margin, margin:-margin],
                               reference[dy + margin : -margin, dx + margin : -margin], atol=1e-5)
    wrong = restore(mosaic[dy:, dx:], "demosaic", model=model, device="cpu", tile=0, pattern="RGGB")
    if (dy, dx) != (0, 0):  # telling it the wrong pattern does change the result
        assert np.abs(wrong - shifted)[margin:-margin, margin:-margin].max() > 1e-3


def test_cfa_input_equals_masked_rgb_input_and_tiles_keep_phase(tmp_path):
    model = tiny(tmp_path, task="demosaic", attention=False)
    image = photo(61, 75, noise=0)  # odd sizes on purpose
    mosaic = _rggb_mosaic(image)
    cfa = mosaic.sum(axis=2, keepdims=True)
    a = restore(mosaic, "demosaic", model=model, device="cpu", tile=0)
    b = restore(cfa, "demosaic", model=model, device="cpu", tile=0)
    assert a.shape == b.shape == (61, 75, 3)
    np.testing.assert_allclose(a, b, atol=1e-6)
    tiled = restore(cfa, "demosaic", model=model, device="cpu", tile=33, tile_overlap=13)  # made even inside
    assert psnr(tiled, a) > 45


def test_tta_is_flip_invariant(tmp_path):
    model = tiny(tmp_path, attention=False)
    image = photo(24, 30)
    out = restore(image, "denoise", model=model, device="cpu", tile=0, tta=True)
    flipped = restore(image[:, ::-1].copy(), "denoise", model=model, device="cpu", tile=0, tta=True)
    np.testing.assert_allclose(flipped[:, ::-1], out, atol=1e-5)
    plain = restore(image, "denoise", model=model, device="cpu", tile=0)
    assert np.abs(plain - out).max() > 1e-4  # the ensemble does something


def test_demosaic_tta_matches_flipped_pattern(tmp_path):
    model = tiny(tmp_path, task="demosaic", attention=False)
    mosaic = _rggb_mosaic(photo(32, 40, noise=0))
    out = restore(mosaic, "demosaic", model=model, device="cpu", tile=0, tta=True)
    # flipped left-right, an RGGB mosaic of even width reads GRBG
    flipped = restore(mosaic[:, ::-1].copy(), "demosaic", model=model, device="cpu", tile=0, tta=True, pattern="GRBG")
    m = 12
    np.testing.assert_allclose(flipped[:, ::-1][m:-m, m:-m], out[m:-m, m:-m], atol=1e-5)


# ------------------------------------------------------------------------------------ model checks


def test_wrong_task_or_scale_is_incompatible(tmp_path):
    sr = tiny(tmp_path, "PAEDSR", "sr", scale=2)
    with pytest.raises(IncompatibleModel, match="not denoise"):
        restore(photo(16, 16), "denoise", model=sr, device="cpu")
    with pytest.raises(IncompatibleModel, match="x2, not x4"):
        restore(photo(16, 16), "sr", model=sr, device="cpu", scale=4)
    grey = tiny(tmp_path, task="demosaic", n_colors=1)
    with pytest.raises(IncompatibleModel):
        restore(photo(16, 16), "demosaic", model=grey, device="cpu")


def test_bad_arguments(tmp_path):
    model = tiny(tmp_path, attention=False)
    with pytest.raises(PanetError, match="task"):
        restore(photo(16, 16), "deblur", model=model, device="cpu")
    with pytest.raises(PanetError, match="shape"):
        restore(np.zeros((8, 8, 4), np.float32), "denoise", model=model, device="cpu")
    demosaic = tiny(tmp_path, task="demosaic", attention=False)
    with pytest.raises(PanetError, match="pattern"):
        restore(photo(16, 16), "demosaic", model=demosaic, device="cpu", pattern="RGBG")
    with pytest.raises(PanetError, match="tile"):
        restore(photo(16, 16), "denoise", model=model, device="cpu", tile=4)


def test_model_given_as_a_path_and_precision_fallback(tmp_path):
    model = tiny(tmp_path, attention=False)
    image = photo(20, 24)
    reference = restore(image, "denoise", model=model, device="cpu", tile=0)
    from_file = restore(image, "denoise", model=model.source, device="cpu", tile=0)
    np.testing.assert_allclose(from_file, reference, atol=1e-6)
    notes: list[str] = []
    half = restore(image, "denoise", model=model, device="cpu", tile=0, precision="fp16", notice=notes.append)
    assert notes and "fp16" in notes[0]
    assert np.abs(half - reference).max() < 0.05
    assert next(model.model.parameters()).dtype == torch.float32  # the descriptor is left as it was


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_second_call_with_other_settings_gives_the_first_calls_result(tmp_path, monkeypatch, dtype):
    """restore() runs the weights in another dtype and layout without keeping them: the model stays as found."""
    import panet_cli.devices

    model = tiny(tmp_path, window=8, window_overlap=2)
    weights = {k: v.clone() for k, v in model.model.state_dict().items()}
    layouts = {k: v.stride() for k, v in model.model.state_dict().items()}
    image = photo(40, 36)
    first = restore(image, "denoise", model=model, device="cpu", tile=0)
    # the low precision really runs (a CPU without native bf16 would otherwise fall back to fp32)
    monkeypatch.setattr(panet_cli.devices, "resolve_precision", lambda device, precision: (dtype, None))
    low = restore(image, "denoise", model=model, device="cpu", tile=16, tile_overlap=4, precision="bf16")
    monkeypatch.undo()
    assert low.shape == first.shape and not np.array_equal(low, first)
    again = restore(image, "denoise", model=model, device="cpu", tile=0)
    assert np.array_equal(again, first)
    for key, value in model.model.state_dict().items():
        assert value.dtype == torch.float32 and value.stride() == layouts[key], key
        assert torch.equal(value, weights[key]), key


def test_size_requirements_come_from_the_descriptor(tmp_path):
    """An input is padded to the descriptor's min_side and alignment, and the result cropped back."""
    import dataclasses

    model = tiny(tmp_path, attention=False)
    seen: list[tuple[int, int]] = []
    net = model.model
    forward = net.forward
    net.forward = lambda x: (seen.append(tuple(x.shape[-2:])), forward(x))[1]
    aligned = dataclasses.replace(model, min_side=20, alignment=8)
    out = restore(photo(13, 21), "denoise", model=aligned, device="cpu", tile=0)
    assert out.shape == (13, 21, 3) and seen == [(24, 24)]


def test_restore_options_object_and_keywords_are_one_api(tmp_path):
    """restore(options=RestoreOptions(...)) is the keywords' call; keywords override the object's fields."""
    from panet_cli.inference import RestoreOptions

    model = tiny(tmp_path, window=8, window_overlap=2)
    image = photo(40, 36)
    options = RestoreOptions(tile=16, tile_overlap=4)
    by_keywords = restore(image, "denoise", model=model, device="cpu", tile=16, tile_overlap=4)
    assert np.array_equal(restore(image, "denoise", options=options, model=model, device="cpu"), by_keywords)
    whole = restore(image, "denoise", options=options, model=model, device="cpu", tile=0)
    assert np.array_equal(whole, restore(image, "denoise", model=model, device="cpu", tile=0))
    assert options == RestoreOptions(tile=16, tile_overlap=4)  # frozen: the call changed nothing
    with pytest.raises(TypeError, match="tiles"):
        restore(image, "denoise", model=model, device="cpu", tiles=16)
