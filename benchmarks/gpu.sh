#!/usr/bin/env bash
# Sampling benchmark on one CUDA GPU: GPT-B and GPT-L, fp32 and bf16, batch 128 with CFG.
# Installs nothing (needs this package importable, e.g. `pip install -e .` or PYTHONPATH=src).
# Usage: bash benchmarks/gpu.sh [LLAMAGEN_CHECKOUT] [OUT_DIR]
#   LLAMAGEN_CHECKOUT: a checkout of FoundationVision/LlamaGen to compare with (optional).
# GPT-B also times the compiled steps (ours: CUDA graphs; LlamaGen: torch.compile "reduce-overhead")
# and checks that greedy fp32 decoding with our compiled step gives the eager tokens; GPT-L runs eager
# only, to stay within a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
llamagen=${1:-}
out=${2:-benchmarks/out}
mkdir -p "$out"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
theirs=()
[ -n "$llamagen" ] && theirs=(--llamagen-repo "$llamagen")
for preset in GPT-B GPT-L; do
  compiled=()
  [ "$preset" = GPT-B ] && compiled=(--compile)
  for dtype in fp32 bf16; do
    python benchmarks/sampling.py --preset "$preset" --batch-size 128 --dtype "$dtype" --device cuda \
      --warmup 1 --repeats 3 --vq-preset VQ-16 "${theirs[@]}" "${compiled[@]}" \
      --out "$out/cuda_${preset}_${dtype}_b128.json"
  done
done
