"""What the pyramid attention is worth in a trained model: PSNR and s/MP with it bypassed and at several windows.

    python benchmarks/attention_worth.py --weights weights/panet_denoise_blind.safetensors --limit 10
    python benchmarks/attention_worth.py --windows 24 32 48 --set ../shared/data/bench/McMaster
    python benchmarks/attention_worth.py --windows 24:4 16:4 16:2     # window:overlap
    python benchmarks/attention_worth.py --weights weights/panet_car_gray.safetensors \
        --set ../shared/data/bench/LIVE1 --windows 16:2 24:4

Every variant is the same network and weights, run through ``restore()`` as the CLI does, on the same
degraded inputs in the same run, with the protocol of the model's task (denoising: 8-bit clipped noise at
--sigma; JPEG: --quality; SR: the model's scale; demosaicing: RGGB): the attention bypassed
(identity), and the attention restricted to each window size. Time per pixel of the attention grows
with window**2, its quality is what this script measures. Prints a markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(ROOT / "weights" / "panet_denoise_blind.safetensors"))
    parser.add_argument("--set", default=str(ROOT.parent / "shared" / "data" / "bench" / "CBSD68"))
    parser.add_argument("--sigma", type=float, default=25, help="denoising: noise level (0-255 scale)")
    parser.add_argument("--quality", type=int, default=10, help="JPEG artifact models: quality")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--windows", nargs="+", default=["24", "32", "48"],
                        help="window sizes, each optionally with its overlap as WINDOW:OVERLAP")
    parser.add_argument("--precision", default="auto", help="as the task commands' --precision (default auto)")
    args = parser.parse_args()

    import numpy as np

    from panet_cli.evaluation import Method, Protocol, collect_images, evaluate
    from panet_cli.inference import RestoreOptions, restore
    from panet_cli.loading import load_model
    from panet_cli.tasks import task_spec

    descriptor = load_model(args.weights)
    trained = (descriptor.window, descriptor.model.attention.window_overlap)
    task = descriptor.task or descriptor.tasks[0]
    protocol = Protocol.for_task(task, sigma=args.sigma, quality=args.quality, scale=descriptor.scale,
                                 colors=descriptor.n_colors)
    spec = task_spec(task)
    options = RestoreOptions(level=spec.level_of(sigma=args.sigma, quality=args.quality),
                             scale=descriptor.scale if spec.scaled else None, precision=args.precision)

    def variant(name: str, enabled: bool, window: tuple[int | None, int]) -> Method:
        model = descriptor.with_attention(enabled, window[0], window[1])  # shares the weights

        def run(image: np.ndarray) -> np.ndarray:
            return restore(image, task, options=options, model=model, device="cpu")

        return Method(name, run)

    def parse(spec: str) -> tuple[int, int]:
        size, _, overlap = spec.partition(":")
        return int(size), int(overlap) if overlap else trained[1]

    methods = [variant("attention bypassed", False, trained)]
    for window in map(parse, args.windows):
        label = f"window {window[0]}, overlap {window[1]}" + (" (stored default)" if window == trained else "")
        methods.append(variant(label, True, window))
    files = collect_images([args.set], limit=args.limit)
    report = evaluate(files, protocol, methods, dataset=Path(args.set).name)
    print(f"{descriptor.name}: {Path(args.set).name} ({len(files)} images), {protocol.describe()}, "
          f"precision {args.precision}\n")
    print(report.markdown_means("variant"))


if __name__ == "__main__":
    main()
