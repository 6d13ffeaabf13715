"""A loaded model together with everything a caller needs to use it correctly.

Callers (inference, the CLI, evaluation) get a :class:`ModelDescriptor` and never inspect the
network class or its state_dict to learn its task, scale, colour channels or size requirements.
A descriptor is immutable: a variant (attention bypassed, another window) is a new descriptor
whose network shares the weights, and running one leaves its network as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import EllipsisType
from pathlib import Path
from typing import Any

import torch
from torch import nn

from panet_cli.errors import CheckpointError
from panet_cli.loading.architectures import architecture, build_network, check_layout, detect_architecture
from panet_cli.loading.checkpoint import read_checkpoint, unwrap_state_dict

# Tile side suggested for models whose attention spans the whole input: their cost per pixel
# grows with the tile's area, and 128 px (64x64 features x 3.3 keys ...) keeps a tile in
# well under a gigabyte with the chunked attention.
WHOLE_INPUT_TILE = 128
# With windowed attention the cost per pixel no longer depends on the tile; only memory does.
WINDOWED_TILE = 512


@dataclass(frozen=True)
class ModelDescriptor:
    """A ready network (eval mode, on its device) and what it is for; call it on an NCHW batch."""

    model: nn.Module
    arch: str  # "PANet" | "PAEDSR"
    config: dict[str, Any]  # kwargs for build_network(arch, config)
    tasks: tuple[str, ...]  # tasks it can serve
    task: str | None  # from our metadata; None for published .pt files
    scale: int  # output size / input size; 1 for PANet
    n_colors: int  # 1 or 3
    level: float | None  # sigma or JPEG quality it was made for; None = blind / unknown
    window: int | None  # attention window; None = whole input (or tile), the published behaviour
    name: str
    source: str  # file path or "<state_dict>"
    metadata: dict[str, Any] = field(default_factory=dict)
    attention_enabled: bool = True  # False: the attention layer is bypassed (the identity)
    min_side: int = 16  # inputs are reflect-padded to at least this side (see loading.architectures)
    alignment: int = 1  # input sides and tile offsets the network needs to be multiples of

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The network on an NCHW batch (on the model's device and dtype); no padding, no tiling."""
        return self.model(x)

    @property
    def parameters(self) -> int:
        """Number of distinct parameters (PA-EDSR's attention, registered twice, counts once)."""
        return sum(p.numel() for p in self.model.parameters())

    def with_attention(
        self, enabled: bool = True, window: int | None | EllipsisType = ..., overlap: int | EllipsisType = ...
    ) -> ModelDescriptor:
        """This model with its attention on or bypassed, and (if given) another ``window`` (None or 0: the whole
        input) and window ``overlap``: a new descriptor whose network shares this one's weights; this one is untouched.
        """
        model = copy.deepcopy(self.model, memo={id(t): t for t in (*self.model.parameters(), *self.model.buffers())})
        attention = model.attention
        attention.enabled = bool(enabled)
        config = dict(self.config)
        if window is not ...:
            attention.window = config["window"] = window or None
        if overlap is not ...:
            attention.window_overlap = config["window_overlap"] = int(overlap)
        return replace(self, model=model, config=config, attention_enabled=bool(enabled), window=attention.window)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def tile_hint(self) -> int:
        """Suggested largest input tile side in pixels (a hint for the tiler, not a limit).

        Whole-input attention: the tile *is* the attention's extent, and time per pixel grows
        with its area. Windowed attention: cost per pixel is flat, so larger tiles are fine.
        """
        return WINDOWED_TILE if self.window or not self.attention_enabled else WHOLE_INPUT_TILE



def load_model(
    source: str | Path | Mapping[str, torch.Tensor], *, device: str | torch.device = "cpu"
) -> ModelDescriptor:
    """Load weights from a file (ours or published) or a state_dict and describe them.

    Architecture and hyperparameters come from our metadata when present (it also holds what
    shapes cannot show: window, input skip, attention on/off) and from tensor shapes otherwise.

    Raises:
        CheckpointError: unreadable, unsafe, or not a known architecture.
        PanetError: the device is unknown or absent.
    """
    if isinstance(source, Mapping):
        # copies: the loaded model must not share parameters with the caller's live tensors
        state = {k: v.detach().clone() for k, v in unwrap_state_dict(source).items()}
        meta, origin = {}, "<state_dict>"
    else:
        state, meta = read_checkpoint(source)
        origin = str(source)
    arch, config = _arch_and_config(state, meta, origin)
    model = _instantiate(arch, config, state, origin)
    if meta.get("attention_enabled") is False:
        model.attention.enabled = False
    if isinstance(device, str):
        from panet_cli.devices import select_device

        device = select_device(device)
    model.to(device).eval()

    task = meta.get("task")
    declared = meta.get("tasks")
    if task:
        tasks: tuple[str, ...] = (task,)
    elif declared:
        tasks = tuple(declared)
    else:
        tasks = architecture(arch).tasks(config)
    level = meta.get("level")
    name = meta.get("name") or (Path(origin).stem if origin != "<state_dict>" else arch)
    layout = architecture(arch)
    return ModelDescriptor(
        model=model,
        arch=arch,
        config=config,
        tasks=tasks,
        task=task,
        scale=int(config.get("scale", 1)),
        n_colors=int(config.get("n_colors", 3)),
        level=float(level) if level is not None else None,
        window=config.get("window"),
        name=str(name),
        source=origin,
        metadata=meta,
        attention_enabled=bool(model.attention.enabled),
        min_side=layout.min_side,
        # a network that folds pixels (HalfResPANet: 2x2) computes another function at odd tile offsets
        alignment=int(getattr(model, "size_multiple", 1)),
    )


def _arch_and_config(state: Mapping[str, torch.Tensor], meta: dict[str, Any], origin: str) -> tuple[str, dict]:
    """Our files load by their metadata (checked against the tensors) or not at all; others by their shapes.

    A file of ours (``panet_format``, or an ``arch``/``config`` in its metadata) without a valid config is
    refused: input skip, window and skip filter leave no tensors behind, so a config guessed from shapes
    would compute another function without a word.
    """
    if not any(key in meta for key in ("panet_format", "arch", "config")):
        return detect_architecture(state, origin)
    arch, config = meta.get("arch"), meta.get("config")
    if not isinstance(arch, str) or not isinstance(config, dict):
        found = "no architecture config" if arch is None and config is None else (
            f"a malformed architecture config (arch {arch!r}, config of type {type(config).__name__})")
        raise CheckpointError(f"{origin}: a panet weights file with {found}; it cannot be loaded by guessing "
                              "from tensor shapes (window, input skip and skip filter leave no tensors)")
    architecture(arch)  # unknown names fail here with a clear message
    check_layout(arch, config, state, origin)
    return arch, dict(config)


def _instantiate(arch: str, config: dict, state: Mapping[str, torch.Tensor], origin: str) -> nn.Module:
    """Build on the meta device and adopt the loaded tensors: no random init, no second copy."""
    with torch.device("meta"):
        model = build_network(arch, config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:  # check_layout ran first, so this is unexpected; keep it one line
        raise CheckpointError(f"{origin}: weights do not fit {arch}: {' '.join(str(e).split())[:200]}") from None
    # fp16/bf16 files become fp32: precision is chosen at run time (see devices.py).
    return model.float()
