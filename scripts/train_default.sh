#!/usr/bin/env bash
# How models/nfc-small was made (2-core CPU, 105 minutes); rerun with --resume to keep improving it.
set -euo pipefail
shared=${SHARED:-../shared}
nfcompress train --train "$shared/data/photos/train" --val "$shared/data/photos/val" \
  -o runs/default/nfc-small.safetensors --name nfc-small --minutes 105 --pool 40000 \
  --holdout tuxtype-data --holdout scribus-template --holdout hugin-data \
  --config '{"prior_blocks": 2}' --threads 2 --eval-minutes 10 "$@"
cp runs/default/nfc-small.safetensors runs/default/nfc-small.json models/
