"""Per-architecture knowledge: recognise a state_dict, read its hyperparameters, build the network.

Each architecture has two small jobs, in the spirit of spandrel: ``detect(state_dict)`` says
whether the tensor names are its own, ``load(state_dict)`` reads every hyperparameter from tensor
names and shapes alone (published ``.pt`` files carry nothing else). :data:`ARCHITECTURES` is the
one ordered registry; the first architecture that detects wins. File reading lives in
:mod:`panet_cli.loading.checkpoint`, never here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from panet_cli.errors import CheckpointError
from panet_cli.networks import PAEDSR, HalfResPANet, PANet
from panet_cli.tasks import Task, tasks_for_arch

StateDict = Mapping[str, torch.Tensor]
# Inputs are padded (reflected) to at least this side: the pyramid's 0.6 level of a 2-pixel image
# would be empty, and a few pixels of context is the least a 3x3 network needs.
MIN_SIDE = 16

NETWORKS: dict[str, type[nn.Module]] = {"PANet": PANet, "PAEDSR": PAEDSR, "HalfResPANet": HalfResPANet}


def build_network(arch: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate ``arch`` with keyword ``config`` (as stored in our safetensors metadata)."""
    try:
        cls = NETWORKS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(NETWORKS)}") from None
    return cls(**config)


@dataclass(frozen=True)
class Architecture:
    """One known checkpoint layout.

    ``tasks`` names what a *published* checkpoint of this layout was made for, given its config;
    our own files say their task in metadata instead. ``min_side``: inputs are padded to at least this
    side (the descriptor carries it, with the network's own ``size_multiple`` as its alignment).
    """

    name: str
    detect: Callable[[StateDict], bool]
    load: Callable[[StateDict], tuple[str, dict[str, Any]]]
    tasks: Callable[[dict[str, Any]], tuple[str, ...]]
    expected: str  # what its layout looks like, for error messages
    min_side: int = MIN_SIDE


def _shape(state: StateDict, key: str) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"missing tensor {key}")
    return tuple(state[key].shape)


def _body_length(state: StateDict) -> int:
    """Entries of the flat ``body`` Sequential: n blocks, the attention, the closing conv."""
    indices = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    if not indices:
        raise ValueError("no body.N tensors")
    return max(indices) + 1


def _blocks_and_reduction(state: StateDict, n_feats: int, prefix_of_attention: str) -> tuple[int, int]:
    n_resblocks = _body_length(state) - 2
    if n_resblocks < 2 or n_resblocks % 2:
        raise ValueError(f"body has {n_resblocks + 2} entries; expected an even number of blocks + 2")
    attention = f"body.{n_resblocks // 2}."
    if f"{attention}conv_match.0.weight" not in state:
        raise ValueError(f"no attention at {attention}* (the middle of a {n_resblocks}-block body)")
    match = _shape(state, f"{prefix_of_attention}conv_match.0.weight")[0]
    if match <= 0 or n_feats % match:
        raise ValueError(f"attention matching width {match} does not divide {n_feats} features")
    return n_resblocks, n_feats // match


# ----- PANet (denoising, demosaicing, JPEG artifacts) -----

def detect_panet(state: StateDict) -> bool:
    """Head conv, ``tail.0`` a single conv, attention inside ``body`` only, PReLU residual blocks."""
    return (
        "head.0.weight" in state
        and "tail.0.weight" in state
        and "body.0.body.1.weight" in state  # the block's PReLU
        and not any(k.startswith("msa.") for k in state)
    )


def load_panet(state: StateDict) -> tuple[str, dict[str, Any]]:
    n_feats, n_colors = _shape(state, "head.0.weight")[:2]
    n_resblocks, reduction = _blocks_and_reduction(state, n_feats, f"body.{(_body_length(state) - 2) // 2}.")
    config = {"n_resblocks": n_resblocks, "n_feats": n_feats, "n_colors": n_colors, "reduction": reduction}
    return "PANet", config


def panet_tasks(config: dict[str, Any]) -> tuple[str, ...]:
    """Published colour PANets are denoisers/demosaicers; the grayscale ones remove JPEG artifacts."""
    return (Task.denoise.value, Task.demosaic.value) if config.get("n_colors", 3) == 3 else (Task.car.value,)


# ----- PA-EDSR (super-resolution) -----

def detect_paedsr(state: StateDict) -> bool:
    """Attention stored as ``msa.*``, an upsampler at ``tail.0.*`` and a final conv ``tail.1``."""
    return (
        "head.0.weight" in state
        and "msa.conv_match.0.weight" in state
        and "tail.0.0.weight" in state
        and "tail.1.weight" in state
    )


def load_paedsr(state: StateDict) -> tuple[str, dict[str, Any]]:
    n_feats, n_colors = _shape(state, "head.0.weight")[:2]
    n_resblocks, reduction = _blocks_and_reduction(state, n_feats, "msa.")
    config = {
        "scale": _upsampler_scale(state, n_feats),
        "n_resblocks": n_resblocks,
        "n_feats": n_feats,
        "n_colors": n_colors,
        "res_scale": 0.1,  # not visible in tensors; every published PA-EDSR uses 0.1
        "reduction": reduction,
    }
    return "PAEDSR", config


def _upsampler_scale(state: StateDict, n_feats: int) -> int:
    """Convs at ``tail.0.0``, ``tail.0.2`` ... each followed by a pixel shuffle: 4C -> x2 each, 9C -> x3."""
    convs = sorted({int(m.group(1)) for k in state if (m := re.match(r"tail\.0\.(\d+)\.weight$", k))})
    if convs != list(range(0, 2 * len(convs), 2)):
        raise ValueError(f"upsampler convs at tail.0.{convs}; expected tail.0.0, tail.0.2, ...")
    out = _shape(state, "tail.0.0.weight")[0]
    if out == 4 * n_feats:
        return 2 ** len(convs)
    if out == 9 * n_feats and len(convs) == 1:
        return 3
    raise ValueError(
        f"upsampler tail.0.0 has {out} output channels and {len(convs)} conv(s); expected "
        f"{4 * n_feats} (x2, x4 with two convs) or {9 * n_feats} (x3) for {n_feats} features"
    )


def paedsr_tasks(config: dict[str, Any]) -> tuple[str, ...]:
    return tasks_for_arch("PAEDSR")


# ----- HalfResPANet (ours: the CPU model family, body at half resolution) -----

def detect_half_res(state: StateDict) -> bool:
    """Head conv over 2x2-folded pixels (4 or 12 channels in), ReLU blocks (no PReLU tensors), tail.0."""
    head = state.get("head.0.weight")
    return (
        head is not None
        and head.ndim == 4
        and head.shape[1] in (4, 12)
        and "tail.0.weight" in state
        and "body.0.body.0.weight" in state
        and "body.0.body.1.weight" not in state
    )


def load_half_res(state: StateDict) -> tuple[str, dict[str, Any]]:
    n_feats, folded = _shape(state, "head.0.weight")[:2]
    n_resblocks, reduction = _blocks_and_reduction(state, n_feats, f"body.{(_body_length(state) - 2) // 2}.")
    return "HalfResPANet", {"n_resblocks": n_resblocks, "n_feats": n_feats, "n_colors": folded // 4,
                            "reduction": reduction}


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture("PAEDSR", detect_paedsr, load_paedsr, paedsr_tasks,
                 "PA-EDSR: msa.*, head.0, body.N (ReLU blocks), tail.0.0 (upsampler), tail.1"),
    Architecture("PANet", detect_panet, load_panet, panet_tasks,
                 "PANet: head.0, body.N (PReLU blocks, attention in the middle), tail.0"),
    Architecture("HalfResPANet", detect_half_res, load_half_res, panet_tasks,
                 "HalfResPANet: head.0 over 4 or 12 folded channels, body.N (ReLU blocks), tail.0"),
)


def architecture(name: str) -> Architecture:
    """The registry entry called ``name``."""
    for arch in ARCHITECTURES:
        if arch.name == name:
            return arch
    raise CheckpointError(f"unknown architecture {name!r}; known: {', '.join(a.name for a in ARCHITECTURES)}")


def detect_architecture(state: StateDict, source: str = "<state_dict>") -> tuple[str, dict[str, Any]]:
    """``(arch, config)`` of a state_dict, from tensor names and shapes alone, checked against the network.

    Raises:
        CheckpointError: no layout fits; the message lists what was found and what was expected.
    """
    for arch in ARCHITECTURES:
        if arch.detect(state):
            try:
                name, config = arch.load(state)
            except ValueError as e:
                raise CheckpointError(f"{source}: looks like {arch.name} but {e}") from None
            check_layout(name, config, state, source)
            return name, config
    expected = "; or ".join(a.expected for a in ARCHITECTURES)
    raise CheckpointError(f"{source}: fits no known architecture: found {_summary(state)}; expected {expected}")


def check_layout(arch: str, config: dict[str, Any], state: StateDict, source: str = "<state_dict>") -> None:
    """Raise CheckpointError unless ``state`` has exactly the tensors ``arch(**config)`` expects.

    The network is built on the meta device, so this costs no memory even for the full PA-EDSR.
    """
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_network(arch, config).state_dict().items()}
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid {arch} configuration {config}: {e}") from None
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [f"{k} {list(found[k])} (expected {list(expected[k])})"
             for k in expected if k in found and found[k] != expected[k]]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_first(unexpected)})")
        if wrong:
            parts.append(f"{len(wrong)} of the wrong shape ({_first(wrong)})")
        raise CheckpointError(f"{source}: does not match {arch} {config}: tensors " + "; ".join(parts))


def _first(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def _summary(state: StateDict) -> str:
    groups = sorted({k.split(".")[0] for k in state})
    head = state.get("head.0.weight")
    shape = f", head.0.weight {list(head.shape)}" if head is not None else ""
    return f"{len(state)} tensors under {', '.join(groups[:8])}{shape}"
