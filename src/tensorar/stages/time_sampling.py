"""Time the class-conditional samplers of one backbone together, interleaved, on a machine the job has
to itself: seconds per image (Table 6b's latency) and throughput (Fig. 4), with warm-up and repeats.

    tensorar time_sampling --ckpt base=BASE.pt --ckpt finetune=CONTROL.pt --ckpt tensorar=TAR.pt \
        --vq VQ.pt --out TIMING.json [--batch-size 128] [--warmup 2] [--repeats 10] [--order-seed 0] \
        [--threads N] [--device auto|cpu|cuda] [--dtype fp32|bf16] [--seed 0] [--cfg-scale 1.0] ...
        # --family / --preset / --block-size apply to the official files among them, as in `tensorar sample`

Why one job for several models, interleaved (ours): timed in separate jobs, anything else on the machine
(another job, the OS, a clock limit) lands in one model's repeats only; a fresh toy run put a base and its
equal-steps control (the same network) 23 % apart that way. Here round r runs batch r of every model, in
an order shuffled per round by `--order-seed` (A B C, C A B, ...), so a slow spell touches every model of
its round, and repeat r of two models forms a pair (`tensorar.evaluation.timing.paired_timing`; claims.md
also checks that the base and its control time alike, the A/A check). Each batch generates samples
r*B .. (r+1)*B-1 of `--seed` (labels drawn from the seed as `sample` draws them; the same for every model)
and decodes them to uint8 pixels, the tokenizer decode and the eval post-processing included, with
`sample`'s batch loop (`Sampler.class_images`); CPU weights are packed once per model as `sample` packs them.
Generation and decoding are timed separately (`StageTimer`: wall clock, after torch.cuda.synchronize on
CUDA); the warm-up rounds (kernel selection, torch.compile, caches) are run and discarded.

TIMING.json:
    batch_size, warmup, repeats, threads (torch's intra-op threads), device, dtype, torch (version),
    order_seed, order [[model names of round r] for every round, warm-up included], reference (first model),
    config, options, vq                           (what was timed, shared by every model),
    models {NAME: {
        ckpt, model {kind, family, parameters, base_parameters, k, num_tokens, num_classes} (as `sample`'s stats),
        generate_s, decode_s                      [seconds of each timed round's batch],
        latency_s {mean, std, values}             (generate_s + decode_s) / batch_size: seconds per image,
                                                  AR steps + tokenizer decoding (our reading of Table 6b's latency),
        generate_latency_s {mean, std, values}    generate_s / batch_size: generation only, per image,
        images_per_s {mean, std, values}          batch_size / (generate_s + decode_s): throughput including VQ
                                                  decoding, as the paper measures Fig. 4 (Sec. 3.1.3, batch 128),
        generation_images_per_s {...}             batch_size / generate_s: generation alone}},
    paired {NAME: {latency_ratio [per round: latency / reference's latency], median}} for every other model.
`std` is the sample SD (ddof=1) over the repeats; with one repeat there is no spread to estimate and it is
null (JSON's NaN; 0.0 would claim there is none).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tensorar.decoding.cpu_packing import packed_for_decoding
from tensorar.decoding.images import StageTimer
from tensorar.decoding.sampling import SamplingConfig, SamplingOptions
from tensorar.distributed import get_logger, init_distributed
from tensorar.errors import run_stage
from tensorar.fileio import atomic_write_json
from tensorar.options import add_arguments, from_arguments
from tensorar.sampling.labels import class_labels
from tensorar.sampling.options import ModelSource, RunOptions, TimingOptions
from tensorar.sampling.sampler import Sampler, load_class_conditional, model_summary

# SamplingConfig fields that make no sense for a timing job (how many samples, how they are sharded):
# the batches timed are fixed by --batch-size, --warmup and --repeats.
SKIPPED_CONFIG = ("num_samples", "shard_size")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def named_checkpoints(values: list[str]) -> dict[str, str]:
    """["NAME=CKPT", ...] -> {NAME: CKPT} in the order given; names unique and plain."""
    found: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not path or not MODEL_NAME.fullmatch(name):
            raise SystemExit(f"--ckpt {value!r}: expected NAME=CKPT with NAME of letters, digits, '_.+-'")
        if name in found:
            raise SystemExit(f"--ckpt: the name {name!r} is given twice")
        found[name] = path
    return found


def round_orders(names: list[str], rounds: int, seed: int) -> list[list[str]]:
    """The order the models run in, per round: a fresh permutation each round from `seed`, so no model is
    always first (or always right after another one)."""
    rng = np.random.default_rng(seed)
    return [[names[i] for i in rng.permutation(len(names))] for _ in range(rounds)]


def spread(values: list[float]) -> dict:
    """{"mean", "std" (sample SD, ddof=1; None for one value), "values"}."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "values": values}


@torch.no_grad()
def time_rounds(samplers: dict[str, Sampler], cfg: SamplingConfig, timing: TimingOptions,
                orders: list[list[str]]) -> dict[str, dict[str, list[float]]]:
    """Run round r of `orders` (batch r of every model, in that round's order); returns each model's timed
    rounds' {"generate_s", "decode_s"} (the first `timing.warmup` rounds are discarded)."""
    num_classes = {s.model.backbone.num_classes for s in samplers.values()}
    if len(num_classes) > 1:
        raise SystemExit(f"the models timed together must share their classes, got {sorted(num_classes)}")
    batch_size = timing.batch_size
    labels = class_labels(cfg.labels, len(orders) * batch_size, num_classes.pop(), cfg.seed)
    times = {name: {"generate_s": [], "decode_s": []} for name in samplers}
    steps = len(orders) * len(samplers)
    with ExitStack() as stack, tqdm(total=steps, unit="batch", desc="timing", disable=not timing.progress) as pbar:
        for sampler in samplers.values():
            stack.enter_context(packed_for_decoding(sampler.model))
        for r, order in enumerate(orders):
            indices = np.arange(r * batch_size, (r + 1) * batch_size)
            for name in order:
                sampler = samplers[name]
                timer = StageTimer(sampler.device)  # synchronises CUDA before and after each stage
                sampler.class_images(labels[indices], indices, cfg, timer)
                if r >= timing.warmup:
                    times[name]["generate_s"].append(timer.seconds["generate"])
                    times[name]["decode_s"].append(timer.seconds["decode"])
                pbar.set_postfix(phase="warm-up" if r < timing.warmup else "timed", model=name)
                pbar.update()
    return times


def summarise(generate_s: list[float], decode_s: list[float], batch_size: int) -> dict:
    """Per-repeat seconds of one model -> its latency and throughput blocks of TIMING.json."""
    total = [g + d for g, d in zip(generate_s, decode_s)]
    return {
        "generate_s": list(generate_s),
        "decode_s": list(decode_s),
        "latency_s": spread([t / batch_size for t in total]),
        "generate_latency_s": spread([g / batch_size for g in generate_s]),
        "images_per_s": spread([batch_size / t for t in total]),
        "generation_images_per_s": spread([batch_size / g for g in generate_s]),
    }


def paired_ratios(blocks: dict[str, dict], reference: str) -> dict[str, dict]:
    """Per round, each model's latency over the reference model's in the same round, and the median."""
    ref = blocks[reference]["latency_s"]["values"]
    out = {}
    for name, block in blocks.items():
        if name != reference:
            ratios = [v / r for v, r in zip(block["latency_s"]["values"], ref)]
            out[name] = {"reference": reference, "latency_ratio": ratios, "median": statistics.median(ratios)}
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tensorar time_sampling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    model = p.add_argument_group("models and tokenizer (ModelSource; --ckpt repeated, named)")
    model.add_argument("--ckpt", required=True, action="append", metavar="NAME=CKPT",
                       help="a model to time, named (repeat for each; ours, or an official file)")
    add_arguments(model, ModelSource, skip=("ckpt",), required=("vq",))
    add_arguments(p.add_argument_group("samples (SamplingConfig)"), SamplingConfig, skip=SKIPPED_CONFIG)
    add_arguments(p.add_argument_group("token sampling (SamplingOptions)"), SamplingOptions)
    add_arguments(p.add_argument_group("timing (TimingOptions)"), TimingOptions)
    add_arguments(p.add_argument_group("run (RunOptions)"), RunOptions, skip=("batch_size",))
    p.add_argument("--out", required=True, help="TIMING.json")
    return p


def load_samplers(source: ModelSource, checkpoints: dict[str, str], device: torch.device, options: SamplingOptions,
                  amp_dtype: torch.dtype | None, batch_size: int) -> dict[str, Sampler]:
    """{name: sampler}; every model must fit the one tokenizer, as `sample` checks."""
    samplers = {}
    for name, path in checkpoints.items():
        model, tokenizer = load_class_conditional(replace(source, ckpt=path), device, options)
        samplers[name] = Sampler(model, tokenizer.decode, options, device, amp_dtype, batch_size)
    return samplers


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit("time_sampling times one process on a machine of its own: run it without torchrun")
    checkpoints = named_checkpoints(args.ckpt)
    timing = from_arguments(parser, args, TimingOptions)
    source = from_arguments(parser, args, ModelSource, ckpt=next(iter(checkpoints.values())))
    run = from_arguments(parser, args, RunOptions, batch_size=timing.batch_size)
    cfg = from_arguments(parser, args, SamplingConfig, num_samples=timing.rounds * timing.batch_size)
    options = from_arguments(parser, args, SamplingOptions)
    device = init_distributed(run.device).device
    logger = get_logger("time_sampling")
    amp_dtype = run.amp_dtype(device)
    run.apply_tf32(device)
    if timing.threads is not None:
        torch.set_num_threads(timing.threads)

    samplers = load_samplers(source, checkpoints, device, options, amp_dtype, timing.batch_size)
    orders = round_orders(list(samplers), timing.rounds, timing.order_seed)
    logger.info(f"{', '.join(samplers)}: {timing.warmup} warm-up + {timing.repeats} timed rounds of "
                f"{timing.batch_size} images each, interleaved; {device}, {torch.get_num_threads()} threads")
    times = time_rounds(samplers, cfg, timing, orders)
    blocks = {name: {"ckpt": str(Path(checkpoints[name]).resolve()), "model": model_summary(sampler.model),
                     **summarise(times[name]["generate_s"], times[name]["decode_s"], timing.batch_size)}
              for name, sampler in samplers.items()}
    reference = next(iter(samplers))
    record = {
        "batch_size": timing.batch_size,
        "warmup": timing.warmup,
        "repeats": timing.repeats,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "dtype": run.dtype,
        "tf32": run.tf32,
        "torch": torch.__version__,
        "order_seed": timing.order_seed,
        "order": orders,
        "reference": reference,
        "config": {k: v for k, v in asdict(cfg).items() if k not in SKIPPED_CONFIG},
        "options": asdict(options),
        "vq": str(Path(source.vq).resolve()),
        "models": blocks,
        "paired": paired_ratios(blocks, reference),
    }
    atomic_write_json(args.out, record)
    for name, block in blocks.items():
        ratio = record["paired"].get(name)
        logger.info(f"{name}: {1000 * block['latency_s']['mean']:.2f} ms/img (generation + decoding), "
                    f"{block['images_per_s']['mean']:.1f} img/s with decoding, "
                    f"{block['generation_images_per_s']['mean']:.1f} img/s generation"
                    + (f"; median latency ratio to {reference} {ratio['median']:.3f}" if ratio else ""))
    logger.info(f"wrote {args.out}")


if __name__ == "__main__":
    run_stage(main)
