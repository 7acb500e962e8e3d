"""Comparing the latencies of models timed in one interleaved job (`tensorar time_sampling`).

Why paired and robust: a timing job shares its machine with whatever else runs there (other jobs, the OS,
a thermal limit). Timed one after the other, in separate jobs, anything that slows the machine for a
while lands in one arm only: a fresh toy run put one architecture's base and its equal-steps control (the
same network, so the same cost) 23 % apart, "significantly". `time_sampling` therefore times the models
of one backbone in rounds, A B C, C A B, ... (the order within a round shuffled by a seed), so repeat r
of every model runs within seconds of the others, and a slow spell touches every arm of its round.

`paired_timing(a, b)`: per repeat r the ratio a_r / b_r (relative) or the difference a_r - b_r; the
estimate is their median (a slow spell that hits one arm of one round moves a mean, not a median) and the
interval a percentile bootstrap over rounds (rounds resampled with replacement, the median recomputed).
`aa_check(interval, tolerance)`: two models of the same architecture (the base and its equal-steps
control) must time alike: the A/A interval has to lie inside [-tolerance, +tolerance]. A measurement that
cannot tell two copies of one network apart cannot tell TensorAR from its base either.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tensorar.evaluation.statistics import Interval, percentiles

METHOD = "paired repeats, median, bootstrap over rounds"


def paired_timing(a: Sequence[float], b: Sequence[float], n_boot: int, rng: np.random.Generator,
                  level: float = 0.95, relative: bool = True) -> Interval:
    """median_r(a_r / b_r) - 1 (relative) or median_r(a_r - b_r), with a bootstrap over the rounds r."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) < 2:
        raise ValueError(f"need the same >= 2 paired repeats on each side, got {a.shape} and {b.shape}")
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    per_round = a / b - 1 if relative else a - b  # (R,)
    draws = np.median(per_round[rng.integers(0, len(per_round), size=(n_boot, len(per_round)))], axis=1)
    low, high = percentiles(draws, level)
    return Interval(float(np.median(per_round)), float(low), float(high), level, METHOD, n_seeds=1,
                    n_boot=n_boot, standard_error=float(np.std(draws, ddof=1)))


def aa_check(interval: Interval, tolerance: float) -> bool:
    """True when an A/A comparison (relative) is inside +-tolerance: the measurement can see no difference
    where there is none."""
    if tolerance <= 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    return -tolerance <= interval.low and interval.high <= tolerance
