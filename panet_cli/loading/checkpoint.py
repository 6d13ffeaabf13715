"""Reading and writing checkpoint files safely; no architecture knowledge here.

Our own format is safetensors: tensors plus string metadata, where the architecture config,
task and provenance are stored as JSON strings so a file fully describes its model.

Published ``.pt``/``.pth`` files are pickles. They are only ever read with
``torch.load(weights_only=True)``, which refuses to call anything outside torch's allow-list,
and there is deliberately no fallback to an unrestricted load: a file that is not a plain
``name -> tensor`` mapping is refused instead, before any code from it can run.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from panet_cli.errors import CheckpointError, one_line
from panet_cli.files import atomic_open

FORMAT_VERSION = "1"

# Training frameworks nest the weights; the first key present wins (EMA weights are the better ones).
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "generator")
# Added by DataParallel / DistributedDataParallel and torch.compile respectively.
PREFIXES = ("module.", "_orig_mod.")


def save_safetensors(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write ``state_dict`` with ``metadata`` (values JSON-encoded) atomically to ``path``.

    The bytes go through Python's own file writes (the same bytes ``save_file`` writes): a full disk is an
    OSError here, where safetensors' writer can leave a short file without a word.
    """
    from safetensors.torch import save

    path = Path(path)
    tensors = _unshared({k: v.detach().contiguous().cpu() for k, v in state_dict.items()})
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    meta["panet_format"] = FORMAT_VERSION  # always this writer's own, even over one read from an older file
    data = save(tensors, metadata=meta)
    with atomic_open(path) as f:
        f.write(data)


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copies of tensors that share storage with an earlier one.

    PA-EDSR registers its attention twice (``msa.*`` and ``body.N.*``, as the published
    checkpoints store it) and safetensors refuses aliased tensors; both names are kept so the
    file loads strictly, at the cost of one duplicate attention block.
    """
    seen: set[int] = set()
    out = {}
    for key, value in tensors.items():
        ptr = value.untyped_storage().data_ptr()
        out[key] = value.clone() if ptr in seen and value.numel() else value
        seen.add(ptr)
    return out


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and decoded metadata of one of our safetensors files."""
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    meta: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
    return tensors, meta


def store_fp16(path: str | Path) -> tuple[int, int]:
    """Rewrite one of our safetensors files with its floating tensors in fp16; returns (bytes before, after).

    Half the download and the repository for the same network: loading turns the tensors back into fp32
    (see ``loading.descriptor``), so only the weights' own rounding (a relative 5e-4) differs. Ship a file this
    way only after ``benchmarks/fp16_storage.py`` shows the rounding costs at most 0.02 dB on its benchmark.
    The metadata is kept, with ``stored_dtype`` added. A file already in fp16 is left alone: safetensors writes
    metadata in no fixed order, so rewriting it would change its bytes, and the sha256 in the manifest, for nothing.
    """
    path = Path(path)
    before = path.stat().st_size
    tensors, meta = read_safetensors(path)
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    if meta.get("stored_dtype") == "float16" and all(half[k].dtype == v.dtype for k, v in tensors.items()):
        return before, before  # the rewrite would change nothing but the metadata's order
    meta["stored_dtype"] = "float16"
    save_safetensors(path, half, meta)
    return before, path.stat().st_size


def store_window(path: str | Path, window: int, overlap: int, why: str) -> str:
    """Make ``window``/``overlap`` the attention window one of our files runs with by default; returns the old one.

    The window is an inference setting (time per pixel grows with its area; the weights do not change), so a
    window measured to cost nothing in PSNR at less time can replace the trained one. ``why`` (the measurement)
    is kept in the metadata as ``window_choice``, with the window trained, so the file says how it was chosen.
    """
    if window < 0 or overlap < 0 or (window and overlap >= window):
        raise CheckpointError(f"{path}: window {window}, overlap {overlap}: need 0 <= overlap < window (0: whole input)")
    path = Path(path)
    try:
        tensors, meta = read_safetensors(path)
    except OSError:
        raise
    except Exception as e:  # safetensors' own error for a file that is not one
        raise CheckpointError(f"{path}: not a safetensors file ({one_line(e)})") from e
    config = meta.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: no network config in its metadata (not one of our model files)")
    old = f"{config.get('window') or 0}/{config.get('window_overlap', 0)}"
    meta.setdefault("window_trained", old)
    config.update(window=window or None, window_overlap=overlap)
    meta["window_choice"] = why
    save_safetensors(path, tensors, meta)
    return old


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of any weights file we accept (metadata is ``{}`` for pickles).

    The format is recognised from the file's first bytes, not its name, so a renamed file
    still takes the safe path that matches its contents.

    Raises:
        CheckpointError: missing, empty, truncated, unsafe, or not a tensor state_dict.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such weights file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a weights file (.safetensors, .pt or .pth)")
    with path.open("rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"{path}: the file is empty")
    if _looks_like_safetensors(head):
        try:
            tensors, meta = read_safetensors(path)
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{path}: unreadable safetensors file ({one_line(e)})") from None
        check_finite(tensors, str(path))
        return tensors, meta
    obj = _read_pickle(path)
    return unwrap_state_dict(obj, str(path)), _training_metadata(obj)


def _looks_like_safetensors(head: bytes) -> bool:
    """safetensors starts with an 8-byte little-endian header length followed by ``{``."""
    return len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100 * 2**20


def _read_pickle(path: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4": noise for a user, not a problem
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for unsafe content, RuntimeError for truncated zips, ...
        message = " ".join(str(e).split())
        unsafe = re.search(r"GLOBAL (\S+)", message)
        if unsafe:
            raise CheckpointError(
                f"{path}: refused: not a plain tensor state_dict, it asks to run or build Python objects "
                f"({unsafe.group(1)}); only weights are ever loaded, never code"
            ) from None
        if "weights_only" in message:  # the restricted unpickler met something else it does not allow
            raise CheckpointError(
                f"{path}: refused: not a PyTorch weights file (unreadable or unsupported pickle)"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({one_line(e)})") from None
    return obj


def _training_metadata(obj: Any) -> dict[str, Any]:
    """Architecture metadata of our ``*.state.pt`` training files (``{}`` for anything else).

    Their ``training`` record lists the stages with the network config, which holds what tensor
    shapes cannot show (window, input skip, attention on/off).
    """
    if not isinstance(obj, Mapping) or not isinstance(obj.get("training"), str):
        return {}
    try:
        stage = json.loads(obj["training"])["stages"][-1]
        return {"arch": stage["arch"], "config": dict(stage["network"]), "task": stage["task"],
                "attention_enabled": bool(stage["attention"]), "step": int(obj.get("step", 0))}
    except (ValueError, KeyError, IndexError, TypeError):
        return {}


def unwrap_state_dict(obj: Any, source: str = "<state_dict>") -> dict[str, torch.Tensor]:
    """The plain ``name -> tensor`` mapping inside ``obj``: wrappers removed, ``module.`` stripped.

    Raises:
        CheckpointError: ``obj`` holds anything else than tensors under string names.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a state_dict (name -> tensor), found {type(obj).__name__}")
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and not isinstance(inner, torch.Tensor):
            return unwrap_state_dict(inner, source)
    if not obj:
        raise CheckpointError(f"{source}: the state_dict is empty")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        shown = ", ".join(repr(k) for k in bad[:3])
        raise CheckpointError(
            f"{source}: not a plain tensor state_dict ({len(bad)} entries are not tensors, e.g. {shown})"
        )
    state = dict(obj)
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    check_finite(state, source)
    return state


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """CheckpointError when a weight is NaN or infinite: such a network only ever outputs garbage (or zeros)."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source}: tensor {key} has NaN or infinite values; refused (a diverged or "
                                  "damaged training run?)")


