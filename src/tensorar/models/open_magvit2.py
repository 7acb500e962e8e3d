"""Open-MAGVIT2's class-conditional AR generator, re-implemented as a `Backbone`; loads the official
checkpoints strictly and gives their logits.

Architecture as in TencentARC/SEED-Voken (`src/Open_MAGVIT2/modules/transformer/gpt.py`, commit b9a17ea),
written up in shared/reference/open_magvit2/spec.md (§2). A token is an LFQ code of b0 + b1 bits, split
into two sub-tokens, pre = the low b0 bits and post = the high b1 bits ([6, 12] for the release, §1.3):

    spatial transformer  [class; pre_emb[pre_t] + post_emb[post_t], t < T-1] -> h_t (no final norm, §2.5)
    intra transformer    per position, the length-2 sequence [h_t, pre_emb[pre_t]] -> norm -> head.0
                         (the pre logits) at sub-position 0, head.1 (the post logits) at sub-position 1

p(pre, post | ·) = p(pre | ·) · p(post | pre, ·): training feeds the true pre at sub-position 1, sampling
the sampled one. Both stacks are LlamaGen's blocks (`tensorar.models.layers`) with the same 2-D RoPE
table: its rows 0 (all zeros: the class slot) and 1 (grid cell (0, 0): the identity) also serve the
intra transformer's two sub-positions (§2.5.4; a 1-D RoPE would not match).

Outside this module a token is its full id, pre + post · 2**b0 (the LFQ tokenizer's code, codes files,
TensorAR windows and noise, sampler output); the model splits it where it needs the sub-tokens.

Differences from the official code, none of which changes a number:
- the KV caches are explicit objects, not module buffers, so they never end up in `state_dict()`;
- class dropout (for CFG training) is applied by the trainer (`Backbone.drop_condition`), not drawn
  inside the embedder;
- the teacher-forced loss is computed here (`forward`), as `Net2NetTransformer` does (§2.6): the
  official `GPT.forward(targets=...)` branch is broken;
- `Linear` multiplies by oneDNN-packed weights on CPU while decoding (fp32 rounding only).

Reading order: config -> the model -> presets -> official checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from tensorar.checkpoint import (
    extract_state_dict,
    load_state_dict_strict,
    read_checkpoint,
)
from tensorar.decoding.cpu_packing import Linear
from tensorar.decoding.sampling import SamplingOptions
from tensorar.models.backbone import PAD, Backbone, Condition, Prefix
from tensorar.models.layers import (
    KVCache,
    RMSNorm,
    TransformerBlock,
    TransformerShape,
    precompute_rope_2d,
)
from tensorar.models.llamagen import LabelEmbedder


@dataclass(frozen=True)
class OpenMAGVIT2Config(TransformerShape):
    # Field names follow our LlamaGen GPTConfig where the two models share a setting; `from_official`
    # maps the official GPT(...) arguments (class_num, token_drop, ...) onto these.
    dim: int = 1024
    spatial_n_layer: int = 24
    factorized_n_layer: int = 2  # the intra transformer's blocks
    n_head: int = 16
    n_kv_head: Optional[int] = None
    multiple_of: int = 256  # SwiGLU hidden size is rounded up to a multiple of this
    ffn_dim_multiplier: Optional[float] = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    initializer_range: float = 0.02
    token_dropout_p: float = 0.1  # official token_drop
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.1
    ffn_dropout_p: float = 0.1
    drop_path_rate: float = 0.0
    num_classes: int = 1000  # official class_num
    class_dropout_prob: float = 0.1  # hard-wired 0.1 in the official LabelEmbedder
    factorized_bits: tuple[int, int] = (6, 12)  # (b0, b1): pre = low b0 bits, post = high b1 bits
    block_size: int = 256  # number of image tokens: a square grid of sqrt(block_size) per side

    def __post_init__(self):
        object.__setattr__(self, "factorized_bits", tuple(self.factorized_bits))  # JSON lists -> tuple
        object.__setattr__(self, "rope_base", float(self.rope_base))  # the official yaml writes 10000
        if len(self.factorized_bits) != 2 or min(self.factorized_bits) < 1:
            raise ValueError(f"factorized_bits {self.factorized_bits}: two positive bit counts (b0, b1)")
        self.check_shape()

    @property
    def vocab_size(self) -> int:
        """Full token ids: every pattern of the b0 + b1 bits."""
        return 2 ** sum(self.factorized_bits)

    @classmethod
    def from_official(cls, d: dict) -> "OpenMAGVIT2Config":
        """The official `GPT(**kwargs)` arguments (a yaml's `transformer_config.params`) -> our config.
        Arguments not given take the official class's defaults, not ours (§2.1)."""
        unknown = set(d) - set(OFFICIAL_DEFAULTS) - set(OFFICIAL_IGNORED) - {"block_size"}
        if unknown:
            raise ValueError(f"unknown Open-MAGVIT2 GPT arguments: {sorted(unknown)}")
        if "block_size" not in d:
            raise ValueError("the Open-MAGVIT2 GPT arguments lack block_size (the number of image tokens)")
        args = {**OFFICIAL_DEFAULTS, **d}
        for name, required in OFFICIAL_FIXED.items():
            if args[name] != required:
                raise ValueError(f"Open-MAGVIT2 GPT argument {name}={args[name]!r} is not supported "
                                 f"(the released models use {required!r})")
        ours = {OFFICIAL_RENAMED.get(k, k): v for k, v in args.items()
                if k not in OFFICIAL_IGNORED and k not in OFFICIAL_FIXED}
        return cls(**ours, class_dropout_prob=0.1)


# The official GPT signature's defaults (gpt.py), our names for its arguments, the ones that must keep
# the released value, and the ones it accepts but never reads (vocab_size: the token is factorised).
OFFICIAL_DEFAULTS = dict(
    spatial_n_layer=12, n_head=8, dim=256, factorized_n_layer=2, resid_dropout_p=0.0, attn_dropout_p=0.0,
    ffn_dropout_p=0.1, drop_path_rate=0.0, class_num=1000, token_drop=0.1, rope_base=10000, norm_eps=1e-5,
    ffn_dim_multiplier=None, initalizer_range=0.02, multiple_of=256, n_kv_head=None, factorized_bits=[9, 9],
    token_factorization=False, cls_token_num=1, factorized_k=2,
)
OFFICIAL_RENAMED = {"class_num": "num_classes", "token_drop": "token_dropout_p",
                    "initalizer_range": "initializer_range"}  # sic: the official argument's spelling
OFFICIAL_FIXED = {"token_factorization": True, "cls_token_num": 1, "factorized_k": 2}
OFFICIAL_IGNORED = ("vocab_size", "cond_dim", "embd_pdrop", "n_unmasked", "max_batch_size", "max_seq_len")


def drop_path_rates(cfg: OpenMAGVIT2Config, n_layer: int) -> list[float]:
    """Stochastic-depth rates rising linearly over a stack (the official torch.linspace(0, rate, n))."""
    return [cfg.drop_path_rate * i / max(n_layer - 1, 1) for i in range(n_layer)]


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
class OpenMAGVIT2(Backbone):
    """Open-MAGVIT2's GPT (official parameter names). Condition: {"labels": (B,)}, null class num_classes."""

    family = "open_magvit2"

    def __init__(self, cfg: OpenMAGVIT2Config):
        super().__init__()
        self.config = cfg
        b0, b1 = cfg.factorized_bits
        self.pre_emb = nn.Embedding(2**b0, cfg.dim)
        self.post_emb = nn.Embedding(2**b1, cfg.dim)
        self.class_emb = LabelEmbedder(cfg.num_classes, cfg.dim, cfg.class_dropout_prob)
        self.token_drop = nn.Dropout(cfg.token_dropout_p)
        self.spatial_blocks = nn.ModuleList(TransformerBlock(cfg, r) for r in drop_path_rates(cfg, cfg.spatial_n_layer))
        self.factorized_blocks = nn.ModuleList(
            TransformerBlock(cfg, r) for r in drop_path_rates(cfg, cfg.factorized_n_layer))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)  # shared by both sub-positions (§2.5.5)
        self.head = nn.ModuleList([Linear(cfg.dim, 2**b0, bias=False), Linear(cfg.dim, 2**b1, bias=False)])
        rope = precompute_rope_2d(cfg.grid_size, cfg.head_dim, cfg.rope_base, 1)  # row 0: the class slot
        self.register_buffer("rope", rope, persistent=False)  # (1 + T, Dh/2, 2)
        self.initialize_weights()

    def initialize_weights(self):
        """The official init (§2.3): N(0, 0.02) for linears and embeddings, both heads zero."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
        for head in self.head:
            nn.init.zeros_(head.weight)

    # ----- sizes -----
    dim = property(lambda self: self.config.dim)
    num_heads = property(lambda self: self.config.n_head)
    norm_eps = property(lambda self: self.config.norm_eps)
    initializer_range = property(lambda self: self.config.initializer_range)
    num_tokens = property(lambda self: self.config.block_size)
    vocab_size = property(lambda self: self.config.vocab_size)
    token_parts = property(lambda self: 2)
    prefix_length = property(lambda self: 1)
    condition_dropout_prob = property(lambda self: self.config.class_dropout_prob)
    num_classes = property(lambda self: self.config.num_classes)

    # ----- full ids <-> sub-tokens (as tensorar.models.lfq's split_codes / join_codes) -----
    def split_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full ids -> (pre, post); PAD stays PAD in both."""
        b0 = self.config.factorized_bits[0]
        pad = tokens == PAD
        return (tokens & (2**b0 - 1)).masked_fill(pad, PAD), (tokens >> b0).masked_fill(pad, PAD)

    def join_tokens(self, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        return pre + (post << self.config.factorized_bits[0])

    # ----- conditions -----
    def as_condition(self, cond) -> Condition:
        """A label tensor (B,), or (B, 1) as the official sampler takes it, or a Condition."""
        if isinstance(cond, torch.Tensor):
            return {"labels": cond.reshape(-1)}
        return cond

    def null_condition(self, cond: Condition) -> Condition:
        if self.config.class_dropout_prob <= 0:
            raise ValueError("this model has no null class (class_dropout_prob = 0): no guidance possible")
        return {"labels": torch.full_like(cond["labels"], self.config.num_classes)}

    def embed_condition(self, cond: Condition) -> Prefix:
        return Prefix(self.class_emb(cond["labels"]))  # (B, 1, D)

    # ----- tokens, spatial transformer -----
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Full ids (...,) -> pre_emb[pre] + post_emb[post] (..., D): the spatial input (§2.5.1)."""
        pre, post = self.split_tokens(tokens)
        return self.pre_emb(pre) + self.post_emb(post)

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype=None) -> KVCache:
        """A KV cache of the spatial stack (the intra stack's two positions get their own per step)."""
        max_len = max_len or 1 + self.config.block_size
        dtype = dtype or self.pre_emb.weight.dtype
        return KVCache(self.config, self.config.spatial_n_layer, batch_size, max_len, self.pre_emb.weight.device,
                       dtype)

    def transformer(self, h: torch.Tensor, start: int | torch.Tensor = 0, cache: KVCache | None = None,
                    key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The spatial blocks; returns the raw residual stream: no norm before the intra stack (§2.5.3)."""
        if key_mask is not None:
            raise ValueError("a class-conditional model has no padded condition positions (key_mask)")
        if isinstance(start, torch.Tensor):  # the compiled static-shape step
            rope = self.rope[start.view(1)]  # (1, Dh/2, 2)
        else:
            rope = self.rope[start : start + h.size(1)]  # (L, Dh/2, 2)
        h = self.token_drop(h)
        for i, block in enumerate(self.spatial_blocks):
            h = block(h, rope, cache, i, start)
        return h

    def blocks(self) -> list[nn.Module]:
        """The spatial blocks; the intra stack runs once per slot and sub-token, so it stays with the root."""
        return list(self.spatial_blocks)

    # ----- token head: the intra transformer, norm, head.0 / head.1 -----
    def intra(self, x: torch.Tensor, start: int, cache: KVCache | None = None) -> torch.Tensor:
        """Intra sequences x (N, L, D) at sub-positions [start, start+L) -> normed (N, L, D). RoPE rows 0 and
        1 of the 2-D table (§2.5.4)."""
        rope = self.rope[start : start + x.size(1)]  # (L, Dh/2, 2)
        for i, block in enumerate(self.factorized_blocks):
            x = block(x, rope, cache, i, start)
        return self.norm(x)

    def sub_token_logits(self, hidden: torch.Tensor, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: hidden (..., D) and the true pre sub-tokens (...,) -> fp32 logits of pre
        (..., 2**b0) and of post given that pre (..., 2**b1)."""
        D = hidden.size(-1)
        seq = torch.stack([hidden, self.pre_emb(pre).to(hidden.dtype)], dim=-2)  # (..., 2, D)
        out = self.intra(seq.reshape(-1, 2, D), 0).view(*hidden.shape[:-1], 2, D)  # (..., 2, D)
        return self.head[0](out[..., 0, :]).float(), self.head[1](out[..., 1, :]).float()

    def token_loss(self, hidden: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """CE(pre) + CE(post) (`Net2NetTransformer`'s loss, §2.6), each over the non-PAD targets, so a
        "mean" is the mean over tokens of the two sub-token CEs summed; "none" gives them per token (N,)."""
        pre, post = self.split_tokens(targets)
        logits_pre, logits_post = self.sub_token_logits(hidden, pre.clamp(min=0))
        return sum(F.cross_entropy(logits.reshape(-1, logits.size(-1)), part.reshape(-1), ignore_index=PAD,
                                   reduction=reduction)
                   for logits, part in ((logits_pre, pre), (logits_post, post)))

    def sample_tokens(self, hidden: torch.Tensor, options: SamplingOptions, step: int,
                      generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (R, ..., D) of every model row -> full ids (B, ...), sub-token by sub-token as
        `sample_Open_MAGVIT2` (§2.7): pre from sub-position 0, then the sampled pre (the same one in the
        conditional and the null rows of CFG) at sub-position 1 gives post. Each part has its own CFG scale,
        temperature, top-k and top-p (`options.part`) and uniform draw (uniforms[..., part])."""
        lead, D = hidden.shape[:-1], hidden.size(-1)
        x = hidden.reshape(-1, 1, D)  # (N, 1, D): one intra sequence per row and slot
        cache = KVCache(self.config, self.config.factorized_n_layer, x.size(0), 2, x.device, x.dtype)
        parts = []
        for part, head in enumerate(self.head):
            out = self.intra(x, part, cache).view(*lead, D)  # (R, ..., D)
            logits = options.guide(head(out).float(), step, part)  # (B, ..., V_part)
            u = None if uniforms is None else uniforms[..., part]
            parts.append(options.sample(logits, generator, u, part))  # (B, ...)
            if part == 0:
                rows = lead[0] // parts[0].size(0)  # 2 under CFG: [cond; null] get the same pre
                pre = parts[0].repeat(rows, *[1] * (parts[0].dim() - 1))  # (R, ...)
                x = self.pre_emb(pre).to(x.dtype).reshape(-1, 1, D)  # (N, 1, D)
        return self.join_tokens(*parts)

    # ----- the official teacher-forced call (parity tests, diagnostics) -----
    def forward(self, tokens: torch.Tensor, cond):
        """Full ids (B, T) -> ((logits_pre (B, T, 2**b0), logits_post (B, T, 2**b1)), loss): the official
        `GPT.forward((pre, post, labels))` layout, with `Net2NetTransformer`'s loss. Feeds tokens[:, :-1]
        after the class token; position t predicts token t."""
        hidden = self.hidden_states(self.embed_tokens(tokens[:, :-1]), self.as_condition(cond))  # (B, T, D)
        pre, post = self.split_tokens(tokens)
        logits_pre, logits_post = self.sub_token_logits(hidden, pre)
        loss = (F.cross_entropy(logits_pre.flatten(0, 1), pre.flatten())
                + F.cross_entropy(logits_post.flatten(0, 1), post.flatten()))
        return (logits_pre, logits_post), loss


# --------------------------------------------------------------------------------------------------
# Size presets (the released AR models, §2.1: exact GPT parameter counts) and a toy size (ours)
# --------------------------------------------------------------------------------------------------
OMV_MODELS: dict[str, OpenMAGVIT2Config] = {
    "AR-B": OpenMAGVIT2Config(dim=1024, n_head=16, spatial_n_layer=24, factorized_n_layer=2),  # 343,570,432
    "AR-L": OpenMAGVIT2Config(dim=1280, n_head=20, spatial_n_layer=36, factorized_n_layer=3),  # 804,362,240
    "AR-XL": OpenMAGVIT2Config(dim=1536, n_head=24, spatial_n_layer=48, factorized_n_layer=4),  # 1,486,679,040
    # Ours, for the embedded toy (LFQ-toy codes: an 8x8 grid of 4 + 4 bits): 218,368 parameters, GPT-toy-S's
    # width and spatial depth; a training step takes ~1.8x GPT-toy-S's (the intra block sees 2 rows per token).
    "AR-toy": OpenMAGVIT2Config(dim=64, n_head=4, spatial_n_layer=3, factorized_n_layer=1, multiple_of=32,
                                factorized_bits=(4, 4), block_size=64, num_classes=10),
}


def omv_config(preset: str, **overrides) -> OpenMAGVIT2Config:
    """A preset with data-dependent fields (num_classes, block_size, factorized_bits) overridden."""
    if preset not in OMV_MODELS:
        raise KeyError(f"unknown Open-MAGVIT2 preset {preset!r}; known: {', '.join(OMV_MODELS)}")
    return replace(OMV_MODELS[preset], **overrides)


# --------------------------------------------------------------------------------------------------
# Official checkpoints (§4)
# --------------------------------------------------------------------------------------------------
WEIGHTS_HINT = "official Open-MAGVIT2 AR checkpoints: " + ", ".join(
    f"AR_256_{size}.ckpt on huggingface.co/TencentARC/Open-MAGVIT2-AR-{size}-256-resolution"
    for size in ("B", "L", "XL"))


def weights_hint(path, preset: str) -> str:
    """Where the file comes from: the AR repo of its size when the preset or file name tells it."""
    for size in ("B", "L", "XL"):
        if preset == f"AR-{size}" or Path(path).name == f"AR_256_{size}.ckpt":
            return f"AR_256_{size}.ckpt on huggingface.co/TencentARC/Open-MAGVIT2-AR-{size}-256-resolution"
    return WEIGHTS_HINT


def official_to_ours(state_dict: dict) -> dict:
    """The Lightning layout (`Net2NetTransformer`: `transformer.*` + `first_stage_model.*`) -> the GPT's
    weights; a bare GPT state dict passes through. `first_stage_model.*` is the LFQ tokenizer's encoder
    and decoder, which `tensorar.models.lfq.load_lfq` reads from the same file: dropped here. Any other
    key is kept, so strict loading reports it. (The sampler's `kv_cache` buffers are already dropped by
    `extract_state_dict`.)"""
    if not any(k.startswith("transformer.") for k in state_dict):
        return dict(state_dict)
    return {k.removeprefix("transformer."): v for k, v in state_dict.items()
            if not k.startswith("first_stage_model.")}


def data_overrides(state_dict) -> dict:
    """The data-dependent config fields an official state dict implies (sub-token bits, classes)."""
    pre_rows, post_rows = state_dict["pre_emb.weight"].shape[0], state_dict["post_emb.weight"].shape[0]
    cls_rows = state_dict["class_emb.embedding_table.weight"].shape[0]
    return {"factorized_bits": (pre_rows.bit_length() - 1, post_rows.bit_length() - 1), "num_classes": cls_rows - 1}


def load_official(path, preset: str, presets: dict[str, OpenMAGVIT2Config], *, contents=None,
                  block_size: int | None = None, allow_unsafe_pickle: bool | None = None) -> OpenMAGVIT2:
    """A released `AR_256_{B,L,XL}.ckpt` (`{"state_dict": {"transformer.*", "first_stage_model.*"}}`) or a
    bare GPT state dict -> OpenMAGVIT2, loaded strictly. Files carry no config: the preset names the size
    and `block_size` the token count. `contents`: the file as already read (else it is read here)."""
    if preset not in presets:
        raise KeyError(f"unknown Open-MAGVIT2 preset {preset!r}; known: {', '.join(presets)}")
    if contents is None:
        contents = read_checkpoint(path, allow_unsafe_pickle, hint=weights_hint(path, preset))
    state_dict = official_to_ours(extract_state_dict(contents))
    missing = [k for k in ("pre_emb.weight", "post_emb.weight", "class_emb.embedding_table.weight")
               if k not in state_dict]
    if missing:
        raise ValueError(f"{path} is not an Open-MAGVIT2 AR checkpoint: no {', '.join(missing)}")
    overrides = data_overrides(state_dict)
    if block_size is not None:
        overrides["block_size"] = block_size
    model = OpenMAGVIT2(replace(presets[preset], **overrides))
    load_state_dict_strict(model, state_dict, str(path))
    return model
