"""Resumable, data-parallel class-conditional sampling into one ADM-format .npz.

Indices are cut into shards of `SamplingConfig.shard_size`; rank r generates the shards j with
j % world == r, each written atomically to OUT.shards/shard_{j:05d}.npz. A rerun skips the shards that
exist, so a killed job resumes where it stopped and no sample is made twice. OUT.shards/identity.json
records everything that determines the samples (settings, and the checkpoint's and tokenizer's sha256):
a rerun with anything else deletes the old shards and starts fresh, saying what changed, so an output
never mixes two runs (`fileio.claim_for`). `OUT.shards/.lock` keeps a second job from writing the same
shards. After a barrier rank 0 checks that the shards cover 0..N-1 exactly once, writes OUT atomically
and deletes OUT.shards (unless kept), so only OUT is left next to the other outputs. Rank 0 holds the
whole array while assembling (50,000 x 256^2 x 3 bytes = 9.8 GB), as LlamaGen's npz step does.
"""
from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from tensorar.decoding.cpu_packing import packed_for_decoding
from tensorar.decoding.images import StageTimer
from tensorar.decoding.sampling import SamplingConfig
from tensorar.distributed import DistInfo, barrier, get_logger
from tensorar.fileio import atomic_save_npz, claim_for, content_id, exclusive_lock, remove_stale_temp_files
from tensorar.reporting import image_grids
from tensorar.sampling.labels import LABELS_VERSION, class_labels
from tensorar.sampling.sampler import Sampler


def shard_dir_for(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".shards")


def shard_path(shard_dir: Path, j: int) -> Path:
    return shard_dir / f"shard_{j:05d}.npz"


def file_sha256(path: str | Path, info: DistInfo) -> str | None:
    """What a checkpoint file or model folder holds (fileio.content_id: a file's sha256, a folder's files);
    rank 0 computes it, the others need no copy."""
    return content_id(path) if info.is_main and Path(path).exists() else None


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


def reduce_across_ranks(values: list[float], op: str) -> list[float]:
    """"sum" or "max" across ranks (no-op without a process group)."""
    if not dist.is_initialized():
        return values
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return t.tolist()


def run_sampling(sampler: Sampler, out: str | Path, cfg: SamplingConfig, info: DistInfo, *,
                 identity: dict | None = None, keep_shards: bool = False, grid_png: str | Path | None = None,
                 progress: bool = True) -> dict:
    """Generate this rank's missing shards, then (rank 0) assemble `out` and the grid PNG.

    `identity`: what made the samples besides `cfg` and the sampler's options (the checkpoint's and
    tokenizer's sha256, dtype, ...). Shards are resumed only when all of it matches; otherwise the
    folder's old shards are deleted and sampling starts fresh. Returns counts and timings (summed /
    maxed over ranks).
    """
    out = Path(out)
    shard_dir = shard_dir_for(out)
    with contextlib.ExitStack() as held:
        if info.is_main:  # one sampling job per output: a second one fails at once, naming the first
            held.enter_context(exclusive_lock(shard_dir, "sampling job"))
            remove_stale_temp_files(shard_dir)
            full_identity = {"samples": asdict(cfg), "options": asdict(sampler.options), "labels": LABELS_VERSION,
                             **(identity or {})}
            claim_for(shard_dir, full_identity, ["shard_*.npz"], get_logger("sample", info.is_main),
                      "sample shards")
        barrier()
        stats = _generate_missing_shards(sampler, shard_dir, cfg, info, progress)
        if info.is_main:
            images, labels = assemble_shards(shard_dir, cfg)
            atomic_save_npz(out, arr_0=images, labels=labels)
            if not keep_shards:
                shutil.rmtree(shard_dir)
            stats["output_shape"] = list(images.shape)
            stats["per_class_counts"] = np.bincount(labels, minlength=sampler.model.backbone.num_classes).tolist()
            if grid_png is not None:
                stats["grid_labels"] = image_grids.write_sample_grid(grid_png, images, labels)
        return stats


def _generate_missing_shards(sampler: Sampler, shard_dir: Path, cfg: SamplingConfig, info: DistInfo,
                             progress: bool) -> dict:
    """This rank's shards that do not exist yet -> files; the counts and timings of every rank."""
    mine = range(info.rank, cfg.num_shards, info.world_size)
    todo = [j for j in mine if not shard_path(shard_dir, j).exists()]
    timer = StageTimer(info.device)
    start = time.perf_counter()
    total = sum(len(cfg.shard_range(j)) for j in todo)
    num_classes = sampler.model.backbone.num_classes
    # Pack the CPU weights once for the whole run, not once per generate() call (packing reorders every
    # weight matrix: a cost per call, benchmarks/README.md).
    with packed_for_decoding(sampler.model), tqdm(total=total, unit="img", desc="sampling",
                                                  disable=not (progress and info.is_main)) as pbar:
        for j in todo:
            idx = np.arange(cfg.shard_range(j).start, cfg.shard_range(j).stop)
            labels = class_labels(cfg.labels, cfg.num_samples, num_classes, cfg.seed, idx)  # this shard's
            atomic_save_npz(shard_path(shard_dir, j), **sampler.class_images(labels, idx, cfg, timer, pbar))
    wall = time.perf_counter() - start
    generated, shards_generated = reduce_across_ranks([total, len(todo)], "sum")
    gen_s, dec_s, wall = reduce_across_ranks([timer.seconds["generate"], timer.seconds["decode"], wall], "max")
    barrier()
    return {
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
