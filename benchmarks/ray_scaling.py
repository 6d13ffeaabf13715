"""Images per second of a folder job on a local Ray cluster with 1 and 2 CPU actors, and their ratio.

    python benchmarks/ray_scaling.py                          # 24 images of 96 x 96, default denoiser
    python benchmarks/ray_scaling.py --images 48 --size 128 --actors 1 2 4 --repeats 2
    python benchmarks/ray_scaling.py --weights runs/x.safetensors --json

Each job is what ``panet denoise in/ -o out/ --ray --ray-actors K --threads 1`` runs
(:func:`panet_cli.scaleout.ray_job.run` with one single-threaded CPU actor per CPU), on fresh
output folders. Two rates: over the whole job (actor start and model load included, as a user
sees it), and from the first result to the last (the steady state the actors reach). A warm-up
job first starts Ray's worker processes and fills the page cache. The cluster gets as many CPUs
as the largest actor count; the load average at the start and the end is printed because other
processes on the machine change the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "noisy_sigma25.png"


def make_images(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` different size x size crops of the example noisy photo."""
    import numpy as np
    from PIL import Image

    with Image.open(PHOTO) as im:
        photo = np.asarray(im.convert("RGB"))
    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        y = int(rng.integers(0, max(1, photo.shape[0] - size)))
        x = int(rng.integers(0, max(1, photo.shape[1] - size)))
        crop = photo[y : y + size, x : x + size]
        if crop.shape[:2] != (size, size):
            crop = np.asarray(Image.fromarray(crop).resize((size, size)))
        paths.append(folder / f"img{k:03d}.png")
        Image.fromarray(crop).save(paths[-1])
    return paths


def one_job(ray_job, images: list[Path], out: Path, model: Path, actors: int) -> dict:
    from panet_cli.scaleout.work import Item, Settings

    jobs = [Item(str(p), p.name, str(out / p.name)) for p in images]
    plan = ray_job.Plan(actors=actors, cpus_per_actor=1.0, gpus_per_actor=0.0, batch_size=1, device="cpu")
    start = time.perf_counter()
    arrivals = []
    for outcome in ray_job.run(jobs, Settings("denoise"), model, plan):
        if outcome.status != "done":
            raise SystemExit(f"failed: {outcome.reason}")
        arrivals.append(time.perf_counter())
    wall = arrivals[-1] - start
    steady = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else float("nan")
    return {"actors": actors, "images": len(images), "seconds": wall, "images_per_s": len(images) / wall,
            "steady_images_per_s": steady}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", type=int, default=96, help="image side in pixels (default 96)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--weights", help="weights file (default: the installed default denoiser)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    try:
        import ray
    except ImportError:
        print('needs Ray: pip install "panet[ray]"', file=sys.stderr)
        return 1
    from panet_cli.registry import find_model
    from panet_cli.scaleout import ray_job

    model = Path(args.weights) if args.weights else find_model("denoise", download=False)
    load_before = os.getloadavg()
    ray.init(num_cpus=max(args.actors), include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            images = make_images(Path(tmp), args.images, args.size)
            one_job(ray_job, images[: max(args.actors)], Path(tmp) / "warm-up", model, max(args.actors))
            for repeat in range(args.repeats):
                for actors in args.actors:
                    row = one_job(ray_job, images, Path(tmp) / f"out-{repeat}-{actors}", model, actors)
                    rows.append(row)
                    print(f"{actors} actor(s): {row['seconds']:.1f} s, {row['images_per_s']:.2f} images/s "
                          f"(steady {row['steady_images_per_s']:.2f})", file=sys.stderr)
    finally:
        ray.shutdown()
    load_after = os.getloadavg()

    def mean(actors: int, key: str) -> float:
        values = [r[key] for r in rows if r["actors"] == actors]
        return sum(values) / len(values)

    base = min(args.actors)
    summary = [{"actors": a, "images_per_s": mean(a, "images_per_s"), "steady_images_per_s": mean(a, "steady_images_per_s"),
                "ratio": mean(a, "images_per_s") / mean(base, "images_per_s"),
                "steady_ratio": mean(a, "steady_images_per_s") / mean(base, "steady_images_per_s")} for a in args.actors]
    info = {"images": args.images, "size": args.size, "model": str(model), "cpus": os.cpu_count(),
            "load_average_before": load_before[0], "load_average_after": load_after[0], "runs": rows, "summary": summary}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.images} images of {args.size}x{args.size}, {Path(model).name}, {os.cpu_count()} CPUs, "
          f"1 thread per actor, {args.repeats} run(s) each; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after\n")
    print(f"| CPU actors | images/s (whole job) | x {base} actor | images/s (first to last result) | x {base} actor |")
    print("| --- | --- | --- | --- | --- |")
    for s in summary:
        print(f"| {s['actors']} | {s['images_per_s']:.2f} | {s['ratio']:.2f} | {s['steady_images_per_s']:.2f} | "
              f"{s['steady_ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
