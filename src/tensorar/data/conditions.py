"""The conditions of a training set's items, stored once beside their codes and batched on demand.

A `ConditionStore` answers `batch(items) -> Condition` (a dict of batch-first tensors, the backbone
interface's condition). Three kinds:
- class labels, from the codes themselves (class-conditional codes);
- caption features (LlamaGen t2i: T5 or the toy encoder): stored compactly as each item's valid
  tokens only (LlamaGen's extractor stores them so too) and left-padded per batch; memory-mapped, so
  BLIP3o-scale feature sets (tens of GB) need no RAM;
- prompt tokens (Janus-Pro): input_ids and attention_mask, already left-padded to the model's length.

Layout of a conditions folder (written by `tensorar encode_captions`): `conditions.json` (kind, shapes,
shards, the encoder's identity, the identity of the codes whose captions were encoded), and per shard i
`<key>_{i:05d}.npy`, the kind's last key written last (the shard's "done" marker, `SHARD_KEYS`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tensorar.errors import InputError
from tensorar.fileio import atomic_save_npy, atomic_write_json, load_npy, read_json
from tensorar.options import check_fields, option

MANIFEST = "conditions.json"
Condition = dict[str, torch.Tensor]
# Each kind's shard files in the order they are written: the last one marks the shard done.
SHARD_KEYS = {"caption_features": ("valid", "lengths"), "prompt_tokens": ("attention_mask", "input_ids")}


@dataclass(frozen=True, kw_only=True)
class EncodeOptions:
    """How encode_captions runs (the text encoder itself: tensorar.sampling.options.TextEncoderSpec)."""

    shard_size: int = option(10_000, "captions per output shard", min=1)
    batch_size: int = option(64, "captions per encoder call", min=1)
    device: str = option("cpu", "torch device of the text encoder, e.g. cpu, cuda, cuda:1")

    def __post_init__(self):
        check_fields(self)


class LabelStore:
    def __init__(self, labels: torch.Tensor):
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, items) -> Condition:
        return {"labels": self.labels[items]}


class FolderStore:
    """Caption features or prompt tokens from a conditions folder, shard arrays memory-mapped."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: make it with `tensorar encode_captions --codes CODES "
                                    f"--out {self.folder}`")
        self.manifest = read_json(path)
        if not self.manifest.get("complete"):
            raise InputError(f"{self.folder}: encoding did not finish; rerun encode_captions (it resumes)")
        self.kind = self.manifest["kind"]
        shards = self.manifest["shards"]
        load = {key: [load_npy(self.folder / f"{key}_{i:05d}.npy", mmap_mode="r") for i in range(len(shards))]
                for key in self.manifest["keys"]}
        self.arrays = load
        counts = np.array([s["count"] for s in shards])
        self.shard_start = np.concatenate([[0], np.cumsum(counts)])  # (S + 1,)
        if self.kind == "caption_features":
            # Offsets of each item's valid tokens inside its shard's concatenated features.
            self.lengths = [np.asarray(a) for a in load["lengths"]]
            self.offsets = [np.concatenate([[0], np.cumsum(n)]) for n in self.lengths]

    def __len__(self) -> int:
        return int(self.shard_start[-1])

    def _locate(self, item: int) -> tuple[int, int]:
        shard = int(np.searchsorted(self.shard_start, item, side="right") - 1)
        return shard, item - int(self.shard_start[shard])

    def batch(self, items) -> Condition:
        items = torch.as_tensor(items).reshape(-1).tolist() if not isinstance(items, slice) else \
            list(range(*items.indices(len(self))))
        if self.kind == "prompt_tokens":
            rows = [self._locate(i) for i in items]
            return {key: torch.from_numpy(np.stack([np.asarray(self.arrays[key][s][j]) for s, j in rows])).long()
                    for key in ("input_ids", "attention_mask")}
        L, C = self.manifest["max_tokens"], self.manifest["dim"]
        caption = torch.zeros(len(items), L, C)
        mask = torch.zeros(len(items), L, dtype=torch.bool)
        for b, item in enumerate(items):
            s, j = self._locate(item)
            start, end = self.offsets[s][j], self.offsets[s][j + 1]
            n = end - start
            if n:
                valid = np.array(self.arrays["valid"][s][start:end], dtype=np.float32)  # a copy: the mmap is read-only
                caption[b, L - n:] = torch.from_numpy(valid)
                mask[b, L - n:] = True
        return {"caption": caption, "caption_mask": mask}


def open_conditions(labels: torch.Tensor, conditions: str | Path | None = None, codes_manifest: dict | None = None):
    """The store training and diagnostics read: a conditions folder, or the codes' class labels. With the
    codes' manifest, a conditions folder must have been encoded from those codes' captions."""
    if conditions is None:
        return LabelStore(labels)
    store = FolderStore(conditions)
    if codes_manifest is not None:
        check_codes_match(store.manifest, codes_manifest, Path(conditions))
    return store


def codes_identity(codes_manifest: dict) -> dict:
    """What a conditions folder records of the codes whose captions it encodes."""
    return {"identity": codes_manifest.get("identity"), "images_sha256": codes_manifest.get("images_sha256"),
            "tokenizer_sha256": codes_manifest.get("tokenizer_sha256")}


def check_codes_match(conditions_manifest: dict, codes_manifest: dict, folder: Path) -> None:
    recorded, current = conditions_manifest.get("codes"), codes_identity(codes_manifest)
    if recorded != current:
        raise InputError(f"{folder} was encoded from other codes (captions/tokenizer {recorded}) than the codes "
                         f"given ({current}): rerun encode_captions on these codes")


def training_data(codes_manifest: dict, store) -> dict:
    """What a checkpoint records of the data it was trained on (compared by `check_trained_with`): the
    tokenizer's and the codes' identities and the text encoder's (None for class labels)."""
    encoder = store.manifest.get("encoder") if isinstance(store, FolderStore) else None
    return {"tokenizer": codes_manifest.get("tokenizer_sha256"), "codes": codes_identity(codes_manifest),
            "encoder": None if encoder is None else {k: v for k, v in encoder.items() if k != "identity"}}


def check_trained_with(trained_on: dict | None, ckpt, tokenizer: str | None = None, tokenizer_path=None,
                       encoder: dict | None = None) -> None:
    """A model is sampled with the tokenizer and text encoder it was trained with: a mismatch is an error
    naming both (checkpoints without a record, official ones, are not checked)."""
    if not trained_on:
        return
    if tokenizer is not None and trained_on.get("tokenizer") not in (None, tokenizer):
        raise InputError(f"{ckpt} was trained on codes of tokenizer {trained_on['tokenizer']}, but --vq {tokenizer_path} "
                         f"is {tokenizer}: sample with the tokenizer the codes were made with")
    if encoder is not None and trained_on.get("encoder") is not None and trained_on["encoder"] != encoder:
        raise InputError(f"{ckpt} was trained with text encoder {trained_on['encoder']}, but sampling would use "
                         f"{encoder}: give the --encoder and its settings the conditions were encoded with")


def kind_of(sample: Condition) -> str:
    return "caption_features" if "caption" in sample else "prompt_tokens"


def shard_done(folder: Path, kind: str, i: int) -> bool:
    """Whether shard i is complete: its marker (the last file written) exists."""
    return (folder / f"{SHARD_KEYS[kind][-1]}_{i:05d}.npy").is_file()


def write_shard(folder: Path, i: int, cond: Condition) -> dict[str, int]:
    """One shard of encoded conditions (caption features are stored as valid tokens only), its marker last."""
    if "caption" in cond:
        mask = cond["caption_mask"].bool()
        arrays = {"valid": cond["caption"][mask].float().numpy(),  # (sum n, C)
                  "lengths": mask.sum(1).numpy().astype(np.int32)}
    else:
        arrays = {"attention_mask": cond["attention_mask"].numpy().astype(np.int8),
                  "input_ids": cond["input_ids"].numpy().astype(np.int64)}
    for key in SHARD_KEYS[kind_of(cond)]:
        atomic_save_npy(folder / f"{key}_{i:05d}.npy", arrays[key])
    return {"count": len(next(iter(cond.values())))}


def mark_incomplete(folder: Path) -> None:
    """Before any shard is (re)written: readers refuse the folder until `finish(complete=True)`."""
    atomic_write_json(folder / MANIFEST, {"complete": False})


def finish(folder: Path, shards: list[dict], sample: Condition, identity: dict, codes: dict, complete: bool) -> None:
    kind = kind_of(sample)
    if kind == "caption_features":
        shape = {"max_tokens": sample["caption"].shape[1], "dim": sample["caption"].shape[2]}
    else:
        shape = {"max_tokens": sample["input_ids"].shape[1]}
    atomic_write_json(folder / MANIFEST, {"kind": kind, "keys": list(SHARD_KEYS[kind]), **shape, "shards": shards,
                                          "count": sum(s["count"] for s in shards), "encoder": identity,
                                          "codes": codes_identity(codes), "complete": complete})
