"""File facts without torch: safetensors headers and parameter counts, so listing models stays fast."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any, Iterable

from panet_cli.errors import CheckpointError

# Tensors that are not learned weights: fixed mean shifts, a constant buffer, PA-EDSR's second name for its attention.
_NOT_PARAMETERS = re.compile(r"^(sub_mean|add_mean|msa)\.|escape_NaN$")


def read_safetensors_header(path: str | Path) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Tensor shapes and decoded metadata from a safetensors header, without loading tensors or torch.

    Listing and refreshing models must stay fast and torch-free; the header is a length-prefixed JSON.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100 * 2**20:
                raise ValueError("header too large")
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None
    raw_meta = header.pop("__metadata__", None) or {}
    meta: dict[str, Any] = {}
    for key, value in raw_meta.items():
        try:
            meta[key] = json.loads(value)
        except (TypeError, json.JSONDecodeError):
            meta[key] = value
    return {k: list(v.get("shape", [])) for k, v in header.items()}, meta


def count_parameters(shapes: dict[str, Iterable[int]]) -> int:
    """Learned weights, counting PA-EDSR's twice-stored attention once and leaving out fixed mean shifts."""
    total = 0
    for key, shape in shapes.items():
        if _NOT_PARAMETERS.search(key):
            continue
        count = 1
        for dim in shape:
            count *= int(dim)
        total += count
    return total
