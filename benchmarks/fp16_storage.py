"""Does storing a model in fp16 cost quality? PSNR of each weights file as stored and with its weights rounded to fp16.

    python benchmarks/fp16_storage.py                         # every shipped model, its task's benchmark set
    python benchmarks/fp16_storage.py --limit 3 weights/panet_sr_x4.safetensors

Both variants run in fp32 (the fp16 copy is written by ``store_fp16`` into a scratch folder and loaded back as
fp32, as the CLI loads it), through ``restore()`` as the CLI does, on
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

    import tempfile

    files = [Path(w) for w in args.weights] or sorted((ROOT / "weights").glob("*.safetensors"))
    print("| model | set (images) | PSNR as stored | PSNR, fp16 weights | difference (dB) | fp16 ok (<= 0.02 dB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="panet-fp16-") as scratch_dir:
        for file in files:
            _compare(file, Path(scratch_dir), args.limit)


def _compare(file: Path, scratch: Path, limit: int) -> None:
    """One table row: the file as stored against the very file ``--half`` would write, loaded as the CLI loads it."""
    import shutil

    from panet_cli.evaluation import Protocol, collect_images, evaluate, model_method
    from panet_cli.loading import load_model
    from panet_cli.loading.checkpoint import store_fp16

    stored = load_model(file)
    half_file = scratch / file.name
    shutil.copyfile(file, half_file)
    store_fp16(half_file)
    rounded = load_model(half_file)
    task = stored.task or stored.tasks[0]
    protocol = Protocol.for_task(task, scale=stored.scale or 4, colors=stored.n_colors)
    images = collect_images([BENCH / SETS[task]], limit=limit)
    methods = [model_method(stored, protocol, device="cpu", name="stored"),
               model_method(rounded, protocol, device="cpu", name="fp16")]
    report = evaluate(images, protocol, methods, dataset=SETS[task])
    a, b = report.mean("stored").psnr, report.mean("fp16").psnr
    print(f"| {file.name} | {SETS[task]} ({len(images)}) | {a:.4f} | {b:.4f} | {b - a:+.4f} | "
          f"{'yes' if abs(b - a) <= THRESHOLD_DB else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
