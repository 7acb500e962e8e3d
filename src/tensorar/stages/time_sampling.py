"""Time class-conditional sampling on a machine the job has to itself: seconds per image (Table 6b's
latency) and generation throughput (Fig. 4), with warm-up and repeats, so the spread is reported too.

    python -m tensorar.time_sampling --ckpt RUN/final.pt --vq VQ.pt --out TIMING.json \
        [--batch-size 64] [--warmup 2] [--repeats 5] [--threads N] [--device auto|cpu|cuda] [--dtype fp32|bf16] \
        [--seed 0] [--cfg-scale 1.5] [--top-k 0] ...      # the model and sampling flags of `tensorar sample`

Why a stage of its own: the sampling jobs time themselves, but the workflow runs them beside other jobs,
so their seconds measure contention for cores and memory bandwidth as much as the model (a fresh toy run
timed one architecture at 110 images/s as the base and 450 images/s as the control). This job is meant
to run alone, holding every core (the workflow gives its rule all of them); it loads the model and
tokenizer as `tensorar sample` does (same flags), packs CPU weights once as `sample` does, and runs
`warmup + repeats` batches with `sample`'s batch loop (`generate_images`): repeat r generates samples
r*B .. (r+1)*B-1 of `--seed` (labels drawn from the seed, as `sample` draws them) and decodes them to
uint8 pixels, the tokenizer decode and the eval post-processing included. Generation and decoding are
timed separately (`StageTimer`: wall clock, after torch.cuda.synchronize on CUDA); the warm-up batches
(kernel selection, torch.compile, caches) are run and discarded.

TIMING.json:
    batch_size, warmup, repeats, threads (torch's intra-op threads), device, dtype, torch (version),
    model {kind, family, parameters, base_parameters, k, num_tokens, num_classes}  (as `sample`'s stats),
    config, options, ckpt, vq                     (what was timed),
    generate_s, decode_s                          [seconds of each timed repeat's batch],
    latency_s {mean, std, values}                 (generate_s + decode_s) / batch_size: seconds per image,
                                                  AR steps + tokenizer decoding (our reading of Table 6b's latency),
    generate_latency_s {mean, std, values}        generate_s / batch_size: generation only, per image,
    images_per_s {mean, std, values}              batch_size / generate_s (generation throughput, Fig. 4).
`std` is the sample SD (ddof=1) over the repeats; with one repeat there is no spread to estimate and it is
null (JSON's NaN; 0.0 would claim there is none).
"""
from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from tensorar.decoding.cpu_packing import packed_for_decoding
from tensorar.decoding.images import DecodeFn, StageTimer
from tensorar.decoding.sampling import SamplingConfig, SamplingOptions
from tensorar.distributed import get_logger, init_distributed
from tensorar.errors import run_stage
from tensorar.fileio import atomic_write_json
from tensorar.options import add_arguments, from_arguments, positive_int
from tensorar.stages.sample import (
    add_model_arguments,
    class_labels,
    generate_images,
    load_class_conditional,
    model_summary,
)

# SamplingConfig fields that make no sense for a timing job (how many samples, how they are sharded):
# the batches timed are fixed by --batch-size, --warmup and --repeats.
SKIPPED_CONFIG = ("num_samples", "shard_size")


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def spread(values: list[float]) -> dict:
    """{"mean", "std" (sample SD, ddof=1; None for one value), "values"}."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "values": values}


@torch.no_grad()
def time_batches(
    model: nn.Module,
    decode: DecodeFn,
    cfg: SamplingConfig,
    options: SamplingOptions,
    batch_size: int,
    warmup: int,
    repeats: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> dict:
    """Generate and decode `warmup + repeats` batches of `batch_size` samples; returns the timed repeats'
    {"generate_s", "decode_s"} (the warm-up batches are discarded)."""
    total = warmup + repeats
    labels = class_labels(cfg.labels, total * batch_size, model.backbone.num_classes, cfg.seed)
    times: dict[str, list[float]] = {"generate_s": [], "decode_s": []}
    with packed_for_decoding(model), tqdm(total=total, unit="batch", desc="timing", disable=not progress) as pbar:
        for r in range(total):
            indices = np.arange(r * batch_size, (r + 1) * batch_size)
            timer = StageTimer(device)  # synchronises CUDA before and after each stage
            generate_images(model, decode, labels[indices], indices, cfg, options, batch_size, device, amp_dtype,
                            timer)
            if r >= warmup:
                times["generate_s"].append(timer.seconds["generate"])
                times["decode_s"].append(timer.seconds["decode"])
            pbar.set_postfix(phase="warm-up" if r < warmup else "timed",
                             img_per_s=f"{batch_size / max(timer.seconds['generate'], 1e-9):.1f}")
            pbar.update()
    return times


def summarise(generate_s: list[float], decode_s: list[float], batch_size: int) -> dict:
    """Per-repeat seconds -> the latency and throughput blocks of TIMING.json."""
    return {
        "generate_s": list(generate_s),
        "decode_s": list(decode_s),
        "latency_s": spread([(g + d) / batch_size for g, d in zip(generate_s, decode_s)]),
        "generate_latency_s": spread([g / batch_size for g in generate_s]),
        "images_per_s": spread([batch_size / g for g in generate_s]),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tensorar time_sampling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    add_arguments(p.add_argument_group("samples (SamplingConfig)"), SamplingConfig, skip=SKIPPED_CONFIG)
    add_arguments(p.add_argument_group("token sampling (SamplingOptions)"), SamplingOptions)
    run = p.add_argument_group("timing")
    run.add_argument("--out", required=True, help="TIMING.json")
    run.add_argument("--batch-size", type=positive_int, default=64, help="images per timed batch (default: 64)")
    run.add_argument("--warmup", type=non_negative_int, default=2, help="batches run first and discarded (default: 2)")
    run.add_argument("--repeats", type=positive_int, default=5, help="timed batches (default: 5)")
    run.add_argument("--threads", type=positive_int, default=None,
                     help="torch intra-op threads (default: torch's, i.e. every core it sees)")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                     help="autocast dtype of the AR model (bf16: CUDA only); the tokenizer always decodes in fp32")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit("time_sampling times one process on a machine of its own: run it without torchrun")
    cfg = from_arguments(parser, args, SamplingConfig, num_samples=(args.warmup + args.repeats) * args.batch_size)
    options = from_arguments(parser, args, SamplingOptions)
    device = init_distributed(args.device).device
    logger = get_logger("time_sampling")
    if args.dtype == "bf16" and device.type != "cuda":
        raise SystemExit("--dtype bf16 needs CUDA; on CPU sampling runs in fp32")
    amp_dtype = torch.bfloat16 if args.dtype == "bf16" else None
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    model, tokenizer = load_class_conditional(args, device, options)
    summary = model_summary(model)
    logger.info(f"{'TensorAR' if summary['kind'] == 'tensorar' else summary['family']} {args.ckpt}: "
                f"{args.warmup} warm-up + {args.repeats} timed batches of {args.batch_size}, {device}, "
                f"{torch.get_num_threads()} threads")
    times = time_batches(model, tokenizer.decode, cfg, options, args.batch_size, args.warmup, args.repeats, device,
                         amp_dtype, progress=not args.no_progress)
    record = {
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "dtype": args.dtype,
        "torch": torch.__version__,
        "model": summary,
        "config": {k: v for k, v in asdict(cfg).items() if k not in SKIPPED_CONFIG},
        "options": asdict(options),
        "ckpt": str(Path(args.ckpt).resolve()),
        "vq": str(Path(args.vq).resolve()),
        **summarise(times["generate_s"], times["decode_s"], args.batch_size),
    }
    atomic_write_json(args.out, record)
    latency, rate = record["latency_s"], record["images_per_s"]
    logger.info(f"wrote {args.out}: {1000 * latency['mean']:.2f} ms/img (generation + decoding), "
                f"{rate['mean']:.1f} img/s generation (means of {args.repeats} repeats)")


if __name__ == "__main__":
    run_stage(main)
