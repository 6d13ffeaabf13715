"""Device selection and precision fallbacks (hardware is simulated where this machine lacks it)."""

from __future__ import annotations

import pytest
import torch

from panet_cli import devices
from panet_cli.devices import resolve_precision, select_device
from panet_cli.errors import PanetError

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def test_cpu_and_auto() -> None:
    assert select_device("cpu") == CPU
    expected = "cuda" if torch.cuda.is_available() else ("mps" if devices._mps_available() else "cpu")
    assert select_device("auto").type == expected
    assert select_device(" Auto ").type == expected


def test_unknown_device_is_a_clear_error() -> None:
    with pytest.raises(PanetError, match="unknown device 'gpu0'"):
        select_device("gpu0")


def test_absent_cuda_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PanetError, match="CUDA is not available"):
        select_device("cuda")


def test_cuda_index_out_of_range(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(PanetError, match="only 2 CUDA"):
        select_device("cuda:2")


def test_absent_mps_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    with pytest.raises(PanetError, match="MPS is not available"):
        select_device("mps")


def test_fp32_is_the_default_everywhere() -> None:
    for device in (CPU, CUDA, torch.device("mps")):
        assert resolve_precision(device, "fp32") == (torch.float32, None)
        assert resolve_precision(device, "") == (torch.float32, None)


def test_unknown_precision() -> None:
    with pytest.raises(PanetError, match="unknown precision 'int8'"):
        resolve_precision(CPU, "int8")


@pytest.mark.parametrize("native", [True, False])
def test_cpu_precisions(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    dtype, notice = resolve_precision(CPU, "bf16")
    assert dtype == torch.bfloat16
    assert (notice is None) == native  # warned where bf16 would be emulated and slow
    dtype, notice = resolve_precision(CPU, "fp16")
    assert dtype == (torch.bfloat16 if native else torch.float32)
    assert notice and "fp16" in notice


def test_cuda_precisions(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision(CUDA, "half") == (torch.float16, None)
    assert resolve_precision(CUDA, "bf16") == (torch.bfloat16, None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    dtype, notice = resolve_precision(CUDA, "bfloat16")
    assert dtype == torch.float16 and "bf16" in notice


def test_native_bf16_probe_agrees_with_cpu_flags() -> None:
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo")
    flags = set(cpuinfo.read_text().split())
    assert devices.cpu_has_native_bf16() == bool({"amx_bf16", "avx512_bf16"} & flags)


def test_native_bf16_probe_asks_torch_then_the_cpu_flags(monkeypatch, tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(devices, "Path", lambda _: cpuinfo)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    cpuinfo.write_text("flags\t\t: fpu sse2 avx512f avx512_vnni\n")
    assert not devices.cpu_has_native_bf16()
    cpuinfo.write_text("flags\t\t: fpu sse2 avx512f avx512_bf16\n")
    assert devices.cpu_has_native_bf16()
    cpuinfo.write_text("flags\t\t: fpu\n")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert devices.cpu_has_native_bf16()


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    import panet_cli.devices as devices

    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.resolve_precision(cpu, "auto") == (torch.bfloat16, None)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert devices.resolve_precision(cpu, "auto") == (torch.float32, None)
