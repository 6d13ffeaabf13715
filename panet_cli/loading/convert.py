"""Published ``.pt`` checkpoints -> our safetensors, which carry their own description.

A converted file needs no pickle to read, loads without shape detection, and records where it
came from (source file name and sha256) so a model can always be traced to its origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from panet_cli.errors import IncompatibleModel
from panet_cli.files import sha256_of
from panet_cli.loading.checkpoint import save_safetensors
from panet_cli.loading.descriptor import ModelDescriptor, load_model
from panet_cli.tasks import tasks_for_arch

def convert_checkpoint(
    src: Path,
    dst: Path,
    *,
    name: str,
    task: str | None = None,
    level: float | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> ModelDescriptor:
    """Convert ``src`` (published .pt/.pth, or any file load_model reads) to our safetensors at ``dst``.

    ``task`` narrows what the model is for (a published colour PANet serves denoise and demosaic;
    say which one this file was trained for); ``level`` is the sigma or JPEG quality it was made
    for. Returns the descriptor of the written file, loaded back from ``dst``.

    Raises:
        CheckpointError: ``src`` is unreadable, unsafe or of no known architecture.
        IncompatibleModel: ``task`` cannot be served by this architecture.
    """
    src, dst = Path(src), Path(dst)
    desc = load_model(src)
    task = task if task is not None else desc.task
    level = level if level is not None else desc.level
    serves = tasks_for_arch(desc.arch)
    if task is not None and task not in serves:
        raise IncompatibleModel(f"{src}: a {desc.arch} cannot serve task {task!r}; it serves {', '.join(serves)}")
    metadata: dict[str, Any] = {
        "name": name,
        "arch": desc.arch,
        "config": desc.config,
        "tasks": [task] if task else list(desc.tasks),
        "attention_enabled": desc.attention_enabled,
        "provenance": {
            "source_file": src.name,
            "source_sha256": sha256_of(src),
            "converted_by": "panet_cli.loading.convert",
        },
    }
    if task is not None:
        metadata["task"] = task
    if level is not None:
        metadata["level"] = float(level)
    if desc.arch == "PAEDSR":
        metadata["scale"] = desc.scale
    if extra_metadata:
        metadata.update({k: v for k, v in extra_metadata.items() if k not in metadata})
    save_safetensors(dst, desc.model.state_dict(), metadata)
    return load_model(dst)
