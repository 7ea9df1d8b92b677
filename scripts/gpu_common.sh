# Sourced by the scripts/gpu_stage*.sh device scripts: the set-up and the bench they share.

# Install the carried wheels (.whl, unless NO_WHL is set), unbuffer Python, name the GPU.
gpu_setup() {
  if [[ -z ${NO_WHL:-} ]] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
  fi
  export PYTHONUNBUFFERED=1
  nvidia-smi -L 2>/dev/null
}

# bench_crop512 OUT_JSONL MODEL...: nfcompress bench of each model on the carried 512x512 crops
# (.gpu-data/crop512, lossless WebP), on the GPU where there is one.
bench_crop512() {
  local out=$1 f m dev=cpu
  shift
  mkdir -p /tmp/crop512
  for f in .gpu-data/crop512/*.webp; do
    python3 -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).save(sys.argv[2])' "$f" "/tmp/crop512/$(basename "${f%.webp}").png"
  done
  python3 -c 'import torch; raise SystemExit(0 if torch.cuda.is_available() else 1)' && dev=cuda
  for m in "$@"; do
    python3 -m nfcompress bench /tmp/crop512 --device $dev --model "$m" --json >>"$out"
  done
  cat "$out"
}
