"""Noise schedules β(j) for the positions of a TensorAR input tensor, and the per-slot loss weights.

Position j = 0..k-1 of every input tensor x_{t,k} is resampled uniformly over the vocabulary with
probability β(j) (paper Sec. 2.3). β(0) = 0 (the committed token stays clean) and β grows with j,
because later positions are drafts that the sampler has refined fewer times. Every schedule below is a
function of r = j / k in [0, 1).

The paper (Sec. 2.3, Table 5) names four schedules: linear, sine, sqrt and "exponential", the last
printed as "j^{1/k/2}". We read it literally, left to right, with j normalised by k:
β(j) = (j/k)^(1/(2k)) -- the noisiest of the four and distinct from sqrt, as Table 5 requires. The two
other readings are registered under their own names (docs/method.md discusses all three).

Loss weights (paper Algorithm 1) follow reparameterized discrete diffusion (RDM, Zheng et al. 2023)
with ᾱ = 1 - β: slot s of the output predicts position s of the next input tensor, and its weight is
w_s = (β(s+1) - β(s)) / β(s+1) with β(k) = 1, so w_0 = 1 and k = 1 is plain next-token prediction.
(Algorithm 1 as printed swaps β and ᾱ, which makes the weights negative.)

The registries are append-only: names end up in run directories and checkpoints.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

# name -> β as a function of r = j / k (float64 tensor) and k.
SCHEDULES: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "linear": lambda r, k: r,
    "sine": lambda r, k: torch.sin(math.pi * r / 2),
    "sqrt": lambda r, k: r.sqrt(),
    # The paper's "j^{1/k/2}", read literally: (j/k)^(1/(2k)). k=4: 0, 0.84, 0.92, 0.96.
    "exponential": lambda r, k: r.pow(1.0 / (2 * k)),
    # Alternative reading "j^{1/(k/2)}" = (j/k)^(2/k); equals sqrt at k = 4.
    "exponential_2_over_k": lambda r, k: r.pow(2.0 / k),
    # Alternative reading as a true exponential, normalised to reach 1 at j = k.
    "exponential_e": lambda r, k: torch.expm1(r) / math.expm1(1.0),
}

LOSS_WEIGHTINGS = ("rdm", "uniform")


def _check_schedule(name: str) -> None:
    if name not in SCHEDULES:
        raise KeyError(f"unknown noise schedule {name!r}; known: {', '.join(SCHEDULES)}")


def beta(name: str, k: int) -> torch.Tensor:
    """Resampling probability of positions j = 0..k-1 -> float64 (k,), with β(0) = 0."""
    _check_schedule(name)
    if k < 1:
        raise ValueError(f"window size k must be >= 1, got {k}")
    r = torch.arange(k, dtype=torch.float64) / k  # (k,)
    return SCHEDULES[name](r, k)


def slot_weights(name: str, k: int, weighting: str = "rdm") -> torch.Tensor:
    """Loss weight of output slots s = 0..k-1 -> float64 (k,); w_0 = 1 for every weighting."""
    if weighting not in LOSS_WEIGHTINGS:
        raise KeyError(f"unknown loss weighting {weighting!r}; known: {', '.join(LOSS_WEIGHTINGS)}")
    b = torch.cat([beta(name, k), torch.ones(1, dtype=torch.float64)])  # (k+1,): β(0..k), β(k) = 1
    if weighting == "uniform":
        return torch.ones(k, dtype=torch.float64)
    return (b[1:] - b[:-1]) / b[1:]
