"""The token-code folders that `tensorar extract_codes` writes and training / diagnostics read.

Layout of CODES/: `manifest.json` (grid, vocabulary, views, tokenizer identity, "complete"),
`codes_{i:05d}.npy` (n_i, A, T) in the smallest integer type that holds the vocabulary (uint16 up to
65,536 codes, else int32; older folders hold int32 or int64: read the same) and `labels_{i:05d}.npy`
int64 (n_i,): shard i holds images [i*shard_size, (i+1)*shard_size) of the source dataset, A augmented
views per image, T = h*w tokens in raster order.

Training reads codes through `CodeStore`: every shard stays on disk as a memory map and a batch
gathers only its own rows, so a rank's resident memory does not grow with the data set (ImageNet at
384 px with ten crops is ~15 GB of uint16 codes; benchmarks/codes_memory.py measures it).
"""
from __future__ import annotations

import math
import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tensorar.fileio import read_json
from tensorar.options import check_fields, option

MANIFEST = "manifest.json"
CAPTIONS = "captions.jsonl"  # text-image codes: item i's caption (a JSON string) on line i


@dataclass(frozen=True, kw_only=True)
class CodeViews:
    """The views extract_codes makes of each image (the workflow's `codes.images` / `codes.captions`; the
    schema's `codes.images` defaults are tested equal to these)."""

    augment: str = option("tencrop", "center (one centre crop) or tencrop (LlamaGen's --ten-crop: ten crops of a "
                                     "1.1x resize)", choices=("center", "tencrop"))
    flip: bool = option(True, "add the mirrored views (A: 5 -> 10, 1 -> 2)")

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class CodesOptions:
    """The codes extract_codes writes besides their views: the image side, and how the job runs."""

    image_size: int = option(help="image side S the views are cropped to (a multiple of the tokenizer's "
                                  "downsampling)", min=1)
    shard_size: int = option(10_000, "images per output shard", min=1)
    batch_size: int = option(64, "images per tokenizer call (x A views)", min=1)
    num_workers: int = option(0, "DataLoader worker processes", min=0)

    def __post_init__(self):
        check_fields(self)


def shard_names(i: int) -> tuple[str, str]:
    return f"codes_{i:05d}.npy", f"labels_{i:05d}.npy"


def code_dtype(vocab_size: int) -> np.dtype:
    """The smallest integer type extract_codes stores codes of a `vocab_size` vocabulary in."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.int32)


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


def map_npy(path: Path) -> np.ndarray:
    """A read-only memory map of a .npy file (np.load(mmap_mode="r")'s array), advised for random access:
    a batch touches scattered rows of ~1 KB, so read-ahead around each would mostly read what is not used.
    The pages read are page cache, shared by every rank of a node that maps the same file and dropped
    under memory pressure; the process's own (anonymous) memory holds only the batch."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise RuntimeError(f"{path}: .npy format version {version}; expected 1.0 or 2.0 (np.save's)")
        shape, fortran, dtype = readers[version](f)
        offset = f.tell()
        if fortran or dtype.hasobject:
            raise RuntimeError(f"{path}: not a C-ordered integer array")
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mmap, "MADV_RANDOM"):
        mapped.madvise(mmap.MADV_RANDOM)
    return np.ndarray(shape, dtype=dtype, buffer=mapped, offset=offset)


class CodeStore:
    """An extract_codes folder opened for reading: codes as read-only memory maps of the shard files,
    labels (one int64 per item) in memory. `take(items, views)` -> the (b, T) int64 token rows."""

    def __init__(self, codes_dir: str | Path):
        self.dir = Path(codes_dir)
        self.manifest = read_manifest(self.dir)
        self.num_augmentations = self.manifest["num_augmentations"]
        self.num_tokens = math.prod(self.manifest["grid"])
        self._shards: list[np.ndarray] = []
        labels = []
        for shard in self.manifest["shards"]:
            codes = map_npy(self.dir / shard["codes"])  # (n_i, A, T): reads the header only
            expected = (shard["count"], self.num_augmentations, self.num_tokens)
            if codes.shape != expected or codes.dtype.kind not in "iu":
                raise RuntimeError(f"{self.dir / shard['codes']}: codes {codes.shape} {codes.dtype}, the manifest "
                                   f"says {expected} integers; rerun extract_codes into an empty folder")
            self._shards.append(codes)
            labels.append(np.load(self.dir / shard["labels"]))
        self.labels = torch.from_numpy(np.concatenate(labels).astype(np.int64))  # (N,)
        if self.labels.shape != (self.manifest["count"],):
            raise RuntimeError(f"{self.dir}: the label shards hold {len(self.labels)} items, the manifest says "
                               f"{self.manifest['count']}")
        counts = [len(codes) for codes in self._shards]
        self._starts = np.cumsum([0, *counts])  # item i is in shard s with starts[s] <= i < starts[s + 1]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self), self.num_augmentations, self.num_tokens

    def take(self, items: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """Items (b,) and view indices (b,) -> codes (b, T) int64, read from the maps (nothing else)."""
        items_np, views_np = items.numpy(), views.numpy()
        if len(items_np) and (items_np.min() < 0 or items_np.max() >= len(self)):
            raise IndexError(f"{self.dir}: item index out of range 0..{len(self) - 1}")
        shard_of = np.searchsorted(self._starts, items_np, side="right") - 1
        rows = np.empty((len(items_np), self.num_tokens), dtype=np.int64)
        for j, (shard, item, view) in enumerate(zip(shard_of, items_np, views_np)):
            rows[j] = self._shards[shard][item - self._starts[shard], view]
        return torch.from_numpy(rows)


def load_codes(codes_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The whole folder in memory: codes (N, A, T) int64, labels (N,) int64, the manifest dict. For tests
    and small sets; training streams through `CodeStore` instead."""
    store = CodeStore(codes_dir)
    codes = np.concatenate([np.asarray(codes) for codes in store._shards]).astype(np.int64)  # (N, A, T)
    return torch.from_numpy(codes), store.labels, store.manifest
