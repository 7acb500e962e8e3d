"""Uncertainty helpers: the eigen Fréchet distance against ADM's sqrtm path and closed forms, the sample
bootstrap against analytic and Monte-Carlo standard errors, the paired two-level bootstrap's coverage and
documented conservativeness, verdicts, determinism. Synthetic data only; small dimensions keep it fast."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tensorar.evaluation.adm import FIDStatistics, compute_statistics
from tensorar.evaluation.sample_bootstrap import (
    FIDBootstrap,
    FIDResampler,
    FrechetReference,
    arm_from_bootstraps,
    bootstrap_fid,
    bootstrap_group_means,
    frechet_distance_eig,
    resample_counts,
    symmetric_sqrt,
)
from tensorar.evaluation.statistics import (
    ArmResults,
    Interval,
    consecutive_differences,
    consecutive_t_intervals,
    mean_over_seeds,
    monotonic_trend,
    paired_difference,
    paired_t_interval,
    trend_verdict,
    verdict,
)


def _random_features(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    # Correlated, anisotropic features, so the two covariances do not commute.
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + shift  # (n, d)


def _interval(low: float, high: float) -> Interval:
    return Interval((low + high) / 2, low, high, 0.95, "hand-made", n_seeds=3, n_boot=0, standard_error=0.0)


# --------------------------------------------------------------------------------------------------------
# Fréchet distance


@pytest.mark.parametrize("d, n_sample", [(1, 50), (5, 200), (32, 400), (32, 20)])
def test_eig_frechet_distance_matches_adm(d, n_sample):
    # (32, 20): fewer samples than dimensions, a singular sample covariance.
    rng = np.random.default_rng(d + n_sample)
    sample = compute_statistics(_random_features(rng, n_sample, d, shift=0.5))
    reference = compute_statistics(_random_features(rng, 3 * d + 10, d))
    assert frechet_distance_eig(sample, reference) == pytest.approx(sample.frechet_distance(reference), rel=1e-6)


def test_eig_frechet_distance_of_2x2_gaussians_is_closed_form():
    # For 2x2 S1 S2 with eigenvalues l1, l2 > 0: tr sqrtm(S1 S2) = sqrt(l1) + sqrt(l2)
    # = sqrt(tr(S1 S2) + 2 sqrt(det(S1) det(S2))), for non-commuting covariances too.
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[0.5, -0.2], [-0.2, 3.0]])
    mu1, mu2 = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    tr_sqrt = np.sqrt(np.trace(s1 @ s2) + 2 * np.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance_eig(FIDStatistics(mu1, s1), FIDStatistics(mu2, s2)) == pytest.approx(expected, rel=1e-12)


def test_eig_frechet_distance_of_rotated_commuting_gaussians_is_closed_form():
    # Shared eigenvectors Q: FID = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2, in a rotated basis.
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    a, b = rng.uniform(0.1, 3.0, 12), rng.uniform(0.1, 3.0, 12)
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    fid = frechet_distance_eig(FIDStatistics(mu1, q @ np.diag(a) @ q.T), FIDStatistics(mu2, q @ np.diag(b) @ q.T))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid == pytest.approx(expected, rel=1e-9)


def test_symmetric_sqrt_squares_back():
    rng = np.random.default_rng(2)
    sigma = np.cov(_random_features(rng, 100, 8), rowvar=False)
    root = symmetric_sqrt(sigma)
    np.testing.assert_allclose(root, root.T, atol=1e-12)
    np.testing.assert_allclose(root @ root, sigma, rtol=1e-9, atol=1e-9)


def test_frechet_reference_rejects_other_feature_size():
    reference = FrechetReference.from_statistics(FIDStatistics(np.zeros(3), np.eye(3)))
    with pytest.raises(ValueError, match="different feature sizes"):
        reference.distance(FIDStatistics(np.zeros(4), np.eye(4)))


# --------------------------------------------------------------------------------------------------------
# Sample bootstrap of one FID


def test_resampler_plain_fid_matches_adm():
    rng = np.random.default_rng(3)
    x, ref = _random_features(rng, 300, 10, shift=0.3), _random_features(rng, 500, 10)
    expected = compute_statistics(x).frechet_distance(compute_statistics(ref))
    assert FIDResampler(x, compute_statistics(ref)).fid() == pytest.approx(expected, rel=1e-9)


def test_weighted_replicate_equals_fid_of_resampled_rows():
    # Counts from resample_counts are the multiplicities of rng.integers(0, n, n): the weighted moments
    # must give the FID of those rows themselves, through ADM's np.cov and sqrtm.
    rng = np.random.default_rng(4)
    x, ref = _random_features(rng, 250, 10, shift=0.3), compute_statistics(_random_features(rng, 500, 10))
    resampler = FIDResampler(x, ref)
    for seed in range(3):
        counts = resample_counts(np.random.default_rng(seed), len(x))
        rows = np.random.default_rng(seed).integers(0, len(x), size=len(x))
        expected = compute_statistics(x[rows]).frechet_distance(ref)
        assert resampler.fid(counts) == pytest.approx(expected, rel=1e-9)


def test_resampler_float32_stays_close_to_float64():
    rng = np.random.default_rng(5)
    x, ref = _random_features(rng, 400, 16, shift=0.3), compute_statistics(_random_features(rng, 500, 16))
    counts = resample_counts(rng, len(x))
    fid64 = FIDResampler(x, ref, dtype=np.float64).fid(counts)
    assert FIDResampler(x, ref, dtype=np.float32).fid(counts) == pytest.approx(fid64, rel=1e-4)


def test_resampler_rejects_counts_of_wrong_total():
    rng = np.random.default_rng(6)
    resampler = FIDResampler(rng.normal(size=(20, 2)), FIDStatistics(np.zeros(2), np.eye(2)))
    with pytest.raises(ValueError, match="summing to 20"):
        resampler.fid(np.full(20, 2))


def test_bootstrap_spread_matches_delta_method_in_one_dimension():
    # 1-d samples N(m, s^2) against reference N(0, 1): FID = xbar^2 + (s_hat - 1)^2, with xbar and s_hat
    # independent, Var(xbar) = s^2/N and Var(s_hat) ~ s^2/(2N), so SE^2 ~ 4 m^2 s^2/N + 2 (s-1)^2 s^2/N.
    n, m, s = 20000, 1.0, 2.0
    x = np.random.default_rng(7).normal(m, s, size=(n, 1))
    boot = bootstrap_fid(x, FIDStatistics(np.zeros(1), np.eye(1)), 400, np.random.default_rng(8))
    analytic = np.sqrt((4 * m**2 * s**2 + 2 * (s - 1) ** 2 * s**2) / n)
    # 400 replicates estimate an SD to ~3.5%; the delta method is first order in 1/sqrt(N).
    assert np.std(boot.replicates, ddof=1) == pytest.approx(analytic, rel=0.15)


def test_bootstrap_matches_fresh_draws_and_covers_expected_fid():
    # Fresh sample sets from a known Gaussian give the true sampling distribution of FID-N; the bootstrap
    # of single sets must reproduce its spread, its bias above the population FID (known in closed form),
    # and cover E[FID-N] at about the nominal rate. D/N is large enough here that the uncentred replicate
    # percentiles would cover well under half the time.
    d, n = 16, 400
    rng = np.random.default_rng(9)
    scale, shift = np.linspace(0.7, 1.4, d), 0.2
    reference = FrechetReference.from_statistics(FIDStatistics(np.zeros(d), np.eye(d)))
    population_fid = d * shift**2 + np.sum((scale - 1) ** 2)

    def draw() -> np.ndarray:
        return rng.standard_normal((n, d)) * scale + shift  # (n, d)

    fresh = np.array([FIDResampler(draw(), reference).fid() for _ in range(600)])
    boots = [bootstrap_fid(draw(), reference, 100, rng) for _ in range(100)]
    intervals = [b.interval(0.9) for b in boots]

    assert np.mean([iv.standard_error for iv in intervals]) == pytest.approx(np.std(fresh), rel=0.2)
    assert np.mean([b.bootstrap_bias for b in boots]) == pytest.approx(np.mean(fresh) - population_fid, rel=0.25)
    coverage = np.mean([iv.contains(np.mean(fresh)) for iv in intervals])
    assert 0.78 <= coverage <= 0.98


def test_bootstrap_is_deterministic_given_a_seed():
    x = _random_features(np.random.default_rng(10), 200, 6, shift=0.2)
    ref = FIDStatistics(np.zeros(6), np.eye(6))
    first = bootstrap_fid(x, ref, 20, np.random.default_rng(11))
    again = bootstrap_fid(x, ref, 20, np.random.default_rng(11))
    other = bootstrap_fid(x, ref, 20, np.random.default_rng(12))
    np.testing.assert_array_equal(first.replicates, again.replicates)
    assert first.interval().to_dict() == again.interval().to_dict()
    assert not np.array_equal(first.replicates, other.replicates)


def test_bootstrap_results_serialise_to_json():
    boot = FIDBootstrap(fid=3.0, replicates=np.array([3.5, 3.1, 3.3, 3.9]), n_samples=100)
    d = json.loads(json.dumps(boot.to_dict(level=0.9, include_replicates=True)))
    assert d["replicates"] == [3.5, 3.1, 3.3, 3.9]
    assert d["bootstrap_bias"] == pytest.approx(np.mean([3.5, 3.1, 3.3, 3.9]) - 3.0)
    interval = Interval.from_dict(d["interval"])
    assert interval == boot.interval(0.9)
    # Recentred on the estimate: the interval is the replicates' deviations around 3.0.
    assert interval.low < 3.0 < interval.high


# --------------------------------------------------------------------------------------------------------
# Comparisons over seeds


def _paired_arms(rng, n_seeds, shift, seed_sd, sampling_sd, n_reps=50):
    """Arm A = arm B + shift in truth; each arm has its own seed effect and sampling noise, and replicates
    whose spread is the sampling SD (a stand-in for sample-bootstrap replicates)."""
    seeds = tuple(range(100, 100 + n_seeds))
    base = rng.normal(10.0, seed_sd, n_seeds)  # (S,) shared by both arms of a seed: the pairing
    fid_a = base + shift + rng.normal(0, seed_sd, n_seeds) + rng.normal(0, sampling_sd, n_seeds)
    fid_b = base + rng.normal(0, seed_sd, n_seeds) + rng.normal(0, sampling_sd, n_seeds)
    reps_a = fid_a[:, None] + rng.normal(0, sampling_sd, (n_seeds, n_reps))  # (S, B)
    reps_b = fid_b[:, None] + rng.normal(0, sampling_sd, (n_seeds, n_reps))  # (S, B)
    return ArmResults(seeds, fid_a, reps_a), ArmResults(seeds, fid_b, reps_b)


def test_constant_shift_with_small_noise_is_supported():
    a, b = _paired_arms(np.random.default_rng(13), n_seeds=3, shift=-0.5, seed_sd=0.02, sampling_sd=0.02)
    interval = paired_difference(a, b, 2000, np.random.default_rng(14))
    assert interval.contains(-0.5) and interval.high < 0
    assert interval.estimate == pytest.approx(np.mean(a.fids - b.fids))
    assert (interval.method, interval.n_seeds) == ("two-level bootstrap", 3)
    assert verdict(interval, "less") == "supported"
    assert verdict(interval, "greater") == "contradicted"


def test_single_seed_interval_is_the_sampling_noise():
    # One seed: no seed level, so the difference's SD is that of A's deviations minus B's, sqrt(2) sd_w.
    a, b = _paired_arms(np.random.default_rng(15), n_seeds=1, shift=-0.5, seed_sd=0.0, sampling_sd=0.1, n_reps=2000)
    interval = paired_difference(a, b, 4000, np.random.default_rng(16))
    assert interval.method == "sample bootstrap"
    assert interval.standard_error == pytest.approx(np.sqrt(2) * 0.1, rel=0.1)


def test_two_level_interval_covers_true_shift_with_many_seeds():
    # Seed noise dominant and 30 seeds: the regime where the percentile bootstrap is near nominal.
    rng = np.random.default_rng(17)
    hits = [paired_difference(*_paired_arms(rng, 30, -0.5, seed_sd=1.0, sampling_sd=0.1, n_reps=20),
                              400, rng, level=0.9).contains(-0.5) for _ in range(200)]
    assert 0.84 <= np.mean(hits) <= 0.96


def test_two_level_variance_double_counts_sampling_noise_as_documented():
    # No seed effect, S seeds: bootstrap variance ~ ((S-1)/S) sw2/S + sw2/S (module docstring), twice the
    # true sw2/S. Checked on one arm so the expectation is simple.
    n_seeds, sw = 400, 1.0
    rng = np.random.default_rng(18)
    fids = 5.0 + rng.normal(0, sw, n_seeds)
    arm = ArmResults(tuple(range(n_seeds)), fids, fids[:, None] + rng.normal(0, sw, (n_seeds, 200)))
    interval = mean_over_seeds(arm, 4000, np.random.default_rng(19))
    expected = np.sqrt(((n_seeds - 1) / n_seeds + 1) * sw**2 / n_seeds)
    assert interval.standard_error == pytest.approx(expected, rel=0.1)


def test_seed_bootstrap_without_replicates_matches_standard_error_of_mean():
    # Seeds only, many of them: the bootstrap SD of a mean is the plug-in SE, sd * sqrt((S-1)/S) / sqrt(S).
    rng = np.random.default_rng(20)
    fids = rng.normal(3.0, 0.5, 200)
    interval = mean_over_seeds(ArmResults(tuple(range(200)), fids), 4000, np.random.default_rng(21))
    assert interval.method == "seed bootstrap"
    assert interval.estimate == pytest.approx(np.mean(fids))
    expected = np.std(fids, ddof=0) / np.sqrt(len(fids))
    assert interval.standard_error == pytest.approx(expected, rel=0.05)


def test_paired_t_interval_matches_scipy():
    rng = np.random.default_rng(22)
    a = ArmResults((0, 1, 2), rng.normal(5, 1, 3))
    b = ArmResults((0, 1, 2), rng.normal(6, 1, 3))
    interval = paired_t_interval(a, b, level=0.9)
    expected = scipy_stats.ttest_rel(a.fids, b.fids).confidence_interval(confidence_level=0.9)
    assert (interval.low, interval.high) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert interval.n_seeds == 3


def test_pairing_replicates_narrows_the_interval_when_arms_share_sampling_noise():
    """Arms whose samples share labels and uniforms, resampled with the same indices: replicate j of A and of
    B carry the same shared deviation (SD 1) plus their own (SD 0.3). Paired, the shared part cancels and the
    difference's SD is sqrt(2) * 0.3; drawn independently it is sqrt(2) * sqrt(1 + 0.09)."""
    rng = np.random.default_rng(30)
    shared = rng.normal(0, 1.0, (1, 4000))  # (S=1, B)
    a = ArmResults((0,), [10.0], 10.0 + shared + rng.normal(0, 0.3, (1, 4000)))
    b = ArmResults((0,), [11.0], 11.0 + shared + rng.normal(0, 0.3, (1, 4000)))
    paired = paired_difference(a, b, 4000, np.random.default_rng(31), paired_replicates=True)
    independent = paired_difference(a, b, 4000, np.random.default_rng(31))
    assert paired.standard_error == pytest.approx(np.sqrt(2) * 0.3, rel=0.1)
    assert independent.standard_error == pytest.approx(np.sqrt(2 * 1.09), rel=0.1)
    assert paired.high - paired.low < 0.35 * (independent.high - independent.low)
    assert paired.estimate == independent.estimate == pytest.approx(-1.0)
    assert verdict(paired, "less") == "supported" and verdict(independent, "less") == "inconclusive"
    with pytest.raises(ValueError, match="same number of replicates"):
        paired_difference(a, ArmResults((0,), [11.0], np.ones((1, 5))), 10, np.random.default_rng(0),
                          paired_replicates=True)


def test_paired_difference_is_deterministic_given_a_seed():
    a, b = _paired_arms(np.random.default_rng(23), n_seeds=3, shift=-0.2, seed_sd=0.3, sampling_sd=0.1)
    first = paired_difference(a, b, 500, np.random.default_rng(24)).to_dict()
    assert first == paired_difference(a, b, 500, np.random.default_rng(24)).to_dict()
    assert first != paired_difference(a, b, 500, np.random.default_rng(25)).to_dict()


def test_arms_must_be_paired_and_alike():
    with_reps = ArmResults((0, 1), [1.0, 2.0], np.ones((2, 5)))
    with pytest.raises(ValueError, match="seeds differ"):
        paired_difference(with_reps, ArmResults((0, 2), [1.0, 2.0], np.ones((2, 5))), 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="both arms"):
        paired_difference(with_reps, ArmResults((0, 1), [1.0, 2.0]), 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="one seed without bootstrap replicates"):
        paired_difference(ArmResults((0,), [1.0]), ArmResults((0,), [2.0]), 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="repeated seeds"):
        ArmResults((0, 0), [1.0, 2.0])


def test_arm_from_bootstraps_keeps_fids_and_replicates():
    boots = [FIDBootstrap(2.0, np.array([2.1, 2.3]), 10), FIDBootstrap(3.0, np.array([2.9, 3.2]), 10)]
    arm = arm_from_bootstraps([7, 8], boots)
    assert arm.seeds == (7, 8)
    np.testing.assert_array_equal(arm.fids, [2.0, 3.0])
    np.testing.assert_allclose(arm.deviations, [[-0.1, 0.1], [-0.15, 0.15]])


# --------------------------------------------------------------------------------------------------------
# Verdicts


@pytest.mark.parametrize("low, high, claimed, expected", [
    (-2.0, -0.5, "less", "supported"),
    (0.5, 2.0, "less", "contradicted"),
    (-1.0, 1.0, "less", "inconclusive"),
    (-1.0, 0.0, "less", "inconclusive"),  # touching 0 is not strictly on the claimed side
    (0.5, 2.0, "greater", "supported"),
    (-2.0, -0.5, "greater", "contradicted"),
])
def test_verdict(low, high, claimed, expected):
    assert verdict(_interval(low, high), claimed) == expected


def test_verdict_against_a_nonzero_null_and_bad_side():
    assert verdict(_interval(0.5, 0.9), "less", null=1.0) == "supported"
    with pytest.raises(ValueError, match="'less' or 'greater'"):
        verdict(_interval(0.5, 0.9), "lower")


def test_monotonic_trend():
    below, above, straddle = _interval(-2.0, -1.0), _interval(1.0, 2.0), _interval(-1.0, 1.0)
    assert monotonic_trend([below, below, below], "decreasing") == "supported"
    assert monotonic_trend([below, straddle, below], "decreasing") == "inconclusive"
    assert monotonic_trend([below, straddle, above], "decreasing") == "contradicted"
    assert monotonic_trend([above, above], "increasing") == "supported"
    assert monotonic_trend([above, below], "increasing") == "contradicted"


def test_trend_verdict_and_consecutive_t_intervals():
    assert trend_verdict(["supported", "supported"]) == "supported"
    assert trend_verdict(["supported", "inconclusive"]) == "inconclusive"
    assert trend_verdict(["inconclusive", "contradicted"]) == "contradicted"
    seeds = (0, 1, 2)
    arms = [ArmResults(seeds, [10.0, 10.5, 9.5]), ArmResults(seeds, [9.0, 9.4, 8.6]), ArmResults(seeds, [8.0, 8.5, 7.4])]
    checks = consecutive_t_intervals(arms)
    assert [c.method for c in checks] == ["paired t", "paired t"]
    assert [c.estimate for c in checks] == pytest.approx([np.mean([-1.0, -1.1, -0.9]), np.mean([-1.0, -0.9, -1.2])])


def test_consecutive_differences_follow_arm_order():
    # FID falls by 1 per step with tiny noise: every difference (next minus previous) is about -1.
    rng = np.random.default_rng(26)
    seeds = (0, 1, 2)
    arms = [ArmResults(seeds, 10.0 - k + rng.normal(0, 0.01, 3), 10.0 - k + rng.normal(0, 0.01, (3, 20)))
            for k in range(4)]
    differences = consecutive_differences(arms, 500, np.random.default_rng(27))
    assert [d.estimate for d in differences] == pytest.approx([-1.0] * 3, abs=0.05)
    assert monotonic_trend(differences, "decreasing") == "supported"
    assert monotonic_trend(consecutive_differences(arms[::-1], 500, np.random.default_rng(27)),
                           "decreasing") == "contradicted"


# --------------------------------------------------------------------------------------------------------
# Benchmark scores and timings


def test_group_mean_replicates_have_the_binomial_spread_per_group():
    """GenEval's overall = mean over tags of a fraction correct: with G tags of n images each at rate p_g,
    its sampling SD is sqrt(sum_g p_g (1 - p_g) / n) / G."""
    rng = np.random.default_rng(0)
    rates, n = (0.9, 0.5, 0.2), 400
    groups = [(rng.random(n) < p).astype(float) for p in rates]
    reps = bootstrap_group_means(groups, 4000, np.random.default_rng(1))
    observed = [g.mean() for g in groups]
    want_sd = np.sqrt(sum(p * (1 - p) / n for p in observed)) / len(rates)
    assert np.mean(reps) == pytest.approx(np.mean(observed), abs=3 * want_sd / np.sqrt(4000) + 1e-3)
    assert np.std(reps) == pytest.approx(want_sd, rel=0.08)


def test_group_mean_of_constant_groups_has_no_spread_and_keeps_group_weights():
    reps = bootstrap_group_means([[1.0], [0.0, 0.0, 0.0]], 50, np.random.default_rng(0))
    assert np.all(reps == 0.5)  # a mean of group means, not of the pooled values (0.25)
    with pytest.raises(ValueError):
        bootstrap_group_means([[]], 10, np.random.default_rng(0))
