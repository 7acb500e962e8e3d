"""Codes that stream: shard files read as memory maps in the smallest integer type, rows gathered per
batch, the same training as from codes held in memory."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tensorar.data.codes import CodeStore, code_dtype, load_codes
from tensorar.models.loading import load_model
from tensorar.stages.train import main

VOCAB, GRID, VIEWS, CLASSES = 300, 4, 3, 4


def write_store(path: Path, dtype, counts=(5, 7, 3), seed: int = 0) -> np.ndarray:
    """An extract_codes folder of `counts` items per shard in `dtype` -> all its codes (N, A, T)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, VOCAB, (sum(counts), VIEWS, GRID * GRID))
    labels = rng.integers(0, CLASSES, sum(counts))
    path.mkdir(parents=True)
    shards, start = [], 0
    for i, n in enumerate(counts):
        np.save(path / f"codes_{i:05d}.npy", codes[start:start + n].astype(dtype))
        np.save(path / f"labels_{i:05d}.npy", labels[start:start + n].astype(np.int64))
        shards.append({"codes": f"codes_{i:05d}.npy", "labels": f"labels_{i:05d}.npy", "count": n})
        start += n
    manifest = {"grid": [GRID, GRID], "vocab_size": VOCAB, "num_classes": CLASSES, "num_augmentations": VIEWS,
                "count": sum(counts), "complete": True, "shards": shards}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return codes


def test_smallest_code_type_holds_the_vocabulary():
    assert code_dtype(16) == np.uint16 and code_dtype(2**16) == np.uint16  # ids 0..65535
    assert code_dtype(2**16 + 1) == np.int32 and code_dtype(2**18) == np.int32  # Open-MAGVIT2's 262,144


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64], ids=["uint16", "int32-old", "int64-old"])
def test_take_gathers_rows_across_shards_from_any_stored_type(tmp_path, dtype):
    codes = write_store(tmp_path / "codes", dtype)
    store = CodeStore(tmp_path / "codes")
    assert store.shape == codes.shape and len(store) == 15
    items = torch.tensor([0, 4, 5, 11, 12, 14, 5])  # both ends of every shard, one repeated
    views = torch.tensor([0, 2, 1, 2, 0, 1, 0])
    rows = store.take(items, views)
    assert rows.dtype == torch.long and torch.equal(rows, torch.from_numpy(codes[items.numpy(), views.numpy()]))
    in_memory, labels, _ = load_codes(tmp_path / "codes")
    assert torch.equal(in_memory, torch.from_numpy(codes)) and torch.equal(labels, store.labels)
    with pytest.raises(IndexError, match="out of range"):
        store.take(torch.tensor([15]), torch.tensor([0]))


def test_a_shard_that_disagrees_with_the_manifest_is_named(tmp_path):
    write_store(tmp_path / "codes", np.uint16)
    np.save(tmp_path / "codes" / "codes_00001.npy", np.zeros((6, VIEWS, GRID * GRID), np.uint16))
    with pytest.raises(RuntimeError, match=r"codes_00001\.npy: codes \(6, 3, 16\)"):
        CodeStore(tmp_path / "codes")


def _private_resident_kib() -> int:
    """RssAnon: the process's own memory (file pages of a map are page cache, shared and reclaimable)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux's /proc/self/status")
def test_opening_and_reading_a_store_does_not_load_it(tmp_path):
    """A 180 MiB shard: opening it and gathering a batch keeps the private memory far below its size
    (load_codes' copy would take 4x the file as int64)."""
    folder = tmp_path / "big"
    folder.mkdir()
    count, tokens = 4096, 24 * 24
    shard = np.lib.format.open_memmap(folder / "codes_00000.npy", mode="w+", dtype=np.uint16,
                                      shape=(count, 10 * 4, tokens))  # 4096 x 40 views x 576 x 2 bytes
    shard[:, :, :] = 7
    shard.flush()
    del shard
    np.save(folder / "labels_00000.npy", np.zeros(count, np.int64))
    (folder / "manifest.json").write_text(json.dumps({
        "grid": [24, 24], "vocab_size": 16384, "num_classes": 1, "num_augmentations": 40, "count": count,
        "complete": True, "shards": [{"codes": "codes_00000.npy", "labels": "labels_00000.npy", "count": count}]}))
    before = _private_resident_kib()
    store = CodeStore(folder)
    rows = store.take(torch.randint(0, count, (256,)), torch.randint(0, 40, (256,)))
    assert rows.shape == (256, tokens) and bool((rows == 7).all())
    assert _private_resident_kib() - before < 16 * 1024  # the file is 180 MiB


def test_training_from_uint16_shards_equals_training_from_int64_codes(tmp_path):
    """The same codes stored compactly train bit-identical weights (the trainer sees int64 rows)."""
    for dtype in (np.uint16, np.int64):
        write_store(tmp_path / f"codes_{np.dtype(dtype).name}", dtype)
    for name in ("uint16", "int64"):
        main(["--codes", str(tmp_path / f"codes_{name}"), "--run-dir", str(tmp_path / name), "--mode", "base",
              "--model", "GPT-toy-S", "--steps", "3", "--global-batch-size", "6", "--lr-base", "3e-3",
              "--micro-batch-size", "3", "--device", "cpu"])
    a, b = (load_model(tmp_path / name / "final.pt").state_dict() for name in ("uint16", "int64"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
