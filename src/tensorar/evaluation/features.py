"""What `evaluate` needs from a feature network, and the paper's network by name.

Two networks satisfy the protocol: the TF-compatible InceptionV3 here (numbers comparable with the paper)
and the toy digits classifier (`tensorar.toy.features`, numbers only comparable with each other, reported
as "toy-FID"); `tensorar.toy.features.build_feature_extractor` adds the toy's to this factory, so this
layer never imports the toy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch


class FeatureExtractor(Protocol):
    name: str  # "inception-v3-compat" or "toy-digits-classifier"
    comparable_with_paper: bool  # False for the toy network; tables label such numbers "toy-FID"

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images: uint8 (B, H, W, 3) NHWC. Returns float32 {"pool": (B, Dp), "logits": (B, C), "spatial": (B, Ds)}.

        "pool" feeds FID and precision/recall, "spatial" feeds sFID, "logits" feeds the Inception Score.
        """
        ...


def build_feature_extractor(kind: str, *, inception_weights: str | Path | None = None,
                            device: str | torch.device = "cpu") -> FeatureExtractor:
    """`kind` "inception" (needs `inception_weights`). `device` places the network; inputs and outputs
    of every extractor are CPU tensors."""
    if kind == "inception":
        from tensorar.evaluation.inception import InceptionFeatureExtractor

        if inception_weights is None:
            raise ValueError("--features inception needs --inception-weights PATH "
                             "(weights-inception-2015-12-05-6726825d.pth)")
        return InceptionFeatureExtractor(inception_weights, device=device)
    raise ValueError(f"unknown feature network {kind!r}; expected 'inception' (the toy's: tensorar.toy.features)")
