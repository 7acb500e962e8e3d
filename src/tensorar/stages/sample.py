"""Generate N class-conditional images from a backbone or TensorAR checkpoint into an ADM-format .npz.

    python -m tensorar sample --ckpt RUN/final.pt --vq VQ.pt --out SAMPLES.npz --num-samples 50000 \
        [--cfg-scale 1.5] [--cfg-interval -1] [--temperature 1.0] [--top-k 0] [--top-p 1.0] \
        [--labels balanced|random] [--seed 0] [--batch-size 32] [--image-size 256] \
        [--draft-noise none|schedule] [--stats-json J] [--grid-png P] [--drafts-png P]
    torchrun --nproc_per_node 8 -m tensorar sample ...      # data-parallel, same output

The sampling flags are the fields of `SamplingOptions` (per sub-token values as `--cfg-scale 1.9,2.0`
for Open-MAGVIT2) and of `SamplingConfig` below; `--help` lists them with their defaults.

Post-processing is the backbone family's official evaluation script's (LlamaGen's `sample_c2i_ddp.py`,
Open-MAGVIT2's `sample.py`), so numbers compare with theirs: tokens -> tokenizer decode -> bicubic
resize to `--image-size` (the eval size, when it differs from the decoded size) -> clamp(127.5 x +
offset, 0, 255) -> uint8 NHWC, offset 128 for LlamaGen and 127.5 for Open-MAGVIT2. The output holds `arr_0` uint8 (N, S, S, 3) and `labels`
int64 (N,), the layout ADM's evaluator reads. The defaults of the sampling flags are those of LlamaGen's
script; per-model values used for the paper's tables live in the workflow config.

Reproducibility (ours; LlamaGen draws from one generator per batch): sample i depends only on
(seed, i) (tensorar.decoding.images), so the output is the same for any batch size and world size.
Labels depend on (seed, N, number of classes) only.

Sharding and resume: indices are cut into shards of `--shard-size`; rank r generates the shards j with
j % world == r, each written atomically to OUT.shards/shard_{j:05d}.npz. A rerun skips the shards that
exist, so a killed job resumes where it stopped and no sample is made twice. OUT.shards/identity.json
records everything that determines the samples (settings, and the checkpoint's and tokenizer's sha256):
a rerun with anything else deletes the old shards and starts fresh, saying what changed, so an output
never mixes two runs. `OUT.shards/.lock` keeps a second job from writing the same shards.
After a barrier rank 0 checks that the shards cover 0..N-1 exactly once, writes OUT atomically and
deletes OUT.shards (`--keep-shards` keeps it), so only OUT is left next to the other outputs. Rank 0
holds the whole array while assembling (50,000 x 256^2 x 3 bytes = 9.8 GB), as LlamaGen's npz step does.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm.auto import tqdm

from tensorar.data.conditions import check_trained_with
from tensorar.decoding.cpu_packing import packed_for_decoding
from tensorar.decoding.images import (
    DecodeFn,
    StageTimer,
    autocast,
    decode_tokens,
    generate_tokens,
    to_uint8_nhwc,
)
from tensorar.decoding.sampling import SamplingConfig, SamplingOptions
from tensorar.distributed import (
    DistInfo,
    barrier,
    cleanup_distributed,
    get_logger,
    init_distributed,
)
from tensorar.errors import run_stage
from tensorar.fileio import (
    atomic_save_npz,
    atomic_write_json,
    claim_for,
    content_id,
    exclusive_lock,
    remove_stale_temp_files,
)
from tensorar.models.registry import FAMILIES, family
from tensorar.options import add_arguments, from_arguments, positive_int
from tensorar.reporting import image_grids

LABELS_VERSION = "per-index"  # how labels are drawn (in the shards' identity: older shards are not resumed)
GRID_SAMPLES, GRID_COLUMNS = 64, 8  # samples shown in --grid-png
DRAFT_ROWS, DRAFT_COLUMNS = 4, 8  # samples and decoding steps shown in --drafts-png


# --------------------------------------------------------------------------------------------------
# Labels and per-sample randomness
# --------------------------------------------------------------------------------------------------
def balanced_labels(num_samples: int, num_classes: int, seed: int, indices: np.ndarray | None = None) -> np.ndarray:
    """N // C samples per class; the N % C extra ones go to classes spread evenly over the label range
    (not to the first classes); labels shuffled by `seed` -> int64 labels of `indices` (default: all N).

    Computed per index, so a shard needs only its own labels (ours; --num-samples never allocates N
    labels): sample i takes the class of position pi(i) of the class-sorted list, pi(i) = (a i + b) mod N a
    permutation of 0..N-1 (a coprime to N; a and b drawn from `seed`)."""
    per_class = np.full(num_classes, num_samples // num_classes)
    extra = num_samples % num_classes
    if extra:
        per_class[np.arange(extra) * num_classes // extra] += 1
    starts = np.concatenate([[0], np.cumsum(per_class)])  # (C + 1,) position of each class's first sample
    rng = np.random.default_rng(seed)
    a = 1
    if num_samples > 2:
        a = int(rng.integers(1, num_samples))
        while math.gcd(a, num_samples) != 1:
            a = int(rng.integers(1, num_samples))
    b = int(rng.integers(0, num_samples))
    indices = np.arange(num_samples) if indices is None else np.asarray(indices)
    positions = np.array([(a * int(i) + b) % num_samples for i in indices], dtype=np.int64)  # exact big ints
    return (np.searchsorted(starts, positions, side="right") - 1).astype(np.int64)


def random_labels(num_samples: int, num_classes: int, seed: int, indices: np.ndarray | None = None) -> np.ndarray:
    """I.i.d. uniform classes, as LlamaGen's sampler; label i from a hash of (seed, i) (splitmix64), so a
    shard needs only its own labels -> int64 labels of `indices` (default: all N)."""
    indices = np.arange(num_samples) if indices is None else np.asarray(indices)
    with np.errstate(over="ignore"):
        key = _splitmix64(np.array([seed], dtype=np.uint64))
        draws = _splitmix64(key ^ _splitmix64(indices.astype(np.uint64)))
    return (draws % np.uint64(num_classes)).astype(np.int64)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def class_labels(kind: str, num_samples: int, num_classes: int, seed: int,
                 indices: np.ndarray | None = None) -> np.ndarray:
    """The labels of samples `indices` (default: all N), identical on every rank -> int64."""
    if kind == "balanced":
        return balanced_labels(num_samples, num_classes, seed, indices)
    if kind == "random":
        return random_labels(num_samples, num_classes, seed, indices)
    raise ValueError(f"unknown label mode {kind!r}")


def is_tensorar(model: nn.Module) -> bool:
    return getattr(model, "plugin_config", None) is not None


@torch.no_grad()
def generate_images(
    model: nn.Module,
    decode: DecodeFn,
    labels: np.ndarray,
    indices: np.ndarray,
    cfg: SamplingConfig,
    options: SamplingOptions,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    timer: StageTimer | None = None,
    pbar: tqdm | None = None,
) -> dict[str, np.ndarray]:
    """Samples `indices` with their `labels` -> {"arr_0": uint8 (n, S, S, 3), "labels", "indices",
    "tokens" (n, T) int32}. The AR model runs under `amp_dtype` autocast if given; the VQ in fp32."""
    timer = timer or StageTimer(device)
    offset = family(model.backbone.family).pixel_offset
    images, tokens = [], []
    for start in range(0, len(indices), batch_size):
        batch = indices[start : start + batch_size]
        y = torch.as_tensor(labels[start : start + batch_size], device=device)
        with timer("generate"), autocast(device, amp_dtype):
            batch_tokens = generate_tokens(model, y, batch, cfg.seed, options, device, compile_step=cfg.compile_step)
        with timer("decode"):
            images.append(to_uint8_nhwc(decode_tokens(decode, batch_tokens), cfg.image_size, offset))
        tokens.append(batch_tokens.to("cpu", torch.int32).numpy())
        if pbar is not None:
            pbar.update(len(batch))
    return {
        "arr_0": np.concatenate(images),
        "labels": np.asarray(labels, dtype=np.int64),
        "indices": np.asarray(indices, dtype=np.int64),
        "tokens": np.concatenate(tokens),
    }


# --------------------------------------------------------------------------------------------------
# Shards, resume and assembly
# --------------------------------------------------------------------------------------------------
def shard_dir_for(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".shards")


def shard_path(shard_dir: Path, j: int) -> Path:
    return shard_dir / f"shard_{j:05d}.npz"


def assemble_shards(shard_dir: Path, cfg: SamplingConfig) -> tuple[np.ndarray, np.ndarray]:
    """All shards -> (images uint8 (N, S, S, 3), labels int64 (N,)), checking every index 0..N-1 is
    present exactly once and in its own shard."""
    images = labels = None
    for j in range(cfg.num_shards):
        path = shard_path(shard_dir, j)
        if not path.exists():
            raise FileNotFoundError(f"missing shard {path}: a rank did not finish; rerun to resume")
        with np.load(path) as shard:
            expected = np.arange(cfg.shard_range(j).start, cfg.shard_range(j).stop)
            if not np.array_equal(shard["indices"], expected):
                raise RuntimeError(f"{path} holds indices other than {expected[0]}..{expected[-1]}")
            if images is None:  # preallocate once: no concatenation copy of the full array
                images = np.empty((cfg.num_samples, *shard["arr_0"].shape[1:]), dtype=np.uint8)
                labels = np.empty(cfg.num_samples, dtype=np.int64)
            images[expected] = shard["arr_0"]
            labels[expected] = shard["labels"]
    return images, labels


def _reduce(values: list[float], op: str) -> list[float]:
    """"sum" or "max" across ranks (no-op without a process group)."""
    if not dist.is_initialized():
        return values
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return t.tolist()


def run_sampling(
    model: nn.Module,
    decode: DecodeFn,
    out: str | Path,
    cfg: SamplingConfig,
    options: SamplingOptions,
    info: DistInfo,
    batch_size: int = 32,
    amp_dtype: torch.dtype | None = None,
    identity: dict | None = None,
    keep_shards: bool = False,
    grid_png: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Generate this rank's missing shards, then (rank 0) assemble `out` and the grid PNG.

    `identity`: what made the samples besides `cfg` and `options` (the checkpoint's and tokenizer's
    sha256, dtype, ...). Shards are resumed only when all of it matches (`fileio.claim_for`); otherwise
    the folder's old shards are deleted and sampling starts fresh. Returns counts and timings (summed /
    maxed over ranks).
    """
    out = Path(out)
    shard_dir = shard_dir_for(out)
    with contextlib.ExitStack() as held:
        if info.is_main:  # one sampling job per output: a second one fails at once, naming the first
            held.enter_context(exclusive_lock(shard_dir, "sampling job"))
            remove_stale_temp_files(shard_dir)
            full_identity = {"samples": asdict(cfg), "options": asdict(options), "labels": LABELS_VERSION,
                             **(identity or {})}
            claim_for(shard_dir, full_identity, ["shard_*.npz"], _log(info), "sample shards")
        barrier()
        return _sample_shards(model, decode, out, shard_dir, cfg, options, info, batch_size, amp_dtype,
                              keep_shards, grid_png, progress)


def _log(info: DistInfo):
    return get_logger("sample", info.is_main)


def _sample_shards(model, decode, out, shard_dir, cfg, options, info, batch_size, amp_dtype, keep_shards,
                   grid_png, progress) -> dict:
    mine = range(info.rank, cfg.num_shards, info.world_size)
    todo = [j for j in mine if not shard_path(shard_dir, j).exists()]
    timer = StageTimer(info.device)
    start = time.perf_counter()
    total = sum(len(cfg.shard_range(j)) for j in todo)
    # Pack the CPU weights once for the whole run, not once per generate() call (GPT-B: 0.2 s a call).
    with packed_for_decoding(model), tqdm(total=total, unit="img", desc="sampling",
                                          disable=not (progress and info.is_main)) as pbar:
        for j in todo:
            idx = np.arange(cfg.shard_range(j).start, cfg.shard_range(j).stop)
            labels = class_labels(cfg.labels, cfg.num_samples, model.backbone.num_classes, cfg.seed, idx)  # this shard's
            shard = generate_images(model, decode, labels, idx, cfg, options, batch_size, info.device,
                                    amp_dtype, timer, pbar)
            atomic_save_npz(shard_path(shard_dir, j), **shard)
    wall = time.perf_counter() - start
    generated, shards_generated = _reduce([total, len(todo)], "sum")
    gen_s, dec_s, wall = _reduce([timer.seconds["generate"], timer.seconds["decode"], wall], "max")
    barrier()

    stats = {
        "num_samples": cfg.num_samples,
        "num_shards": cfg.num_shards,
        "shards_generated": int(shards_generated),
        "shards_reused": cfg.num_shards - int(shards_generated),
        "images_generated": int(generated),
        "world_size": info.world_size,
        # Slowest rank's seconds: the data-parallel wall time of each stage.
        "generate_seconds": gen_s,
        "decode_seconds": dec_s,
        "wall_seconds": wall,
        "generate_images_per_s": generated / gen_s if gen_s > 0 else None,
        "decode_images_per_s": generated / dec_s if dec_s > 0 else None,
        "images_per_s": generated / wall if generated and wall > 0 else None,
    }
    if info.is_main:
        images, out_labels = assemble_shards(shard_dir, cfg)
        atomic_save_npz(out, arr_0=images, labels=out_labels)
        if not keep_shards:
            shutil.rmtree(shard_dir)
        stats["output_shape"] = list(images.shape)
        stats["per_class_counts"] = np.bincount(out_labels, minlength=model.backbone.num_classes).tolist()
        if grid_png is not None:
            stats["grid_labels"] = write_grid_png(grid_png, images, out_labels)
    return stats


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------
def write_grid_png(path: str | Path, images: np.ndarray, labels: np.ndarray, count: int = GRID_SAMPLES) -> list[int]:
    """The first `count` samples ordered by label (stable sort) -> PNG; returns their labels in order."""
    order = np.argsort(labels[:count], kind="stable")
    image_grids.save_png(path, image_grids.image_grid(images[:count][order], ncols=GRID_COLUMNS))
    return labels[:count][order].tolist()


@torch.no_grad()
def write_drafts_png(
    path: str | Path,
    model: nn.Module,
    decode: DecodeFn,
    labels: np.ndarray,
    cfg: SamplingConfig,
    options: SamplingOptions,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    rows: int = DRAFT_ROWS,
    columns: int = DRAFT_COLUMNS,
) -> list[int]:
    """TensorAR refinement strip of the first `rows` samples (the same draws as in the .npz): a row
    per sample, a column per decoding step, and the finished sample last. Returns the steps shown."""
    indices = np.arange(min(rows, cfg.num_samples))
    y = torch.as_tensor(labels[indices], device=device)
    with autocast(device, amp_dtype):
        tokens, drafts = generate_tokens(model, y, indices, cfg.seed, options, device, return_drafts=True,
                                         compile_step=cfg.compile_step)
    steps = image_grids.refinement_steps(tokens.shape[1], columns)
    frames, shown = image_grids.refinement_frames(tokens, drafts, steps)  # (B, S + 1, T) each
    B, S1, T = frames.shape
    side = math.isqrt(T)
    # Decoded size (no eval resize), so each token is a whole block of pixels to grey out.
    offset = family(model.backbone.family).pixel_offset
    images = to_uint8_nhwc(decode_tokens(decode, frames.reshape(B * S1, T)), None, offset)  # (B * (S + 1), H, W, 3)
    images = image_grids.grey_out(images, shown.reshape(B * S1, side, side).cpu().numpy())
    image_grids.save_png(path, image_grids.image_grid(images, ncols=S1))
    return steps


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def file_sha256(path: str | Path, info: DistInfo) -> str | None:
    """What a checkpoint file or model folder holds (fileio.content_id: a file's sha256, a folder's files);
    rank 0 computes it, the others need no copy."""
    return content_id(path) if info.is_main and Path(path).exists() else None


def add_model_arguments(p: argparse.ArgumentParser, several: bool = False) -> None:
    """The flags naming a class-conditional model and its tokenizer (tensorar sample, time_sampling);
    `several`: --ckpt NAME=CKPT, repeated (models of one backbone sharing the other flags)."""
    model = p.add_argument_group("model and tokenizer")
    if several:
        model.add_argument("--ckpt", required=True, action="append", metavar="NAME=CKPT",
                           help="a model to time, named (repeat for each; ours, or an official file)")
    else:
        model.add_argument("--ckpt", required=True, help="backbone or TensorAR checkpoint (ours, or an official file)")
    model.add_argument("--family", default=None, choices=sorted(FAMILIES),
                       help="backbone family of an official --ckpt (ours record theirs)")
    model.add_argument("--gpt-preset", default=None, help="preset of an official --ckpt, e.g. GPT-B")
    model.add_argument("--block-size", type=positive_int, default=None,
                       help="token count of an official LlamaGen file (576 for the 384 px models; default 256)")
    model.add_argument("--ema", action="store_true", help="use the EMA weights stored in our checkpoint")
    model.add_argument("--vq", required=True, help="image tokenizer checkpoint (VQ or LFQ)")
    model.add_argument("--vq-preset", default=None, help="preset of an official tokenizer file (VQ-16, LFQ-256)")


def load_class_conditional(args: argparse.Namespace, device: torch.device, options: SamplingOptions):
    """(model in eval mode, tokenizer) named by `add_model_arguments`' flags, checked to fit each other."""
    from tensorar.models.loading import load_model, load_tokenizer

    model = load_model(args.ckpt, args.family, args.gpt_preset, block_size=args.block_size, use_ema=args.ema)
    model = model.to(device).eval()
    backbone = model.backbone
    if not is_tensorar(model) and (options.draft_noise != "none" or getattr(args, "drafts_png", None)):
        raise SystemExit(f"{args.ckpt} is a plain {backbone.family} checkpoint: --draft-noise schedule and "
                         "--drafts-png need a TensorAR checkpoint")
    if backbone.num_classes is None:
        raise SystemExit(f"{args.ckpt} is not class-conditional: sample it from a prompt file "
                         "(tensorar sample_prompts)")
    tokenizer = load_tokenizer(args.vq, args.vq_preset, device=device)
    check_trained_with(getattr(model, "trained_on", None), args.ckpt, content_id(args.vq), args.vq)
    if tokenizer.config.codebook_size != backbone.vocab_size:
        raise SystemExit(f"tokenizer {args.vq} has {tokenizer.config.codebook_size} codes but the model's "
                         f"vocabulary is {backbone.vocab_size}: they were not trained together")
    return model, tokenizer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tensorar sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    add_arguments(p.add_argument_group("samples (SamplingConfig)"), SamplingConfig)
    add_arguments(p.add_argument_group("token sampling (SamplingOptions)"), SamplingOptions)
    run = p.add_argument_group("run")
    run.add_argument("--out", required=True, help="SAMPLES.npz (ADM format)")
    run.add_argument("--batch-size", type=positive_int, default=32, help="per process; does not change the samples")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                     help="autocast dtype of the AR model (bf16: CUDA only); the tokenizer always decodes in fp32")
    run.add_argument("--stats-json", default=None)
    run.add_argument("--grid-png", default=None)
    run.add_argument("--drafts-png", default=None, help="TensorAR refinement strip (paper Fig. 8/10)")
    run.add_argument("--keep-shards", action="store_true", help="keep OUT.shards/ after assembly")
    return p


def model_summary(model) -> dict:
    """The "model" block of the stats JSON (and of time_sampling's): sizes the tables print."""
    backbone = model.backbone
    return {
        "kind": "tensorar" if is_tensorar(model) else "backbone",
        "family": backbone.family,
        "parameters": sum(p.numel() for p in model.parameters()),
        "base_parameters": sum(p.numel() for p in backbone.parameters()),
        "k": model.k,
        "num_tokens": backbone.num_tokens,
        "num_classes": backbone.num_classes,
    }


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = from_arguments(parser, args, SamplingConfig)
    options = from_arguments(parser, args, SamplingOptions)
    info = init_distributed(args.device)
    logger = get_logger("sample", info.is_main)
    if args.dtype == "bf16" and info.device.type != "cuda":
        raise SystemExit("--dtype bf16 needs CUDA; on CPU sampling runs in fp32")
    amp_dtype = torch.bfloat16 if args.dtype == "bf16" else None

    model, tokenizer = load_class_conditional(args, info.device, options)
    backbone = model.backbone
    manifest = {"ckpt": str(Path(args.ckpt).resolve()), "vq": str(Path(args.vq).resolve()),
                "ema": args.ema, "dtype": args.dtype}
    # What the samples are made of: file contents, not paths (a retrained checkpoint at the same path
    # must not resume the old model's shards).
    identity = {"model": {"sha256": file_sha256(args.ckpt, info), "family": args.family, "preset": args.gpt_preset,
                          "block_size": args.block_size, "ema": args.ema},
                "tokenizer": {"sha256": file_sha256(args.vq, info), "preset": args.vq_preset}, "dtype": args.dtype}
    logger.info(f"{'TensorAR' if is_tensorar(model) else backbone.family} {args.ckpt}: {cfg.num_samples} samples, "
                f"{backbone.num_tokens} tokens each, world size {info.world_size}, {info.device}")

    stats = run_sampling(model, tokenizer.decode, args.out, cfg, options, info, args.batch_size, amp_dtype,
                         identity, args.keep_shards, args.grid_png)
    if info.is_main:
        if args.drafts_png:
            labels = class_labels(cfg.labels, cfg.num_samples, backbone.num_classes, cfg.seed,
                                  np.arange(min(DRAFT_ROWS, cfg.num_samples)))  # the rows shown only
            stats["drafts_steps"] = write_drafts_png(args.drafts_png, model, tokenizer.decode, labels, cfg,
                                                     options, info.device, amp_dtype)
        if args.stats_json:
            atomic_write_json(args.stats_json, {
                "config": asdict(cfg),
                "options": asdict(options),
                "run": {**manifest, "batch_size": args.batch_size, "device": str(info.device),
                        "family": backbone.family, "gpt_preset": args.gpt_preset, "vq_preset": args.vq_preset},
                "model": model_summary(model),
                "seeds": {
                    "seed": cfg.seed,
                    "labels": f"numpy default_rng({cfg.seed}) ({cfg.labels})",
                    "sample_i": f"torch.Generator seeded from numpy SeedSequence({cfg.seed}, spawn_key=(i,))",
                },
                **stats,
            })
        logger.info(f"wrote {args.out}: {stats['output_shape']}, {stats['images_generated']} generated, "
                    f"{stats['shards_reused']} of {stats['num_shards']} shards reused")
    cleanup_distributed()


if __name__ == "__main__":
    run_stage(main)
