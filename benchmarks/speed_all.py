"""Seconds per output megapixel of every shipped default model, as ``restore()`` runs it for the CLI, same run.

    python benchmarks/speed_all.py                 # 512 x 512 crops of McMaster 1 (Set5 bird-sized for SR inputs)
    python benchmarks/speed_all.py --side 256 --precision bf16

Each default model (one per task, and each SR scale) runs once on a warm-up crop, then is timed on a
``--side`` x ``--side`` input (SR: ``side / scale``, so every row is about the same output size), with the
task's degradation applied first. demosaicnet, the learned demosaicing peer, is timed on the same mosaic
when installed, so ``panet demosaic``'s ratio to it is in the table. The limits of issue 18: at most
20 s per output MP for every model, and at most 3x demosaicnet's time for demosaicing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT.parent / "shared" / "data" / "bench" / "McMaster" / "1.png"
LIMIT_S_PER_MP = 20.0


def _timed(fn, warm) -> float:
    fn(warm)
    start = time.perf_counter()
    fn(None)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=480, help="output side in pixels (McMaster images are 500)")
    parser.add_argument("--image", type=Path, default=IMAGE)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from panet_cli.baselines import BaselineUnavailable, demosaicnet
    from panet_cli.degradations import bayer_mosaic, bicubic_downscale, jpeg_compress, add_gaussian_noise
    from panet_cli.inference import resolve_model, restore

    with Image.open(args.image) as im:
        clean = np.asarray(im.convert("RGB"), dtype=np.float32)[: args.side, : args.side] / 255
    tensor = torch.from_numpy(clean).permute(2, 0, 1)[None]
    rows = [("denoise", None, add_gaussian_noise(tensor, 25.0, torch.Generator().manual_seed(0))),
            ("car", None, jpeg_compress(tensor[0], 10)[None]),
            ("demosaic", None, bayer_mosaic(tensor, "RGGB").sum(1, keepdim=True))]
    rows += [("sr", s, bicubic_downscale(tensor[..., : args.side // s * s, : args.side // s * s], s)) for s in (2, 3, 4)]
    print(f"| task | model | input | s per output MP | within {LIMIT_S_PER_MP:g} s/MP |")
    print("| --- | --- | --- | --- | --- |")
    demosaic_time = None
    for task, scale, degraded in rows:
        image = degraded[0].permute(1, 2, 0).numpy()
        descriptor = resolve_model(task, None, scale=scale, colors=3, device="cpu")

        def run(warm, image=image, task=task, scale=scale, descriptor=descriptor):
            restore(image[:64, :64] if warm is not None else image, task, model=descriptor, scale=scale,
                    device="cpu", precision=args.precision)

        seconds = _timed(run, True)
        out_mp = image.shape[0] * image.shape[1] * (scale or 1) ** 2 / 1e6
        per_mp = seconds / out_mp
        if task == "demosaic":
            demosaic_time = per_mp
        print(f"| {task}{f' x{scale}' if scale else ''} | {descriptor.name} | {image.shape[1]}x{image.shape[0]} "
              f"| {per_mp:.1f} | {'yes' if per_mp <= LIMIT_S_PER_MP else 'no'} |", flush=True)
    cfa = rows[2][2][0].permute(1, 2, 0).numpy()
    try:
        seconds = _timed(lambda warm: demosaicnet(cfa[:64, :64] if warm else cfa, "RGGB"), True)
    except BaselineUnavailable as e:
        print(f"\n{e}")
        return
    per_mp = seconds / (cfa.shape[0] * cfa.shape[1] / 1e6)
    print(f"| demosaic (peer) | demosaicnet | {cfa.shape[1]}x{cfa.shape[0]} | {per_mp:.1f} | |")
    print(f"\npanet demosaic / demosaicnet time: {demosaic_time / per_mp:.2f}x (limit 3x)")


if __name__ == "__main__":
    main()
