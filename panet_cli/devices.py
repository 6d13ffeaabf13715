"""Which device and which floating-point precision a run uses, decided in one place.

Precision is a trade between speed and error that depends on the hardware, not on the model:
fp32 is the default everywhere. On CUDA, bf16 and fp16 use the tensor cores. On a CPU, bf16 is
only worth it with native bf16 arithmetic (AVX-512 BF16 or AMX); without it torch emulates bf16
and a step was measured 17x slower than fp32. fp16 on CPU has no fast kernels (on an AVX-512
machine a 64-channel conv ran 20x and a small PANet with attention 75x slower than fp32), so it falls back.
"""

from __future__ import annotations

from pathlib import Path

import torch

from panet_cli.errors import PanetError

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(name: str = "auto") -> torch.device:
    """The torch device for ``name``: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda[:N]`` or ``mps``.

    Raises:
        PanetError: the name is unknown, or that device is not present on this machine.
    """
    spec = (name or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise PanetError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PanetError(
                f"device {name!r} requested but CUDA is not available (no NVIDIA GPU, or this torch build "
                "is CPU-only); use --device cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise PanetError(f"device {name!r} requested but only {count} CUDA device(s) exist (cuda:0..{count - 1})")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise PanetError(f"device {name!r} requested but Apple MPS is not available here; use --device cpu")
        return device
    raise PanetError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX-512 BF16 or AMX), so bf16 can pay off."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except RuntimeError:
                pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def auto_precision(device: torch.device) -> torch.dtype:
    """bf16 where the device computes it natively, else fp32.

    For 8-bit outputs bf16 changes nothing that survives rounding: the HalfResPANet denoiser scored 28.967 dB
    in bf16 against 28.963 in fp32 (4 CBSD68 images, sigma 25), at 5.2 against 35.3 s/MP on one core of an
    AVX-512-BF16 CPU. Callers that keep more than 8 bits (16-bit files) should ask for fp32.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def resolve_precision(device: torch.device, precision: str) -> tuple[torch.dtype, str | None]:
    """The dtype to run in on ``device`` for the requested ``precision`` (fp32, bf16 or fp16).

    Returns:
        ``(dtype, notice)``; ``notice`` is a one-line message for the user when the request was
        changed (or is known to be slow here), else ``None``.

    Raises:
        PanetError: an unknown precision name.
    """
    key = (precision or "fp32").strip().lower()
    if key == "auto":
        return auto_precision(device), None
    if key not in PRECISIONS:
        raise PanetError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    dtype = PRECISIONS[key]
    if dtype == torch.float32:
        return dtype, None
    if device.type == "cuda":
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            return torch.float16, "this GPU has no bf16 support; using fp16"
        return dtype, None
    if device.type == "mps":
        return dtype, None
    # CPU
    native = cpu_has_native_bf16()
    if dtype == torch.float16:
        if native:
            return torch.bfloat16, "fp16 convolutions are slow on CPU; using bf16 (native on this CPU)"
        return torch.float32, "fp16 convolutions are slow on CPU and this CPU has no native bf16; using fp32"
    if not native:
        capability = torch.backends.cpu.get_cpu_capability()
        return dtype, f"this CPU ({capability}) has no native bf16: bf16 will be much slower than fp32"
    return dtype, None
