#!/usr/bin/env bash
# How models/nfc-small was made on this 2-core CPU, in two stages:
#  1. a 3-level IDF trained 105 minutes (that run drew its patches from a fixed pool of 40k per
#     kind, the sampler of the time; the trainer now draws fresh patches every step);
#  2. the same grown to 5 levels (--init keeps every trained tensor; the level-3 factor-out and
#     levels 4-5 start fresh) and trained 70 minutes, then resumed for 24 more on the same
#     cosine stretched to 94 minutes.
# Then the card is re-measured with the val photos and every held-out photo.
#  3. (on a lent H100, with the photos packed by pack_photos.py in .gpu-data/) checkerboard
#     contexts added, each starting as a copy of its group's prior, and the whole trained 7.6
#     minutes on a cosine of 14, then resumed 5.3 more on a cosine of 13, batch scale 16 (the
#     machine was lost once in between). Set STAGE3=1 to run it where CUDA is present.
#  4. back on this CPU: the stage-3 model fine-tuned 45 minutes at lr 2e-4 (5,412 steps); the
#     card's six ideal figures each fell 0.06-0.28% (earlier stages nested under training.earlier
#     in the card by hand). Set STAGE4=1 to run it.
#  5. (not shipped) scripts/gpu_stage5.sh on a lent H200: 6.5 minutes at two learning rates on a
#     mix weighted to native crops; native crops -0.35..-0.63%, thumbnails +0.08..+0.42%.
# Last, the portable form's calibration (the weights, and so the model's hash, do not change;
# training runs write one themselves): scripts/calibrate_exact.py, as at the end of this file.
set -euo pipefail
shared=${SHARED:-../shared}
common=(--train "$shared/data/photos/train" --val "$shared/data/photos/val" --name nfc-small --threads 2
  --eval-minutes 10 --holdout tuxtype-data --holdout scribus-template --holdout hugin-data)
nfcompress train "${common[@]}" -o runs/default/stage1.safetensors --minutes 105 \
  --config '{"levels": 3, "top_groups": [16, 16, 8, 8], "prior_blocks": 2, "checkerboard": false}'
stage2=(-o runs/default/nfc-small.safetensors --lr 1e-3 --init runs/default/stage1.safetensors
  --config '{"levels": 5, "top_groups": [64, 64, 32, 32], "prior_blocks": 2, "checkerboard": false}')
nfcompress train "${common[@]}" "${stage2[@]}" --minutes 70
nfcompress train "${common[@]}" "${stage2[@]}" --minutes 24 --schedule-minutes 94 --resume
python scripts/measure_card.py runs/default/nfc-small.safetensors --train "$shared/data/photos/train" \
  --val "$shared/data/photos/val"
cp runs/default/nfc-small.safetensors runs/default/nfc-small.json models/
if [[ ${STAGE3:-0} == 1 ]]; then
  gpu=(--train .gpu-data/train --val .gpu-data/val.npz -o runs/gpu/nfc-small.safetensors --name nfc-small
    --lr 1e-3 --batch-scale 16 --init models/nfc-small.safetensors --eval-minutes 20)
  nfcompress train "${gpu[@]}" --minutes 7.6 --schedule-minutes 14
  nfcompress train "${gpu[@]}" --minutes 5.3 --schedule-minutes 13 --resume
  python scripts/measure_card.py runs/gpu/nfc-small.safetensors --train "$shared/data/photos/train" \
    --val "$shared/data/photos/val"
  cp runs/gpu/nfc-small.safetensors runs/gpu/nfc-small.json models/
fi
if [[ ${STAGE4:-0} == 1 ]]; then
  nfcompress train "${common[@]}" -o runs/cpu5/nfc-small.safetensors --lr 2e-4 --init models/nfc-small.safetensors \
    --minutes 45
  cp runs/cpu5/nfc-small.safetensors runs/cpu5/nfc-small.json models/
fi
python scripts/calibrate_exact.py models/nfc-small.safetensors --train "$shared/data/photos/train"
