"""Protocols, the scoring loop and ``panet eval`` on tiny images with a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from panet_cli import degradations as d
from panet_cli.cli.app import app
from panet_cli.errors import PanetError
from panet_cli.evaluation import (
    Method,
    Protocol,
    baseline_methods,
    collect_images,
    evaluate,
    make_sample,
    score,
)
from panet_cli.loading.architectures import build_network
from panet_cli.loading.checkpoint import save_safetensors
from panet_cli.metrics import y_channel_8bit
from cli_results import assert_clean_exit

pytest.importorskip("skimage")

TINY = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "reduction": 2, "input_skip": True, "window": 16,
        "window_overlap": 4}


def _clean(seed: int, h: int = 36, w: int = 44) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.35 * np.sin(6 * xx + 4 * yy + p) for p in rng.uniform(0, 6, 3)], axis=-1)
    return (np.round(img * 255) / 255).astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench")
    for i, name in enumerate(("2", "10")):  # natural order: 2 before 10
        Image.fromarray((_clean(i) * 255).round().astype(np.uint8)).save(path / f"{name}.png")
    (path / "notes.txt").write_text("not an image")
    return path


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_network("PANet", TINY)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_safetensors(path, model.state_dict(), {"arch": "PANet", "config": TINY, "task": "denoise", "name": "tiny"})
    return path


# ------------------------------------------------------------------------------------ protocols


def test_protocols_follow_the_papers():
    sr = Protocol.for_task("sr", scale=3)
    assert (sr.scale, sr.shave, sr.y_channel, sr.colors) == (3, 3, True, 3)
    car = Protocol.for_task("car", quality=20)
    assert (car.level, car.colors, car.y_channel, car.shave) == (20, 1, False, 0)
    assert Protocol.for_task("car", quality=20, colors=3).colors == 3
    den = Protocol.for_task("denoise", sigma=50)
    assert (den.level, den.float_noise, den.colors) == (50, False, 3)
    assert Protocol.for_task("demosaic", pattern="bggr").pattern == "BGGR"
    for bad in (lambda: Protocol.for_task("deblur"), lambda: Protocol.for_task("car", quality=0),
                lambda: Protocol.for_task("demosaic", pattern="XXXX"), lambda: Protocol.for_task("sr", scale=1)):
        with pytest.raises(PanetError):
            bad()


def test_denoise_samples_are_seeded_per_image_and_8_bit():
    clean = _clean(0)
    protocol = Protocol.for_task("denoise", sigma=25)
    a, b = make_sample("x", clean, protocol), make_sample("x", clean, protocol)
    assert np.array_equal(a.degraded, b.degraded) and np.array_equal(a.target, clean)
    assert not np.array_equal(a.degraded, make_sample("y", clean, protocol).degraded)
    assert np.allclose(a.degraded * 255, np.round(a.degraded * 255), atol=1e-4)
    assert 20 < ((a.degraded - clean) * 255).std() < 30
    floating = make_sample("x", clean, Protocol.for_task("denoise", sigma=25, float_noise=True))
    assert not np.allclose(floating.degraded * 255, np.round(floating.degraded * 255), atol=1e-3)


def test_sr_car_and_demosaic_samples():
    clean = _clean(1, 38, 45)
    sr = make_sample("s", clean, Protocol.for_task("sr", scale=4))
    assert sr.target.shape == (36, 44, 3) and sr.degraded.shape == (9, 11, 3)
    car = make_sample("c", clean, Protocol.for_task("car", quality=10))
    assert car.target.shape == car.degraded.shape == (38, 45, 1)
    y = y_channel_8bit(torch.from_numpy(clean).permute(2, 0, 1))[0].numpy()
    assert np.array_equal(car.target[..., 0], y)  # MATLAB's Y of the colour image, then JPEG
    assert np.array_equal(car.degraded, d.jpeg_compress(torch.from_numpy(y)[None], 10).permute(1, 2, 0).numpy())
    dem = make_sample("m", clean, Protocol.for_task("demosaic", pattern="GRBG"))
    assert dem.degraded.shape == (38, 45, 1)
    assert dem.degraded[0, 0, 0] == clean[0, 0, 1] and dem.degraded[0, 1, 0] == clean[0, 1, 0]
    grey = make_sample("g", clean[..., :1], Protocol.for_task("sr", scale=2))
    assert grey.target.shape[2] == 3  # grey images are scored as RGB with equal channels


def test_score_uses_the_protocol():
    clean = _clean(2)
    protocol = Protocol.for_task("sr", scale=2)
    assert score(clean, clean, protocol)[0] == float("inf")
    damaged = clean.copy()
    damaged[:2] = 0  # only inside the shaved border
    assert score(damaged, clean, protocol) == (float("inf"), pytest.approx(1.0))
    assert np.isfinite(score(damaged, clean, Protocol.for_task("denoise"))[0])
    with pytest.raises(PanetError):
        score(clean[:10], clean, protocol)


def test_collect_images_sorts_naturally_and_limits(folder, tmp_path):
    assert [p.name for p in collect_images([folder])] == ["2.png", "10.png"]
    assert [p.name for p in collect_images([folder], limit=1)] == ["2.png"]
    with pytest.raises(PanetError):
        collect_images([tmp_path / "nothing"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PanetError):
        collect_images([empty])


# --------------------------------------------------------------------------------------- the loop


def test_every_method_sees_the_same_input_and_is_scored_alike(folder):
    seen: dict[str, list[np.ndarray]] = {"a": [], "b": []}

    def recorder(key: str):
        def run(image: np.ndarray) -> np.ndarray:
            seen[key].append(image.copy())
            return image
        return run

    protocol = Protocol.for_task("denoise", sigma=15)
    report = evaluate(collect_images([folder]), protocol, [Method("a", recorder("a")), Method("b", recorder("b"))],
                      warm_up=False)
    assert all(np.array_equal(x, y) for x, y in zip(seen["a"], seen["b"])) and len(seen["a"]) == 2
    assert [im.name for im in report.images] == ["2", "10"]
    first = report.images[0].scores
    assert first["a"].psnr == first["b"].psnr
    expected = 20 * np.log10(255 / 15)  # identity on the noisy input: about the noise level
    assert abs(report.mean("a").psnr - expected) < 1.0
    mean = report.mean("a")
    assert mean.megapixels == pytest.approx(2 * 36 * 44 / 1e6)
    assert mean.seconds_per_mp == pytest.approx(mean.seconds / mean.megapixels)
    data = report.to_dict()
    assert data["methods"] == ["a", "b"] and len(data["images"]) == 2
    assert data["mean"]["a"]["psnr"] == pytest.approx(np.mean([im["scores"]["a"]["psnr"] for im in data["images"]]))
    table = report.markdown_means("variant").splitlines()
    assert table[0] == "| variant | PSNR (dB) | SSIM | s/MP |" and len(table) == 4
    assert table[2].startswith(f"| a | {mean.psnr:.3f} | {mean.ssim:.4f} | ")


def test_baselines_beat_doing_nothing(folder):
    pytest.importorskip("cv2")
    pytest.importorskip("colour_demosaicing")
    files = collect_images([folder])
    for task, options in (("denoise", {"sigma": 25}), ("demosaic", {}), ("sr", {"scale": 2})):
        protocol = Protocol.for_task(task, **options)
        methods = [m for m in baseline_methods(protocol) if m.name != "CBM3D"]  # CBM3D is covered by the CLI test
        assert methods
        report = evaluate(files, protocol, methods, warm_up=False)
        for m in methods:
            assert report.mean(m.name).psnr > 25, (task, m.name)


# -------------------------------------------------------------------------------------- the CLI


def test_eval_cli_json_with_a_tiny_model(folder, tiny_weights):
    result = CliRunner().invoke(app, ["eval", str(folder), "--weights", str(tiny_weights), "--sigma", "30", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["methods"] == ["tiny"] and data["protocol"]["task"] == "denoise" and data["protocol"]["level"] == 30
    assert [im["name"] for im in data["images"]] == ["2", "10"]
    assert data["model"]["window"] == 16 and data["model"]["attention_enabled"] is True
    assert data["mean"]["tiny"]["s_per_mp"] > 0


def test_eval_cli_scores_the_self_ensemble_with_tta(folder, tiny_weights):
    args = ["eval", str(folder), "--weights", str(tiny_weights), "--sigma", "30", "--limit", "1", "--json"]
    plain = json.loads(CliRunner().invoke(app, args).stdout)
    result = CliRunner().invoke(app, [*args, "--tta"])
    assert result.exit_code == 0, result.output
    ensemble = json.loads(result.stdout)
    assert ensemble["methods"] == ["tiny (tta)"]
    # the same noisy input, restored 8 ways and averaged: a different score from the single pass
    assert ensemble["mean"]["tiny (tta)"]["psnr"] != pytest.approx(plain["mean"]["tiny"]["psnr"], abs=1e-6)


def test_eval_cli_table_with_baselines_and_limit(folder, tiny_weights):
    pytest.importorskip("bm3d")
    pytest.importorskip("cv2")
    result = CliRunner().invoke(app, ["eval", str(folder), "--weights", str(tiny_weights), "--baselines",
                                      "--limit", "1", "--no-attention"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("tiny (no attention)", "CBM3D", "NLM (OpenCV)", "mean (1)", "s/MP", "sigma 25"):
        assert text in out
    assert "10 " not in out.split("mean")[0].split("image")[-1]  # --limit 1 kept only "2"


def test_eval_cli_errors_are_one_line(folder, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["eval", str(folder), "--weights", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code != 0
    assert_clean_exit(missing, missing.exit_code, "nope.safetensors")
    no_task = runner.invoke(app, ["eval", str(folder)])
    assert no_task.exit_code == 2
    wrong = tmp_path / "junk.safetensors"
    wrong.write_bytes(b"junk")
    bad = runner.invoke(app, ["eval", str(folder), "--weights", str(wrong), "--task", "denoise"])
    assert bad.exit_code == 1 and len(bad.stderr.strip().splitlines()) == 1
