"""benchmarks/card_plots.py: model-card pictures from the metadata of a weights file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from panet_cli.loading.checkpoint import save_safetensors

pytest.importorskip("matplotlib")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "card_plots.py"


@pytest.fixture(scope="module")
def card_plots():
    spec = importlib.util.spec_from_file_location("card_plots", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _weights(path: Path, **meta) -> Path:
    save_safetensors(path, {"head.weight": torch.zeros(2, 2)}, {"arch": "PANet", "task": "denoise", **meta})
    return path


def _png(path: Path) -> np.ndarray:
    assert path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def test_plots_the_stored_curve_and_given_figures(card_plots, tmp_path, capsys):
    curve = [[0, 0.0, 12.0], [100, 0.1, 27.0], [200, 0.2, 28.1], [300, 0.35, 28.4]]
    weights = _weights(tmp_path / "tiny_model.safetensors", step=300,
                       recipe={"task": "denoise", "val_sigma": 25.0}, training={"curve": curve})
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps({"tiny-model": {
        "val_baselines": {"CBM3D": 28.2, "bilinear": {"psnr": 26.5, "steps": [100, 200]}},
        "curve_marks": [{"step": 200, "label": "attention on"}]}}))
    worth = tmp_path / "worth.md"  # what benchmarks/attention_worth.py prints
    worth.write_text("tiny_model: CBSD68 (4 images), denoise sigma 25 (8-bit noise); PSNR dB / SSIM on RGB\n\n"
                     "| variant | PSNR (dB) | SSIM | s/MP |\n| --- | --- | --- | --- |\n"
                     "| attention bypassed | 32.580 | 0.8710 | 19.7 |\n"
                     "| window 16, overlap 2 (stored default) | 32.629 | 0.8730 | 43.4 |\n")
    out = tmp_path / "plots"
    assert card_plots.main([str(weights), "--figures", str(figures), "--worth", str(worth), "--out", str(out)]) == 0
    curve_png, worth_png = _png(out / "tiny-model_curve.png"), _png(out / "tiny-model_attention.png")
    assert curve_png.shape[0] > 200 and curve_png.std() > 10  # a picture, not a blank
    assert worth_png.std() > 10
    assert not list(out.glob(".panet-*"))  # written atomically: no temporary file left
    printed = capsys.readouterr().out
    assert str(out / "tiny-model_curve.png") in printed


def test_figures_come_from_metadata_first_and_absent_ones_are_skipped(card_plots, tmp_path, capsys):
    rows = [{"variant": "attention bypassed", "psnr": 30.0, "s_per_mp": 2.0},
            {"variant": "window 24, overlap 4 (stored default)", "psnr": 30.1, "s_per_mp": 6.0}]
    stored = _weights(tmp_path / "stored.safetensors", training={"curve": [[0, 0.0, 20.0], [50, 0.1, 21.0]]},
                      attention_worth={"set": "Set5", "rows": rows})
    bare = _weights(tmp_path / "bare.safetensors")
    none = tmp_path / "none.json"
    none.write_text("{}")
    found = card_plots.figures_for(stored, {"attention_worth": {"rows": rows}}, {"stored": {"attention_worth": {}}})
    assert found["attention_worth"]["rows"] == rows
    out = tmp_path / "plots"
    assert card_plots.main([str(stored), str(bare), "--figures", str(none), "--out", str(out)]) == 0
    _png(out / "stored_curve.png")
    _png(out / "stored_attention.png")
    assert not (out / "bare_curve.png").exists() and not (out / "bare_attention.png").exists()
    assert "bare.safetensors: no curve figures (skipped)" in capsys.readouterr().out


@pytest.mark.parametrize(("meta", "words"), [
    ({"task": "denoise", "recipe": {"val_sigma": 50.0}}, "noise sigma 50"),
    ({"task": "car", "recipe": {"val_quality": 20}}, "JPEG q20"),
    ({"task": "sr", "scale": 3, "recipe": {"scale": 4}}, "x3, PSNR on Y"),  # the model's own scale wins
    ({"task": "demosaic", "recipe": {}}, "RGGB mosaic"),
    ({"task": "denoise", "recipe": {}}, "denoise"),  # an old recipe without the field
    ({"task": "inpaint"}, "inpaint"),
])
def test_validation_in_words_follows_the_task_table(card_plots, meta, words):
    assert card_plots._validation(meta) == words


def test_attention_figures_of_other_weights_are_not_drawn(card_plots, tmp_path, capsys):
    """A retrained model must not keep its predecessor's attention picture (session 20 found three stale)."""
    rows = [{"variant": "attention bypassed", "psnr": 30.0, "s_per_mp": 2.0},
            {"variant": "window 12, overlap 0 (stored default)", "psnr": 29.9, "s_per_mp": 6.0}]
    weights = _weights(tmp_path / "retrained.safetensors", step=900,
                       training={"curve": [[0, 0.0, 20.0], [900, 1.0, 21.0]]})
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps({"retrained": {"attention_worth": {"set": "Set5", "step": 400, "rows": rows}}}))
    out = tmp_path / "plots"
    assert card_plots.main([str(weights), "--figures", str(figures), "--out", str(out)]) == 0
    assert "attention figures are for step 400, the file is step 900" in capsys.readouterr().out
    assert not (out / "retrained_attention.png").exists()
    _png(out / "retrained_curve.png")
    figures.write_text(json.dumps({"retrained": {"attention_worth": {"set": "Set5", "step": 900, "rows": rows}}}))
    assert card_plots.main([str(weights), "--figures", str(figures), "--out", str(out)]) == 0
    _png(out / "retrained_attention.png")


def test_shipped_models_attention_figures_are_for_the_shipped_steps(card_plots):
    """card_figures.json's attention measurements name the step of each weights file in weights/."""
    from panet_cli.loading.checkpoint import read_safetensors

    root = SCRIPT.parents[1]
    figures = card_plots.load_figures([root / "benchmarks" / "card_figures.json"])
    checked = 0
    for path in sorted((root / "weights").glob("*.safetensors")):
        _, meta = read_safetensors(path)
        worth = card_plots.figures_for(path, meta, figures).get("attention_worth")
        if worth:
            why = card_plots.stale_worth(meta, {"attention_worth": worth}) or "no step recorded"
            assert worth.get("step") == meta.get("step"), f"{path.name}: {why}"
            checked += 1
    assert checked >= 6


def test_shipped_models_validation_baselines_are_measured_on_their_validation_crops(card_plots):
    """Every val_baselines line of card_figures.json is re-measured on the crops it claims (session 20 found the
    demosaicer's and SR x4's drawn from crops of an earlier training design: 27.2 dB bilinear beside a 40 dB curve)."""
    from panet_cli.baselines import BASELINES, BaselineUnavailable
    from panet_cli.loading.checkpoint import read_safetensors

    spec = importlib.util.spec_from_file_location("val_baselines", SCRIPT.parent / "val_baselines.py")
    val_baselines = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(val_baselines)
    if not val_baselines.TRAIN_DATA.is_dir():
        pytest.skip(f"needs the training images ({val_baselines.TRAIN_DATA})")
    root = SCRIPT.parents[1]
    figures = card_plots.load_figures([root / "benchmarks" / "card_figures.json"])
    checked = 0
    for path in sorted((root / "weights").glob("*.safetensors")):
        _, meta = read_safetensors(path)
        for label, value in (card_plots.figures_for(path, meta, figures).get("val_baselines") or {}).items():
            line = value if isinstance(value, dict) else {"psnr": value}
            method = line.get("method", label)
            if method not in BASELINES:  # another model's validation (e.g. panet-denoise-blind): says how it was got
                assert line.get("source"), f"{path.name}: {label} is neither a baseline method nor has a source"
                continue
            folders = val_baselines.training_folders(meta, line.get("data"))
            try:
                measured = val_baselines.baselines_on_validation(meta, [method], line.get("stage", -1), folders)
            except BaselineUnavailable:
                continue
            assert abs(measured[method] - line["psnr"]) < 0.006, f"{path.name}: {label} is {measured[method]:.3f} dB"
            checked += 1
    assert checked >= 8
