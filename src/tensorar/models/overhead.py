"""The plug-in's parameter overhead at a backbone preset, counted on the meta device (no weights, no memory):
claim 1b of claims.md at the paper's sizes, whatever size the run itself trains."""
from __future__ import annotations

from dataclasses import replace
from functools import cache

import torch

from tensorar.models.registry import family
from tensorar.models.tensorar import TensorAR, TensorARConfig


@cache  # building a multi-billion-parameter model on the meta device still takes ~0.5 s (weight init)
def parameter_counts(family_name: str, preset: str, plugin: TensorARConfig, **overrides) -> tuple[int, int]:
    """(parameters of base + TensorAR, parameters of the base) for `preset` of a backbone family."""
    fam = family(family_name)
    if preset not in fam.presets:
        raise KeyError(f"unknown {family_name} preset {preset!r}; known: {', '.join(fam.presets)}")
    with torch.device("meta"):
        base = fam.model_class(replace(fam.presets[preset], **overrides))
        model = TensorAR(base, plugin)
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in base.parameters())
