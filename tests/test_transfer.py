"""Starting a model from another of ours: colour counts adapt exactly, SR scales keep their body."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from panet_cli.errors import PanetError
from panet_cli.loading.architectures import build_network
from panet_cli.loading.checkpoint import read_safetensors, save_safetensors
from panet_cli.training.loop import TrainConfig, train
from panet_cli.training.tasks import DegradationRecipe
from panet_cli.training.transfer import initialise_from

PANET = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "reduction": 2, "input_skip": True, "window": 16,
         "window_overlap": 4}
EDSR = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "reduction": 2, "res_scale": 1.0, "window": 8,
        "window_overlap": 2}


def _saved(tmp_path, arch: str, config: dict, task: str, attention_trained: bool = True) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    model = build_network(arch, config)
    for p in model.parameters():  # non-trivial weights everywhere, the assembly conv included
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    path = tmp_path / f"{task}.safetensors"
    save_safetensors(path, model.state_dict(), {"arch": arch, "config": config, "task": task, "step": 123,
                                                "training": {"cpu_hours": 0.5, "attention_trained": attention_trained}})
    return model.eval(), str(path)


def test_grey_model_from_colour_model_is_the_mean_of_its_outputs_on_grey_input(tmp_path):
    colour, path = _saved(tmp_path, "PANet", PANET, "denoise")
    grey = build_network("PANet", dict(PANET, n_colors=1)).eval()
    summary = initialise_from(grey, path)
    assert summary["adapted"] == ["head.0.weight", "tail.0.weight", "tail.0.bias"]
    assert summary["fresh"] == [] and summary["step"] == 123 and summary["task"] == "denoise"
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        expected = colour(x.repeat(1, 3, 1, 1)).mean(dim=1, keepdim=True)
        assert torch.allclose(grey(x), expected, atol=1e-6)


def test_sr_x2_keeps_the_x4_body_and_first_upsampler_stage_x3_starts_its_upsampler_fresh(tmp_path):
    x4, path = _saved(tmp_path, "PAEDSR", dict(EDSR, scale=4), "sr")
    x2 = build_network("PAEDSR", dict(EDSR, scale=2))
    summary = initialise_from(x2, path)
    assert summary["fresh"] == []
    assert torch.equal(x2.state_dict()["tail.0.0.weight"], x4.state_dict()["tail.0.0.weight"])
    assert torch.equal(x2.state_dict()["body.0.body.0.weight"], x4.state_dict()["body.0.body.0.weight"])
    x3 = build_network("PAEDSR", dict(EDSR, scale=3))
    summary = initialise_from(x3, path)
    assert summary["fresh"] == ["tail.0.0.weight", "tail.0.0.bias"]
    assert torch.equal(x3.state_dict()["tail.1.weight"], x4.state_dict()["tail.1.weight"])


def test_unrelated_weights_are_refused(tmp_path):
    _, path = _saved(tmp_path, "PANet", PANET, "denoise")
    with pytest.raises(PanetError, match="no learnt tensor matches"):
        initialise_from(build_network("PAEDSR", dict(EDSR, n_feats=16, scale=2)), path)


def test_training_from_another_model_starts_at_step_zero_and_keeps_its_trained_attention(tmp_path):
    colour, path = _saved(tmp_path, "PANet", PANET, "denoise")
    folder = tmp_path / "train"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "car_gray.safetensors"
    config = TrainConfig(data=folder, out=out, task="car", network=dict(PANET, n_colors=1),
                         recipe=DegradationRecipe("car"), attention=True, patch=16, batch=2, steps=2, lr=1e-12,
                         val_every=2, val_holdout=1, val_crop=32, precision="fp32", threads=1, init_from=Path(path))
    record = train(config, log=lambda m: None)
    assert [p[0] for p in record["curve"]] == [0, 2]
    assert record["initialised_from"]["from"] == "denoise.safetensors"
    tensors, meta = read_safetensors(out)
    # a trained attention is kept, not zero-initialised as when a bypassed one is first switched on
    assert torch.allclose(tensors["body.1.conv_assembly.0.weight"], colour.state_dict()["body.1.conv_assembly.0.weight"],
                          atol=1e-4)
    with pytest.raises(PanetError, match="not both"):
        train(TrainConfig(**{**config.__dict__, "resume": out}), log=lambda m: None)
