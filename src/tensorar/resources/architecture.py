"""What the memory model reads off a model: the real family's model built from its preset on the meta
device (no memory, no weights), so parameter counts are the model's own, never re-derived by hand.

    spec = ModelSpec("llamagen", "GPT-XXL", tokens=576, vocab=16384, num_classes=1000, k=4)
    arch = architecture(spec)        # parameters, trainable, block sizes, widths, logit widths
    model = build_model(spec)        # the same model on the current device (fake tensors in tracking)
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import torch
import torch.nn as nn

from tensorar.models.registry import family
from tensorar.models.tensorar import TensorAR, TensorARConfig


@dataclass(frozen=True)
class ModelSpec:
    """A model as a job trains or samples it: family, preset, the data-dependent sizes, the plug-in."""

    family: str
    preset: str
    tokens: int  # image tokens per sample
    vocab: int  # the tokenizer's codebook
    num_classes: int | None = None  # class-conditional models
    k: int = 0  # TensorAR window (0: the plain backbone: base or fine-tune control)
    depth: int = 1  # TensorAR query-transformer depth
    prompt_length: int | None = None  # Janus: prompt positions before the image


@dataclass(frozen=True)
class Stack:
    """A stack of transformer blocks, as the activation formulas need it."""

    kind: str  # "llamagen": tensorar.models.layers.TransformerBlock (fp32 residual); "hf_llama": transformers'
    layers: int
    dim: int
    ffn_hidden: int
    heads: int
    kv_heads: int
    dropout: bool  # residual / FFN dropout active while training (its masks are saved)


@dataclass(frozen=True)
class Architecture:
    parameters: int  # all of them, frozen included (Janus holds its understanding tower)
    trainable: int
    matmul_weights: int  # trainable Linear weights: what bf16 autocast casts and caches
    block_parameters: int  # the largest of `Backbone.blocks()` (FSDP gathers one at a time)
    root_parameters: int  # outside them (FSDP's root group: embeddings, head, plug-in, Open-MAGVIT2's intra stack)
    spatial: Stack  # over the sequence: prefix + image tokens
    intra: Stack | None  # Open-MAGVIT2's sub-token stack: 2 positions per image token
    prefix: int
    tokens: int
    logit_widths: tuple[int, ...]  # per token (Open-MAGVIT2: pre and post sub-tokens)
    k: int
    depth: int
    token_dropout: bool


def _config(spec: ModelSpec):
    fam = family(spec.family)
    overrides = {"vocab_size": spec.vocab, "block_size": spec.tokens, "num_classes": spec.num_classes,
                 "num_image_tokens": spec.tokens, "prompt_length": spec.prompt_length}
    known = {f.name for f in fields(fam.config_class)}
    return fam.config(spec.preset, **{k: v for k, v in overrides.items() if k in known and v is not None})


def build_model(spec: ModelSpec) -> nn.Module:
    """The job's model, on the current default device (meta here; fake tensors under tracking)."""
    fam = family(spec.family)
    backbone = fam.model_class(_config(spec))
    if spec.k == 0:
        return backbone
    return TensorAR(backbone, TensorARConfig(k=spec.k, depth=spec.depth))


def _stacks(backbone: nn.Module) -> tuple[Stack, Stack | None]:
    c = backbone.config
    if backbone.family == "janus":
        t = backbone.model.config.text_config
        kv = t.num_key_value_heads or t.num_attention_heads
        return Stack("hf_llama", t.num_hidden_layers, t.hidden_size, t.intermediate_size, t.num_attention_heads,
                     kv, t.attention_dropout > 0), None
    dropout = c.resid_dropout_p > 0 or c.ffn_dropout_p > 0
    kv = c.n_kv_head or c.n_head
    if backbone.family == "open_magvit2":
        return (Stack("llamagen", c.spatial_n_layer, c.dim, c.ffn_hidden_dim, c.n_head, kv, dropout),
                Stack("llamagen", c.factorized_n_layer, c.dim, c.ffn_hidden_dim, c.n_head, kv, dropout))
    return Stack("llamagen", c.n_layer, c.dim, c.ffn_hidden_dim, c.n_head, kv, dropout), None


@functools.cache
def architecture(spec: ModelSpec) -> Architecture:
    """Cached: building Janus-Pro-7B even on the meta device takes seconds."""
    with torch.device("meta"):
        model = build_model(spec)
    backbone = model.backbone
    params = list(model.parameters())
    blocks = backbone.blocks()
    in_blocks = sum(p.numel() for b in blocks for p in b.parameters())
    spatial, intra = _stacks(backbone)
    widths = ((2 ** backbone.config.factorized_bits[0], 2 ** backbone.config.factorized_bits[1])
              if backbone.family == "open_magvit2" else (backbone.vocab_size,))
    token_dropout = backbone.family != "janus" and backbone.config.token_dropout_p > 0
    return Architecture(
        parameters=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        matmul_weights=sum(m.weight.numel() for m in model.modules()
                           if isinstance(m, nn.Linear) and m.weight.requires_grad),
        block_parameters=max(sum(p.numel() for p in b.parameters()) for b in blocks),
        root_parameters=sum(p.numel() for p in params) - in_blocks,
        spatial=spatial, intra=intra, prefix=backbone.prefix_length, tokens=backbone.num_tokens,
        logit_widths=widths, k=spec.k, depth=spec.depth, token_dropout=token_dropout,
    )
