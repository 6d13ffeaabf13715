"""Seconds per megapixel of ``panet denoise`` (default model, default tiling) against CBM3D, same image, same run.

    python benchmarks/speed.py                          # the shipped default denoiser
    python benchmarks/speed.py --weights runs/x.safetensors --sigma 25
    python benchmarks/speed.py --image photo.png --json

The test image is 1000 x 1000 (1.0 MP): McMaster images 1-4 (500 x 500 each) in a 2 x 2 grid,
with Gaussian noise of sigma 25 clipped and rounded to 8 bits (seeded), i.e. a noisy 8-bit file
as users have. Our model runs through ``restore()`` exactly as ``panet denoise`` calls it (device
auto, --precision auto, tile auto, the model's own attention window); model loading is timed separately.
Every method is warmed up on a small crop first, then timed once on the whole image
(:func:`panet_cli.evaluation.evaluate` does the work, so PSNR/SSIM come with the times).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MCMASTER = ROOT.parent / "shared" / "data" / "bench" / "McMaster"


def grid_image(folder: Path, out: Path) -> Path:
    """McMaster 1-4 tiled 2 x 2 into one 1000 x 1000 8-bit PNG."""
    import numpy as np
    from PIL import Image

    tiles = []
    for name in ("1", "2", "3", "4"):
        with Image.open(folder / f"{name}.png") as im:
            tiles.append(np.asarray(im.convert("RGB"))[:500, :500])
    grid = np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0)
    Image.fromarray(grid).save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", help="weights file (default: the registry's default denoiser)")
    parser.add_argument("--model", help="model name (see `panet models list`)")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise std, 0-255 scale (default 25)")
    parser.add_argument("--image", type=Path, help="clean image to use instead of the McMaster 2 x 2 grid")
    parser.add_argument("--precision", default="auto", help="as the task commands' --precision (default auto)")
    parser.add_argument("--no-nlm", action="store_true", help="leave OpenCV non-local means out")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from panet_cli.errors import PanetError
    from panet_cli.evaluation import Protocol, baseline_methods, evaluate, model_method
    from panet_cli.inference import resolve_model

    err = Console(stderr=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.image:
                image, what = args.image, str(args.image)
            elif MCMASTER.is_dir():
                image, what = grid_image(MCMASTER, Path(tmp) / "mcmaster_2x2.png"), "McMaster 1-4 in a 2x2 grid"
            else:
                err.print(f"{MCMASTER} is missing: pass --image PATH")
                return 1
            start = time.perf_counter()
            descriptor = resolve_model("denoise", args.weights or args.model, level=args.sigma, device="cpu")
            load_seconds = time.perf_counter() - start
            protocol = Protocol.for_task("denoise", sigma=args.sigma, colors=descriptor.n_colors)
            methods = [model_method(descriptor, protocol, precision=args.precision,
                                    name=f"panet denoise ({descriptor.name}, {args.precision})")]
            methods += [m for m in baseline_methods(protocol, notice=err.print) if not (args.no_nlm and "NLM" in m.name)]
            if not any(m.name == "CBM3D" for m in methods):
                err.print("CBM3D is the reference of this benchmark: pip install bm3d")
                return 1
            err.print(f"timing {', '.join(m.name for m in methods)} on {what} ...")
            report = evaluate([image], protocol, methods, dataset=what)
    except PanetError as e:
        err.print(str(e), markup=False)
        return 1

    reference = report.mean("CBM3D").seconds_per_mp
    rows = []
    for name in report.methods:
        mean = report.mean(name)
        rows.append({"method": name, "psnr": mean.psnr, "ssim": mean.ssim, "seconds": mean.seconds,
                     "megapixels": mean.megapixels, "s_per_mp": mean.seconds_per_mp,
                     "ratio_to_cbm3d": mean.seconds_per_mp / reference})
    attention = descriptor.model.attention
    info = {"image": what, "sigma": args.sigma, "model": descriptor.name, "model_source": descriptor.source,
            "window": attention.window, "attention_enabled": bool(attention.enabled),
            "model_load_seconds": load_seconds, "machine": report.machine, "rows": rows}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    table = Table(title=f"{what}, {report.images[0].width}x{report.images[0].height}, sigma {args.sigma:g} "
                        f"(8-bit noise); {report.machine['cpu_capability']}, {report.machine['torch_threads']} threads")
    for column in ("method", "PSNR dB", "SSIM", "seconds", "s/MP", "x CBM3D time"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in rows:
        table.add_row(row["method"], f"{row['psnr']:.2f}", f"{row['ssim']:.4f}", f"{row['seconds']:.1f}",
                      f"{row['s_per_mp']:.1f}", f"{row['ratio_to_cbm3d']:.2f}")
    Console().print(table)
    Console().print(f"model load: {load_seconds:.1f} s (not included); window {attention.window or 'whole tile'}, "
                    f"attention {'on' if attention.enabled else 'off'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
