"""The sampling noise of one evaluation: FID's sample bootstrap, and the same for benchmark scores.

Another N samples from the same model would give another FID. `bootstrap_fid` estimates that noise by
resampling the N sample feature vectors with replacement (the reference is held fixed, as it is in every
evaluation) and recomputing FID, so even a one-seed run reports an interval. Paired comparisons over seeds,
which add these replicates to the seed-to-seed spread, are in `tensorar.evaluation.statistics`.

Estimates
---------
`FIDBootstrap.interval`: FID of all N samples, with a percentile interval of the replicate FIDs after they
  are recentred on that FID. FID is biased upward by O(D/N) (Chong & Forsyth 2020, "Effectively unbiased
  FID"), and a resample (about 0.632 N distinct points) carries that bias a second time, so raw replicates
  sit above the point estimate. Recentring makes the interval describe the spread of FID-N around the
  reported number, the quantity the paper's FID-50k is one draw of; the shift is kept as `bootstrap_bias`.
  In a synthetic check at the paper's D/N ~ 0.04 (16-d, N = 400), nominal 90% intervals covered E[FID-N]
  88% of the time recentred, 47% raw.
`bootstrap_group_means(groups)`: sampling noise of a benchmark score that is a mean of per-group means
  (GenEval: mean over tags of the fraction of correct images; DPG-Bench: one group, the mean per-prompt
  score): replicates resample each group's values with replacement. They enter `ArmResults` as FID's
  replicates do, so every comparison in `tensorar.evaluation.statistics` works on benchmark scores too.

Limits: the bootstrap treats the N samples as i.i.d. draws from the model; class-conditional samples drawn
with a fixed number per class are resampled without that stratification, which slightly overstates the noise.

Cost of one replicate
---------------------
Everything a replicate shares is computed once: the reference's symmetric square root A (one `eigh`), and
the centred features Xc and Z = Xc A. Multinomial resampling is a count vector w (sum N); the replicate's
mean and covariance are weighted moments of Xc and Z, and tr sqrtm(S_ref S) comes from the eigenvalues of
A S A (similar to S_ref S), so a replicate is one weighted Gram matrix over the ~0.632 N rows with w > 0
(a BLAS syrk, O(0.632 N D^2)) plus one symmetric eigenvalue solve (O(D^3)), and no `sqrtm`.
The measured cost at paper scale (D = 2048, N = 50,000) is in benchmarks/README.md ("The FID bootstrap").
Memory: Xc (float64) and Z (dtype), 2 x N x D values, ~1.6 GB at paper scale.

Everything random takes a `numpy.random.Generator`, so results are deterministic given its seed.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.linalg import blas

from tensorar.evaluation.adm import FIDStatistics
from tensorar.evaluation.statistics import ArmResults, Interval, percentiles


# --------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class FIDBootstrap:
    """FID of one sample set and its sample-bootstrap replicates (same reference, resampled samples)."""

    fid: float  # FID of all N samples
    replicates: np.ndarray  # (B,) FID of each resample
    n_samples: int

    @property
    def bootstrap_bias(self) -> float:
        # Mean replicate minus the estimate: the O(D/N) FID bias counted once more by resampling.
        return float(np.mean(self.replicates) - self.fid)

    @property
    def deviations(self) -> np.ndarray:
        """(B,) replicates minus their mean: draws of the sampling error, centred (see module docstring)."""
        return self.replicates - np.mean(self.replicates)

    def interval(self, level: float = 0.95) -> Interval:
        low, high = self.fid + percentiles(self.deviations, level)
        return Interval(self.fid, float(low), float(high), level, "sample bootstrap", n_seeds=1,
                        n_boot=len(self.replicates), standard_error=float(np.std(self.replicates, ddof=1)))

    def to_dict(self, level: float = 0.95, include_replicates: bool = False) -> dict:
        d = {"fid": float(self.fid), "n_samples": int(self.n_samples), "bootstrap_bias": self.bootstrap_bias,
             "interval": self.interval(level).to_dict()}
        if include_replicates:
            d["replicates"] = [float(r) for r in self.replicates]
        return d


def arm_from_bootstraps(seeds: Sequence[int], bootstraps: Sequence[FIDBootstrap]) -> ArmResults:
    """One arm of a comparison from its seeds' sample bootstraps (seed s's FID and replicates in row s)."""
    if len({len(b.replicates) for b in bootstraps}) > 1:
        raise ValueError("every seed needs the same number of bootstrap replicates")
    return ArmResults(tuple(seeds), np.array([b.fid for b in bootstraps]),
                      np.stack([b.replicates for b in bootstraps]))


# --------------------------------------------------------------------------------------------------------
# Fréchet distance through eigenvalues


def symmetric_sqrt(sigma: np.ndarray) -> np.ndarray:
    """The PSD square root of a symmetric PSD matrix, from `eigh` (round-off negatives clipped to 0)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    eigvals, eigvecs = np.linalg.eigh((sigma + sigma.T) / 2)  # (D,), (D, D)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0, None))) @ eigvecs.T  # (D, D)


def _trace_sqrt(m: np.ndarray, lower: bool = True) -> float:
    """sum_i sqrt(lambda_i) of a symmetric PSD matrix, reading one triangle."""
    eigvals = linalg.eigvalsh(m, lower=lower, check_finite=False, driver="evd")  # (D,)
    return float(np.sum(np.sqrt(np.clip(eigvals, 0, None))))


@dataclass(frozen=True, eq=False)
class FrechetReference:
    """Reference statistics prepared for many Fréchet distances: A = sqrt(S_ref) is computed once.

    tr sqrtm(S S_ref) = sum_i sqrt(lambda_i(A S A)): S S_ref = (S A) A and A (S A) have the same
    eigenvalues (XY and YX always do, singular or not), and A S A is symmetric PSD, so they are real and
    >= 0 up to round-off. One `eigvalsh` replaces `scipy.linalg.sqrtm`.
    """

    mu: np.ndarray  # (D,)
    sigma_sqrt: np.ndarray  # (D, D)
    trace_sigma: float

    @classmethod
    def from_statistics(cls, stats: FIDStatistics) -> FrechetReference:
        sigma = np.atleast_2d(np.asarray(stats.sigma, dtype=np.float64))
        return cls(np.atleast_1d(np.asarray(stats.mu, dtype=np.float64)), symmetric_sqrt(sigma),
                   float(np.trace(sigma)))

    @property
    def dim(self) -> int:
        return len(self.mu)

    def distance(self, stats: FIDStatistics) -> float:
        """Fréchet distance of `stats` to the reference; `FIDStatistics.frechet_distance` without sqrtm."""
        mu = np.atleast_1d(np.asarray(stats.mu, dtype=np.float64))
        sigma = np.atleast_2d(np.asarray(stats.sigma, dtype=np.float64))
        if mu.shape != self.mu.shape or sigma.shape != self.sigma_sqrt.shape:
            raise ValueError(f"statistics of different feature sizes: mu {mu.shape} vs reference {self.mu.shape}")
        diff = mu - self.mu
        inner = self.sigma_sqrt @ sigma @ self.sigma_sqrt  # (D, D)
        return float(diff @ diff + np.trace(sigma) + self.trace_sigma - 2 * _trace_sqrt((inner + inner.T) / 2))


def frechet_distance_eig(sample: FIDStatistics, reference: FIDStatistics) -> float:
    """`sample.frechet_distance(reference)` through eigenvalues (see `FrechetReference`)."""
    return FrechetReference.from_statistics(reference).distance(sample)


# --------------------------------------------------------------------------------------------------------
# Sample bootstrap of one FID


def resample_counts(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) how often each of n rows is drawn in a resample of size n: Multinomial(n, 1/n each).

    Drawn as the counts of `rng.integers(0, n, n)`, so a test can rebuild the resampled rows themselves.
    """
    return np.bincount(rng.integers(0, n, size=n), minlength=n)


class FIDResampler:
    """FID of weighted resamples of one feature set against fixed reference statistics.

    With counts w (sum N), the resample's mean and `np.cov` (denominator N - 1, as ADM) are
        m_w = c + Xc^T w / N,   S_w = (Xc^T W Xc - N (m_w - c)(m_w - c)^T) / (N - 1),
    with c the full sample mean and Xc = X - c (centring keeps the subtraction well conditioned). The
    trace term needs only tr S_w, from the row norms of Xc; the cross term needs A S_w A, the same
    formula on Z = Xc A. So one replicate is a Gram matrix of Z over the rows with w > 0, scaled by
    sqrt(w), and one `eigvalsh` (cost in the module docstring).
    """

    def __init__(self, features: np.ndarray, reference: FrechetReference | FIDStatistics,
                 dtype: type[np.floating] = np.float64):
        if isinstance(reference, FIDStatistics):
            reference = FrechetReference.from_statistics(reference)
        x = np.asarray(features, dtype=np.float64)  # (N, D)
        if x.ndim != 2 or x.shape[1] != reference.dim:
            raise ValueError(f"features {x.shape} do not match reference dimension {reference.dim}")
        if len(x) < 2:
            raise ValueError("need at least 2 samples for a covariance")
        self.reference = reference
        self.n = len(x)
        self.center = x.mean(axis=0)  # (D,)
        self.xc = x - self.center  # (N, D)
        self.sq_norms = np.einsum("nd,nd->n", self.xc, self.xc)  # (N,)
        self.z = np.ascontiguousarray((self.xc @ reference.sigma_sqrt).astype(dtype))  # (N, D)
        self._syrk, self._syr = blas.get_blas_funcs(("syrk", "syr"), (self.z,))

    def fid(self, counts: np.ndarray | None = None) -> float:
        """FID of the resample with these counts (None: every row once, i.e. the plain FID)."""
        n = self.n
        w = np.ones(n) if counts is None else np.asarray(counts, dtype=np.float64)  # (N,)
        if w.shape != (n,) or not np.isclose(w.sum(), n):
            raise ValueError(f"counts must be ({n},) summing to {n}")
        shift = (w @ self.xc) / n  # (D,)  m_w - c
        diff = self.center + shift - self.reference.mu  # (D,)
        trace_sigma = (w @ self.sq_norms - n * shift @ shift) / (n - 1)

        keep = w > 0
        zw = self.z[keep]  # (N_kept, D), a copy (fancy indexing), scaled in place
        zw *= np.sqrt(w[keep]).astype(zw.dtype)[:, None]
        # syrk on the F-ordered (D, N_kept) view: Z_w^T Z_w, upper triangle only, half a gemm's work.
        gram = self._syrk(1.0, zw.T)  # (D, D) F-ordered, upper triangle valid
        zshift = shift @ self.reference.sigma_sqrt  # (D,)  = w^T Z / N, in float64 whatever Z's dtype
        # (N - 1) A S_w A = Z_w^T Z_w - N zshift zshift^T, as an in-place rank-one update of the triangle.
        gram = self._syr(-n, zshift.astype(gram.dtype), a=gram, lower=0, overwrite_a=1)
        eigvals = linalg.eigvalsh(gram.astype(np.float64, copy=False), lower=False, check_finite=False,
                                  overwrite_a=True, driver="evd")  # (D,)
        cross = float(np.sum(np.sqrt(np.clip(eigvals / (n - 1), 0, None))))
        return float(diff @ diff + trace_sigma + self.reference.trace_sigma - 2 * cross)


def bootstrap_fid(features: np.ndarray, reference: FrechetReference | FIDStatistics, n_replicates: int,
                  rng: np.random.Generator, dtype: type[np.floating] = np.float64) -> FIDBootstrap:
    """FID of `features` (N, D) against `reference`, with `n_replicates` multinomial-resample FIDs.

    The reference is not resampled: every evaluation uses the same fixed reference statistics, so its
    noise is common to all arms and cancels in comparisons. `fid` comes from the same eigen path, equal to
    ADM's to ~1e-9 relative on float64 features; for float32 features ADM takes the mean in float32, so
    the last digits can differ: tables should keep the evaluator's own FID as the reported number.
    """
    if n_replicates < 2:
        raise ValueError(f"n_replicates must be >= 2, got {n_replicates}")
    resampler = FIDResampler(features, reference, dtype=dtype)
    replicates = np.array([resampler.fid(resample_counts(rng, resampler.n)) for _ in range(n_replicates)])
    return FIDBootstrap(resampler.fid(), replicates, resampler.n)


def bootstrap_group_means(groups: Sequence[Sequence[float]], n_replicates: int,
                          rng: np.random.Generator) -> np.ndarray:
    """(n_replicates,) replicates of mean_g(mean(groups[g])), each group resampled with replacement on its
    own (its size kept), so each group's weight in the score stays what the benchmark gives it."""
    if n_replicates < 2:
        raise ValueError(f"n_replicates must be >= 2, got {n_replicates}")
    arrays = [np.asarray(g, dtype=np.float64) for g in groups]
    if not arrays or any(a.ndim != 1 or len(a) == 0 for a in arrays):
        raise ValueError("every group needs at least one value")
    means = np.empty((len(arrays), n_replicates))  # (G, B)
    for g, values in enumerate(arrays):
        picks = rng.integers(0, len(values), size=(n_replicates, len(values)))  # (B, n_g)
        means[g] = values[picks].mean(axis=1)
    return means.mean(axis=0)
