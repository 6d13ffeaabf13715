"""Per-architecture knowledge: build from a config (detection from state_dicts is added here too)."""

from __future__ import annotations

from typing import Any

from torch import nn

from panet_cli.networks import PAEDSR, PANet

NETWORKS: dict[str, type[nn.Module]] = {"PANet": PANet, "PAEDSR": PAEDSR}


def build_network(arch: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate ``arch`` with keyword ``config`` (as stored in our safetensors metadata)."""
    try:
        cls = NETWORKS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(NETWORKS)}") from None
    return cls(**config)
