#!/usr/bin/env bash
# The README's figures: every codec on the benchmark folders (made by make_bench_sets.py).
set -euo pipefail
out=${1:-cache/figures}
mkdir -p "$out"
nfcompress bench --json --plot "$out/val.png" cache/bench/thumb32 cache/bench/thumb64 cache/bench/native64 \
  cache/bench/crop512 cache/bench/full > "$out/val.jsonl"
nfcompress bench --json cache/bench-heldout/thumb32 cache/bench-heldout/thumb64 cache/bench-heldout/native64 \
  cache/bench-heldout/full > "$out/heldout.jsonl"
