"""ADM evaluator metric math: parity with the unmodified TF evaluator, and closed-form checks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tensorar.evaluation.adm import (
    FIDStatistics,
    ManifoldEstimator,
    compute_statistics,
    inception_score,
    precision_recall,
)


def test_parity_with_adm_golden(adm_ref):
    arrays = np.load(adm_ref / "adm_golden_seed1.npz")
    golden = json.loads((adm_ref / "adm_golden_seed1.json").read_text())["adm"]

    fid = compute_statistics(arrays["sam"]).frechet_distance(compute_statistics(arrays["ref"]))
    sfid = compute_statistics(arrays["spat_sam"]).frechet_distance(compute_statistics(arrays["spat_ref"]))
    score = inception_score(arrays["logits"].astype(np.float32))
    precision, recall = precision_recall(arrays["ref"], arrays["sam"])

    assert fid == pytest.approx(golden["fid"], rel=1e-6)
    assert sfid == pytest.approx(golden["sfid"], rel=1e-6)
    assert score == pytest.approx(golden["inception_score"], rel=1e-6)
    assert precision == pytest.approx(golden["precision"], abs=0.005)
    assert recall == pytest.approx(golden["recall"], abs=0.005)


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    # For commuting covariances: ||mu1 - mu2||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    a, b = rng.uniform(0.5, 2.0, size=6), rng.uniform(0.5, 2.0, size=6)
    fid = FIDStatistics(mu1, np.diag(a)).frechet_distance(FIDStatistics(mu2, np.diag(b)))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_rejects_mismatched_feature_sizes():
    with pytest.raises(ValueError, match="different feature sizes"):
        FIDStatistics(np.zeros(3), np.eye(3)).frechet_distance(FIDStatistics(np.zeros(4), np.eye(4)))


def test_inception_score_bounds():
    num_classes = 8
    uniform = np.zeros((40, num_classes), dtype=np.float32)
    assert inception_score(uniform) == pytest.approx(1.0, rel=1e-6)
    # Confident and evenly spread over classes -> IS close to the number of classes.
    confident = np.full((40, num_classes), -30.0, dtype=np.float32)
    confident[np.arange(40), np.arange(40) % num_classes] = 30.0
    assert inception_score(confident) == pytest.approx(num_classes, rel=1e-4)


def test_inception_score_averages_contiguous_splits():
    # Split 1 is confident over 4 classes (IS 4), split 2 is uniform (IS 1): the mean is 2.5.
    confident = np.full((8, 4), -30.0, dtype=np.float32)
    confident[np.arange(8), np.arange(8) % 4] = 30.0
    logits = np.concatenate([confident, np.zeros((8, 4), dtype=np.float32)])
    assert inception_score(logits, split_size=8) == pytest.approx(2.5, rel=1e-4)


def test_manifold_radii_are_distance_to_kth_neighbour_and_blocking_invariant():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(23, 5)).astype(np.float32)
    sq = ((features[:, None] - features[None]) ** 2).sum(-1)  # (N, N), brute force in float32
    expected = np.sort(sq, axis=1)[:, 3]  # index 0 is the point itself
    radii = ManifoldEstimator(k=3).manifold_radii(features)
    np.testing.assert_allclose(radii, expected, rtol=5e-3, atol=5e-3)  # float16 distances
    blocked = ManifoldEstimator(k=3, row_batch_size=7, col_batch_size=5).manifold_radii(features)
    np.testing.assert_array_equal(blocked, radii)


def test_precision_recall_blocking_invariant():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(30, 4)).astype(np.float32)
    sam = (rng.normal(size=(26, 4)) * 1.5 + 0.5).astype(np.float32)
    whole = ManifoldEstimator()
    blocked = ManifoldEstimator(row_batch_size=7, col_batch_size=4)
    pr_whole = whole.evaluate_pr(ref, whole.manifold_radii(ref), sam, whole.manifold_radii(sam))
    pr_blocked = blocked.evaluate_pr(ref, blocked.manifold_radii(ref), sam, blocked.manifold_radii(sam))
    assert pr_whole == pr_blocked
    assert 0.0 < pr_whole[0] < 1.0 and 0.0 < pr_whole[1] <= 1.0


def test_precision_recall_identical_and_disjoint_sets():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(50, 8)).astype(np.float32)
    assert precision_recall(features, features) == (1.0, 1.0)
    assert precision_recall(features, features + 100.0) == (0.0, 0.0)


def test_precision_recall_falls_back_to_float32_when_float16_overflows():
    # Squared norms ~1e8 overflow float16 (max 65504); ADM then recomputes the block in float32.
    rng = np.random.default_rng(4)
    features = (rng.normal(size=(40, 16)) * 3000.0).astype(np.float32)
    assert precision_recall(features, features) == (1.0, 1.0)
    assert precision_recall(features, features + 1e5) == (0.0, 0.0)
