"""The matmuls of one decode step on CPU: F.linear vs oneDNN-packed weights (what
`tensorar.decoding.cpu_packing.PackableLinear` uses during generate()) and two rewrites of the same product
measured before it.

    python benchmarks/decode_matmul.py --preset GPT-B --threads 2

A decode step multiplies a few rows (2 per image with CFG) by every weight matrix of the model once.
For each row count this times that sweep over the preset's weight shapes (random values) three ways and
prints the weight bytes streamed per second, next to a plain read of the same bytes (`sum`), the
machine's memory bandwidth for comparison:
- `F.linear`: x @ W.T, what nn.Linear does (MKL);
- `oneDNN packed`: the weight reordered once into oneDNN's blocked layout (`packed_for_decoding`), then
  oneDNN's matmul: PackableLinear's path in generate();
- `W @ x.T`: the matrix-vector form over the long output axis, and
- `chunked bmm`: output features cut into 8 chunks, one bmm: PackableLinear's paths up to 4 and 64 rows before the
  packed weights replaced them (kept here as the record of what was tried).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from tensorar.decoding.cpu_packing import (
    PackableLinear,
    linear_by_packed_weight,
    packed_for_decoding,
)
from tensorar.fileio import atomic_write_json
from tensorar.models.llamagen import gpt_config


def weight_shapes(preset: str) -> list[tuple[int, int]]:
    """(out, in) of every matrix a GPT decode step multiplies by: per layer wqkv, wo, w1, w3, w2; head."""
    cfg = gpt_config(preset)
    d, hidden, kv = cfg.dim, cfg.ffn_hidden_dim, (cfg.n_kv_head or cfg.n_head) * cfg.head_dim
    per_layer = [(d + 2 * kv, d), (d, d), (hidden, d), (hidden, d), (d, hidden)]
    return per_layer * cfg.n_layer + [(cfg.vocab_size, d)]


def chunked_bmm(x: torch.Tensor, w: torch.Tensor, chunks: int = 8) -> torch.Tensor:
    out = torch.bmm(x.expand(chunks, -1, -1), w.view(chunks, -1, w.size(1)).transpose(1, 2))  # (chunks, rows, out/chunks)
    return out.transpose(0, 1).reshape(x.size(0), -1)  # (rows, out)


METHODS = {
    "F.linear": lambda x, w: F.linear(x, w),
    "oneDNN packed": lambda x, w: linear_by_packed_weight(x, w, None),
    "W @ x.T": lambda x, w: (w @ x.t()).t().contiguous(),
    "chunked bmm": chunked_bmm,
}


def seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="GPT-B")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 512])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers = nn.ModuleList(PackableLinear(n_in, n_out, bias=False) for n_out, n_in in weight_shapes(args.preset))
    weights = [layer.weight for layer in layers]
    for w in weights:
        nn.init.normal_(w)
    gbytes = sum(w.numel() * w.element_size() for w in weights) / 1e9
    bandwidth = gbytes / seconds(lambda: [w.sum() for w in weights], args.repeats)
    result = {"preset": args.preset, "threads": args.threads, "torch": torch.__version__,
              "weight_gb": gbytes, "read_gb_per_s": bandwidth, "rows": {}}
    print(f"{args.preset}: {gbytes * 1000:.0f} MB of fp32 weights per step; plain read {bandwidth:.1f} GB/s "
          f"({args.threads} threads, torch {torch.__version__})")
    print(f"| rows | {' | '.join(f'{m:>16}' for m in METHODS)} |")
    print(f"|-----:|{'|'.join('-' * 18 for _ in METHODS)}|")
    with torch.no_grad(), packed_for_decoding(layers):
        for rows in args.rows:
            xs = {n: torch.randn(rows, n) for n in {w.size(1) for w in weights}}
            speeds = {}
            for name, method in METHODS.items():
                t = seconds(lambda: [method(xs[w.size(1)], w) for w in weights], args.repeats)
                speeds[name] = {"ms": 1000 * t, "gb_per_s": gbytes / t}
            result["rows"][rows] = speeds
            cells = " | ".join(f"{s['ms']:6.1f} ms {s['gb_per_s']:4.1f} GB/s" for s in speeds.values())
            print(f"| {rows:4d} | {cells} |")
    if args.out:
        atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
