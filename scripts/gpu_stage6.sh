#!/usr/bin/env bash
# Stage 6, on a lent GPU (one `device` call): a fine-tune on a mix with 128x128 native crops, so
# that larger tiles can pay on full photos, from the CPU fine-tune of session 8 (INIT: float16,
# 23 MB; carry its folder) or from nfc-small, as a new model nfc-small-2. Weights come back
# as float16 (training rounds them), in parts of at most 15 MiB, with the log and the GPU's bench
# figures on 512x512 crops.
# Before the call, here: if INIT is not nfc-small, move models/nfc-small.safetensors (46 MB) out of
# the tree and back after, so that the tree stays under the device's 64 MiB; carry .gpu-data
# (scripts/pack_photos.py --max-mp 0.3, with crop512/) and .whl (constriction). Afterwards:
# `cat parts > runs/stage6/nfc-small-2.safetensors`, scripts/calibrate_exact.py and
# scripts/measure_card.py on the CPU, and ship it by adding its name to SHIPPED_MODELS (README,
# Models: only where it earns its 23 MB).
set -uo pipefail
out=${OUT:-runs/stage6}
init=${INIT:-runs/cpu7/half/nfc-small-2.safetensors}
name=${NAME:-nfc-small-2}
mkdir -p "$out" /tmp/runs
source scripts/gpu_common.sh
gpu_setup
python3 -m nfcompress train --train .gpu-data/train --val .gpu-data/val.npz --name "$name" \
  --init "$init" --batch-scale "${BATCH_SCALE:-16}" --eval-minutes 2.5 \
  --minutes "${MINUTES:-9}" --lr "${LR:-5e-4}" -o "/tmp/runs/$name.safetensors" \
  --mix thumb32:0.2,thumb64:0.2,native64:0.2,native128:0.25,native32:0.15 >"$out/train.log" 2>&1
tail -n 3 "$out/train.log"
cp "/tmp/runs/$name.json" "$out/$name.json" || exit 1
split -b 15M -d "/tmp/runs/$name.safetensors" "$out/$name.safetensors.part"
bench_crop512 "$out/bench-gpu.jsonl" "$init" "/tmp/runs/$name.safetensors"
