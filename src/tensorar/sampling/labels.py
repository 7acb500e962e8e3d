"""Class labels of a class-conditional sample set, per sample index, so a shard needs only its own labels
and the labels do not depend on the batch size or the world size (ours; LlamaGen draws them per batch)."""
from __future__ import annotations

import math

import numpy as np

LABEL_MODES = ("balanced", "random")
LABELS_VERSION = "per-index"  # how labels are drawn (in the shards' identity: older shards are not resumed)


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
