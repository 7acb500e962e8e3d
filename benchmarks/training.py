"""Training-step cost: base, control (finetune) and TensorAR (k = 2, 4, 8; d = 1), beside the ratio the
multiply-add count predicts.

    python benchmarks/training.py --preset GPT-B --tokens 64 --batch-size 8 --threads 2      # CPU

One training step is what `tensorar.training.trainer` runs per step on one process: `training_loss`
(forward), `loss.backward()`, `clip_grad_norm_` (the default --grad-clip 1.0) and AdamW
(betas 0.9/0.95, weight decay 0.05 on >= 2-D weights, the trainer's `param_groups`: every parameter
of the model, base and plug-in, is trained in every mode). The preset is the real one with a short
token grid (`--tokens`, a square: 64 = 8x8) and the preset's dropout, in train mode, fp32 (the trainer
autocasts on CUDA only). TensorAR gets pre-drawn noise uniforms, as the trainer passes them.

Base and control ("finetune" mode) are the same computation: finetune starts from a base checkpoint and
trains the same GPT with the same optimizer groups, so only the initial weights differ. Control is timed
anyway, as a model of its own, to show the measurement's spread between two identical steps.

Timing: every model is warmed up, then the `--repeats` rounds are interleaved (round r runs every model
once), so drift of a shared VM biases no model against another. Each phase (forward, backward,
optimizer = zero_grad + clip + AdamW) is timed by wall clock (CPU ops are synchronous). The ratios
compare each model's fastest step: on a shared VM other processes take the cores now and then, which
can only slow a step (by up to 5x with 2 OpenMP threads on 2 busy cores), so the minimum is the
least-disturbed estimate; the median and interquartile range show how disturbed the run was.

The prediction counts multiply-adds (MACs) per image, analytically from the configs (`step_macs`):
  backbone   S·n_layer·(D·(H + 2·Hkv)·Dh + D² + 3·D·F)   S = prefix + T - 1 positions, F the SwiGLU width
  attention  n_layer·2·D·S(S+1)/2                        causal QKᵀ and AV (the CPU kernel skips key blocks
                                                         above the diagonal); < 1 % at S = 64
  head       T·D·V per output slot                       k slots for TensorAR
  M_enc      (T-1)·(depth·(2·D² + 2k·D² + 2k·D) + 2·D²)  per input window: wq, wo on 1 query; wkv on k tokens;
                                                         1 x k attention; MLP on 1 query
  M_dec      T·(depth·(2k·D² + 2·D² + 2k·D) + 2k·D²)     per position: wq, wo on k queries; wkv on 1 context;
                                                         k x 1 attention; MLP on k queries
A training step is 3x the forward (the backward of a matmul is two matmuls of its size: the gradients of
its input and of its weight; every input here needs a gradient, down to the trained embeddings), plus,
for TensorAR, one more forward of the k head matmuls: `TensorAR.training_loss` runs each slot's head and
cross-entropy inside an activation checkpoint (only one slot's (B, T, V) logits are alive at a time), so
the backward recomputes them. Norms, RoPE, softmax/cross-entropy, dropout and AdamW are not counted (they
stream memory). The matmul part of the count is checked against `torch.utils.flop_counter` on one real
forward + backward of each model (which on CPU counts no attention): the "counted" column.
The predicted TensorAR / base step-time ratio is the ratio of these MAC counts: the expected ratio where
a step is arithmetic-bound.

The last column counts the process's minor page faults per step: glibc maps every allocation of 32 MiB or
more fresh from the kernel and returns it when freed (at GPT-B, 64 tokens, batch 8 each slot's (B·T, V)
fp32 logits are 32 MiB), which costs ~1 µs per 4 KiB page on the benchmark VM. Running the script under
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 keeps freed memory in the
process (benchmarks/README.md compares both). Memory: every model lives with its AdamW state for the
interleaving: 10.9 GB at peak for GPT-B, 64 tokens, batch 8, the default k's.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from tensorar.fileio import atomic_write_json
from tensorar.models.registry import family
from tensorar.models.tensorar import TensorAR, TensorARConfig
from tensorar.training.options import TrainOptions
from tensorar.training.trainer import param_groups

BASE, CONTROL = "base", "control (finetune)"


def tensorar_name(k: int, depth: int) -> str:
    return f"TensorAR (k={k}, d={depth})"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="GPT-B", help="a LlamaGen c2i preset")
    p.add_argument("--tokens", type=int, default=64, help="image tokens per sample (a square grid)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per step")
    p.add_argument("--k", type=int, nargs="+", default=[2, 4, 8], help="TensorAR window sizes")
    p.add_argument("--depth", type=int, default=1, help="query-transformer depth")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    p.add_argument("--repeats", type=int, default=8, help="timed (interleaved) steps per model")
    p.add_argument("--no-count", action="store_true", help="skip the flop-counter check (one step per model)")
    p.add_argument("--out", type=Path, default=None, help="JSON with every number")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# The multiply-add count
# --------------------------------------------------------------------------------------------------
def step_macs(cfg, tokens: int, k: int | None = None, depth: int = 1) -> dict[str, int]:
    """Multiply-adds of one training step per image, by part (module docstring), for a GPTConfig `cfg`
    with `tokens` image tokens: the base model (k None) or TensorAR (window k, query depth `depth`).
    "forward" and "step" are totals; "matmul_step" leaves out the attention (what the flop counter sees
    on CPU)."""
    D, V, L = cfg.dim, cfg.vocab_size, cfg.n_layer
    Dh = cfg.dim // cfg.n_head
    Hkv = cfg.n_kv_head or cfg.n_head
    S = cfg.cls_token_num + tokens - 1  # transformer positions: the condition, then tokens[:, :-1]
    slots = 1 if k is None else k
    parts = {
        "backbone": S * L * (D * (cfg.n_head + 2 * Hkv) * Dh + D * D + 3 * D * cfg.ffn_hidden_dim),
        "attention": L * 2 * D * S * (S + 1) // 2,
        "head": tokens * D * V * slots,
        "m_enc": 0,
        "m_dec": 0,
    }
    attention = parts["attention"]  # the part of the forward that the flop counter does not see on CPU
    if k is not None:
        windows = tokens - 1  # input windows x_{t,k}, t = 1..T-1
        parts["m_enc"] = windows * (depth * (D * D + 2 * k * D * D + 2 * k * D + D * D) + 2 * D * D)
        parts["m_dec"] = tokens * (depth * (k * D * D + 2 * D * D + 2 * k * D + k * D * D) + 2 * k * D * D)
        attention += depth * (windows + tokens) * 2 * k * D  # the 1 x k and k x 1 cross-attentions
    forward = sum(parts.values())
    recompute = parts["head"] if k is not None else 0  # the checkpointed slot heads run twice
    return {**parts, "forward": forward, "head_recompute": recompute, "step": 3 * forward + recompute,
            "matmul_step": 3 * (forward - attention) + recompute}


# --------------------------------------------------------------------------------------------------
# Models and the step
# --------------------------------------------------------------------------------------------------
def build_models(args) -> dict[str, torch.nn.Module]:
    """name -> model in train mode; random weights (speed does not depend on them)."""
    fam = family("llamagen")
    cfg = fam.config(args.preset, block_size=args.tokens)
    models = {}
    for i, name in enumerate([BASE, CONTROL] + [tensorar_name(k, args.depth) for k in args.k]):
        torch.manual_seed(i)
        model = fam.model_class(cfg)
        if i >= 2:
            model = TensorAR(model, TensorARConfig(k=args.k[i - 2], depth=args.depth))
        for p in model.parameters():  # redraw the zero-initialised head and plug-in branches
            if torch.count_nonzero(p) == 0:
                torch.nn.init.normal_(p, std=0.02)
        models[name] = model.train()
    return models


class Step:
    """One trainer step of `model` on a fixed batch; `phases` after each call: seconds per phase."""

    def __init__(self, model, tokens, cond, opts: TrainOptions, noise_seed: int = 0):
        self.model, self.tokens, self.cond, self.opts = model, tokens, cond, opts
        self.kwargs = {}
        if isinstance(model, TensorAR):
            B, T = tokens.shape
            gen = torch.Generator().manual_seed(noise_seed)
            self.kwargs["noise_uniforms"] = torch.rand(B, T - 1, model.k, 2, generator=gen)  # (B, T-1, k, 2)
        self.opt = torch.optim.AdamW(param_groups(model, opts.lr_base, opts.lr_plugin, opts.weight_decay),
                                     betas=(0.9, 0.95), fused=False)
        self.phases: dict[str, float] = {}

    def forward_backward(self) -> None:
        loss, _ = self.model.training_loss(self.tokens, self.cond, **self.kwargs)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()

    def __call__(self) -> None:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        loss, _ = self.model.training_loss(self.tokens, self.cond, **self.kwargs)
        t1 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.opts.grad_clip)
        if not torch.isfinite(loss):  # the trainer's check before the optimizer step
            raise SystemExit("non-finite loss")
        self.opt.step()
        t3 = time.perf_counter()
        self.phases = {"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2, "step": t3 - t0}
        self.page_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def counted_macs(step: Step) -> int:
    """Multiply-adds of one forward + backward as torch.utils.flop_counter counts them (no CPU attention)."""
    with FlopCounterMode(display=False) as counter:
        step.forward_backward()
    step.opt.zero_grad(set_to_none=True)
    return counter.get_total_flops() // 2


def timed(steps: dict[str, Step], warmup: int, repeats: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per phase of every step, after warm-up; the repeats interleaved across models."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: {} for name in steps}
    for r in range(repeats):
        for name, step in steps.items():
            step()
            for phase, s in step.phases.items():
                times[name].setdefault(phase, []).append(s)
            times[name].setdefault("page_faults", []).append(step.page_faults)
        print(f"  round {r + 1}/{repeats}: " + ", ".join(f"{n} {1000 * times[n]['step'][-1]:.0f} ms"
                                                       for n in steps), file=sys.stderr)
    return times


def spread(values: list[float]) -> dict[str, float]:
    """min, median, interquartile range (inclusive quartiles) of seconds -> ms."""
    ms = sorted(1000 * v for v in values)
    q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else (ms[0], 0, ms[0])
    return {"min": ms[0], "median": statistics.median(ms), "iqr": q3 - q1}


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    models = build_models(args)
    cfg = models[BASE].config
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (args.batch_size, args.tokens), generator=gen)
    cond = {"labels": torch.randint(0, cfg.num_classes, (args.batch_size,), generator=gen)}
    opts = TrainOptions()
    steps = {name: Step(model, tokens, cond, opts) for name, model in models.items()}
    counted = {}
    if not args.no_count:
        for name, step in steps.items():
            counted[name] = counted_macs(step)
    times = timed(steps, args.warmup, args.repeats)

    rows = []
    for name, model in models.items():
        k = model.k if isinstance(model, TensorAR) else None
        macs = step_macs(cfg, args.tokens, k, args.depth)
        t = times[name]
        fastest = min(range(len(t["step"])), key=t["step"].__getitem__)
        rows.append({
            "model": name, "k": k, "parameters": sum(p.numel() for p in model.parameters()),
            "macs_per_image": macs, "macs_per_step": macs["step"] * args.batch_size,
            "counted_matmul_macs_per_step": counted.get(name),
            "predicted_matmul_macs_per_step": macs["matmul_step"] * args.batch_size,
            "ms": spread(t["step"]),
            "fastest_step_ms": {phase: 1000 * v[fastest] for phase, v in t.items() if phase != "page_faults"},
            "page_faults_per_step": statistics.median(t["page_faults"]),
            "forward_backward_ms": spread([f + b for f, b in zip(t["forward"], t["backward"])]),
            "all_seconds": t,
        })
    base = rows[0]
    for r in rows:
        r["predicted_ratio"] = r["macs_per_step"] / base["macs_per_step"]
        r["measured_ratio"] = r["ms"]["min"] / base["ms"]["min"]
        r["measured_ratio_median"] = r["ms"]["median"] / base["ms"]["median"]
        r["measured_ratio_forward_backward"] = r["forward_backward_ms"]["min"] / base["forward_backward_ms"]["min"]
        r["gflops_forward_backward"] = 2 * r["macs_per_step"] / r["forward_backward_ms"]["min"] / 1e6
        r["excess_over_prediction"] = r["measured_ratio"] / r["predicted_ratio"] - 1
        r["excess_over_prediction_forward_backward"] = r["measured_ratio_forward_backward"] / r["predicted_ratio"] - 1
    result = {
        "preset": args.preset, "tokens": args.tokens, "batch_size": args.batch_size, "depth": args.depth,
        "threads": args.threads, "warmup": args.warmup, "repeats": args.repeats, "torch": torch.__version__,
        "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"), "rows": rows,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # Linux: KiB
    }
    print_table(result)
    if args.out:
        atomic_write_json(args.out, result)
    return result


def print_table(result: dict) -> None:
    print(f"\n{result['preset']}, {result['tokens']} tokens, batch {result['batch_size']}, fp32, "
          f"{result['threads']} threads, torch {result['torch']}; {result['repeats']} interleaved repeats "
          f"after {result['warmup']} warm-up; ratios from the fastest step of each model; "
          f"peak memory {result['peak_rss_gb']:.1f} GB")
    print("| model | ms / step: min | median | IQR | fastest step: forward | backward | optimizer "
          "| step / base | fwd+bwd / base | predicted (MACs) | step: measured / predicted "
          "| fwd+bwd: measured / predicted | GMAC / step | matmul GMAC: formula / counted | GFLOP/s fwd+bwd "
          "| page faults / step |")
    print("|---|" + "---:|" * 15)
    for r in result["rows"]:
        ms, fast = r["ms"], r["fastest_step_ms"]
        counted = r["counted_matmul_macs_per_step"]
        counted = "–" if counted is None else f"{counted / 1e9:.2f}"
        print(f"| {r['model']} | {ms['min']:.0f} | {ms['median']:.0f} | {ms['iqr']:.0f} "
              f"| {fast['forward']:.0f} | {fast['backward']:.0f} | {fast['optimizer']:.0f} "
              f"| {r['measured_ratio']:.2f} | {r['measured_ratio_forward_backward']:.2f} | {r['predicted_ratio']:.2f} "
              f"| {r['excess_over_prediction']:+.1%} | {r['excess_over_prediction_forward_backward']:+.1%} "
              f"| {r['macs_per_step'] / 1e9:.1f} | {r['predicted_matmul_macs_per_step'] / 1e9:.2f} / {counted} "
              f"| {r['gflops_forward_backward']:.0f} | {r['page_faults_per_step'] / 1000:.0f}k |")


if __name__ == "__main__":
    main()
