"""Backbone and tokenizer families by name: the one place that lists them.

Adding a backbone family is one module (a `Backbone` subclass, its config dataclass, presets and an
official-checkpoint loader) plus one entry here. Everything else (the plug-in, trainer, sampler,
diagnostics, benchmark, workflow) looks families up by name.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

from tensorar.models import janus, lfq, llamagen, open_magvit2, vq
from tensorar.models.backbone import Family

FAMILIES: dict[str, Family] = {
    "llamagen": Family(
        name="llamagen", config_class=llamagen.GPTConfig, model_class=llamagen.GPT, presets=llamagen.GPT_MODELS,
        load_official=functools.partial(llamagen.load_official, presets=llamagen.GPT_MODELS),
        tokenizer="vq", condition="class", weights_hint=llamagen.WEIGHTS_HINT,
        toy_config=llamagen.GPT_MODELS["GPT-toy-S"],
    ),
    "llamagen_t2i": Family(
        name="llamagen_t2i", config_class=llamagen.GPTConfig, model_class=llamagen.GPT,
        presets=llamagen.GPT_T2I_MODELS,
        load_official=functools.partial(llamagen.load_official, presets=llamagen.GPT_T2I_MODELS),
        tokenizer="vq", condition="caption", weights_hint=llamagen.WEIGHTS_HINT,
        toy_config=llamagen.GPT_T2I_MODELS["GPT-toy-t2i"],
    ),
    "open_magvit2": Family(
        name="open_magvit2", config_class=open_magvit2.OpenMAGVIT2Config, model_class=open_magvit2.OpenMAGVIT2,
        presets=open_magvit2.OMV_MODELS,
        load_official=functools.partial(open_magvit2.load_official, presets=open_magvit2.OMV_MODELS),
        tokenizer="lfq", condition="class", weights_hint=open_magvit2.WEIGHTS_HINT, pixel_offset=127.5,
        toy_config=open_magvit2.OMV_MODELS["AR-toy"],
    ),
    "janus": Family(
        name="janus", config_class=janus.JanusBackboneConfig, model_class=janus.JanusBackbone,
        presets=janus.JANUS_MODELS,
        load_official=functools.partial(janus.load_official, presets=janus.JANUS_MODELS),
        tokenizer="janus_vq", condition="prompt", weights_hint=janus.WEIGHTS_HINT, pixel_offset=127.5,
        toy_config=janus.JANUS_TOY,
    ),
}

# The family meant when none is named: LlamaGen's class-conditional GPT (the paper's main backbone; our
# checkpoints written before families existed hold one). The schema's `backbones.*.family` default and
# the trainer's are tested equal to it.
DEFAULT_FAMILY = "llamagen"


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
    # Janus-Pro's own VQ-16 (transformers' JanusVQVAE), read from the model directory
    "janus_vq": TokenizerFamily("janus_vq", janus.JANUS_VQ_MODELS, janus.JanusVQ, janus.load_janus_vq),
}


def tokenizer_family(preset: str) -> TokenizerFamily:
    """The tokenizer family a preset belongs to (preset names are unique across families)."""
    for fam in TOKENIZERS.values():
        if preset in fam.presets:
            return fam
    known = [name for fam in TOKENIZERS.values() for name in fam.presets]
    raise KeyError(f"unknown tokenizer preset {preset!r}; known: {', '.join(known)}")
