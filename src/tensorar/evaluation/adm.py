"""The metric math of ADM's evaluator (openai/guided-diffusion, evaluations/evaluator.py), without TensorFlow.

Every paper in this line (ADM, DiT, LlamaGen, TensorAR) reports numbers from that script, so the
choices below follow it, including the ones that look arbitrary:
- FID / sFID: mean and `np.cov(rowvar=False)` of the features, `scipy.linalg.sqrtm` of the product of
  covariances, retried with 1e-6 on the diagonals when the product is near singular.
- Inception Score: float32 softmax of the logits, contiguous splits of 5000, mean (not geometric mean)
  of the per-split scores.
- Precision / recall (Kynkäänniemi et al. 2019): k=3 nearest-neighbour balls, squared distances computed
  in float16 (float32 only when float16 overflows), in 10000 x 10000 blocks.
Features come in as float32 numpy arrays (N, D), one row per image.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import linalg


@dataclass(frozen=True)
class FIDStatistics:
    mu: np.ndarray  # (D,)
    sigma: np.ndarray  # (D, D)

    def frechet_distance(self, other: FIDStatistics, eps: float = 1e-6) -> float:
        """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), as TTUR / ADM compute it."""
        mu1, mu2 = np.atleast_1d(self.mu), np.atleast_1d(other.mu)
        sigma1, sigma2 = np.atleast_2d(self.sigma), np.atleast_2d(other.sigma)
        if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
            raise ValueError(
                f"statistics of different feature sizes: mu {mu1.shape} vs {mu2.shape}, "
                f"sigma {sigma1.shape} vs {sigma2.shape} (reference stats from another feature network?)"
            )
        diff = mu1 - mu2
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            # The product is near singular (e.g. fewer images than feature dims): regularise both factors.
            warnings.warn(f"FID: singular covariance product; adding {eps} to the diagonals")
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
        # sqrtm of a product of PSD matrices is real in exact arithmetic; round-off can leave a small
        # imaginary part, which is dropped unless it is large enough to signal a real problem.
        if np.iscomplexobj(covmean):
            if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
                raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag))}")
            covmean = covmean.real
        return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def compute_statistics(features: np.ndarray) -> FIDStatistics:
    # ADM takes the mean in the features' dtype (float32) and the covariance in float64 (np.cov upcasts).
    return FIDStatistics(mu=np.mean(features, axis=0), sigma=np.cov(features, rowvar=False))


def inception_score(logits: np.ndarray, split_size: int = 5000) -> float:
    """Mean over contiguous splits of exp(E_x KL(p(y|x) || p(y))), from float32 softmax probabilities."""
    preds = torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=1).numpy()  # (N, C)
    scores = []
    for start in range(0, len(preds), split_size):
        part = preds[start : start + split_size]  # (n, C)
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))  # (n, C)
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores))


class ManifoldEstimator:
    """k-NN manifold of a feature set (improved precision / recall), in ADM's blocked float16 form.

    `device` only says where the distance blocks are computed: at paper scale (50k x 10k x 2048) use a GPU,
    float16 matmuls are slow on CPUs. Inputs and outputs stay numpy.
    """

    def __init__(self, k: int = 3, row_batch_size: int = 10000, col_batch_size: int = 10000,
                 device: str | torch.device = "cpu"):
        self.k = k
        self.row_batch_size = row_batch_size
        self.col_batch_size = col_batch_size
        self.device = torch.device(device)

    def _distances(self, u: np.ndarray, v: np.ndarray) -> torch.Tensor:
        """Squared distances (n, m) as float32 values, computed in float16 like ADM's TF graph."""
        u32 = torch.from_numpy(np.asarray(u, dtype=np.float32)).to(self.device)  # (n, D)
        v32 = torch.from_numpy(np.asarray(v, dtype=np.float32)).to(self.device)  # (m, D)
        d = _pairwise_sq_distances(u32.half(), v32.half())  # (n, m)
        if not torch.isfinite(d).all():
            # float16 overflowed (features with large norms): ADM falls back to float32 for the block.
            return _pairwise_sq_distances(u32, v32)
        return d.float()

    def manifold_radii(self, features: np.ndarray) -> np.ndarray:
        """(N,) squared radius of each point's ball: distance to its k-th neighbour (index k, self is 0)."""
        if len(features) <= self.k:
            raise ValueError(f"precision/recall needs more than k={self.k} images per set, got {len(features)}")
        radii = np.zeros(len(features), dtype=np.float32)
        for r0 in range(0, len(features), self.row_batch_size):
            rows = features[r0 : r0 + self.row_batch_size]
            # The (k+1) smallest of each column block contain the (k+1) smallest overall, so memory stays
            # at one block instead of ADM's full (rows, N) distance matrix; the values are the same.
            candidates = []
            for c0 in range(0, len(features), self.col_batch_size):
                d = self._distances(rows, features[c0 : c0 + self.col_batch_size])  # (rows, cols)
                candidates.append(d.topk(min(self.k + 1, d.shape[1]), dim=1, largest=False).values)
            nearest = torch.cat(candidates, dim=1).sort(dim=1).values  # (rows, <=(k+1)*blocks)
            radii[r0 : r0 + len(rows)] = nearest[:, self.k].cpu().numpy()
        return radii

    def evaluate_pr(self, features_1: np.ndarray, radii_1: np.ndarray,
                    features_2: np.ndarray, radii_2: np.ndarray) -> tuple[float, float]:
        """(fraction of set 2 inside some ball of set 1, fraction of set 1 inside some ball of set 2).

        With set 1 = reference and set 2 = samples these are (precision, recall).
        """
        status_1 = np.zeros(len(features_1), dtype=bool)
        status_2 = np.zeros(len(features_2), dtype=bool)
        for b1 in range(0, len(features_1), self.row_batch_size):
            e1 = b1 + self.row_batch_size
            r1 = torch.from_numpy(radii_1[b1:e1]).to(self.device)  # (n1,)
            for b2 in range(0, len(features_2), self.col_batch_size):
                e2 = b2 + self.col_batch_size
                r2 = torch.from_numpy(radii_2[b2:e2]).to(self.device)  # (n2,)
                d = self._distances(features_1[b1:e1], features_2[b2:e2])  # (n1, n2)
                status_1[b1:e1] |= (d <= r2[None, :]).any(dim=1).cpu().numpy()
                status_2[b2:e2] |= (d <= r1[:, None]).any(dim=0).cpu().numpy()
        return float(status_2.mean()), float(status_1.mean())


def _pairwise_sq_distances(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # |u|^2 - 2 u.v + |v|^2, clamped at 0, all in the inputs' dtype (ADM's _batch_pairwise_distances).
    norm_u = (u * u).sum(dim=1, keepdim=True)  # (n, 1)
    norm_v = (v * v).sum(dim=1, keepdim=True).T  # (1, m)
    return (norm_u - 2 * (u @ v.T) + norm_v).clamp_min(0)  # (n, m)


def precision_recall(ref_features: np.ndarray, sample_features: np.ndarray, k: int = 3,
                     device: str | torch.device = "cpu") -> tuple[float, float]:
    """ADM's `compute_prec_recall`: (precision, recall) of samples against the reference set."""
    estimator = ManifoldEstimator(k=k, device=device)
    radii_ref = estimator.manifold_radii(ref_features)
    radii_sample = estimator.manifold_radii(sample_features)
    return estimator.evaluate_pr(ref_features, radii_ref, sample_features, radii_sample)
