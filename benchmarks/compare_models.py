"""Several models side by side under one protocol, with the task's baselines: same inputs, same run.

    python benchmarks/compare_models.py --task car --colors 3 --quality 10 \
        --set ../shared/data/bench/LIVE1 panet-car-color panet-car-gray
    python benchmarks/compare_models.py --task demosaic --set ../shared/data/bench/McMaster \
        weights/panet_demosaic.safetensors runs/demosaic.safetensors

``panet eval`` scores one model with the protocol of its own colour count; this script fixes the protocol
(``--colors``) so that, e.g., the colour JPEG model and the grey one (which ``restore()`` runs on the luma of
a colour image, keeping the decoded chroma) meet on the same colour JPEGs. Models are names from the
registry or weights files. Prints a markdown table (PSNR / SSIM / s/MP, means over the set).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from panet_cli.tasks import TASK_NAMES, task_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model names or weights files")
    parser.add_argument("--task", required=True, choices=TASK_NAMES)
    parser.add_argument("--set", required=True, help="folder of clean images")
    parser.add_argument("--colors", type=int, choices=[1, 3], help="protocol colours (default: the task's)")
    parser.add_argument("--sigma", type=float, default=25)
    parser.add_argument("--quality", type=int, default=10)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--precision", default="auto", help="as the task commands' --precision (default auto)")
    args = parser.parse_args()

    from panet_cli.evaluation import Protocol, baseline_methods, collect_images, evaluate, model_method
    from panet_cli.inference import resolve_model

    protocol = Protocol.for_task(args.task, sigma=args.sigma, quality=args.quality, scale=args.scale,
                                 colors=args.colors)
    methods = []
    for model in args.models:
        descriptor = resolve_model(args.task, model, scale=args.scale if task_spec(args.task).scaled else None,
                                   device="cpu")
        methods.append(model_method(descriptor, protocol, device="cpu", precision=args.precision,
                                    name=Path(model).stem))
    if not args.no_baselines:
        methods += baseline_methods(protocol, notice=print)
    files = collect_images([args.set], limit=args.limit)
    report = evaluate(files, protocol, methods, dataset=Path(args.set).name)
    print(f"{Path(args.set).name} ({len(files)} images), {protocol.describe()}\n")
    print(report.markdown_means())


if __name__ == "__main__":
    main()
