"""Every random choice of training as a pure function of (seed, step): the global batch (items,
augmentation views, condition-dropout mask) and TensorAR's input-noise draws. Rank r trains on the
r-th contiguous slice, so the same global batch size trains the same way on any number of processes
and a resumed run continues exactly where it stopped."""
from __future__ import annotations

import functools
import hashlib

import torch


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a pure function of `parts` (Python's str hash is salted per process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@functools.lru_cache(maxsize=2)  # a global batch spans at most two epochs unless it exceeds the data
def _epoch_permutation(seed: int, epoch: int, num_items: int) -> torch.Tensor:
    return torch.randperm(num_items, generator=torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch)))


def global_batch(step: int, seed: int, batch_size: int, num_items: int, num_augmentations: int,
                 condition_drop_prob: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step -> (item index, augmentation index, condition-drop mask), each (batch_size,), for the world.

    Items are visited without replacement, epoch by epoch: sample j of step s is position s*B + j of
    the stream formed by concatenating one random permutation of the items per epoch.
    """
    positions = torch.arange(step * batch_size, (step + 1) * batch_size)
    epochs = positions // num_items
    items = torch.empty_like(positions)
    for epoch in epochs.unique().tolist():
        at = epochs == epoch
        items[at] = _epoch_permutation(seed, epoch, num_items)[positions[at] % num_items]
    gen = torch.Generator().manual_seed(derive_seed(seed, "batch", step))
    augmentation = torch.randint(num_augmentations, (batch_size,), generator=gen)
    drop = torch.rand(batch_size, generator=gen) < condition_drop_prob
    return items, augmentation, drop


def global_noise(step: int, seed: int, batch_size: int, num_tokens: int, k: int, draws: int = 2,
                 stream: str = "noise") -> torch.Tensor:
    """TensorAR's per-position uniforms of step `step` for the whole world: (batch_size, num_tokens - 1,
    k, draws). Stream "noise": the input noise (mask, replacement); "drafts": the self-drafting
    samples (one per sub-token). Each rank takes its slice, as with `global_batch`."""
    gen = torch.Generator().manual_seed(derive_seed(seed, stream, step))
    return torch.rand(batch_size, num_tokens - 1, k, draws, generator=gen)
