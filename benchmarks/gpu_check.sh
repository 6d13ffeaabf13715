#!/usr/bin/env bash
# One call on a CUDA machine (issue 19, item 5): the device tests, restore() twice on the GPU in other
# precisions (the model is left as found), a few training steps on the GPU (and torchrun/NCCL with 2+ GPUs),
# and throughput.py. Everything goes to $OUT (default /tmp/panet-gpu-check); exits non-zero on the first failure.
#
#     bash benchmarks/gpu_check.sh
set -euo pipefail
out="${OUT:-/tmp/panet-gpu-check}"
mkdir -p "$out"
python -c "import torch, sys; print(torch.__version__, torch.cuda.get_device_name(0)) if torch.cuda.is_available() else sys.exit('no CUDA here')" | tee "$out/device.txt"

python -m pytest -q tests/test_devices.py tests/test_training.py tests/test_inference.py -x 2>&1 | tee "$out/pytest.txt"

python - <<'PY' 2>&1 | tee "$out/restore_twice.txt"
import numpy as np, torch
from panet_cli.inference import restore
from panet_cli.loading import load_model
from panet_cli.loading.checkpoint import save_safetensors
from panet_cli.networks import PANet
config = {"n_resblocks": 4, "n_feats": 32, "n_colors": 3, "input_skip": True, "window": 16}
torch.manual_seed(0)
save_safetensors("/tmp/gpu_tiny.safetensors", PANet(**config).state_dict(), {"arch": "PANet", "config": config, "task": "denoise"})
model = load_model("/tmp/gpu_tiny.safetensors", device="cpu")  # restore() runs it on the GPU and gives it back
image = np.random.default_rng(0).random((300, 200, 3), dtype=np.float32)
first = restore(image, "denoise", model=model, device="cuda", tile=0)
for precision in ("fp16", "bf16"):
    low = restore(image, "denoise", model=model, device="cuda", precision=precision, tile=64)
    print(precision, "max |low - fp32|", float(np.abs(low - first).max()))
again = restore(image, "denoise", model=model, device="cuda", tile=0)
assert np.array_equal(again, first) and model.device.type == "cpu", "restore() changed the model"
print("second fp32 call equals the first; the model stayed on", model.device)
PY

python - "$out/data" <<'PY'
import sys, numpy as np
from pathlib import Path
from PIL import Image
folder = Path(sys.argv[1]); folder.mkdir(exist_ok=True)
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:96, 0:128] / 96.0
for i in range(8):
    img = np.stack([0.5 + 0.4 * np.sin(3 * xx + 2 * yy + p) for p in rng.uniform(0, 6, 3)], axis=-1)
    Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
PY
common=(--blocks 4 --feats 32 --patch 48 --batch 16 --steps 40 --val-every 20 --val-holdout 2 --val-crop 64)
python -m panet_cli train "$out/data" -o "$out/gpu.safetensors" --device cuda --precision auto "${common[@]}" \
    2>&1 | tee "$out/train.txt"
grep -q "cuda" "$out/train.txt"
if [ "$(python -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    python -m torch.distributed.run --standalone --nproc-per-node 2 -m panet_cli train "$out/data" \
        -o "$out/ddp.safetensors" --device cuda --precision bf16 "${common[@]}" 2>&1 | tee "$out/train_ddp.txt"
fi

python benchmarks/throughput.py --megapixels 2 --files 4 2>&1 | tee "$out/throughput.txt"
echo "GPU check passed; logs in $out"
