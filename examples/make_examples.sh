#!/usr/bin/env bash
# Regenerate the README's before/after pictures (one per task) with the shipped default models, and the
# model card's plots (weights/plots/, when matplotlib is installed). Run from anywhere:
#
#     bash examples/make_examples.sh
#
# Every picture is made by the panet commands below, exactly as the README shows them, on small crops
# (at most 128 x 128 input pixels), so the whole run takes seconds to a minute on a CPU. The clean crops in
# examples/readme/clean/ are cut from ../shared/data/bench once (if missing); everything else is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

R=examples/readme
mkdir -p "$R/clean"

# The clean crops (made once): name, source, left, top, side.
while read -r name source left top side; do
    [ -f "$R/clean/$name.png" ] && continue
    python - "$source" "$left" "$top" "$side" "$R/clean/$name.png" <<'EOF'
import sys
from PIL import Image
source, left, top, side, out = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
Image.open(source).convert("RGB").crop((left, top, left + side, top + side)).save(out)
EOF
done <<'CROPS'
denoise examples/clean_108005.png 64 40 128
sr ../shared/data/bench/Set5/bird.png 16 16 256
car ../shared/data/bench/LIVE1/lighthouse2.png 330 60 128
demosaic ../shared/data/bench/McMaster/1.png 150 250 128
CROPS

# This script's own outputs go first, so the commands below run as shown (no --overwrite).
rm -rf "$R/input" "$R/output"
rm -f "$R"/denoise.png "$R"/sr.png "$R"/car.png "$R"/demosaic.png

# Inputs, made with the same degradations panet eval uses.
panet degrade "$R/clean/denoise.png" -o "$R/input" --noise 25
panet degrade "$R/clean/sr.png" -o "$R/input" --downscale 4
panet degrade "$R/clean/car.png" -o "$R/input" --jpeg 10
panet degrade "$R/clean/demosaic.png" -o "$R/input" --mosaic RGGB

# The shipped defaults (the README shows these lines).
panet denoise examples/readme/input/denoise.png -o examples/readme/output/denoise.png
panet sr examples/readme/input/sr.png -o examples/readme/output/sr.png
panet car examples/readme/input/car.jpg -o examples/readme/output/car.png
panet demosaic examples/readme/input/demosaic.png -o examples/readme/output/demosaic.png

# The before/after pairs the README displays.
panet compare "$R/input/denoise.png" "$R/output/denoise.png" -o "$R/denoise.png" --zoom 2 \
    --label-a "noisy input (sigma 25)" --label-b "panet denoise"
panet compare "$R/input/sr.png" "$R/output/sr.png" -o "$R/sr.png" \
    --label-a "64 x 64 input" --label-b "panet sr (x4)"
panet compare "$R/input/car.jpg" "$R/output/car.png" -o "$R/car.png" --zoom 2 \
    --label-a "JPEG, quality 10" --label-b "panet car"
panet compare "$R/input/demosaic.png" "$R/output/demosaic.png" -o "$R/demosaic.png" --zoom 2 \
    --label-a "Bayer mosaic (RGGB)" --label-b "panet demosaic"

# The model card's plots, from the weights files' metadata.
if python -c "import matplotlib" 2>/dev/null; then
    python benchmarks/card_plots.py
else
    echo "note: matplotlib is missing, card plots not redrawn (pip install torch==2.13.0 -e \".[bench]\")" >&2
fi
