"""Time and peak memory of the pyramid attention: published (direct) form vs ours, side by side.

    python benchmarks/attention.py                 # 48, 96, 128, 192 px, 64 channels
    python benchmarks/attention.py --sizes 48 96 --threads 2
    python benchmarks/attention.py --window 12 --overlap 0 --channels 96 --sizes 256 --threads 1 --against d0f35d0

With ``--window``, the windowed layer of the working tree is timed against the same layer as implemented
at the git revision ``--against`` (same weights, one process, fp32 and bf16 autocast), with the largest
difference of their outputs.

Every case runs in a fresh subprocess so its peak memory is its own: the child resets the
kernel's resident-set high-water mark (``/proc/self/clear_refs``) right before the forward pass
and reports how far above its starting RSS it went. tracemalloc would not see torch's allocator.
The direct form is skipped where its score maps alone would exceed ``--max-direct-gb``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SCALES = (1.0, 0.9, 0.8, 0.7, 0.6)
IMPLEMENTATIONS = ("direct", "chunked", "sdpa")


def n_keys(size: int) -> int:
    """Patches in the five-level pyramid of a size x size map (bicubic sizes are floored)."""
    return sum(int(size * s) ** 2 for s in SCALES)


def direct_estimate_bytes(size: int, channels: int = 64) -> int:
    """The direct form holds the scores, the scaled scores and their softmax: three (H*W) x keys fp32 maps."""
    return 3 * size * size * n_keys(size) * 4


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_case(impl: str, size: int, channels: int, repeats: int, threads: int) -> dict:
    """Inside the child: one warm-up-free measured pass for memory, then timed passes."""
    import torch

    from panet_cli.networks import PyramidAttention, pyramid_attention_direct

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layer = PyramidAttention(channels, 2, backend="sdpa" if impl == "sdpa" else "chunked").eval()
    x = torch.rand(1, channels, size, size)

    def forward() -> torch.Tensor:
        return pyramid_attention_direct(layer, x) if impl == "direct" else layer(x)

    with torch.inference_mode():
        small = torch.rand(1, channels, 8, 8)  # load kernels and libraries before measuring
        pyramid_attention_direct(layer, small) if impl == "direct" else layer(small)
        base = _rss_kib("VmRSS")
        exact = _reset_peak()
        if not exact:
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        out = forward()
        first = time.perf_counter() - t
        peak = _rss_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        del out
        times = [first]
        for _ in range(repeats - 1):
            t = time.perf_counter()
            forward()
            times.append(time.perf_counter() - t)
    return {"seconds": statistics.median(times), "peak_mib": max(0, peak - base) / 1024, "exact_peak": exact}


def measure(impl: str, size: int, channels: int, repeats: int, threads: int) -> dict:
    """Run one case in a fresh interpreter and return its figures."""
    cmd = [sys.executable, os.path.abspath(__file__), "--case", impl, str(size), "--channels", str(channels),
           "--repeats", str(repeats), "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 96, 128, 192])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-direct-gb", type=float, default=12.0)
    parser.add_argument("--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--window", type=int, help="time the windowed layer, old (--against) vs new")
    parser.add_argument("--overlap", type=int, default=0)
    parser.add_argument("--against", default="HEAD", help="git revision of the implementation to compare with")
    parser.add_argument("--case", nargs=2, metavar=("IMPL", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=0, help="timed passes per case (0: 3 up to 96 px, else 1)")
    args = parser.parse_args()
    if args.case:
        impl, size = args.case[0], int(args.case[1])
        print(json.dumps(run_case(impl, size, args.channels, max(1, args.repeats), args.threads)))
        return

    if args.window:
        for size in args.sizes:
            print(windowed(size, args.channels, args.window, args.overlap, args.against, args.threads,
                           max(2, args.repeats)))
        return

    import torch

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads} threads, {args.channels} channels, batch 1, fp32", file=sys.stderr)
    rows = []
    for size in args.sizes:
        repeats = args.repeats or (3 if size <= 96 else 1)
        results: dict[str, dict] = {}
        for impl in args.impls:
            if impl == "direct" and direct_estimate_bytes(size, args.channels) > args.max_direct_gb * 2**30:
                gb = direct_estimate_bytes(size, args.channels) / 2**30
                results[impl] = {"skipped": f"skipped: needs ~{gb:.0f} GB"}
                continue
            results[impl] = measure(impl, size, args.channels, repeats, args.threads)
            print(f"{size}px {impl}: {results[impl]}", file=sys.stderr)
        rows.append((size, results))
    print(table(rows, args.impls))


def _module_at(revision: str):
    """panet_cli.networks.pyramid_attention as it was at a git revision (it imports only torch and windows)."""
    import importlib.util
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(["git", "show", f"{revision}:panet_cli/networks/pyramid_attention.py"], cwd=root,
                            capture_output=True, text=True, check=True).stdout
    windows = subprocess.run(["git", "show", f"{revision}:panet_cli/networks/windows.py"], cwd=root,
                             capture_output=True, text=True, check=True).stdout
    folder = tempfile.mkdtemp()
    with open(os.path.join(folder, "old_windows.py"), "w") as f:
        f.write(windows)
    sys.path.insert(0, folder)
    source = source.replace("from panet_cli.networks.windows import", "from old_windows import")
    path = os.path.join(folder, "old_pyramid_attention.py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("old_pyramid_attention", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def windowed(size: int, channels: int, window: int, overlap: int, revision: str, threads: int, repeats: int) -> str:
    """Best-of-``repeats`` ms of one forward of the windowed layer, old vs new, fp32 and bf16 autocast."""
    import torch

    from panet_cli.networks import PyramidAttention

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    new = PyramidAttention(channels, 2, 1.0, window=window, window_overlap=overlap).eval()
    old = _module_at(revision).PyramidAttention(channels, 2, 1.0, window=window, window_overlap=overlap).eval()
    old.load_state_dict(new.state_dict())
    x = torch.randn(1, channels, size, size)
    lines = [f"{size}x{size}x{channels}, window {window}/{overlap}, {threads} thread(s), {revision} vs working tree"]
    reference = None
    for precision in ("fp32", "bf16"):
        times, outputs = {}, {}
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            for name, layer in (("old", old), ("new", new)):
                best = float("inf")
                for _ in range(repeats):
                    start = time.perf_counter()
                    outputs[name] = layer(x).float()
                    best = min(best, time.perf_counter() - start)
                times[name] = best
        if reference is None:
            reference = outputs["old"]
        diff = (outputs["old"] - outputs["new"]).abs().max().item()
        error = ", ".join(f"{n} vs fp32 old {(o - reference).abs().max().item():.2e}" for n, o in outputs.items())
        lines.append(f"  {precision}: old {times['old'] * 1e3:.0f} ms, new {times['new'] * 1e3:.0f} ms "
                     f"({times['old'] / times['new']:.2f}x); max |old - new| {diff:.2e}"
                     + (f"; {error}" if precision == "bf16" else ""))
    return "\n".join(lines)


def _cell(r: dict) -> tuple[str, str]:
    if "skipped" in r:
        return r["skipped"], "-"
    if "error" in r:
        return f"error: {r['error'][:60]}", "-"
    return f"{r['seconds']:.2f} s", f"{r['peak_mib']:,.0f} MiB"


def table(rows: list[tuple[int, dict[str, dict]]], impls: list[str]) -> str:
    """Markdown table: time and peak memory per implementation, and ours relative to direct."""
    header = ["size", "keys"]
    for impl in impls:
        header += [f"{impl} time", f"{impl} peak"]
    ours = [i for i in impls if i != "direct"]
    if "direct" in impls:
        header += [f"{i}: memory / speed vs direct" for i in ours]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for size, results in rows:
        cells = [f"{size}x{size}", f"{n_keys(size):,}"]
        for impl in impls:
            cells += list(_cell(results[impl]))
        if "direct" in impls:
            d = results["direct"]
            for impl in ours:
                r = results[impl]
                if "seconds" in d and "seconds" in r:
                    cells.append(f"{d['peak_mib'] / max(r['peak_mib'], 1):.0f}x less / "
                                 f"{d['seconds'] / r['seconds']:.2f}x faster")
                else:
                    cells.append("-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
