"""Start a model from another of our models: a related task, another colour count or another SR scale.

Training from scratch on two CPU cores costs hours per model; the features a denoiser or an x4
super-resolver has learnt carry over to JPEG artifacts, demosaicing or x2/x3, and fine-tuning
from them reaches a given PSNR in a fraction of the steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from panet_cli.errors import PanetError
from panet_cli.loading.checkpoint import read_safetensors


def _adapt_colours(source: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """Map a colour-count-dependent head/tail tensor between 3 and 1 channels, or None if it is not one.

    Head conv (F, 3, k, k) -> (F, 1, k, k): summing over input channels gives a grey image (R = G = B)
    exactly the features the colour model computed for it. Tail conv / bias (3, ...) -> (1, ...): the mean
    of the three outputs. The reverse directions split / repeat.
    """
    if source.dim() != len(shape):
        return None
    differing = [d for d in range(source.dim()) if source.shape[d] != shape[d]]
    if len(differing) != 1:
        return None
    d = differing[0]
    pair = (source.shape[d], shape[d])
    if d == 1 and pair == (3, 1):
        return source.sum(dim=1, keepdim=True)
    if d == 1 and pair == (1, 3):
        return source.repeat(1, 3, 1, 1) / 3
    if d == 0 and pair == (3, 1):
        return source.mean(dim=0, keepdim=True)
    if d == 0 and pair == (1, 3):
        return source.repeat(3, *([1] * (source.dim() - 1)))
    return None


def initialise_from(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Copy every tensor of ``path`` whose name matches (adapting colour counts); the rest keep their init.

    Returns a summary for the training record: the source, its step and task, what was copied, adapted
    and left fresh (e.g. an x3 upsampler started from an x4 model), and whether its attention was trained.
    """
    tensors, meta = read_safetensors(path)
    state = model.state_dict()
    learnable = {name for name, p in model.named_parameters() if p.requires_grad}
    copied, adapted, fresh = 0, [], []
    for name, target in state.items():
        source = tensors.get(name)
        if source is None:
            fresh.append(name)
        elif source.shape == target.shape:
            state[name] = source.to(target.dtype)
            copied += name in learnable
        elif (converted := _adapt_colours(source, target.shape)) is not None:
            state[name] = converted.to(target.dtype)
            adapted.append(name)
        else:
            fresh.append(name)
    if copied == 0:  # the fixed mean shifts match any of our networks; they do not count
        raise PanetError(f"{path}: no learnt tensor matches this network; is it the same architecture and width?")
    model.load_state_dict(state, strict=True)
    training = meta.get("training", {})
    return {
        "from": Path(path).name,
        "task": meta.get("task"),
        "step": int(meta.get("step", 0)),
        "cpu_hours": float(training.get("cpu_hours", 0.0)),
        "copied": copied,
        "adapted": adapted,
        "fresh": fresh,
        "attention_trained": bool(training.get("attention_trained", False)),
    }
