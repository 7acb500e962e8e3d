"""The token-code folders that `tensorar extract_codes` writes and training / diagnostics read.

Layout of CODES/: `manifest.json` (grid, vocabulary, views, tokenizer identity, "complete"),
`codes_{i:05d}.npy` int32 (n_i, A, T) and `labels_{i:05d}.npy` int64 (n_i,): shard i holds images
[i*shard_size, (i+1)*shard_size) of the source dataset, A augmented views per image, T = h*w tokens in
raster order.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tensorar.fileio import read_json

MANIFEST = "manifest.json"
CAPTIONS = "captions.jsonl"  # text-image codes: item i's caption (a JSON string) on line i


def shard_names(i: int) -> tuple[str, str]:
    return f"codes_{i:05d}.npy", f"labels_{i:05d}.npy"


def read_manifest(codes_dir: str | Path) -> dict:
    codes_dir = Path(codes_dir)
    manifest_path = codes_dir / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found: make the codes with `tensorar extract_codes "
                                f"--data DIR --vq VQ.pt --out {codes_dir} --image-size S`")
    manifest = read_json(manifest_path)  # a damaged file is an error naming it
    if not manifest.get("complete"):
        raise RuntimeError(f"{codes_dir}: extraction did not finish; rerun extract_codes (it resumes)")
    return manifest


def load_codes(codes_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Read an extract_codes folder: codes (N, A, T) int64, labels (N,) int64, the manifest dict."""
    codes_dir = Path(codes_dir)
    manifest = read_manifest(codes_dir)
    codes = np.concatenate([np.load(codes_dir / s["codes"]) for s in manifest["shards"]])  # (N, A, T)
    labels = np.concatenate([np.load(codes_dir / s["labels"]) for s in manifest["shards"]])  # (N,)
    expected = (manifest["count"], manifest["num_augmentations"], math.prod(manifest["grid"]))
    if codes.shape != expected or labels.shape != (manifest["count"],):
        raise RuntimeError(f"{codes_dir}: shards hold codes {codes.shape} / labels {labels.shape}, "
                           f"manifest says {expected}")
    return torch.from_numpy(codes).long(), torch.from_numpy(labels).long(), manifest
