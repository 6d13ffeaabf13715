"""Fixtures shared by the CLI, shard and Ray tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY_DENOISER = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "input_skip": True}


@pytest.fixture
def isolated_registry(tmp_path_factory, monkeypatch):
    """No shipped or user models leak in (default-model lookups see an empty registry), one thread."""
    root = tmp_path_factory.getbasetemp()
    manifest = root / "manifest.json"
    manifest.write_text('{"format": 1, "hub": {"repo": null, "revision": null}, "models": []}')
    monkeypatch.setenv("PANET_MANIFEST", str(manifest))
    monkeypatch.setenv("PANET_HOME", str(root / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_denoiser(tmp_path_factory) -> Path:
    """A 2-block, 8-feature PANet denoiser in our format (attention bypassed): fast enough for any CLI test."""
    from panet_cli.loading.checkpoint import save_safetensors
    from panet_cli.networks import PANet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_safetensors(path, PANet(**TINY_DENOISER).state_dict(),
                     {"arch": "PANet", "config": TINY_DENOISER, "task": "denoise", "attention_enabled": False})
    return path
