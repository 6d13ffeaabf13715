"""Reading checkpoints safely, detecting architectures from shapes, descriptors and conversion."""

from __future__ import annotations

import json
import os
import pathlib
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from panet_cli.errors import CheckpointError, IncompatibleModel
from panet_cli.loading import ModelDescriptor, convert_checkpoint, load_model
from panet_cli.loading.architectures import detect_architecture
from panet_cli.loading.checkpoint import read_checkpoint, read_safetensors, save_safetensors, unwrap_state_dict
from panet_cli.networks import PAEDSR, PANet

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"
needs_shared = pytest.mark.skipif(not OFFICIAL.is_dir(), reason="../shared/fixtures/official not present")


def tiny_panet(**kwargs) -> PANet:
    torch.manual_seed(0)
    return PANet(**{"n_resblocks": 2, "n_feats": 8, "n_colors": 3, **kwargs}).eval()


def output(model: torch.nn.Module, n_colors: int = 3, size: tuple[int, int] = (11, 14)) -> torch.Tensor:
    x = torch.rand(1, n_colors, *size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return model(x)


# ----- unsafe and broken files -----

class TouchOnLoad:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


class ShellOnLoad:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("payload", [TouchOnLoad, ShellOnLoad])
@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path, payload, zipped: bool) -> None:
    import pickle

    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(payload(proof)))  # an ordinary unpickler does run the payload
    assert proof.exists()
    target = tmp_path / "pwned"
    bad = tmp_path / "model.pt"
    state = {"head.0.weight": torch.zeros(1), "trap": payload(target)}
    torch.save(state, bad, _use_new_zipfile_serialization=zipped)
    assert not target.exists()
    with pytest.raises(CheckpointError, match="refused") as info:
        load_model(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    assert not target.exists()


def test_plain_pickle_with_a_payload_is_refused(tmp_path: Path) -> None:
    import pickle

    target = tmp_path / "pwned"
    bad = tmp_path / "model.pth"
    bad.write_bytes(pickle.dumps({"a": TouchOnLoad(target)}))
    with pytest.raises(CheckpointError):
        read_checkpoint(bad)
    assert not target.exists()


def test_missing_empty_truncated_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such"):
        load_model(tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="folder"):
        load_model(tmp_path)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_model(empty)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.pt"):
        load_model(text)
    good = tmp_path / "good.pt"
    torch.save(tiny_panet().state_dict(), good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_model(cut)
    ours = tmp_path / "ours.safetensors"
    save_safetensors(ours, tiny_panet().state_dict(), {"arch": "PANet"})
    cut_ours = tmp_path / "cut.safetensors"
    cut_ours.write_bytes(ours.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_model(cut_ours)


def test_non_tensor_entries_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pt"
    torch.save({"head.0.weight": torch.zeros(8, 3, 3, 3), "epoch": 12}, path)
    with pytest.raises(CheckpointError, match="not a plain tensor state_dict"):
        load_model(path)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointError, match="list"):
        load_model(listed)


def test_wrappers_and_prefixes_are_removed() -> None:
    state = {"module.head.0.weight": torch.zeros(1), "module.tail.0.weight": torch.ones(1)}
    wrapped = {"params": {"x": torch.zeros(1)}, "params_ema": state, "iter": 3}
    assert set(unwrap_state_dict(wrapped)) == {"head.0.weight", "tail.0.weight"}
    assert set(unwrap_state_dict({"state_dict": state})) == {"head.0.weight", "tail.0.weight"}


# ----- architecture detection -----

SR_FULL = {"n_resblocks": 32, "n_feats": 256, "n_colors": 3, "res_scale": 0.1, "reduction": 8}
EXPECTED_FULL = {
    "panet_rgb": ("PANet", {"n_resblocks": 80, "n_feats": 64, "n_colors": 3, "reduction": 2}),
    "panet_gray": ("PANet", {"n_resblocks": 80, "n_feats": 64, "n_colors": 1, "reduction": 2}),
    "paedsr_x2": ("PAEDSR", {"scale": 2, **SR_FULL}),
    "paedsr_x3": ("PAEDSR", {"scale": 3, **SR_FULL}),
    "paedsr_x4": ("PAEDSR", {"scale": 4, **SR_FULL}),
}


def meta_state(layout: str) -> dict[str, torch.Tensor]:
    """Tensors of the published shapes on the meta device: shapes without memory."""
    shapes = json.loads((OFFICIAL / f"keys_{layout}_full.json").read_text())
    return {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}


@needs_shared
@pytest.mark.parametrize("layout", sorted(EXPECTED_FULL))
def test_detects_every_published_layout(layout: str) -> None:
    assert detect_architecture(meta_state(layout), layout) == EXPECTED_FULL[layout]


@needs_shared
def test_full_size_panet_loads_with_published_tasks() -> None:
    """One full-size model (80 blocks x 64 features: 5.7M parameters) built from a file."""
    state = {k: torch.zeros(v.shape) for k, v in meta_state("panet_rgb").items()}
    desc = load_model(state)
    described = (desc.arch, desc.tasks, desc.task, desc.scale, desc.n_colors)
    assert described == ("PANet", ("denoise", "demosaic"), None, 1, 3)
    assert desc.window is None and desc.level is None and desc.source == "<state_dict>"


def test_a_foreign_layout_names_what_was_found_and_expected() -> None:
    state = {"conv_first.weight": torch.zeros(64, 3, 3, 3), "conv_last.weight": torch.zeros(3, 64, 3, 3)}
    with pytest.raises(CheckpointError) as info:
        detect_architecture(state, "esrgan.pth")
    message = str(info.value)
    assert "esrgan.pth" in message and "conv_first" in message and "PANet" in message and "PA-EDSR" in message


def test_a_damaged_layout_names_the_tensors() -> None:
    state = tiny_panet().state_dict()
    state["body.0.body.0.weight"] = torch.zeros(8, 8, 5, 5)
    del state["tail.0.bias"]
    with pytest.raises(CheckpointError) as info:
        detect_architecture(state, "broken.pt")
    message = str(info.value)
    assert "tail.0.bias" in message and "body.0.body.0.weight" in message and "[8, 8, 5, 5]" in message


def test_unsupported_upsampler_is_explained() -> None:
    state = PAEDSR(scale=2, n_resblocks=2, n_feats=8, reduction=2).state_dict()
    state["tail.0.0.weight"] = torch.zeros(40, 8, 3, 3)
    with pytest.raises(CheckpointError, match="upsampler"):
        detect_architecture(state)


def random_configs(seed: int, count: int) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    configs = []
    for _ in range(count):
        feats = rng.choice([4, 8, 12])
        common = {"n_resblocks": rng.choice([2, 4]), "n_feats": feats, "reduction": rng.choice([1, 2, 4])}
        if rng.random() < 0.5:
            configs.append(("PANet", {**common, "n_colors": rng.choice([1, 3])}))
        else:
            configs.append(("PAEDSR", {**common, "n_colors": 3, "scale": rng.choice([2, 3, 4]), "res_scale": 0.1}))
    return configs


@pytest.mark.parametrize("arch,config", random_configs(seed=7, count=6))
def test_random_hyperparameters_round_trip(tmp_path: Path, arch: str, config: dict) -> None:
    """build -> save (bare .pt, wrapped .pth, our safetensors) -> detect -> reload -> same outputs."""
    torch.manual_seed(1)
    net = (PANet if arch == "PANet" else PAEDSR)(**config).eval()
    expected = output(net, config["n_colors"])
    bare, wrapped, ours = tmp_path / "bare.pt", tmp_path / "wrapped.pth", tmp_path / "ours.safetensors"
    torch.save(net.state_dict(), bare)
    torch.save({"params_ema": {f"module.{k}": v for k, v in net.state_dict().items()}, "iter": 10}, wrapped)
    save_safetensors(ours, net.state_dict(), {"arch": arch, "config": config, "task": "x"})
    for path in (bare, wrapped, ours):
        desc = load_model(path)
        assert (desc.arch, desc.config) == (arch, config)
        assert torch.equal(output(desc.model, config["n_colors"]), expected)


def test_metadata_config_wins_over_shapes(tmp_path: Path) -> None:
    """Window, input skip and attention on/off cannot be read from shapes."""
    config = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "reduction": 2, "input_skip": True, "window": 6,
              "window_overlap": 2}
    net = tiny_panet(**{k: v for k, v in config.items() if k not in ("n_resblocks", "n_feats", "n_colors")})
    net.attention.enabled = False
    path = tmp_path / "ours.safetensors"
    save_safetensors(path, net.state_dict(), {"arch": "PANet", "config": config, "task": "denoise", "level": 25,
                                             "attention_enabled": False, "name": "tiny"})
    desc = load_model(path)
    assert desc.config == config and desc.window == 6 and desc.model.attention.window == 6
    assert desc.model.input_skip and not desc.model.attention.enabled and not desc.attention_enabled
    assert (desc.task, desc.tasks, desc.level, desc.name) == ("denoise", ("denoise",), 25.0, "tiny")
    assert torch.equal(output(desc.model, size=(15, 13)), output(net, size=(15, 13)))
    assert desc.tile_hint > 0 and desc.parameters == sum(p.numel() for p in net.parameters())


def test_metadata_that_contradicts_the_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "liar.safetensors"
    save_safetensors(path, tiny_panet().state_dict(), {"arch": "PANet", "config": {"n_resblocks": 4, "n_feats": 8}})
    with pytest.raises(CheckpointError, match="liar.safetensors"):
        load_model(path)
    save_safetensors(path, tiny_panet().state_dict(), {"arch": "SwinIR", "config": {}})
    with pytest.raises(CheckpointError, match="SwinIR"):
        load_model(path)


def test_fp16_storage_halves_the_file_and_keeps_config_and_metadata(tmp_path: Path) -> None:
    """``store_fp16``: tensors in fp16 on disk, fp32 after loading, metadata kept, outputs within fp16 rounding."""
    from panet_cli.loading.checkpoint import store_fp16

    config = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "reduction": 2, "input_skip": True, "window": 6,
              "window_overlap": 2}
    net = tiny_panet(**{k: v for k, v in config.items() if k not in ("n_resblocks", "n_feats", "n_colors")})
    path = tmp_path / "ours.safetensors"
    save_safetensors(path, net.state_dict(), {"arch": "PANet", "config": config, "task": "denoise", "step": 7,
                                             "training": {"curve": [[7, 0.1, 30.5]]}})
    before, after = store_fp16(path)
    assert after < 0.6 * before and after == path.stat().st_size
    tensors, meta = read_safetensors(path)
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    assert meta["stored_dtype"] == "float16" and meta["step"] == 7 and meta["training"]["curve"] == [[7, 0.1, 30.5]]
    desc = load_model(path)
    assert desc.config == config and all(p.dtype == torch.float32 for p in desc.model.parameters())
    difference = (output(desc.model) - output(net)).abs().max().item()
    assert 0 < difference < 1e-2  # rounded, not unchanged, and close
    stored = path.read_bytes()
    assert store_fp16(path) == (after, after) and path.read_bytes() == stored  # idempotent: sha256 unchanged


def test_store_window_changes_the_default_window_only(tmp_path: Path) -> None:
    """``store_window``: the file runs with the new window, keeps its weights, and records why and what was trained."""
    from panet_cli.loading.checkpoint import store_window

    config = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "reduction": 2, "input_skip": True, "window": 8,
              "window_overlap": 2}
    net = tiny_panet(**{k: v for k, v in config.items() if k not in ("n_resblocks", "n_feats", "n_colors")})
    path = tmp_path / "ours.safetensors"
    save_safetensors(path, net.state_dict(), {"arch": "PANet", "config": config, "task": "denoise", "step": 7})
    assert store_window(path, 4, 0, "measured: same PSNR, half the time") == "8/2"
    desc = load_model(path)
    assert (desc.window, desc.model.attention.window_overlap) == (4, 0)
    _, meta = read_safetensors(path)
    assert meta["window_choice"] == "measured: same PSNR, half the time" and meta["window_trained"] == "8/2"
    assert meta["step"] == 7
    expected = net.eval()
    expected.attention.window, expected.attention.window_overlap = 4, 0
    assert torch.equal(output(desc.model), output(expected))
    store_window(path, 6, 1, "again")
    assert read_safetensors(path)[1]["window_trained"] == "8/2"  # the trained window is kept, not overwritten
    with pytest.raises(CheckpointError, match="overlap"):
        store_window(path, 4, 4, "bad")
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="bogus.safetensors"):
        store_window(bogus, 4, 0, "x")


def test_state_dict_source_is_copied() -> None:
    net = tiny_panet()
    desc = load_model(net.state_dict())
    assert isinstance(desc, ModelDescriptor) and not desc.model.training
    with torch.no_grad():
        net.head[0].weight.zero_()
    assert desc.model.head[0].weight.abs().sum() > 0


def test_paedsr_saves_to_safetensors_despite_its_shared_attention(tmp_path: Path) -> None:
    net = PAEDSR(scale=2, n_resblocks=2, n_feats=8, reduction=2).eval()
    path = tmp_path / "sr.safetensors"
    save_safetensors(path, net.state_dict(), {"arch": "PAEDSR", "config": {"scale": 2, "n_resblocks": 2,
                                                                          "n_feats": 8, "reduction": 2}})
    tensors, meta = read_safetensors(path)
    assert torch.equal(tensors["msa.conv_assembly.0.weight"], tensors["body.1.conv_assembly.0.weight"])
    desc = load_model(path)
    assert desc.tasks == ("sr",) and desc.scale == 2
    assert torch.equal(output(desc.model, size=(6, 5)), output(net, size=(6, 5)))


def test_training_state_file_keeps_its_config(tmp_path: Path) -> None:
    """``*.state.pt`` files of ``panet train`` hold the network config in their training record."""
    config = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "reduction": 2, "input_skip": True, "window": 6}
    net = tiny_panet(input_skip=True, window=6)
    record = {"stages": [{"arch": "PANet", "network": config, "task": "denoise", "attention": True}]}
    path = tmp_path / "run.safetensors.state.pt"
    torch.save({"model": net.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "step": 40,
                "training": json.dumps(record)}, path)
    desc = load_model(path)
    assert desc.config == config and desc.task == "denoise" and desc.model.input_skip


# ----- conversion of published checkpoints -----

@needs_shared
def test_convert_round_trip(tmp_path: Path) -> None:
    import hashlib

    src = OFFICIAL / "panet_rgb_r4.pt"
    dst = tmp_path / "panet-denoise-s25.safetensors"
    desc = convert_checkpoint(src, dst, name="panet-denoise-s25", task="denoise", level=25,
                              extra_metadata={"licence": "MIT", "name": "ignored"})
    assert dst.is_file() and desc.source == str(dst)
    described = (desc.name, desc.task, desc.tasks, desc.level, desc.arch)
    assert described == ("panet-denoise-s25", "denoise", ("denoise",), 25.0, "PANet")
    meta = desc.metadata
    assert meta["provenance"]["source_file"] == "panet_rgb_r4.pt"
    assert meta["provenance"]["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["licence"] == "MIT" and meta["panet_format"] == 1
    x = torch.from_numpy(np.load(OFFICIAL / "panet_rgb_r4_in.npy"))
    with torch.no_grad():
        assert torch.equal(desc.model(x), load_model(src).model(x))


@needs_shared
def test_convert_keeps_scale_and_refuses_a_wrong_task(tmp_path: Path) -> None:
    src = OFFICIAL / "paedsr_x2_r2.pt"
    desc = convert_checkpoint(src, tmp_path / "sr.safetensors", name="sr")
    assert desc.metadata["scale"] == 2 and desc.tasks == ("sr",)
    with pytest.raises(IncompatibleModel, match="denoise"):
        convert_checkpoint(src, tmp_path / "no.safetensors", name="no", task="denoise")
    assert not (tmp_path / "no.safetensors").exists()


def test_our_file_without_a_valid_config_is_refused(tmp_path: Path) -> None:
    """Input skip, window and skip filter leave no tensors: guessing them from shapes would change the function."""
    state = tiny_panet(input_skip=True, window=6).state_dict()
    for meta, found in (({"task": "denoise"}, "no architecture config"),
                        ({"arch": "PANet", "task": "denoise"}, "malformed"),
                        ({"arch": "PANet", "config": "n_resblocks=2"}, "malformed"),
                        ({"config": {"n_resblocks": 2, "n_feats": 8}}, "malformed")):
        path = tmp_path / "ours.safetensors"
        save_safetensors(path, state, meta)
        with pytest.raises(CheckpointError, match=f"ours.safetensors: .*{found}"):
            load_model(path)
    # the same tensors from someone else (no panet metadata) are read by their shapes
    from safetensors.torch import save_file

    theirs = tmp_path / "theirs.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(theirs))
    assert load_model(theirs).arch == "PANet"


def test_descriptor_is_frozen_and_with_attention_makes_a_new_one(tmp_path: Path) -> None:
    import dataclasses

    config = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "reduction": 2, "input_skip": True, "window": 8,
              "window_overlap": 2}
    path = tmp_path / "ours.safetensors"
    save_safetensors(path, tiny_panet(input_skip=True, window=8, window_overlap=2).state_dict(),
                     {"arch": "PANet", "config": config, "task": "denoise"})
    desc = load_model(path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        desc.window = 4  # type: ignore[misc]
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        before = desc(x)
        off = desc.with_attention(False)
        whole = desc.with_attention(True, window=None)
        assert (off.attention_enabled, off.window, whole.window, whole.config["window"]) == (False, 8, None, None)
        assert off.tile_hint == desc.tile_hint == 512 and whole.tile_hint == 128  # whole-input attention
        # the original is untouched, in its network too, and the variants share its weights
        assert desc.attention_enabled and desc.window == 8 and desc.model.attention.enabled
        assert desc.model.attention.window == 8 and desc.config["window"] == 8
        assert off.model.head[0].weight is desc.model.head[0].weight
        assert torch.equal(desc(x), before)
        bypassed = tiny_panet(input_skip=True, window=8, window_overlap=2)
        bypassed.load_state_dict(desc.model.state_dict())
        bypassed.attention.enabled = False
        assert torch.equal(off(x), bypassed.eval()(x)) and not torch.equal(off(x), before)
        # a variant rebuilt from its own config computes the same function
        rebuilt = PANet(**whole.config).eval()
        rebuilt.load_state_dict(desc.model.state_dict())
        assert torch.equal(whole(x), rebuilt(x))
    assert (desc.min_side, desc.alignment) == (16, 1)
