"""Error and speed of reduced precision (bf16, fp16) against fp32, on this machine's CPU.

    python benchmarks/precision.py                       # shipped denoiser if present, else the golden PANet
    python benchmarks/precision.py --model weights/x.safetensors --size 96 --threads 2
    python benchmarks/precision.py --fp16                # fp16 too (very slow on CPU)

Each precision runs the same network on the same noisy crop; the error is measured against the
fp32 output (max abs, and PSNR with the fp32 output's range as peak, so it also means something
for untrained weights). Whether bf16 pays off depends on the CPU: with AVX-512 BF16 or AMX
the matmuls run natively, without them torch emulates bf16 and it is far slower.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CANDIDATES = (
    ROOT / "weights" / "panet_denoise_blind.safetensors",
    SHARED / "fixtures" / "official" / "panet_rgb_r4.pt",
)


def test_image(size: int, n_colors: int, sigma: float):
    """A noisy crop of a CBSD68 photo (or a synthetic smooth image without ../shared), NCHW in [0, 1]."""
    import numpy as np
    import torch

    g = torch.Generator().manual_seed(0)
    folder = SHARED / "data" / "bench" / "CBSD68"
    files = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if files:
        from PIL import Image

        img = np.asarray(Image.open(files[0]).convert("RGB"), dtype=np.float32) / 255.0
        top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        clean = torch.from_numpy(img[top : top + size, left : left + size]).permute(2, 0, 1)[None]
    else:
        coarse = torch.rand(1, 3, 6, 6, generator=g)
        clean = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic").clamp(0, 1)
    if n_colors == 1:
        clean = clean.mean(dim=1, keepdim=True)
    return (clean + torch.randn(clean.shape, generator=g) * sigma / 255.0).clamp(0, 1).contiguous()


def run(model, x, dtype, autocast: bool, repeats: int):
    """(output as fp32, median seconds) of ``repeats`` timed passes after one warm-up."""
    import torch

    net = model if autocast else model.to(dtype)
    inp = x if autocast else x.to(dtype)
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=autocast):
        out = net(inp)
        for _ in range(repeats):
            t = time.perf_counter()
            out = net(inp)
            times.append(time.perf_counter() - t)
    model.float()
    return out.float(), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="weights file (default: shipped denoiser, else golden PANet)")
    parser.add_argument("--size", type=int, default=64, help="square crop side (the attention spans all of it)")
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fp16", action="store_true",
                        help="also run fp16 (runs on CPU but measured 75x slower than fp32 at 64 px: minutes)")
    args = parser.parse_args()

    import torch

    from panet_cli.devices import cpu_has_native_bf16
    from panet_cli.loading import load_model

    torch.set_num_threads(args.threads)
    source = args.model or next((p for p in CANDIDATES if p.exists()), None)
    if source is None:
        sys.exit("no model: pass --model (or run next to ../shared)")
    desc = load_model(source)
    x = test_image(args.size, desc.n_colors, args.sigma)
    print(f"torch {torch.__version__}; CPU capability {torch.backends.cpu.get_cpu_capability()}; "
          f"native bf16: {cpu_has_native_bf16()}; {args.threads} threads", file=sys.stderr)
    print(f"model {desc.name} ({desc.arch}, {desc.config.get('n_resblocks')} blocks, "
          f"{desc.config.get('n_feats')} feats, window {desc.window}, attention "
          f"{'on' if desc.attention_enabled else 'off'}); input {args.size}x{args.size}, sigma {args.sigma:g}",
          file=sys.stderr)

    cases = [("fp32", torch.float32, False), ("bf16 (weights and activations)", torch.bfloat16, False),
             ("bf16 autocast (fp32 weights)", torch.bfloat16, True)]
    if args.fp16:
        cases.append(("fp16 (weights and activations)", torch.float16, False))
    reference, base_time = None, None
    rows = []
    for label, dtype, autocast in cases:
        out, seconds = run(desc.model, x, dtype, autocast, args.repeats)
        if reference is None:
            reference, base_time = out, seconds
        err = (out - reference).abs()
        peak = float(reference.max() - reference.min()) or 1.0
        mse = float(err.pow(2).mean())
        psnr = math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)
        finite = bool(torch.isfinite(out).all())
        rows.append((label, seconds, base_time / seconds, float(err.max()), psnr, finite))
        print(f"{label}: {seconds:.2f} s", file=sys.stderr)

    print("| precision | time | speed vs fp32 | max abs error | PSNR vs fp32 | finite |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, seconds, speed, max_err, psnr, finite in rows:
        shown = "exact" if math.isinf(psnr) else f"{psnr:.1f} dB"
        print(f"| {label} | {seconds:.2f} s | {speed:.2f}x | {max_err:.2e} | {shown} | {'yes' if finite else 'NO'} |")


if __name__ == "__main__":
    main()
