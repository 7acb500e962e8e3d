"""LlamaGen's GPT, class-conditional (c2i) and text-to-image (t2i), re-implemented as a `Backbone`; loads
the official checkpoints strictly and gives their logits.

Architecture as in LlamaGen (Sun et al. 2024, `autoregressive/models/gpt.py`, commit ce98ec4): a Llama
decoder (`tensorar.models.layers`) over [condition tokens] + image tokens with 2-D RoPE, the condition
rows of the RoPE table zero, and fp32 logits from a bias-free head. The condition embedder is the only
difference between the two model types:
- c2i: a class embedding with one extra "null" row (index num_classes) for classifier-free guidance;
- t2i: `cap_proj`, an MLP (fc1, GELU-tanh, fc2, no biases) over 120 left-padded T5 feature tokens, and
  `uncond_embedding`, a stored (never re-drawn, never trained) null caption (120, caption_dim). Padded
  caption positions are hidden from every other position (the key mask); the null caption keeps the
  conditional row's mask, as in LlamaGen's sampler.

Differences from the official code, none of which changes a number:
- the KV cache is an explicit object, not module buffers, so it never ends up in `state_dict()`;
- condition dropout (for CFG training) is applied by the trainer (`Backbone.drop_condition`), not drawn
  inside the embedder;
- `Linear` multiplies by oneDNN-packed weights on CPU while decoding (fp32 rounding only).

Reading order: config -> condition embedders -> GPT -> presets -> official checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
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

MODEL_TYPES = ("c2i", "t2i")


@dataclass(frozen=True)
class GPTConfig(TransformerShape):
    # Field names follow LlamaGen's ModelArgs so an official config maps onto this one.
    dim: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: Optional[int] = None
    multiple_of: int = 256  # SwiGLU hidden size is rounded up to a multiple of this
    ffn_dim_multiplier: Optional[float] = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    initializer_range: float = 0.02
    token_dropout_p: float = 0.1
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.1
    ffn_dropout_p: float = 0.1
    drop_path_rate: float = 0.0
    num_classes: int = 1000
    caption_dim: int = 2048  # t2i: width of the text features (flan-t5-xl: 2048)
    class_dropout_prob: float = 0.1  # condition dropout for CFG (labels, or whole captions)
    model_type: str = "c2i"
    vocab_size: int = 16384
    cls_token_num: int = 1  # condition positions: 1 class token, or 120 caption tokens (t2i)
    block_size: int = 256  # number of image tokens: a square grid of sqrt(block_size) per side

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type {self.model_type!r}: known {', '.join(MODEL_TYPES)}")
        self.check_shape()

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """Strict: unknown keys raise (LlamaGen's cache-size runtime keys are dropped)."""
        d = dict(d)
        for runtime_key in ("max_batch_size", "max_seq_len"):
            d.pop(runtime_key, None)
        return super().from_dict(d)


# --------------------------------------------------------------------------------------------------
# Condition embedders
# --------------------------------------------------------------------------------------------------
class LabelEmbedder(nn.Module):
    """Class embedding; row `num_classes` is the null class of CFG (present when dropout_prob > 0)."""

    def __init__(self, num_classes: int, dim: int, dropout_prob: float):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels).unsqueeze(1)  # (B, 1, D)


class CaptionMLP(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.fc1 = Linear(in_dim, dim, bias=False)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CaptionEmbedder(nn.Module):
    """T5 features (B, 120, caption_dim) -> (B, 120, D). LlamaGen hard-wires 120 caption tokens."""

    TOKENS = 120

    def __init__(self, caption_dim: int, dim: int):
        super().__init__()
        self.cap_proj = CaptionMLP(caption_dim, dim)
        # A buffer, not a parameter: drawn once at init, saved in the checkpoint, never trained.
        self.register_buffer("uncond_embedding", torch.randn(self.TOKENS, caption_dim) / caption_dim**0.5)

    def forward(self, caption: torch.Tensor) -> torch.Tensor:
        return self.cap_proj(caption)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
class GPT(Backbone):
    """LlamaGen's GPT. Conditions: {"labels": (B,)} (c2i) or {"caption": (B, 120, C) left-padded and
    masked, "caption_mask": (B, 120) bool} (t2i)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        if cfg.model_type == "c2i":
            self.cls_embedding = LabelEmbedder(cfg.num_classes, cfg.dim, cfg.class_dropout_prob)
        else:
            self.cls_embedding = CaptionEmbedder(cfg.caption_dim, cfg.dim)
        self.tok_dropout = nn.Dropout(cfg.token_dropout_p)
        rates = [cfg.drop_path_rate * i / max(cfg.n_layer - 1, 1) for i in range(cfg.n_layer)]  # linear, as LlamaGen
        self.layers = nn.ModuleList(TransformerBlock(cfg, r) for r in rates)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = Linear(cfg.dim, cfg.vocab_size, bias=False)
        rope = precompute_rope_2d(cfg.grid_size, cfg.head_dim, cfg.rope_base, cfg.cls_token_num)
        self.register_buffer("rope", rope, persistent=False)  # (cls + T, Dh/2, 2)
        self.initialize_weights()

    @property
    def family(self) -> str:
        return "llamagen" if self.config.model_type == "c2i" else "llamagen_t2i"

    def initialize_weights(self):
        """LlamaGen's init: N(0, 0.02) for linears and embeddings, zero output head."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        nn.init.zeros_(self.output.weight)

    # ----- sizes -----
    dim = property(lambda self: self.config.dim)
    num_heads = property(lambda self: self.config.n_head)
    norm_eps = property(lambda self: self.config.norm_eps)
    initializer_range = property(lambda self: self.config.initializer_range)
    num_tokens = property(lambda self: self.config.block_size)
    vocab_size = property(lambda self: self.config.vocab_size)
    prefix_length = property(lambda self: self.config.cls_token_num)
    condition_dropout_prob = property(lambda self: self.config.class_dropout_prob)
    num_classes = property(lambda self: self.config.num_classes if self.config.model_type == "c2i" else None)

    # ----- conditions -----
    def as_condition(self, cond) -> Condition:
        if isinstance(cond, torch.Tensor):
            if self.config.model_type != "c2i":
                raise TypeError("a t2i model's condition is {'caption': ..., 'caption_mask': ...}")
            return {"labels": cond}
        return cond

    def null_condition(self, cond: Condition) -> Condition:
        if self.config.model_type == "c2i":
            if self.config.class_dropout_prob <= 0:
                raise ValueError("this model has no null class (class_dropout_prob = 0): no guidance possible")
            return {"labels": torch.full_like(cond["labels"], self.config.num_classes)}
        # The stored null caption, with the conditional rows' mask (LlamaGen's sampler and training
        # dropout both keep the mask). For a caption of T < 120 tokens (cls_token_num < 120) we take the
        # buffer's first T rows: what LlamaGen's training dropout gives after its [:, :cls_token_num]
        # slice. (Its generate() with cfg > 1 fails there instead: (B, T, C) + (120, C) cannot broadcast.)
        caption = cond["caption"]
        null = self.cls_embedding.uncond_embedding[: caption.size(1)].to(caption.dtype).expand_as(caption)
        return {"caption": null, "caption_mask": cond["caption_mask"]}

    def embed_condition(self, cond: Condition) -> Prefix:
        if self.config.model_type == "c2i":
            return Prefix(self.cls_embedding(cond["labels"])[:, : self.config.cls_token_num])  # (B, cls, D)
        # LlamaGen keeps the first cls_token_num caption positions (`cls_embedding(c)[:, :cls_token_num]`):
        # all 120 for every released model; a longer caption would otherwise misalign the RoPE table.
        n = self.config.cls_token_num
        caption, mask = cond["caption"], cond["caption_mask"]
        if caption.size(1) < n:
            raise ValueError(f"caption has {caption.size(1)} tokens; this model reads {n} (cls_token_num)")
        return Prefix(self.cls_embedding(caption[:, :n]), mask[:, :n].bool())  # (B, cls, D), (B, cls)

    # ----- tokens, transformer, head -----
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tok_embeddings(tokens)

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype=None) -> KVCache:
        max_len = max_len or self.config.cls_token_num + self.config.block_size
        dtype = dtype or self.tok_embeddings.weight.dtype
        return KVCache(self.config, self.config.n_layer, batch_size, max_len, self.tok_embeddings.weight.device, dtype)

    def transformer(self, h: torch.Tensor, start: int | torch.Tensor = 0, cache: KVCache | None = None,
                    key_mask: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(start, torch.Tensor):
            rope = self.rope[start.view(1)]  # (1, Dh/2, 2)
        else:
            rope = self.rope[start : start + h.size(1)]  # (L, Dh/2, 2)
        if cache is not None and key_mask is not None:
            cache.mask_keys(start, key_mask)  # later steps read the padding from the cache
            key_mask = None
        h = self.tok_dropout(h)
        for i, layer in enumerate(self.layers):
            h = layer(h, rope, cache, i, start, key_mask)
        return self.norm(h)

    def blocks(self) -> list[nn.Module]:
        return list(self.layers)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output(hidden).float()

    def token_loss(self, hidden: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        logits = self.head(hidden)  # (..., V)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=PAD,
                               reduction=reduction)

    def sample_tokens(self, hidden: torch.Tensor, options: SamplingOptions, step: int,
                      generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None) -> torch.Tensor:
        logits = options.guide(self.head(hidden), step)  # (B, ..., V)
        return options.sample(logits, generator, None if uniforms is None else uniforms[..., 0])

    # ----- LlamaGen's teacher-forced call (parity tests, diagnostics) -----
    def forward(self, idx: torch.Tensor, cond, targets: torch.Tensor | None = None):
        """idx (B, L) tokens after the condition -> logits (B, L + 1, V), loss. As in LlamaGen training,
        call with idx = tokens[:, :-1] and targets = tokens: position j of the logits predicts token j."""
        hidden = self.hidden_states(self.embed_tokens(idx), self.as_condition(cond))
        logits = self.head(hidden)
        loss = None if targets is None else F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


# --------------------------------------------------------------------------------------------------
# Size presets (LlamaGen's; c2i parameter counts for vocab 16384, 1000 classes) and toy sizes (ours)
# --------------------------------------------------------------------------------------------------
GPT_MODELS: dict[str, GPTConfig] = {
    "GPT-B": GPTConfig(n_layer=12, n_head=12, dim=768),  # 111M
    "GPT-L": GPTConfig(n_layer=24, n_head=16, dim=1024),  # 343M
    "GPT-XL": GPTConfig(n_layer=36, n_head=20, dim=1280),  # 775M
    "GPT-XXL": GPTConfig(n_layer=48, n_head=24, dim=1536),  # 1.4B
    "GPT-XXXL": GPTConfig(n_layer=48, n_head=40, dim=2560),  # 3.9B
    "GPT-1B": GPTConfig(n_layer=22, n_head=32, dim=2048),  # 1.2B
    "GPT-3B": GPTConfig(n_layer=24, n_head=32, dim=3200),  # 3.1B
    "GPT-7B": GPTConfig(n_layer=32, n_head=32, dim=4096),  # 6.6B
    # Ours, for the embedded toy (digits, 8x8 token grid): two sizes so Table 2 / Fig. 2 have a curve.
    "GPT-toy-S": GPTConfig(n_layer=3, n_head=4, dim=64, multiple_of=32),
    "GPT-toy-M": GPTConfig(n_layer=4, n_head=4, dim=128, multiple_of=32),
}

_T2I = dict(model_type="t2i", cls_token_num=CaptionEmbedder.TOKENS)
GPT_T2I_MODELS: dict[str, GPTConfig] = {
    # t2i_XL_stage1_256.pt (16x16 tokens; block_size=1024 for t2i_XL_stage2_512.pt): 777,678,080 parameters.
    "GPT-XL": replace(GPT_MODELS["GPT-XL"], **_T2I),
    # Ours, for the embedded toy's captioned canvases: 16 caption positions of the toy text encoder's
    # 32-d features (tensorar.data.toy_text) instead of 120 T5 tokens of 2048.
    "GPT-toy-t2i": replace(GPT_MODELS["GPT-toy-S"], model_type="t2i", cls_token_num=16, caption_dim=32),
}


def gpt_config(preset: str, **overrides) -> GPTConfig:
    """A c2i preset with data-dependent fields (vocab_size, num_classes, block_size, ...) overridden."""
    if preset not in GPT_MODELS:
        raise KeyError(f"unknown GPT preset {preset!r}; known: {', '.join(GPT_MODELS)}")
    return replace(GPT_MODELS[preset], **overrides)


# --------------------------------------------------------------------------------------------------
# Official checkpoints
# --------------------------------------------------------------------------------------------------
WEIGHTS_HINT = (
    "official LlamaGen checkpoints (c2i_B_256.pt, c2i_L_256.pt, c2i_XL_384.pt, ..., vq_ds16_c2i.pt) are on "
    "huggingface.co/FoundationVision/LlamaGen; the t2i ones (t2i_XL_stage1_256.pt, t2i_XL_stage2_512.pt, "
    "vq_ds16_t2i.pt) on huggingface.co/peizesun/llamagen_t2i"
)


def data_overrides(state_dict) -> dict:
    """The data-dependent GPTConfig fields an official state dict implies (vocab; classes or caption width)."""
    vocab, _ = state_dict["tok_embeddings.weight"].shape
    if "cls_embedding.cap_proj.fc1.weight" in state_dict:
        return {"vocab_size": vocab, "caption_dim": state_dict["cls_embedding.cap_proj.fc1.weight"].shape[1]}
    cls_rows, _ = state_dict["cls_embedding.embedding_table.weight"].shape
    return {"vocab_size": vocab, "num_classes": cls_rows - 1}


def load_official(path, preset: str, presets: dict[str, GPTConfig], *, contents=None, block_size: int | None = None,
                  allow_unsafe_pickle: bool | None = None) -> GPT:
    """A released LlamaGen file (`{"model": sd}`, DeepSpeed `{"module": sd}`, FSDP's bare
    consolidated.pth, or a DDP training checkpoint) -> GPT, loaded strictly. Files carry no config:
    the preset names the size and `block_size` the token count (576 at 384 px, 1024 for t2i stage 2).
    `contents`: the file as already read (else it is read here)."""
    if preset not in presets:
        raise KeyError(f"unknown LlamaGen preset {preset!r}; known: {', '.join(presets)}")
    if contents is None:
        contents = read_checkpoint(path, allow_unsafe_pickle, hint=WEIGHTS_HINT)
    state_dict = extract_state_dict(contents)
    overrides = data_overrides(state_dict)
    if block_size is not None:
        overrides["block_size"] = block_size
    model = GPT(replace(presets[preset], **overrides))
    load_state_dict_strict(model, state_dict, str(path))
    return model
