"""The typed options of the scoring stages (evaluate, score_benchmark): which feature network, and the
sample bootstrap (ours). Their flags are derived from these fields and the workflow's argument lists are
written from them (plan/jobs.py), so each default is stated here once."""
from __future__ import annotations

from dataclasses import dataclass

from tensorar.options import check_fields, option


@dataclass(frozen=True, kw_only=True)
class BootstrapOptions:
    """Sampling noise of a score (ours): replicates with the samples resampled with replacement
    (tensorar.evaluation.sample_bootstrap)."""

    bootstrap: int = option(0, "sample-bootstrap replicates (0: none, else at least 2; ours)", min=0)
    bootstrap_seed: int = option(0, "seed of the bootstrap's resampling")

    def __post_init__(self):
        check_fields(self)
        if self.bootstrap == 1:
            raise ValueError("--bootstrap takes 0 (none) or at least 2 replicates")


@dataclass(frozen=True, kw_only=True)
class FeatureOptions:
    """The network whose features FID, sFID, IS, precision and recall are computed on."""

    features: str = option("inception", "inception (ADM's; comparable with the paper) or toy (ours)",
                           choices=("inception", "toy"))
    inception_weights: str | None = option(None, "weights-inception-2015-12-05-6726825d.pth (torch-fidelity)")
    classifier: str | None = option(None, "CLS.pt from `tensorar train_classifier` (for --features toy)")
    batch_size: int = option(64, "images per feature-network call", min=1)
    device: str = option("auto", "auto | cpu | cuda[:i]")

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class ReferenceOptions:
    """An ADM-style reference batch made from an ImageFolder (tensorar make_reference)."""

    image_size: int = option(help="side S of the stored images", min=1)
    max_images: int | None = option(None, "keep N images evenly spaced over the folder", min=1)

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class ScoringOptions:
    """How score_benchmark reads a folder and scores it (besides the bootstrap)."""

    images_per_prompt: int | None = option(None, "with --prompts on a folder without a recorded set (default 4, "
                                                 "the benchmarks')", min=1)
    official_quirks: bool = option(True, "dpg: the official scoring, quirks included (--no-official-quirks: the "
                                         "corrected scoring, dpg.py)")

    def __post_init__(self):
        check_fields(self)
