#!/usr/bin/env bash
# CUDA checks on the GPUs of one machine (nothing of this has run on CUDA yet):
# 1. Sharded training: on synthetic codes (ImageNet 256 px layout), one short GPT-B run per strategy
#    (ddp; fsdp with activation checkpointing and micro-batches) on every visible GPU, then one sampling
#    call (bf16) from each run's final.pt, so the consolidated FSDP file is read as a DDP one. A failure
#    here is reported and the benchmark below still runs. Outputs: OUT_DIR/sharded/.
# 2. Sampling benchmark on one GPU: GPT-B and GPT-L, fp32 and bf16, batch 128 with CFG.
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

# Each command ends in `|| return 1`: the check runs under `||`, where bash ignores `set -e`.
sharded_training_check() {
  local work="$out/sharded" gpus
  gpus=$(python -c "import torch; print(torch.cuda.device_count())") || return 1
  rm -rf "$work" && mkdir -p "$work" || return 1
  python - "$work" <<'PY' || return 1
import json, sys
from pathlib import Path
import numpy as np, torch
from tensorar.models.vq import VQModel, vq_checkpoint, vq_config
work = Path(sys.argv[1])
codes = work / "codes"
codes.mkdir()
rng = np.random.default_rng(0)
np.save(codes / "codes_00000.npy", rng.integers(0, 16384, (512, 2, 256)).astype(np.uint16))
np.save(codes / "labels_00000.npy", rng.integers(0, 1000, 512).astype(np.int64))
(codes / "manifest.json").write_text(json.dumps({
    "grid": [16, 16], "vocab_size": 16384, "num_classes": 1000, "num_augmentations": 2, "count": 512,
    "complete": True, "shards": [{"codes": "codes_00000.npy", "labels": "labels_00000.npy", "count": 512}]}))
torch.manual_seed(0)
torch.save(vq_checkpoint(VQModel(vq_config("VQ-16"))), work / "vq.pt")  # random weights: decoding is timed, not judged
PY
  for strategy in ddp fsdp; do
    local extra=()
    [ "$strategy" = fsdp ] && extra=(--activation-checkpointing --micro-batch-size 4)
    torchrun --standalone --nproc_per_node "$gpus" -m tensorar train --codes "$work/codes" \
      --run-dir "$work/run_$strategy" --mode base --preset GPT-B --steps 3 --global-batch-size $((16 * gpus)) \
      --lr-base 1e-4 --log-every 1 --ckpt-every 2 --device cuda --strategy "$strategy" "${extra[@]}" || return 1
    cat "$work/run_$strategy/metrics.jsonl" || return 1
    python -m tensorar sample --ckpt "$work/run_$strategy/final.pt" --vq "$work/vq.pt" \
      --out "$work/samples_$strategy.npz" --num-samples 8 --batch-size 8 --cfg-scale 2.0 --device cuda \
      --dtype bf16 --stats-json "$work/samples_$strategy.json" || return 1
  done
  python - "$work" <<'PY' || return 1
import sys
from pathlib import Path
import torch
work = Path(sys.argv[1])
ddp, fsdp = (torch.load(work / f"run_{s}" / "final.pt", weights_only=True) for s in ("ddp", "fsdp"))
diff = max((ddp["model"][k] - fsdp["model"][k]).abs().max().item() for k in ddp["model"])
print(f"final.pt: same keys {ddp['model'].keys() == fsdp['model'].keys()}, fp32 masters "
      f"{all(v.dtype == torch.float32 for v in fsdp['model'].values() if v.is_floating_point())}, "
      f"max |ddp - fsdp| after 3 steps {diff:.3g} (not bitwise: AdamW steps of ~lr on gradients near 0 follow "
      "their sign, which reduction order and bf16 autocast vs bf16 FSDP parameters can flip)")
PY
}
sharded_training_check 2>&1 | tee "$out/sharded_training.log" || echo "sharded training check FAILED (see $out/sharded_training.log)"

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
