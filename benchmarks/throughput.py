"""Megapixels per second of each task's default model on a 12 MP photo, per precision, CPU and GPU side by side.

    python benchmarks/throughput.py                           # every task whose default model is installed
    python benchmarks/throughput.py --megapixels 0.25 --tasks denoise --threads 2     # a quick CPU run
    python benchmarks/throughput.py --weights runs/sr.safetensors --tasks sr
    python benchmarks/throughput.py --files 6 --file-megapixels 1    # + the file loop, overlap on and off
    python benchmarks/throughput.py --json

The photo is ``examples/clean_108005.png`` (a CBSD68 crop) resized bicubically to 4000 x 3000
(``--megapixels`` changes the size, same 4:3 shape) and degraded for each task as ``panet eval`` does:
Gaussian noise sigma 25 (denoise), JPEG quality 10 (car), an RGGB CFA (demosaic); for sr the input is
the photo shrunk by the scale, so the *output* is the 12 MP photo. MP/s counts output megapixels.

Each (device, precision) runs ``restore()`` exactly as ``panet`` does (tile auto, batched tiles:
1 per pass on CPU, as many as fit, up to 8, on a GPU), after a warm-up on a 128 px crop. The
error column compares each precision's output with the fp32 output on the same device: PSNR
(peak 1.0) and the largest difference in 8-bit levels. A precision the device cannot run well
falls back as in ``panet`` (fp16 on a CPU) and is shown as such, not timed twice. GPU columns
appear when CUDA is available.

``--files N`` also times the file loop of ``panet`` (decode, restore, encode N PNG files) with
the overlap of :mod:`panet_cli.scaleout.work` on and off, which is what keeps a GPU busy.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from panet_cli.tasks import TASK_NAMES

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "clean_108005.png"
TASKS = TASK_NAMES
PRECISIONS = ("fp32", "bf16", "fp16")


def photo(megapixels: float, seed: int = 0):
    """The clean test photo, float32 (H, W, 3) in [0, 1], 4:3, about ``megapixels``."""
    import numpy as np
    from PIL import Image

    width = int(round(math.sqrt(megapixels * 1e6 * 4 / 3) / 4) * 4)
    height = width * 3 // 4
    with Image.open(PHOTO) as im:
        big = im.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(big, dtype=np.float32) / 255.0


def degrade(clean, task: str, scale: int):
    """The network input for ``task`` made from the clean photo by the task's own degradation (its row in
    :mod:`panet_cli.tasks`, as ``panet eval`` makes it), at the level eval uses by default."""
    import numpy as np
    import torch

    from panet_cli.tasks import task_spec

    spec = task_spec(task)
    x = torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1), dtype=np.float32))
    degraded, _ = spec.degrade(x, level=spec.level.default if spec.level else None, scale=scale, pattern="RGGB",
                               generator=torch.Generator().manual_seed(0))
    return np.ascontiguousarray(degraded.permute(1, 2, 0).numpy(), dtype=np.float32)


def default_model(task: str, weights: str | None):
    """The task's default model as ``panet`` would pick it (installed files only), or None."""
    from panet_cli.errors import ModelUnavailable
    from panet_cli.inference import resolve_model
    from panet_cli.registry import find_model

    try:
        source = Path(weights) if weights else find_model(task, download=False)
    except ModelUnavailable:
        return None
    return resolve_model(task, source, device="cpu")


def timed_restore(image, task, descriptor, device, precision, batch_tiles, notes):
    """(output, seconds) of one restore() call, after a warm-up on a crop (kernels chosen, caches filled)."""
    from panet_cli.inference import restore

    kwargs = dict(model=descriptor, device=device, precision=precision, batch_tiles=batch_tiles,
                  notice=notes.append)
    restore(image[:128, :128], task, **kwargs)
    _sync(device)
    start = time.perf_counter()
    out = restore(image, task, **kwargs)  # returns host memory: the device has finished
    return out, time.perf_counter() - start


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(out, reference) -> dict:
    import numpy as np

    diff = out.astype(np.float64) - reference.astype(np.float64)
    mse = float(np.mean(diff**2))
    return {"psnr_vs_fp32": math.inf if mse == 0 else 10 * math.log10(1.0 / mse),
            "max_levels_vs_fp32": float(np.abs(diff).max() * 255)}


def measure(args) -> dict:
    import torch

    from panet_cli.devices import DTYPE_NAMES, cpu_has_native_bf16, resolve_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() and not args.cpu_only else [])
    clean = photo(args.megapixels)
    info = {
        "photo": f"{PHOTO.name} resized to {clean.shape[1]}x{clean.shape[0]} ({clean.shape[0] * clean.shape[1] / 1e6:.2f} MP)",
        "torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if len(devices) > 1 else None, "rows": [], "files": [],
    }
    fp32_outputs: dict[tuple[str, str], object] = {}
    for task in args.tasks:
        descriptor = default_model(task, args.weights)
        if descriptor is None:
            info["rows"].append({"task": task, "model": None})
            print(f"{task}: no default model installed (panet models download ...): skipped", file=sys.stderr)
            continue
        image = degrade(clean, task, descriptor.scale)
        out_mp = image.shape[0] * image.shape[1] * descriptor.scale**2 / 1e6
        for precision in args.precisions:
            row = {"task": task, "model": descriptor.name, "precision": precision, "output_mp": out_mp}
            for device in devices:
                dtype, _ = resolve_precision(device, precision)
                ran = DTYPE_NAMES[dtype]
                key = device.type
                if ran != precision:  # falls back: the timing is the other precision's row
                    row[key] = {"runs_as": ran}
                    continue
                notes: list[str] = []
                out, seconds = timed_restore(image, task, descriptor, device, precision, args.batch_tiles, notes)
                cell = {"seconds": seconds, "mp_per_s": out_mp / seconds, "notes": sorted(set(notes))}
                reference = fp32_outputs.get((task, key))
                if precision == "fp32":
                    fp32_outputs[(task, key)] = out
                elif reference is not None:
                    cell.update(compare(out, reference))
                row[key] = cell
                print(f"{task} {precision} {key}: {seconds:.1f} s, {cell['mp_per_s']:.4f} MP/s", file=sys.stderr)
            info["rows"].append(row)
        if args.files:
            info["files"] += file_loop(args, descriptor, task, devices)
    return info


def file_loop(args, descriptor, task: str, devices) -> list[dict]:
    """Images per second of the CLI's file loop (read, restore, write) with and without overlap."""
    import numpy as np
    from PIL import Image

    from panet_cli.inference import RestoreOptions
    from panet_cli.scaleout.work import FileWorker, Item, Settings

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = degrade(photo(args.file_megapixels), task, descriptor.scale)
        grey = source.shape[2] == 1
        u8 = np.rint(source * 255).astype(np.uint8)
        for k in range(args.files):
            Image.fromarray(u8[:, :, 0] if grey else u8).save(folder / f"in{k}.png")
        for device in devices:
            for prefetch in (False, True):
                out = folder / f"out-{device.type}-{prefetch}"
                jobs = [Item(str(folder / f"in{k}.png"), f"in{k}.png", str(out / f"in{k}.png")) for k in range(args.files)]
                settings = Settings(task, RestoreOptions(precision=args.file_precision, batch_tiles=args.batch_tiles))
                worker = FileWorker(descriptor, device, settings, prefetch=prefetch)
                list(worker.process(jobs[:1]))  # warm-up (writes in0 once; the timed run overwrites nothing)
                (out / "in0.png").unlink()
                start = time.perf_counter()
                outcomes = list(worker.process(jobs))
                seconds = time.perf_counter() - start
                assert all(o.status == "done" for o in outcomes), [o.reason for o in outcomes]
                mp = sum(o.megapixels for o in outcomes)
                rows.append({"task": task, "device": device.type, "overlap": prefetch, "images": args.files,
                             "seconds": seconds, "images_per_s": args.files / seconds, "mp_per_s": mp / seconds})
                print(f"files {task} {device.type} overlap={prefetch}: {seconds:.1f} s", file=sys.stderr)
    return rows


def print_tables(info: dict) -> None:
    devices = ["cpu"] + (["cuda"] if info["gpu"] else [])
    print(f"{info['photo']}; torch {info['torch']}, CPU {info['cpu']} (native bf16: {info['native_bf16']}), "
          f"{info['threads']} threads; GPU: {info['gpu'] or 'none'}\n")
    header = ["task", "model", "precision"] + [c for d in devices for c in (f"{d.upper()} MP/s", f"{d.upper()} vs fp32")]
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for row in info["rows"]:
        if row["model"] is None:
            print(f"| {row['task']} | not installed | | " + " | ".join("" for _ in devices for _ in (0, 1)) + " |")
            continue
        cells = [row["task"], row["model"], row["precision"]]
        for d in devices:
            cell = row.get(d, {})
            if "runs_as" in cell:
                cells += [f"falls back to {cell['runs_as']}", ""]
                continue
            error = ("reference" if row["precision"] == "fp32" else
                     f"{cell['psnr_vs_fp32']:.1f} dB, max {cell['max_levels_vs_fp32']:.1f} levels" if "psnr_vs_fp32" in cell
                     else "")
            cells += [f"{cell['mp_per_s']:.4f}", error]
        print("| " + " | ".join(cells) + " |")
    if info["files"]:
        print("\n| task | device | decode/encode overlapped | images | seconds | images/s | MP/s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in info["files"]:
            print(f"| {r['task']} | {r['device']} | {'yes' if r['overlap'] else 'no'} | {r['images']} | "
                  f"{r['seconds']:.1f} | {r['images_per_s']:.3f} | {r['mp_per_s']:.4f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=12.0, help="size of the (output) photo (default 12)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--weights", help="weights file to use instead of the default model (give one task)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    parser.add_argument("--batch-tiles", type=int, help="tiles per forward pass (default: 1 on CPU, up to 8 on GPU)")
    parser.add_argument("--cpu-only", action="store_true", help="leave the GPU out even when there is one")
    parser.add_argument("--files", type=int, default=0, help="also time the file loop on this many PNG files")
    parser.add_argument("--file-megapixels", type=float, default=1.0, help="size of each file of --files")
    parser.add_argument("--file-precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    if args.weights and len(args.tasks) != 1:
        parser.error("--weights needs exactly one --tasks")

    from panet_cli.errors import PanetError

    try:
        info = measure(args)
    except PanetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print_tables(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
