"""LlamaGen-compatible class-conditional GPT (re-implemented; loads the official checkpoints strictly).

Architecture as in LlamaGen (Sun et al. 2024, `autoregressive/models/gpt.py`): a Llama decoder over
[class token] + image tokens with 2-D RoPE, RMSNorm (computed in fp32), a fused bias-free `wqkv`,
SwiGLU feed-forward, a class embedding with one extra "null" row for classifier-free guidance, and fp32
logits. Parameter names are LlamaGen's, so `state_dict()` matches the released files key for key.

Differences from the official code, none of which changes a number:
- the KV cache is an explicit object passed to `prefill` / `decode_one_token`, not module buffers, so it
  never ends up in `state_dict()` (LlamaGen files that contain it still load: see `checkpoint.py`);
- the cache attends over the filled prefix only instead of masking a full-length cache (the compiled
  decode step, ours, masks the full cache: static shapes);
- `Linear` multiplies by oneDNN-packed weights on CPU during generate() (same values up to fp32
  rounding);
- the RoPE table is a non-persistent buffer built at construction.

Reading order: config -> building blocks -> KV cache -> GPT -> presets registry.
"""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import asdict, dataclass, replace
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from tensorar.sampling import SamplingOptions


@dataclass(frozen=True)
class GPTConfig:
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
    class_dropout_prob: float = 0.1
    model_type: str = "c2i"
    vocab_size: int = 16384
    cls_token_num: int = 1
    block_size: int = 256  # number of image tokens: a square grid of sqrt(block_size) per side

    def __post_init__(self):
        if self.model_type != "c2i":
            raise ValueError(f"model_type {self.model_type!r}: only class-conditional 'c2i' is implemented")
        if self.dim % self.n_head:
            raise ValueError(f"dim {self.dim} is not divisible by n_head {self.n_head}")
        if math.isqrt(self.block_size) ** 2 != self.block_size:
            raise ValueError(f"block_size {self.block_size} is not a square token grid")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @property
    def grid_size(self) -> int:
        return math.isqrt(self.block_size)

    @property
    def ffn_hidden_dim(self) -> int:
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return _round_up(hidden, self.multiple_of)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """Strict: unknown keys raise (LlamaGen-only runtime keys are dropped with a reason)."""
        d = dict(d)
        for runtime_key in ("max_batch_size", "max_seq_len", "caption_dim"):  # cache sizes / t2i only
            d.pop(runtime_key, None)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown GPTConfig keys: {sorted(unknown)}")
        return cls(**d)


def _round_up(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - n % k


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------
# Packed CPU weights for decoding (ours). A decode step multiplies a few rows (2 per image with CFG) by
# every weight matrix, so it is bound by streaming the weights. With few rows MKL's `x @ W.T` runs on one
# core and streams ~8 GB/s on the 2-core benchmark machine (a plain read: 28 GB/s); oneDNN's matmul over
# a weight reordered once into its blocked layout streams ~20 GB/s from 1 to 16 rows and stays ahead of
# F.linear up to 512 rows (benchmarks/README.md). `packed_for_decoding` packs a model's weights for one
# generate() call or one `tensorar sample` run; `Linear` then multiplies by them. Values differ from
# F.linear by fp32 rounding only; tests compare greedy tokens against F.linear.
_PACK_ROWS = 16  # oneDNN's layout hint; 1, 16 and 64 measured within noise of each other for 1-64 rows
_PACKED_WEIGHTS = torch.utils.weak.WeakIdKeyDictionary()  # weight Parameter -> its packed copy


@functools.cache
def onednn_packing_available() -> bool:
    """Whether this torch build can pack fp32 linear weights with oneDNN (not every CPU build can)."""
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), _PACK_ROWS)
        return bool(torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), packed, None, "none", [], "").eq(2).all())
    except (AttributeError, RuntimeError):
        return False


@contextlib.contextmanager
def packed_for_decoding(model: nn.Module):
    """Within the block, the CPU fp32 `Linear` weights of `model` are packed for oneDNN (GPT-B: ~0.2 s,
    one extra copy of its weights); on exit the copies are dropped. Weights must not change inside."""
    added = []
    if onednn_packing_available():
        for weight in (m.weight for m in model.modules() if isinstance(m, Linear)):
            if weight.device.type == "cpu" and weight.dtype == torch.float32 and weight not in _PACKED_WEIGHTS:
                _PACKED_WEIGHTS[weight] = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), _PACK_ROWS)
                added.append(weight)
    try:
        yield
    finally:
        for weight in added:
            _PACKED_WEIGHTS.pop(weight, None)


def with_packed_weights(generate):
    """Decorator for a model's generate(): the call runs inside `packed_for_decoding(self)`."""

    @functools.wraps(generate)
    def wrapper(self, *args, **kwargs):
        with packed_for_decoding(self):
            return generate(self, *args, **kwargs)

    return wrapper


def linear_by_packed_weight(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """F.linear, by the packed weight when `packed_for_decoding` made one."""
    packed = _PACKED_WEIGHTS.get(weight)
    if packed is None:
        return F.linear(x, weight, bias)
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


@torch.library.custom_op("tensorar::cpu_linear", mutates_args=())
def cpu_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """`linear_by_packed_weight` as an op of its own, for the compiled decode step: the packed weight is
    then looked up when the graph runs, not when it is traced. (Eager calls skip the op's dispatch: ~5 %
    of a CPU decode step at 16 rows.)"""
    return linear_by_packed_weight(x, weight, bias)


@cpu_linear.register_fake
def _(x, weight, bias):
    return x.new_empty(*x.shape[:-1], weight.size(0))


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state_dict keys) that uses the packed weight of
    `packed_for_decoding` in CPU fp32 inference. Training (autograd), CPU autocast (which casts inside
    F.linear) and other devices: F.linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        if x.device.type != "cpu" or x.dtype != torch.float32 or needs_grad or torch.is_autocast_enabled("cpu"):
            return F.linear(x, self.weight, self.bias)
        linear = cpu_linear if torch.compiler.is_compiling() else linear_by_packed_weight
        return linear(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # LlamaGen normalises in fp32 and casts back before the scale.
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class LabelEmbedder(nn.Module):
    """Class embedding; row `num_classes` is the null class used for CFG and label dropout."""

    def __init__(self, num_classes: int, dim: int, dropout_prob: float):
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), dim)

    def forward(self, labels: torch.Tensor, train: bool, force_drop: torch.Tensor | None = None) -> torch.Tensor:
        if force_drop is not None:
            drop = force_drop.bool()
        elif train and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
        else:
            drop = None
        if drop is not None:
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels).unsqueeze(1)  # (B, 1, D)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        hidden = cfg.ffn_hidden_dim
        self.w1 = Linear(cfg.dim, hidden, bias=False)
        self.w3 = Linear(cfg.dim, hidden, bias=False)
        self.w2 = Linear(hidden, cfg.dim, bias=False)
        self.ffn_dropout = nn.Dropout(cfg.ffn_dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


def precompute_rope_2d(grid_size: int, head_dim: int, base: float, cls_token_num: int) -> torch.Tensor:
    """LlamaGen's 2-D RoPE table -> (cls_token_num + grid^2, head_dim // 2, 2) of (cos, sin).

    Rotation pairs are adjacent elements (x[2i], x[2i+1]). The first head_dim/4 pairs rotate with the
    row index, the last head_dim/4 with the column index. The class-token rows are all zero (cos and
    sin), exactly as in LlamaGen: this zeroes the class token's queries and keys.
    """
    half = head_dim // 2
    freqs = 1.0 / (base ** (torch.arange(0, half, 2)[: half // 2].float() / half))  # (head_dim/4,)
    t = torch.arange(grid_size, dtype=torch.float32)
    angles = torch.outer(t, freqs)  # (grid, head_dim/4)
    grid = torch.cat(
        [angles[:, None, :].expand(-1, grid_size, -1), angles[None, :, :].expand(grid_size, -1, -1)], dim=-1
    )  # (grid, grid, head_dim/2): rows first, columns second
    table = torch.stack([grid.cos(), grid.sin()], dim=-1).flatten(0, 1)  # (grid^2, head_dim/2, 2)
    return torch.cat([torch.zeros(cls_token_num, half, 2), table])


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """x (B, L, H, Dh), rope (L, Dh/2, 2) -> rotated x, computed in fp32."""
    xp = x.float().reshape(*x.shape[:-1], -1, 2)  # (B, L, H, Dh/2, 2)
    rope = rope.view(1, xp.size(1), 1, xp.size(3), 2)  # (1, L, 1, Dh/2, 2)
    cos, sin = rope[..., 0], rope[..., 1]
    out = torch.stack([xp[..., 0] * cos - xp[..., 1] * sin, xp[..., 1] * cos + xp[..., 0] * sin], dim=-1)
    return out.flatten(3).type_as(x)  # (B, L, H, Dh)


class KVCache:
    """Preallocated keys/values of every layer for a batch of sequences; not part of any state_dict.

    `length` counts the filled positions; attention reads only `[:length]`, so no causal mask over the
    full cache is built per step. A compiled decode step instead passes its position as a 0-d tensor
    and reads the whole cache under a mask of the filled positions: the same shapes at every step.
    """

    def __init__(self, cfg: GPTConfig, batch_size: int, max_len: int, device, dtype):
        n_kv = cfg.n_kv_head or cfg.n_head
        shape = (batch_size, n_kv, max_len, cfg.head_dim)
        # One tensor per layer: a compiled step then writes each in place (one layer slice of a single
        # tensor made torch.compile copy the whole cache at every layer).
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.positions = torch.arange(max_len, device=device)  # (max_len,): device-side step positions
        self.max_len = max_len
        self.length = 0

    def update(self, layer: int, start: int | torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Write k, v (B, Hkv, L, Dh) at positions [start, start+L) -> (keys, values, filled).

        `start` an int: the filled prefix (B, Hkv, start+L, Dh) and filled=None. `start` a 0-d long
        tensor (one token, static shapes): the whole cache (B, Hkv, max_len, Dh) and filled (max_len,),
        True at the positions written so far.
        """
        if isinstance(start, torch.Tensor):
            index = start.view(1)
            self.k[layer].index_copy_(2, index, k)
            self.v[layer].index_copy_(2, index, v)
            return self.k[layer], self.v[layer], self.positions <= start
        end = start + k.size(2)
        if end > self.max_len:
            raise RuntimeError(f"KV cache overflow: position {end} > capacity {self.max_len}")
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end], None


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.n_kv_head = cfg.n_kv_head or cfg.n_head
        self.head_dim = cfg.head_dim
        self.wqkv = Linear(cfg.dim, (cfg.n_head + 2 * self.n_kv_head) * cfg.head_dim, bias=False)
        self.wo = Linear(cfg.dim, cfg.dim, bias=False)
        self.attn_dropout_p = cfg.attn_dropout_p
        self.resid_dropout = nn.Dropout(cfg.resid_dropout_p)

    def forward(self, x, rope, cache: KVCache | None = None, layer: int = 0, start: int = 0):
        B, L, D = x.shape
        kv_dim = self.n_kv_head * self.head_dim
        q, k, v = self.wqkv(x).split([D, kv_dim, kv_dim], dim=-1)
        q = apply_rope(q.view(B, L, self.n_head, self.head_dim), rope)  # (B, L, H, Dh)
        k = apply_rope(k.view(B, L, self.n_kv_head, self.head_dim), rope)  # (B, L, Hkv, Dh)
        v = v.view(B, L, self.n_kv_head, self.head_dim)  # (B, L, Hkv, Dh)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, Dh)
        filled = None
        if cache is not None:
            k, v, filled = cache.update(layer, start, k, v)  # (B, Hkv, start+L or max_len, Dh)
        if self.n_kv_head != self.n_head:
            k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        if L == 1:
            # One new token attends to every filled position: no mask. Plain matmuls read the cache
            # prefix in place; SDPA's CPU kernel would first copy the strided prefix (~10x slower).
            scores = (q @ k.transpose(-1, -2)) * self.head_dim**-0.5  # (B, H, 1, start+1 or max_len)
            if filled is not None:  # static-shape step over the whole cache
                scores = scores.masked_fill(~filled, float("-inf"))
            out = torch.softmax(scores.float(), dim=-1).type_as(v) @ v  # (B, H, 1, Dh)
        elif k.size(2) == L:  # full sequence from position 0
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.attn_dropout_p if self.training else 0.0
            )
        else:  # a chunk after a prefix: causal within the chunk, full over the prefix
            mask = torch.ones(L, k.size(2), dtype=torch.bool, device=x.device).tril(diagonal=k.size(2) - L)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        return self.resid_dropout(self.wo(out))


class DropPath(nn.Module):
    """Stochastic depth per sample (LlamaGen's drop_path_rate; 0 in every released model)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPTConfig, drop_path: float):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, rope, cache=None, layer=0, start=0):
        h = x + self.drop_path(self.attention(self.attention_norm(x), rope, cache, layer, start))
        return h + self.drop_path(self.feed_forward(self.ffn_norm(h)))


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
class GPT(nn.Module):
    """Class-conditional LlamaGen GPT.

    The backbone interface used by the TensorAR plug-in (any decoder-only AR model offering it can be
    wrapped): `tok_embeddings` (token -> D), `embed_condition`, `transformer(h, start, cache)` (hidden
    states after the final norm) and `head` (hidden -> fp32 logits).
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.cls_embedding = LabelEmbedder(cfg.num_classes, cfg.dim, cfg.class_dropout_prob)
        self.tok_dropout = nn.Dropout(cfg.token_dropout_p)
        rates = [cfg.drop_path_rate * i / max(cfg.n_layer - 1, 1) for i in range(cfg.n_layer)]  # linear, as LlamaGen
        self.layers = nn.ModuleList(TransformerBlock(cfg, r) for r in rates)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = Linear(cfg.dim, cfg.vocab_size, bias=False)
        rope = precompute_rope_2d(cfg.grid_size, cfg.head_dim, cfg.rope_base, cfg.cls_token_num)
        self.register_buffer("rope", rope, persistent=False)  # (cls + T, Dh/2, 2)
        self.initialize_weights()

    def initialize_weights(self):
        """LlamaGen's init: N(0, 0.02) for linears and embeddings, zero output head."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        nn.init.zeros_(self.output.weight)

    # ----- backbone interface -----
    def embed_condition(self, cond_idx: torch.Tensor, force_drop: torch.Tensor | None = None) -> torch.Tensor:
        """Labels (B,) -> condition embeddings (B, cls_token_num, D); drops labels while training."""
        return self.cls_embedding(cond_idx, train=self.training, force_drop=force_drop)[:, : self.config.cls_token_num]

    def transformer(self, h: torch.Tensor, start: int | torch.Tensor = 0, cache: KVCache | None = None) -> torch.Tensor:
        """Embeddings (B, L, D) at positions [start, start+L) -> normed hidden states (B, L, D).

        `start` may be a 0-d long tensor for one cached token: the static-shape step (see KVCache).
        """
        if isinstance(start, torch.Tensor):
            rope = self.rope[start.view(1)]  # (1, Dh/2, 2)
        else:
            rope = self.rope[start : start + h.size(1)]  # (L, Dh/2, 2)
        for i, layer in enumerate(self.layers):
            h = layer(h, rope, cache, i, start)
        return self.norm(h)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output(hidden).float()

    # ----- teacher-forced forward (training, evaluation, and the test oracle for the cache) -----
    def forward(
        self,
        idx: torch.Tensor,
        cond_idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        force_drop: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, L) tokens after the condition, cond_idx (B,) -> logits (B, L + 1, V), loss.

        As in LlamaGen training, call with idx = tokens[:, :-1] and targets = tokens (B, T): position j
        of the logits predicts token j.
        """
        h = torch.cat([self.embed_condition(cond_idx, force_drop), self.tok_embeddings(idx)], dim=1)  # (B, cls+L, D)
        hidden = self.transformer(self.tok_dropout(h))
        logits = self.head(hidden[:, self.config.cls_token_num - 1 :])  # (B, L + 1, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def training_loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token cross-entropy on tokens (B, T) -> (loss, per-slot losses (1,)).

        Same signature as `TensorAR.training_loss`, so one training loop serves both.
        """
        _, loss = self(tokens[:, :-1], labels, targets=tokens)
        return loss, loss.detach()[None]

    # ----- cached decoding: prefill / decode_one_token / generate -----
    def new_cache(self, batch_size: int, max_len: int | None = None, dtype=None) -> KVCache:
        max_len = max_len or self.config.cls_token_num + self.config.block_size
        dtype = dtype or self.tok_embeddings.weight.dtype
        return KVCache(self.config, batch_size, max_len, self.tok_embeddings.weight.device, dtype)

    def prefill(self, cond_idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Condition tokens into the cache -> logits for the first image token (B, V)."""
        hidden = self.transformer(self.embed_condition(cond_idx), 0, cache)
        cache.length = hidden.size(1)
        return self.head(hidden[:, -1])

    def decode_step(self, token: torch.Tensor, position: int | torch.Tensor, cache: KVCache) -> torch.Tensor:
        """token (B,) at `position` -> logits for the next token (B, V); does not advance the cache.

        `position` an int attends over the filled prefix; a 0-d long tensor gives the static-shape step
        that `CompiledStep` compiles.
        """
        hidden = self.transformer(self.tok_embeddings(token[:, None]), position, cache)  # (B, 1, D)
        return self.head(hidden[:, 0])

    def decode_one_token(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """token (B,) at position cache.length -> logits for the next token (B, V); advances the cache."""
        logits = self.decode_step(token, cache.length, cache)
        cache.length += 1
        return logits

    @torch.no_grad()
    @with_packed_weights
    def generate(
        self,
        cond: torch.Tensor,
        num_tokens: int | None = None,
        *,
        generator: torch.Generator | None = None,
        uniforms: torch.Tensor | None = None,
        compile_step: bool = False,
        **sampling,
    ) -> torch.Tensor:
        """Labels (B,) -> tokens (B, num_tokens), sampled as LlamaGen's `generate()`.

        `sampling`: the keyword options of `SamplingOptions` (cfg_scale, cfg_interval, temperature,
        top_k, top_p, greedy). CFG (scale > 1) batches [cond; null-class] rows. `uniforms`
        (B, num_tokens): per-sample draws for inverse-CDF sampling (see `tensorar.sampling`).
        `compile_step`: run the per-token step compiled (`CompiledStep`; CUDA graphs on GPU).
        """
        opts = SamplingOptions(**sampling)
        num_tokens = num_tokens or self.config.block_size
        B = cond.shape[0]
        cond_rows = opts.condition_rows(cond, self.config.num_classes)  # (rows·B,)
        max_len = self.config.cls_token_num + num_tokens
        cache, step = make_decoder(self, self.decode_one_token, cond_rows.shape[0], max_len, compile_step)
        tokens = torch.empty(B, num_tokens, dtype=torch.long, device=cond.device)
        logits = self.prefill(cond_rows, cache)
        for i in range(num_tokens):
            if i > 0:
                logits = step(tokens[:, i - 1].repeat(cond_rows.shape[0] // B), cache)  # (rows·B, V)
            u = None if uniforms is None else uniforms[:, i]
            tokens[:, i] = opts.sample(opts.guide(logits, i), generator, u)
        return tokens


class CompiledStep:
    """A per-token decode step compiled once with static shapes (ours; as gpt-fast and LlamaGen's
    `--compile` sampler do).

    The step gets its position as a device tensor (`KVCache.positions`) and attends over the whole
    preallocated cache under a mask of the filled positions, so one graph serves every step and the loop
    never waits on the host. With `mode="reduce-overhead"` on CUDA the graph is replayed as a CUDA graph;
    on CPU inductor fuses the small ops. The cache is owned here and reused by later calls with the same
    shape, so its address never changes (a replayed graph reads fixed addresses). Greedy fp32 tokens equal
    the eager loop's (tests/test_fast_decoding.py).
    """

    def __init__(self, model: nn.Module):
        """`model` offers decode_step(inputs, position, cache, **kwargs) and new_cache(batch_size, max_len)."""
        self.step = torch.compile(model.decode_step, mode="reduce-overhead", fullgraph=True, dynamic=False)
        self.new_cache = model.new_cache
        self.weight = next(model.parameters())  # caches follow its dtype and device
        self.cache: KVCache | None = None
        self.cache_key = None

    def cache_for(self, batch_size: int, max_len: int) -> KVCache:
        """An empty cache of this shape: the same tensors as last time whenever possible."""
        key = (batch_size, max_len, self.weight.dtype, self.weight.device)
        if key != self.cache_key:
            self.cache, self.cache_key = None, None  # free the old one first
            self.cache = self.new_cache(batch_size, max_len)
            for t in (*self.cache.k, *self.cache.v, self.cache.positions):
                torch._dynamo.mark_static_address(t)
            self.cache_key = key
        self.cache.length = 0  # stale entries past `length` are masked out
        return self.cache

    def __call__(self, inputs: torch.Tensor, cache: KVCache, **kwargs) -> torch.Tensor:
        if inputs.is_cuda:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are consumed
        logits = self.step(inputs, cache.positions[cache.length], cache, **kwargs)
        cache.length += 1
        return logits


def make_decoder(model: nn.Module, eager_step, batch_size: int, max_len: int, compile_step: bool):
    """(cache, step) for a generation loop: `eager_step` with a new cache, or the model's `CompiledStep`
    (made on first use) with its reusable cache. step(inputs, cache, **kwargs) advances the cache."""
    if not compile_step:
        return model.new_cache(batch_size, max_len), eager_step
    if getattr(model, "compiled_step", None) is None:
        model.compiled_step = CompiledStep(model)
    return model.compiled_step.cache_for(batch_size, max_len), model.compiled_step


# --------------------------------------------------------------------------------------------------
# Size presets (LlamaGen's; parameter counts for c2i, vocab 16384, 1000 classes) and toy sizes (ours)
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


def gpt_config(preset: str, **overrides) -> GPTConfig:
    """A preset with data-dependent fields (vocab_size, num_classes, block_size, ...) overridden."""
    if preset not in GPT_MODELS:
        raise KeyError(f"unknown GPT preset {preset!r}; known: {', '.join(GPT_MODELS)}")
    return replace(GPT_MODELS[preset], **overrides)
