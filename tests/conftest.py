"""Fixtures shared by the CLI, shard and Ray tests."""

from __future__ import annotations

import pytest
import torch


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
