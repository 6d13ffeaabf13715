"""Candidate denoiser architectures side by side: inference s/MP and training s/step on this CPU.

Run: python benchmarks/arch_search.py [--size 512] [--threads 2]
Prints one table; every row is measured in the same run, so ratios are meaningful on a noisy machine.
"""

from __future__ import annotations

import argparse
import time

import torch

from panet_cli.loading.architectures import build_network

CANDIDATES: list[tuple[str, str, dict]] = [
    ("PANet 16x64 full-res (shipped)", "PANet", dict(n_resblocks=16, n_feats=64, input_skip=True, window=16, window_overlap=2)),
    ("half-res 8x64", "HalfResPANet", dict(n_resblocks=8, n_feats=64)),
    ("half-res 12x96", "HalfResPANet", dict(n_resblocks=12, n_feats=96)),
    ("half-res 16x96", "HalfResPANet", dict(n_resblocks=16, n_feats=96)),
    ("half-res 10x128", "HalfResPANet", dict(n_resblocks=10, n_feats=128)),
]


def seconds(fn, repeat: int = 2) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated row numbers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = list(enumerate(CANDIDATES))
    if args.only:
        keep = {int(i) for i in args.only.split(",")}
        rows = [r for r in rows if r[0] in keep]
    mp = args.size**2 / 1e6
    print("| # | model | params | s/MP fp32 | s/MP bf16 | s/MP bf16 no attn | s/step bf16 no attn | s/step bf16 attn |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    x = torch.rand(1, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    for i, (label, arch, config) in rows:
        model = build_network(arch, config).to(memory_format=torch.channels_last)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        model.eval()

        def infer(bf16: bool) -> None:
            with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                model(x)

        attn = model.attention
        fp32 = seconds(lambda: infer(False), 1) / mp
        bf16 = seconds(lambda: infer(True)) / mp
        attn.enabled = False
        bf16_plain = seconds(lambda: infer(True)) / mp
        model.train()
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        batch = torch.rand(args.batch, 3, args.patch, args.patch).contiguous(memory_format=torch.channels_last)

        def step() -> None:
            with torch.autocast("cpu", torch.bfloat16):
                out = model(batch)
            loss = (out.float() - batch).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        train_plain = seconds(step)
        attn.enabled = True
        train_attn = seconds(step, 1)
        print(f"| {i} | {label} | {params:.2f} M | {fp32:.1f} | {bf16:.1f} | {bf16_plain:.1f} | {train_plain:.2f} | {train_attn:.2f} |", flush=True)


if __name__ == "__main__":
    main()
