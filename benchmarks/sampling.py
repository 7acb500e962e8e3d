"""Sampling speed: our base sampler, our TensorAR sampler, and (optionally) LlamaGen's own `generate()`.

    python benchmarks/sampling.py --preset GPT-B --batch-size 2 --threads 2            # CPU
    python benchmarks/sampling.py --family open_magvit2 --preset AR-B --tokenizer-preset none   # another family
    python benchmarks/sampling.py --preset GPT-B --batch-size 128 --dtype bf16 --device cuda \
        --llamagen-repo /path/to/LlamaGen                                              # GPU

Random weights are fine (speed does not depend on values); zero-initialised heads and residual branches
are redrawn so sampling is not degenerate. Every sampler generates the full token grid with CFG (the
batch doubles to cond + null-class rows). Our samplers draw tokens as `tensorar sample` does, by
inverse-CDF sampling with pre-drawn per-sample uniforms; the base is also timed with `torch.multinomial`
draws, as LlamaGen's generate() samples, and the speed-ups over LlamaGen compare those rows (CPU
multinomial over 16384 logits costs ~0.45 ms per row, ~4x the inverse CDF). Each measurement: warm-up
runs, then `--repeats` timed runs, median reported; CUDA is timed with CUDA events, CPU by wall clock
with a fixed thread count. On CPU our samplers multiply by oneDNN-packed weights, packed once for the
run as `tensorar sample` does (the packing time is printed on its own line).

The table prints, beside the measured TensorAR/base throughput, the ratio of floating-point operations
per token step counted by `torch.utils.flop_counter` on one decode step of each model: the expected
ratio where a step is arithmetic-bound. (With a few rows per step it is bound by reading the weights
instead, and TensorAR, which reads the output head once for all k slots, comes out cheaper than its FLOPs.)

`--compile` also times the compiled per-token step (`compile_step=True`: CUDA graphs on GPU) of ours and
LlamaGen's `torch.compile(mode="reduce-overhead")` step, and checks that greedy decoding with the
compiled step gives the eager tokens (the check is exact in fp32 only). On CUDA it also checks that the
eager decoding loop runs without host-device synchronisations, with either way of drawing tokens.

LlamaGen's side is imported from a checkout outside this repository (`--llamagen-repo`); its code is never
part of tensorar.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from tensorar.decoding.cpu_packing import packed_for_decoding
from tensorar.decoding.generate import decode_step, prefill
from tensorar.decoding.sampling import SamplingOptions
from tensorar.fileio import atomic_write_json
from tensorar.models.backbone import Backbone
from tensorar.models.registry import FAMILIES, family, tokenizer_family
from tensorar.models.tensorar import TensorAR, TensorARConfig
from tensorar.options import add_arguments, from_arguments

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BASE = "ours: base"
MULTINOMIAL = ", torch.multinomial draws"


def tensorar_name(args) -> str:
    return f"ours: TensorAR (k={args.k}, d={args.depth})"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="llamagen", choices=sorted(FAMILIES))
    p.add_argument("--preset", default="GPT-B")
    p.add_argument("--batch-size", type=int, default=2, help="images per batch (CFG doubles the rows)")
    add_arguments(p.add_argument_group("token sampling (SamplingOptions)"), SamplingOptions,
                  skip=("greedy", "draft_noise"))
    p.set_defaults(cfg_scale=2.0)  # the benchmark's scenario: LlamaGen's evaluation guidance (GPT-B, GPT-L)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (pinned for the whole run)")
    p.add_argument("--tokens", type=int, default=None, help="tokens per image (default: the full grid)")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tokenizer-preset", default="VQ-16", help="tokenizer to time decoding with ('none' to skip)")
    p.add_argument("--llamagen-repo", type=Path, default=None, help="a LlamaGen checkout to compare with")
    p.add_argument("--compile", action="store_true", help="also time the compiled steps (ours and LlamaGen's)")
    p.add_argument("--out", type=Path, default=None, help="JSON with every number")
    args = p.parse_args(argv)
    args.options = from_arguments(p, args, SamplingOptions)
    return args


def build_models(args, device, dtype) -> tuple[Backbone, TensorAR]:
    torch.manual_seed(0)
    fam = family(args.family)
    base = fam.model_class(fam.config(args.preset))
    tensorar = TensorAR(base, TensorARConfig(k=args.k, depth=args.depth))
    for p in tensorar.parameters():  # redraw zero-initialised heads and residual branches
        if torch.count_nonzero(p) == 0:
            torch.nn.init.normal_(p, std=0.02)
    tensorar = tensorar.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return tensorar.base, tensorar


def seconds(fn, device) -> float:
    """Seconds of one call of fn: CUDA events on a GPU, wall clock on CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed(fns: dict, device, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each fn, after warm-up. The repeats are interleaved (round r times every fn
    once), so a machine whose speed drifts over minutes (a shared VM) biases no fn against another."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(seconds(fn, device))
    return times


def build_tokenizer(preset: str):
    """A tokenizer of `preset` with random weights (decoding speed does not depend on the values)."""
    fam = tokenizer_family(preset)
    return fam.model_class(fam.presets[preset])


def flops_per_step(step_fn) -> int:
    with FlopCounterMode(display=False) as counter:
        step_fn()
    return counter.get_total_flops()


def decode_step_flops(base: Backbone, tensorar: TensorAR, cond, rows: int, position: int,
                      options: SamplingOptions) -> tuple[int, int]:
    """FLOPs of one cached decode step at `position` (mid-sequence), token head included, for the base
    and TensorAR."""
    flops = []
    with torch.no_grad():
        for model in (base, tensorar):
            cache = base.new_cache(rows)
            prefill(model, base.condition_rows(base.as_condition(cond), options.use_cfg), cache)
            window = torch.zeros(len(cond), model.k, dtype=torch.long, device=cond.device)

            def step():
                slots = decode_step(model, window, position, cache, rows // len(cond))
                base.sample_tokens(slots, options, position)

            flops.append(flops_per_step(step))
    return flops[0], flops[1]


def llamagen_sampler(repo: Path, base: Backbone, args, device, dtype, compile_step: bool):
    sys.path.insert(0, str(repo))
    from autoregressive.models import generate as lg_generate_module  # noqa: E402  (their checkout)
    from autoregressive.models.gpt import ModelArgs, Transformer  # noqa: E402

    if base.family != "llamagen":
        raise SystemExit("--llamagen-repo compares LlamaGen's sampler: use --family llamagen")
    theirs = Transformer(ModelArgs(**{k: v for k, v in base.config.to_dict().items() if k != "caption_dim"}))
    theirs.load_state_dict(base.state_dict(), strict=True)
    theirs = theirs.to(device=device, dtype=dtype).eval()
    eager_step = lg_generate_module.decode_one_token
    step = torch.compile(eager_step, mode="reduce-overhead", fullgraph=True) if compile_step else eager_step

    def run(cond, num_tokens):
        # Their generate() looks `decode_one_token` up in its module: swap ours in for this call only.
        lg_generate_module.decode_one_token = step
        try:
            return lg_generate_module.generate(
                theirs, cond, num_tokens, cfg_scale=args.options.cfg_scale, temperature=args.options.temperature,
                top_k=args.options.top_k, top_p=args.options.top_p
            )
        finally:
            lg_generate_module.decode_one_token = eager_step

    return run


def greedy_checks(base: Backbone, tensorar: TensorAR, cond: torch.Tensor, args, num_tokens: int) -> dict:
    """Greedy tokens of the compiled step == the eager loop's (fp32: exact), per sampler."""
    out = {}
    greedy = dataclasses.replace(args.options, greedy=True)
    for name, model in (("base", base), ("tensorar", tensorar)):
        eager = model.generate(cond, greedy, num_tokens=num_tokens)
        compiled = model.generate(cond, greedy, num_tokens=num_tokens, compile_step=True)
        out[name] = bool(torch.equal(eager, compiled))
    return out


def syncs_in_decoding(base: Backbone, tensorar: TensorAR, cond: torch.Tensor, args) -> dict:
    """CUDA: does the eager decoding loop synchronise with the host? (torch's sync debug mode), with each
    way of drawing tokens."""
    out = {}
    for name, model in (("base", base), ("tensorar", tensorar)):
        shape = (len(cond), 8, model.k, base.token_parts)
        for draws, uniforms in (("uniforms", torch.rand(shape, device=cond.device)), ("multinomial", None)):
            torch.cuda.set_sync_debug_mode("error")
            try:
                model.generate(cond, args.options, num_tokens=8, uniforms=uniforms)
                out[f"{name}, {draws}"] = "none"
            except RuntimeError as e:
                out[f"{name}, {draws}"] = f"synchronises: {str(e).splitlines()[0]}"
            finally:
                torch.cuda.set_sync_debug_mode("default")
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    torch.set_num_threads(args.threads)
    base, tensorar = build_models(args, device, dtype)
    num_tokens = args.tokens or base.num_tokens
    cond = torch.arange(args.batch_size, device=device) % (base.num_classes or 1)
    # Our samplers draw tokens as `tensorar sample` does: inverse-CDF sampling with pre-drawn per-sample
    # uniforms. The base also runs with `torch.multinomial` draws, as LlamaGen's generate() does; the
    # speed-ups over LlamaGen compare those rows, like for like.
    draws = torch.Generator().manual_seed(0)
    parts = base.token_parts
    base_uniforms = torch.rand(args.batch_size, num_tokens, 1, parts, generator=draws).to(device)  # (B, T, 1, parts)
    tensorar_uniforms = torch.rand(args.batch_size, num_tokens, args.k, parts, generator=draws).to(device)
    samplers = {}
    for compiled in (False, True) if args.compile else (False,):
        suffix = ", compiled step" if compiled else ""
        o = dict(num_tokens=num_tokens, compile_step=compiled)
        samplers[BASE + suffix] = lambda o=o: base.generate(cond, args.options, uniforms=base_uniforms, **o)
        samplers[tensorar_name(args) + suffix] = lambda o=o: tensorar.generate(
            cond, args.options, uniforms=tensorar_uniforms, **o)
        samplers[BASE + suffix + MULTINOMIAL] = lambda o=o: base.generate(cond, args.options, **o)
    if args.llamagen_repo is not None:
        samplers["LlamaGen generate() eager"] = lambda run=llamagen_sampler(
            args.llamagen_repo, base, args, device, dtype, False
        ): run(cond, num_tokens)
        if args.compile:
            samplers["LlamaGen generate() compiled"] = lambda run=llamagen_sampler(
                args.llamagen_repo, base, args, device, dtype, True
            ): run(cond, num_tokens)

    rows = []
    with torch.no_grad():
        # As `tensorar sample` does, CPU weights are packed once for the run rather than in every
        # generate() call; the packing is timed on its own (the TensorAR model holds the base).
        start = time.perf_counter()
        with packed_for_decoding(tensorar):
            packing_seconds = time.perf_counter() - start
            for name, times in timed(samplers, device, args.warmup, args.repeats).items():
                median = statistics.median(times)
                rows.append({"sampler": name, "seconds": median, "ms_per_step": 1000 * median / num_tokens,
                             "images_per_s": args.batch_size / median, "all_seconds": times})
                print(f"  {name}: {1000 * median / num_tokens:.2f} ms/step", file=sys.stderr)
        if args.tokenizer_preset != "none":
            tokenizer = build_tokenizer(args.tokenizer_preset).to(device=device).eval()
            grid = int(num_tokens**0.5)
            codes = torch.randint(0, tokenizer.config.codebook_size, (args.batch_size, grid, grid), device=device)
            times = timed({"decode": lambda: tokenizer.decode(codes)}, device, 1, args.repeats)["decode"]
            rows.append({"sampler": f"tokenizer decode ({args.tokenizer_preset})", "seconds": statistics.median(times),
                         "ms_per_step": float("nan"), "images_per_s": args.batch_size / statistics.median(times),
                         "all_seconds": times})

    cfg_rows = 2 * args.batch_size if args.options.use_cfg else args.batch_size
    base_flops, tensorar_flops = decode_step_flops(base, tensorar, cond, cfg_rows, num_tokens // 2, args.options)
    by_name = {r["sampler"]: r for r in rows}
    base_row, tensorar_row = by_name[BASE], by_name[tensorar_name(args)]
    result = {
        "family": args.family, "preset": args.preset, "batch_size": args.batch_size,
        "options": dataclasses.asdict(args.options), "dtype": args.dtype,
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(), "threads": args.threads, "tokens": num_tokens,
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "rows": rows,
        "flops_per_step": {"base": base_flops, "tensorar": tensorar_flops},
        "weight_packing_seconds": packing_seconds,
        "tensorar_over_base_throughput": base_row["seconds"] / tensorar_row["seconds"],
        "predicted_ratio_from_flops": base_flops / tensorar_flops,
    }
    if args.compile:
        result["compiled_greedy_equals_eager"] = greedy_checks(base, tensorar, cond, args, num_tokens)
        result["tensorar_over_base_throughput_compiled"] = (
            by_name[BASE + ", compiled step"]["seconds"] / by_name[tensorar_name(args) + ", compiled step"]["seconds"])
    if device.type == "cuda":
        result["host_syncs_in_eager_decoding"] = syncs_in_decoding(base, tensorar, cond, args)
    ours_like_llamagen = by_name[BASE + MULTINOMIAL]["seconds"]
    if "LlamaGen generate() eager" in by_name:
        result["ours_speedup_vs_llamagen_eager"] = by_name["LlamaGen generate() eager"]["seconds"] / ours_like_llamagen
    if "LlamaGen generate() compiled" in by_name:
        theirs = by_name["LlamaGen generate() compiled"]["seconds"]
        result["ours_eager_speedup_vs_llamagen_compiled"] = theirs / ours_like_llamagen
        ours_compiled = by_name[BASE + ", compiled step" + MULTINOMIAL]["seconds"]
        result["ours_speedup_vs_llamagen_compiled"] = theirs / ours_compiled
    print_table(result)
    if args.out:
        atomic_write_json(args.out, result)
    return result


def print_table(result: dict) -> None:
    print(f"\n{result['preset']}, batch {result['batch_size']} (+CFG), {result['dtype']}, {result['device']} "
          f"({result['device_name']}, {result['threads']} threads), {result['tokens']} tokens, torch {result['torch']}")
    width = max(len(r["sampler"]) for r in result["rows"])
    print(f"| {'sampler':<{width}} | {'s / batch':>9} | {'ms / step':>9} | {'images / s':>10} |")
    print(f"|{'-' * (width + 2)}|{'-' * 11}|{'-' * 11}|{'-' * 12}|")
    for r in result["rows"]:
        print(f"| {r['sampler']:<{width}} | {r['seconds']:9.3f} | {r['ms_per_step']:9.2f} "
              f"| {r['images_per_s']:10.3f} |")
    print(f"CPU weight packing for our samplers, once per run: {result['weight_packing_seconds']:.3f} s")
    print(f"\nTensorAR / base throughput: {result['tensorar_over_base_throughput']:.3f} "
          f"(predicted from FLOPs per step: {result['predicted_ratio_from_flops']:.3f})")
    if "tensorar_over_base_throughput_compiled" in result:
        print(f"TensorAR / base throughput, compiled steps: {result['tensorar_over_base_throughput_compiled']:.3f}")
    for key, what in (("ours_speedup_vs_llamagen_eager", "our eager base vs LlamaGen eager"),
                      ("ours_eager_speedup_vs_llamagen_compiled", "our eager base vs LlamaGen compiled"),
                      ("ours_speedup_vs_llamagen_compiled", "our compiled base vs LlamaGen compiled")):
        if key in result:
            print(f"{what}: {result[key]:.2f}x faster")
    for key in ("compiled_greedy_equals_eager", "host_syncs_in_eager_decoding"):
        if key in result:
            print(f"{key.replace('_', ' ')}: {result[key]}")


if __name__ == "__main__":
    main()
