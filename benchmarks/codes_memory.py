"""The trainer's memory on a large code set: codes stream from memory-mapped shards, so a rank's own
memory does not grow with the data.

    python benchmarks/codes_memory.py [--gib 4.2] [--steps 10] [--out benchmarks/out/codes_memory.json]

Writes a synthetic extract_codes folder of >= 4 GiB in a temporary folder (deleted afterwards): uint16
codes of ImageNet's 384 px layout (24 x 24 tokens, ten views, vocabulary 16,384), in shards of ~1 GiB.
Trains a GPT-toy-S on it for a few steps in a subprocess (`tensorar train`), and on a 1,000-item set of
the same layout, while sampling the trainer's /proc/<pid>/status: peak RssAnon (its own memory), peak
RssFile (mapped pages of the shards: page cache, shared by the ranks of a node and reclaimable) and
VmHWM (peak resident set, both together). Prints one JSON line per run and what the old loader
(every shard concatenated as int64) would have held.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GRID, VIEWS, VOCAB, SHARD_ITEMS = 24, 10, 16384, 93_206  # 93,206 x 10 x 576 x 2 bytes ~ 1 GiB per shard
ROOT = Path(__file__).resolve().parents[1]


def write_codes(folder: Path, items: int, seed: int = 0) -> int:
    """A synthetic extract_codes folder of `items` items -> its codes' bytes on disk."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    shards, total = [], 0
    for i, start in enumerate(range(0, items, SHARD_ITEMS)):
        count = min(SHARD_ITEMS, items - start)
        codes = np.lib.format.open_memmap(folder / f"codes_{i:05d}.npy", mode="w+", dtype=np.uint16,
                                          shape=(count, VIEWS, GRID * GRID))
        for chunk in range(0, count, 8192):  # written in pieces: this process stays small too
            n = min(8192, count - chunk)
            codes[chunk:chunk + n] = rng.integers(0, VOCAB, (n, VIEWS, GRID * GRID), dtype=np.uint16)
        codes.flush()
        del codes
        np.save(folder / f"labels_{i:05d}.npy", rng.integers(0, 1000, count).astype(np.int64))
        shards.append({"codes": f"codes_{i:05d}.npy", "labels": f"labels_{i:05d}.npy", "count": count})
        total += (folder / f"codes_{i:05d}.npy").stat().st_size
    (folder / "manifest.json").write_text(json.dumps({
        "grid": [GRID, GRID], "vocab_size": VOCAB, "num_classes": 1000, "num_augmentations": VIEWS,
        "count": items, "complete": True, "shards": shards}))
    return total


def status_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0])
    return fields


def train_and_watch(codes: Path, run_dir: Path, steps: int) -> dict:
    """Train in a subprocess, sampling its memory every 20 ms -> peaks in MiB and the run's seconds."""
    cmd = [sys.executable, "-m", "tensorar", "train", "--codes", str(codes), "--run-dir", str(run_dir), "--mode", "base",
           "--preset", "GPT-toy-S", "--steps", str(steps), "--global-batch-size", "8", "--lr-base", "1e-3",
           "--log-every", str(steps), "--ckpt-every", str(steps), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    start = time.time()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    peak = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0}
    while proc.poll() is None:
        try:
            for key, value in status_kib(proc.pid).items():  # an exiting process lists none of them
                peak[key] = max(peak[key], value)
        except (FileNotFoundError, ProcessLookupError):  # it just exited
            break
        time.sleep(0.02)
    if proc.wait() != 0:
        raise SystemExit(f"training failed: {' '.join(cmd)}")
    return {**{f"peak_{k}_mib": round(v / 1024, 1) for k, v in peak.items()}, "seconds": round(time.time() - start, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=4.2, help="size of the large code set (>= 4)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="tensorar-codes-memory-"))
    results = []
    try:
        for name, items in (("small", 1000), ("large", int(args.gib * 2**30 / (VIEWS * GRID * GRID * 2)))):
            size = write_codes(root / name, items)
            result = {"codes": name, "items": items, "codes_gib_on_disk": round(size / 2**30, 2),
                      "old_loader_int64_gib": round(items * VIEWS * GRID * GRID * 8 / 2**30, 2),
                      **train_and_watch(root / name, root / f"run_{name}", args.steps)}
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
