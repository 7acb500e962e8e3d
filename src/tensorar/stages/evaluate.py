"""ADM-compatible evaluation of a sample batch against a reference batch.

    python -m tensorar evaluate REF.npz SAMPLE.npz --out METRICS.json \\
        --features inception --inception-weights weights-inception-2015-12-05-6726825d.pth
    python -m tensorar evaluate REF.npz SAMPLE.npz --out METRICS.json --features toy --classifier CLS.pt

Both files are ADM batches (`arr_0`: uint8 N x H x W x 3). Like ADM's evaluator.py, a batch that carries
precomputed `mu`, `sigma`, `mu_s`, `sigma_s` (ADM's released reference batches do) uses those for FID /
sFID; its images are still read for precision / recall. Prints ADM's five lines on stdout and writes
METRICS.json with the metrics, the feature network, the image counts and both files' sha256.

`--bootstrap B` (ours) adds FID's sampling noise: B replicates of FID over the samples resampled with
replacement, against the same reference (tensorar.evaluation.sample_bootstrap.bootstrap_fid), stored as
`fid_bootstrap` (replicates and a 95% interval); the reported `fid` is unchanged.
"""
from __future__ import annotations

import argparse
import contextlib
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from tensorar.distributed import get_logger
from tensorar.errors import InputError, run_stage
from tensorar.evaluation.adm import (
    FIDStatistics,
    compute_statistics,
    inception_score,
    precision_recall,
)
from tensorar.evaluation.features import FeatureExtractor
from tensorar.evaluation.inception import tf32_disabled
from tensorar.evaluation.sample_bootstrap import bootstrap_fid
from tensorar.fileio import atomic_write_json, sha256_file
from tensorar.evaluation.options import BootstrapOptions, FeatureOptions
from tensorar.options import add_arguments, from_arguments
from tensorar.toy.features import build_feature_extractor

IMAGES_KEY = "arr_0"


@contextlib.contextmanager
def _images_member(path: str | Path):
    """The open `arr_0.npy` of an ADM batch, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample or reference batch not found: {path}")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InputError(f"{path} is not an .npz file (not a zip archive): expected an ADM batch with "
                         f"{IMAGES_KEY} = uint8 N x H x W x 3 (tensorar sample writes one)") from None
    with zf:
        if f"{IMAGES_KEY}.npy" not in zf.namelist():
            raise InputError(f"{path} holds no {IMAGES_KEY} (arrays: {', '.join(zf.namelist()) or 'none'}): "
                             "an ADM batch keeps its images there")
        with zf.open(f"{IMAGES_KEY}.npy") as f:
            yield f


def npz_image_count(path: str | Path) -> int:
    with _images_member(path) as f:
        return _npy_header(f)[0][0]


def iter_npz_images(path: str | Path, batch_size: int) -> Iterator[np.ndarray]:
    """Stream `arr_0` in (b, H, W, 3) uint8 batches without loading it whole (50k 256px images are 10 GB)."""
    with _images_member(path) as f:
        shape, fortran_order, dtype = _npy_header(f)
        if dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or fortran_order:
            raise InputError(f"{path}: {IMAGES_KEY} must be a C-ordered uint8 N x H x W x 3 array, "
                             f"got {dtype} {shape}")
        if shape[0] < 2:
            raise InputError(f"{path} holds {shape[0]} image(s): FID needs at least 2")
        image_bytes = int(np.prod(shape[1:]))
        for start in range(0, shape[0], batch_size):
            n = min(batch_size, shape[0] - start)
            yield np.frombuffer(f.read(n * image_bytes), dtype=np.uint8).reshape(n, *shape[1:])  # (n, H, W, 3)


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def compute_features(path: str | Path, extractor: FeatureExtractor, batch_size: int = 64,
                     progress: bool = True) -> dict[str, np.ndarray]:
    """{"pool", "logits", "spatial"} float32 arrays (N, D) for every image of an ADM batch."""
    chunks: dict[str, list[np.ndarray]] = {"pool": [], "logits": [], "spatial": []}
    total = -(-npz_image_count(path) // batch_size)
    for images in tqdm(iter_npz_images(path, batch_size), total=total, desc=Path(path).name, disable=not progress):
        features = extractor(torch.from_numpy(images.copy()))  # copy: frombuffer arrays are read-only
        for key in chunks:
            chunks[key].append(features[key].float().numpy())
    return {key: np.concatenate(parts) for key, parts in chunks.items()}


def fid_statistics(path: str | Path, features: dict[str, np.ndarray]) -> tuple[FIDStatistics, FIDStatistics, bool]:
    """(pool stats, spatial stats, precomputed?): the batch's own `mu`/`sigma`/`mu_s`/`sigma_s` when present."""
    with np.load(path) as npz:
        if "mu" in npz.files:
            pool = FIDStatistics(npz["mu"], npz["sigma"])
            spatial = FIDStatistics(npz["mu_s"], npz["sigma_s"])
            return pool, spatial, True
    return compute_statistics(features["pool"]), compute_statistics(features["spatial"]), False


def evaluate(ref_path: str | Path, sample_path: str | Path, extractor: FeatureExtractor, *,
             batch_size: int = 64, device: str | torch.device = "cpu", progress: bool = True,
             bootstrap: int = 0, bootstrap_seed: int = 0) -> dict:
    """ADM's five metrics of `sample_path` against `ref_path`, plus provenance for METRICS.json (and, with
    `bootstrap` replicates, FID's sample-bootstrap)."""
    with tf32_disabled():
        ref = compute_features(ref_path, extractor, batch_size, progress)
        sample = compute_features(sample_path, extractor, batch_size, progress)
        ref_stats, ref_stats_spatial, ref_precomputed = fid_statistics(ref_path, ref)
        sample_stats, sample_stats_spatial, _ = fid_statistics(sample_path, sample)
        for path, stats in ((ref_path, ref_stats), (ref_path, ref_stats_spatial), (sample_path, sample_stats),
                            (sample_path, sample_stats_spatial)):
            if not (np.isfinite(stats.mu).all() and np.isfinite(stats.sigma).all()):
                raise InputError(f"{path}: its feature statistics (mu / sigma) are not finite: the images or "
                                 "the stored statistics are broken; a FID from them would be meaningless")
        precision, recall = precision_recall(ref["pool"], sample["pool"], device=device)
    extra = {}
    if bootstrap:
        replicates = bootstrap_fid(sample["pool"], ref_stats, bootstrap, np.random.default_rng(bootstrap_seed))
        extra["fid_bootstrap"] = {**replicates.to_dict(include_replicates=True), "seed": bootstrap_seed}
    return {
        "inception_score": inception_score(sample["logits"]),
        "fid": sample_stats.frechet_distance(ref_stats),
        "sfid": sample_stats_spatial.frechet_distance(ref_stats_spatial),
        "precision": precision,
        "recall": recall,
        "feature_network": extractor.name,
        "comparable_with_paper": extractor.comparable_with_paper,
        "num_reference": len(ref["pool"]),
        "num_samples": len(sample["pool"]),
        "reference_stats": "precomputed" if ref_precomputed else "computed",
        "reference": str(ref_path),
        "samples": str(sample_path),
        "reference_sha256": sha256_file(ref_path),
        "samples_sha256": sha256_file(sample_path),
        **extra,
    }


def format_adm_lines(metrics: dict) -> str:
    """The five lines ADM's evaluator.py prints, in its order and wording."""
    return "\n".join([
        f"Inception Score: {metrics['inception_score']}",
        f"FID: {metrics['fid']}",
        f"sFID: {metrics['sfid']}",
        f"Precision: {metrics['precision']}",
        f"Recall: {metrics['recall']}",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref_batch", help="reference batch .npz (arr_0 uint8 NHWC, optional mu/sigma/mu_s/sigma_s)")
    parser.add_argument("sample_batch", help="sample batch .npz (arr_0 uint8 NHWC)")
    parser.add_argument("--out", required=True, help="METRICS.json")
    add_arguments(parser.add_argument_group("feature network (FeatureOptions)"), FeatureOptions)
    add_arguments(parser.add_argument_group("FID's sample bootstrap (BootstrapOptions)"), BootstrapOptions)
    args = parser.parse_args(argv)
    features, boot = from_arguments(parser, args, FeatureOptions), from_arguments(parser, args, BootstrapOptions)

    device = ("cuda" if torch.cuda.is_available() else "cpu") if features.device == "auto" else features.device
    logger = get_logger("evaluate")
    extractor = build_feature_extractor(features.features, inception_weights=features.inception_weights,
                                        classifier=features.classifier, device=device)
    logger.info(f"features: {extractor.name}; reference {args.ref_batch}; samples {args.sample_batch}")
    metrics = evaluate(args.ref_batch, args.sample_batch, extractor, batch_size=features.batch_size, device=device,
                       bootstrap=boot.bootstrap, bootstrap_seed=boot.bootstrap_seed)
    print(format_adm_lines(metrics), flush=True)
    atomic_write_json(args.out, metrics)
    logger.info(f"wrote {args.out}")


if __name__ == "__main__":
    run_stage(main)
