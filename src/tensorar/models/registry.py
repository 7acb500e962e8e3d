"""Backbone and tokenizer families by name: the one place that lists them.

Adding a backbone family is one module (a `Backbone` subclass, its config dataclass, presets and an
official-checkpoint loader) plus one entry here. Everything else (the plug-in, trainer, sampler,
diagnostics, benchmark, workflow) looks families up by name.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

from tensorar.models import lfq, llamagen, vq
from tensorar.models.backbone import Family

FAMILIES: dict[str, Family] = {
    "llamagen": Family(
        name="llamagen", config_class=llamagen.GPTConfig, model_class=llamagen.GPT, presets=llamagen.GPT_MODELS,
        load_official=functools.partial(llamagen.load_official, presets=llamagen.GPT_MODELS),
        tokenizer="vq", condition="class", weights_hint=llamagen.WEIGHTS_HINT,
    ),
    "llamagen_t2i": Family(
        name="llamagen_t2i", config_class=llamagen.GPTConfig, model_class=llamagen.GPT,
        presets=llamagen.GPT_T2I_MODELS,
        load_official=functools.partial(llamagen.load_official, presets=llamagen.GPT_T2I_MODELS),
        tokenizer="vq", condition="caption", weights_hint=llamagen.WEIGHTS_HINT,
    ),
}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"unknown backbone family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


@dataclass(frozen=True)
class TokenizerFamily:
    """An image tokenizer family: `model_class(config)` has encode(images) -> ids (B, h, w) and
    decode(ids) -> images, `config.codebook_size` and `config.downsample`; `load(path, preset=None,
    device=...)` reads ours or a released file."""

    name: str
    presets: dict[str, Any]
    model_class: type
    load: Callable


TOKENIZERS: dict[str, TokenizerFamily] = {
    "vq": TokenizerFamily("vq", vq.VQ_MODELS, vq.VQModel, vq.load_vq),  # LlamaGen's VQ (VQ-16)
    "lfq": TokenizerFamily("lfq", lfq.LFQ_MODELS, lfq.LFQModel, lfq.load_lfq),  # Open-MAGVIT2's LFQ (2^18 codes)
}


def tokenizer_family(preset: str) -> TokenizerFamily:
    """The tokenizer family a preset belongs to (preset names are unique across families)."""
    for fam in TOKENIZERS.values():
        if preset in fam.presets:
            return fam
    known = [name for fam in TOKENIZERS.values() for name in fam.presets]
    raise KeyError(f"unknown tokenizer preset {preset!r}; known: {', '.join(known)}")
