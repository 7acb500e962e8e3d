"""tensorar.evaluation.timing: paired timing rounds on synthetic repeats whose answers are known, and the
A/A check (same timing passes; a 20 % shift, or noise too wide to tell, fails)."""
from __future__ import annotations

import numpy as np
import pytest

from tensorar.evaluation.statistics import verdict
from tensorar.evaluation.timing import aa_check, paired_timing


def _rounds(rng, n, slow_spells):
    """A timer for n rounds: a model of cost c takes c s, with 1 % timer noise and the round's machine load
    (up to 1 + `slow_spells` times slower on ~30 % of the rounds), which every model of a round shares."""
    load = 1.0 + slow_spells * (rng.random(n) < 0.3) * rng.random(n)  # (n,) the round's machine state
    return lambda c: c * load * (1 + 0.01 * rng.standard_normal(n))


def test_the_median_of_paired_ratios_sees_through_load_that_hits_every_arm_of_a_round():
    rng = np.random.default_rng(0)
    timed = _rounds(rng, 12, slow_spells=3.0)  # up to 4x slower rounds, shared within the round
    base, tensorar = timed(0.10), timed(0.12)
    found = paired_timing(tensorar, base, 2000, np.random.default_rng(1))
    assert found.estimate == pytest.approx(0.20, abs=0.02) and found.contains(0.20)
    assert found.high - found.low < 0.05
    assert base.max() / base.min() > 1.5  # the load is real: single repeats spread far more than the ratio
    assert verdict(found, "less", 0.25) == "supported"
    absolute = paired_timing(tensorar, base, 2000, np.random.default_rng(1), relative=False)
    assert absolute.estimate == pytest.approx(np.median(tensorar - base))


def test_a_one_off_outlier_in_one_arm_moves_the_median_little():
    a, b = np.full(10, 1.0), np.full(10, 1.0)
    a[3] = 10.0  # one round where something else ran during A only
    found = paired_timing(a, b, 1000, np.random.default_rng(0))
    assert found.estimate == 0.0 and np.mean(a) / np.mean(b) - 1 > 0.8


def test_aa_check_passes_on_equal_timing_and_fails_on_a_20_percent_shift():
    rng = np.random.default_rng(2)
    base = 0.1 * (1 + 0.02 * rng.standard_normal(12))
    same = 0.1 * (1 + 0.02 * rng.standard_normal(12))
    shifted = 0.12 * (1 + 0.02 * rng.standard_normal(12))
    assert aa_check(paired_timing(same, base, 2000, np.random.default_rng(3)), 0.10)
    assert not aa_check(paired_timing(shifted, base, 2000, np.random.default_rng(3)), 0.10)
    # Too noisy to tell copies apart is a failure too: the interval must fit inside the tolerance.
    noisy = 0.1 * (1 + 0.5 * np.abs(rng.standard_normal(12)))
    assert not aa_check(paired_timing(noisy, base, 2000, np.random.default_rng(3)), 0.10)


def test_paired_timing_checks_its_input():
    with pytest.raises(ValueError):
        paired_timing([1.0, 2.0], [1.0, 2.0, 3.0], 10, np.random.default_rng(0))
    with pytest.raises(ValueError):
        paired_timing([1.0], [1.0], 10, np.random.default_rng(0))
    with pytest.raises(ValueError):
        aa_check(paired_timing([1.0, 1.0], [1.0, 1.0], 10, np.random.default_rng(0)), 0.0)
