"""A loaded model together with everything a caller needs to use it correctly.

Callers (inference, the CLI, evaluation) get a :class:`ModelDescriptor` and never inspect the
network class or its state_dict to learn its task, scale or colour channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass
class ModelDescriptor:
    """A ready network (eval mode, on its device) and what it is for."""

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

    @property
    def parameters(self) -> int:
        """Number of distinct parameters (PA-EDSR's attention, registered twice, counts once)."""
        return sum(p.numel() for p in self.model.parameters())

    @property
    def attention_enabled(self) -> bool:
        return bool(self.model.attention.enabled)

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

    def supports(self, dtype: torch.dtype) -> bool:
        """Whether the network runs correctly in ``dtype`` (speed depends on the device: see devices.py).

        Every layer is a plain conv, PReLU/ReLU, bicubic resize or softmax; the attention
        normalises keys with a 1e-4 floor, representable in fp16 and bf16.
        """
        return dtype in (torch.float32, torch.bfloat16, torch.float16)

    def to(self, device: str | torch.device) -> ModelDescriptor:
        """Move the network to ``device`` (in place) and return self."""
        self.model.to(device)
        return self


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
    )


def _arch_and_config(state: Mapping[str, torch.Tensor], meta: dict[str, Any], origin: str) -> tuple[str, dict]:
    """Metadata wins when present (it is checked against the tensors); otherwise shapes decide."""
    if "arch" in meta and isinstance(meta.get("config"), dict):
        arch, config = str(meta["arch"]), dict(meta["config"])
        architecture(arch)  # unknown names fail here with a clear message
        check_layout(arch, config, state, origin)
        return arch, config
    return detect_architecture(state, origin)


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
