"""Noise schedules β(j) for the positions of a TensorAR input tensor, and the per-slot loss weights.

Paper: ../shared/reference/paper/paper.txt, Sec. 2.2.3 (Eq. 4, Table 1, Eq. 5) and Appendix B (Algorithm 1).
Position j of every input tensor x_{t,k} is resampled uniformly over the vocabulary with probability β(j)
(Eq. 4). β = 0 at the committed token (it stays clean) and β grows with j, because later positions are
drafts that the sampler has refined fewer times. Every schedule below is a function f(r) of r = j / k.

Table 1 names four schedules: linear, sine, sqrt and "exponential", the last printed as "j^{1/k/2}". We
read it literally, left to right, with j normalised by k: β(j) = (j/k)^(1/(2k)) -- the noisiest of the
four and distinct from sqrt, as Table 5 requires. The two other readings are registered under their own
names (docs/method.md discusses all three).

Two readings of positions and loss weights are registered (`loss_weighting`; docs/method.md §2 puts the
formulas side by side):

- "rdm" (ours, the default): 0-based positions, β(j) = f(j/k) for j = 0..k-1, so β(0) = 0 and the last
  draft is noised with f((k-1)/k) < 1. Slot s of the output predicts the token at position s of the next
  input, weighted as in reparameterized discrete diffusion (RDM, Zheng et al. 2023) with ᾱ = 1 - β:
  w_s = (β(s+1) - β(s)) / β(s+1) with β(k) = 1, so w_0 = 1 and k = 1 is plain next-token prediction.
- "literal": Algorithm 1 as printed, with Table 1's 1-based positions. Algorithm 1 noises tensor position
  j = 2..k with β(j), β(j) = f(j/k): position 1 is clean and position k has β(k) = f(1) = 1, pure noise.
  Its loss weights slot j = 1..k-1 (the token x_{n+j}) by (β(j-1) - β(j)) / (1 - β(j)); as printed this is
  negative (β grows with j), so we apply the one swap β <-> ᾱ = 1 - β that makes it an RDM weight:
  w_j = (β(j) - β(j-1)) / β(j) with β(0) = f(0) = 0, and w_0 = 1 (the plain next-token term).
  At k = 4, exponential: w = 1, 1, .083, .049 against rdm's 1, .083, .049, .035.
- "uniform": w_s = 1, positions as rdm (for ablations).

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

LOSS_WEIGHTINGS = ("rdm", "uniform", "literal")
# The weightings that read Table 1's positions from 1 (the last draft pure noise); the others from 0.
ONE_BASED = ("literal",)


def _check_schedule(name: str) -> None:
    if name not in SCHEDULES:
        raise KeyError(f"unknown noise schedule {name!r}; known: {', '.join(SCHEDULES)}")


def _check_weighting(weighting: str) -> None:
    if weighting not in LOSS_WEIGHTINGS:
        raise KeyError(f"unknown loss weighting {weighting!r}; known: {', '.join(LOSS_WEIGHTINGS)}")


def beta(name: str, k: int) -> torch.Tensor:
    """β at the 0-based positions j = 0..k-1, f(j/k) -> float64 (k,), with β(0) = 0."""
    _check_schedule(name)
    if k < 1:
        raise ValueError(f"window size k must be >= 1, got {k}")
    r = torch.arange(k, dtype=torch.float64) / k  # (k,)
    return SCHEDULES[name](r, k)


def table1_beta(name: str, k: int) -> torch.Tensor:
    """β at Table 1's 1-based positions j = 0..k, f(j/k) -> float64 (k+1,): β(0) = 0, β(k) = 1."""
    _check_schedule(name)
    if k < 1:
        raise ValueError(f"window size k must be >= 1, got {k}")
    return SCHEDULES[name](torch.arange(k + 1, dtype=torch.float64) / k, k)


def noise_levels(name: str, k: int, weighting: str = "rdm") -> torch.Tensor:
    """Resampling probability of input positions 0..k-1 -> float64 (k,); position 0 (committed) is clean.
    0-based (rdm, uniform): β(j) = f(j/k); 1-based (literal): position j holds Table 1's β(j+1) = f((j+1)/k)."""
    _check_weighting(weighting)
    if weighting in ONE_BASED:
        levels = table1_beta(name, k)[1:].clone()  # (k,): β(1..k), the last one 1
        levels[0] = 0.0  # Algorithm 1 noises positions 2..k only
        return levels
    return beta(name, k)


def slot_weights(name: str, k: int, weighting: str = "rdm") -> torch.Tensor:
    """Loss weight of output slots s = 0..k-1 -> float64 (k,); w_0 = 1 for every weighting."""
    _check_weighting(weighting)
    if weighting == "uniform":
        return torch.ones(k, dtype=torch.float64)
    if weighting == "literal":
        b = table1_beta(name, k)  # (k+1,): β(0..k) at Table 1's positions
        w = (b[1:k] - b[:k - 1]) / b[1:k]  # (k-1,): slots 1..k-1, (β(j) - β(j-1)) / β(j)
        return torch.cat([torch.ones(1, dtype=torch.float64), w])
    b = torch.cat([beta(name, k), torch.ones(1, dtype=torch.float64)])  # (k+1,): β(0..k), β(k) = 1
    return (b[1:] - b[:-1]) / b[1:]
