"""Print the learning curve stored in one of our weights files: validation PSNR against CPU hours.

    python benchmarks/learning_curve.py weights/panet_denoise_blind.safetensors
    python benchmarks/learning_curve.py runs/dn.safetensors.state.pt      # a training state: its latest step

Every validation point of every training stage is kept in the file's metadata (``training.curve``:
step, cumulative CPU hours of the training process, validation PSNR), so the curve travels with the
weights across sessions and machines.
"""

from __future__ import annotations

import argparse


def _metadata(path: str) -> dict:
    """A weights file's metadata, or a training state's (its curve up to the state's own step)."""
    if not path.endswith(".state.pt"):
        from panet_cli.loading.checkpoint import read_safetensors

        return read_safetensors(path)[1]
    import json

    from panet_cli.training.export import read_state

    state = read_state(path)
    training = json.loads(state["training"])
    return {"step": state["step"], "val_psnr": training.get("best_val_psnr"), "training": training}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights")
    args = parser.parse_args()

    meta = _metadata(args.weights)
    training = meta.get("training", {})
    stages = training.get("stages", [])
    print(f"{args.weights}: step {meta.get('step')}, best validation PSNR {meta.get('val_psnr')} dB\n")
    source = training.get("initialised_from")
    if source:
        print(f"initialised from {source['from']} ({source['task']}, step {source['step']}, "
              f"{source['cpu_hours']:.2f} CPU h; adapted: {', '.join(source['adapted']) or 'none'}; "
              f"fresh: {', '.join(source['fresh']) or 'none'}); CPU hours below exclude it\n")
    for i, stage in enumerate(stages, 1):
        print(f"stage {i}: attention {'on' if stage['attention'] else 'bypassed'}, patch {stage['patch']}, "
              f"{'shrink ' + str(stage['shrink']) + ', ' if stage.get('shrink', 1) > 1 else ''}"
              f"batch {stage['batch']}, lr {stage['lr']:g} cosine to step {stage['steps']}, precision {stage['precision']}")
    print("\n| step | CPU hours | validation PSNR (dB) |\n| --- | --- | --- |")
    for step, cpu_hours, value in training.get("curve", []):
        print(f"| {step} | {cpu_hours:.2f} | {value:.3f} |")


if __name__ == "__main__":
    main()
