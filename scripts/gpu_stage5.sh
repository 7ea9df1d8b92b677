#!/usr/bin/env bash
# Stage 5 of models/nfc-small, on a lent GPU (one `device` call): two fine-tunes of the shipped
# model side by side at two learning rates, on a mix weighted towards native-resolution crops;
# the better on the val sets comes back in parts of at most 15 MiB (the device's limit per file),
# with both logs and the GPU's bench figures on 512x512 crops.
# Needs .gpu-data (scripts/pack_photos.py --max-mp 0.3, and crop512/: the bench set's 512x512
# crops as lossless WebP) and .whl (constriction) carried.
set -uo pipefail
out=${OUT:-runs/stage5}
mkdir -p "$out" /tmp/runs
source scripts/gpu_common.sh
gpu_setup
common=(--train .gpu-data/train --val .gpu-data/val.npz --name nfc-small --init models/nfc-small.safetensors
  --batch-scale "${BATCH_SCALE:-16}" --eval-minutes 2.5 --minutes "${MINUTES:-6.3}"
  --mix thumb32:0.2,thumb64:0.25,native64:0.4,native32:0.15)
python3 -m nfcompress train "${common[@]}" --lr 2.5e-4 -o /tmp/runs/a/nfc-small.safetensors >"$out/a.log" 2>&1 &
python3 -m nfcompress train "${common[@]}" --lr 7e-4 --seed 1 -o /tmp/runs/b/nfc-small.safetensors >"$out/b.log" 2>&1 &
wait
tail -n 3 "$out/a.log" "$out/b.log"
best=$(python3 - <<'PY'
import json
def score(run):
    try:
        m = json.load(open(f"/tmp/runs/{run}/nfc-small.json"))["metrics"]["bpsp"]
    except (OSError, KeyError, ValueError):
        return float("inf")
    return sum(m[k]["nfcompress_ideal"] for k in ("thumb32", "thumb64", "native64"))
print(min("ab", key=score))
PY
)
echo "best: $best"
cp "/tmp/runs/$best/nfc-small.json" "$out/nfc-small.json"
split -b 15M -d "/tmp/runs/$best/nfc-small.safetensors" "$out/nfc-small.safetensors.part"
bench_crop512 "$out/bench-gpu.jsonl" models/nfc-small.safetensors "/tmp/runs/$best/nfc-small.safetensors"
