"""Does storing a model in fp16 cost quality? PSNR of each weights file as stored and with its weights rounded to fp16.

    python benchmarks/fp16_storage.py                         # every shipped model, its task's benchmark set
    python benchmarks/fp16_storage.py --limit 3 weights/panet_sr_x4.safetensors

Both variants run in fp32 (loading turns fp16 files into fp32), through ``restore()`` as the CLI does, on
the same degraded inputs in the same run, with the protocol of the model's task (denoising sigma 25 with
8-bit noise, JPEG q10, SR at the model's scale, RGGB demosaicing). Issue 8 ships a file in fp16 when the
difference is at most 0.02 dB (``python -m panet_cli.registry --half FILE`` then rewrites it). Prints a
markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "data" / "bench"
SETS = {"denoise": "CBSD68", "sr": "Set5", "car": "LIVE1", "demosaic": "McMaster"}
THRESHOLD_DB = 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="*", help="weights files (default: every .safetensors in weights/)")
    parser.add_argument("--limit", type=int, default=4, help="images of each set")
    args = parser.parse_args()

    import torch

    from panet_cli.evaluation import Protocol, collect_images, evaluate, model_method
    from panet_cli.loading import load_model

    files = [Path(w) for w in args.weights] or sorted((ROOT / "weights").glob("*.safetensors"))
    print("| model | set (images) | PSNR as stored | PSNR, fp16 weights | difference (dB) | fp16 ok (<= 0.02 dB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for file in files:
        stored = load_model(file)
        rounded = load_model(file)
        with torch.no_grad():
            for tensor in rounded.model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
        task = stored.task or stored.tasks[0]
        protocol = Protocol.for_task(task, scale=stored.scale or 4, colors=stored.n_colors)
        images = collect_images([BENCH / SETS[task]], limit=args.limit)
        methods = [model_method(stored, protocol, device="cpu", name="stored"),
                   model_method(rounded, protocol, device="cpu", name="fp16")]
        report = evaluate(images, protocol, methods, dataset=SETS[task])
        a, b = report.mean("stored").psnr, report.mean("fp16").psnr
        print(f"| {file.name} | {SETS[task]} ({len(images)}) | {a:.4f} | {b:.4f} | {b - a:+.4f} | "
              f"{'yes' if abs(b - a) <= THRESHOLD_DB else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
