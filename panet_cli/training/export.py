"""Model-only weights from a training-state file: ``python -m panet_cli.training.export STATE OUT``.

Why: the trainer writes the model file at its best validation step, but 8 validation crops are a noisy
judge (the full benchmark sets have disagreed with them by 0.5 dB); a step chosen on the full sets is
often another step's ``.state.pt``. This turns that state into the file panet ships, metadata and all.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from panet_cli.errors import PanetError
from panet_cli.loading.checkpoint import read_safetensors, save_safetensors


def read_state(path: Path | str) -> dict[str, Any]:
    """A ``.state.pt`` written by ``panet train``, loaded weights-only; one clear error for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unreadable, truncated, or not a weights-only pickle: one line, no traceback
        raise PanetError(f"{path}: not a readable training state ({type(e).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "training" not in state:
        raise PanetError(f"{path}: not a panet training state (.state.pt)")
    return state


def _metadata(state: dict[str, Any], like: Path | None) -> dict[str, Any]:
    """The state's own model metadata; older states (without it) borrow recipe and data from ``like``."""
    if "meta" in state:  # stored without the training record, which the state holds once, beside it
        return {**json.loads(state["meta"]), "training": json.loads(state["training"])}
    if like is None:
        raise PanetError("this training state predates stored metadata: name the model file its cycle started "
                         "from with --like (its recipe and data are borrowed)")
    _, meta = read_safetensors(like)
    record = json.loads(state["training"])
    stage = record["stages"][-1]
    step = int(state["step"])
    at_step = [point for point in record["curve"] if point[0] == step]
    meta.update(arch=stage["arch"], config=stage["network"], task=stage["task"], step=step,
                attention_enabled=bool(stage["attention"]), training=record,
                val_psnr=at_step[-1][2] if at_step else None)
    meta.pop("stored_dtype", None)  # written in fp32 here
    return meta


def export_state(state_path: Path, out: Path, like: Path | None = None) -> dict[str, Any]:
    """Write the model of ``state_path`` to ``out`` (a new file) with its metadata; returns the metadata."""
    if out.exists():
        raise PanetError(f"{out}: already exists; choose a new name")
    state = read_state(state_path)
    meta = _metadata(state, like)
    save_safetensors(out, state["model"], meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m panet_cli.training.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("state", type=Path, help="a .state.pt written by panet train")
    parser.add_argument("out", type=Path, help="the .safetensors to write (must not exist)")
    parser.add_argument("--like", type=Path, help="for states without stored metadata: the model file their cycle "
                                                  "was resumed from")
    args = parser.parse_args(argv)
    try:
        meta = export_state(args.state, args.out, args.like)
    except PanetError as e:
        parser.exit(1, f"error: {e}\n")
    print(f"{args.out}: step {meta['step']}, validation {meta['val_psnr']} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
