"""The Llama-style decoder blocks that LlamaGen (c2i and t2i) and Open-MAGVIT2 share: RMSNorm, SwiGLU,
2-D RoPE, attention over an explicit KV cache, the pre-norm block.

Numerics follow LlamaGen's `autoregressive/models/gpt.py` (commit ce98ec4), which Open-MAGVIT2 copies:
RMSNorm and RoPE compute in fp32, RoPE pairs adjacent elements (x[2i], x[2i+1]), the rows of the
condition positions in the RoPE table are all zero, `wqkv` is one fused bias-free Linear split q|k|v.
Parameter names are theirs, so state dicts match the released files key for key.

Blocks read their sizes from any config object with the attributes of `BlockConfig`.
"""
from __future__ import annotations

import math
from typing import Optional, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from tensorar.decoding.cpu_packing import PackableLinear
from tensorar.options import DictForm


class BlockConfig(Protocol):
    dim: int
    n_head: int
    n_kv_head: Optional[int]
    multiple_of: int
    ffn_dim_multiplier: Optional[float]
    norm_eps: float
    attn_dropout_p: float
    resid_dropout_p: float
    ffn_dropout_p: float


def round_up(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - n % k


def ffn_hidden_dim(dim: int, multiple_of: int, ffn_dim_multiplier: float | None = None) -> int:
    """SwiGLU hidden size: int(8 dim / 3), optionally scaled, rounded up to a multiple of `multiple_of`."""
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return round_up(hidden, multiple_of)


class TransformerShape(DictForm):
    """What a backbone config with `dim`, `n_head`, `block_size`, `multiple_of` and `ffn_dim_multiplier`
    fields derives from them (LlamaGen's GPT and Open-MAGVIT2's AR share these), and its strict dict form."""

    def check_shape(self) -> None:
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
        return ffn_hidden_dim(self.dim, self.multiple_of, self.ffn_dim_multiplier)


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


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, cfg: BlockConfig):
        super().__init__()
        hidden = ffn_hidden_dim(cfg.dim, cfg.multiple_of, cfg.ffn_dim_multiplier)
        self.w1 = PackableLinear(cfg.dim, hidden, bias=False)
        self.w3 = PackableLinear(cfg.dim, hidden, bias=False)
        self.w2 = PackableLinear(hidden, cfg.dim, bias=False)
        self.ffn_dropout = nn.Dropout(cfg.ffn_dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


def precompute_rope_2d(grid_size: int, head_dim: int, base: float, prefix_len: int) -> torch.Tensor:
    """LlamaGen's 2-D RoPE table -> (prefix_len + grid^2, head_dim // 2, 2) of (cos, sin).

    The first head_dim/4 pairs rotate with the row index, the last head_dim/4 with the column index.
    The rows of the `prefix_len` condition positions are all zero (cos and sin), exactly as in
    LlamaGen: the condition's queries and keys are zeroed, every query scores 0 against them.
    """
    half = head_dim // 2
    freqs = 1.0 / (base ** (torch.arange(0, half, 2)[: half // 2].float() / half))  # (head_dim/4,)
    t = torch.arange(grid_size, dtype=torch.float32)
    angles = torch.outer(t, freqs)  # (grid, head_dim/4)
    grid = torch.cat(
        [angles[:, None, :].expand(-1, grid_size, -1), angles[None, :, :].expand(grid_size, -1, -1)], dim=-1
    )  # (grid, grid, head_dim/2): rows first, columns second
    table = torch.stack([grid.cos(), grid.sin()], dim=-1).flatten(0, 1)  # (grid^2, head_dim/2, 2)
    return torch.cat([torch.zeros(prefix_len, half, 2), table])


def rope_rows(table: torch.Tensor, start: int | torch.Tensor, length: int) -> torch.Tensor:
    """The RoPE rows of positions [start, start+length) -> (length, Dh/2, 2). `start` a 0-d long tensor
    (one token, the compiled static-shape step): indexed on the device, so the step's graph is the same
    at every position."""
    if isinstance(start, torch.Tensor):
        return table[start.view(1)]  # (1, Dh/2, 2)
    return table[start : start + length]


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
    `key_mask` (B, max_len), when a condition has padded positions (LlamaGen t2i captions), is False at
    the keys no query may attend to.
    """

    def __init__(self, cfg: BlockConfig, n_layer: int, batch_size: int, max_len: int, device, dtype):
        n_kv = cfg.n_kv_head or cfg.n_head
        shape = (batch_size, n_kv, max_len, cfg.dim // cfg.n_head)
        # One tensor per layer: a compiled step then writes each in place (one layer slice of a single
        # tensor made torch.compile copy the whole cache at every layer).
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.positions = torch.arange(max_len, device=device)  # (max_len,): device-side step positions
        self.key_mask: torch.Tensor | None = None
        self.max_len = max_len
        self.length = 0

    def static_tensors(self) -> list[torch.Tensor]:
        """The tensors a compiled step reads at fixed addresses."""
        return [*self.k, *self.v, self.positions]

    def mask_keys(self, start: int, key_mask: torch.Tensor) -> None:
        """Record key_mask (B, L) for positions [start, start+L); later positions stay attendable."""
        if self.key_mask is None:
            self.key_mask = torch.ones(key_mask.size(0), self.max_len, dtype=torch.bool, device=key_mask.device)
        self.key_mask[:, start : start + key_mask.size(1)] = key_mask

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


def attention_mask(key_mask: torch.Tensor, start: int, num_queries: int) -> torch.Tensor:
    """Causal mask of queries at [start, start+L) over keys [0, start+L), with padded keys (key_mask
    False) hidden except from their own position -> bool (B, 1, L, start+L), True = attend.

    LlamaGen t2i's training mask: a padded caption position still attends to itself, so no row is
    empty; no other position ever reads it.
    """
    end = start + num_queries
    q_pos = torch.arange(start, end, device=key_mask.device)[:, None]  # (L, 1)
    k_pos = torch.arange(end, device=key_mask.device)[None, :]  # (1, start+L)
    allowed = (k_pos <= q_pos) & (key_mask[:, None, :end] | (k_pos == q_pos))  # (B, L, start+L)
    return allowed[:, None]


class Attention(nn.Module):
    def __init__(self, cfg: BlockConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.n_kv_head = cfg.n_kv_head or cfg.n_head
        self.head_dim = cfg.dim // cfg.n_head
        self.wqkv = PackableLinear(cfg.dim, (cfg.n_head + 2 * self.n_kv_head) * self.head_dim, bias=False)
        self.wo = PackableLinear(cfg.dim, cfg.dim, bias=False)
        self.attn_dropout_p = cfg.attn_dropout_p
        self.resid_dropout = nn.Dropout(cfg.resid_dropout_p)

    def forward(self, x, rope, cache: KVCache | None = None, layer: int = 0, start: int | torch.Tensor = 0,
                key_mask: torch.Tensor | None = None):
        """x (B, L, D) at positions [start, start+L) -> (B, L, D). `key_mask` (B, start+L) without a
        cache; with one, the cache's own key mask applies."""
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
            key_mask = cache.key_mask
        if self.n_kv_head != self.n_head:
            k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        if L == 1:
            # One new token attends to every filled position: no causal mask. Plain matmuls read the
            # cache prefix in place; SDPA's CPU kernel would first copy the strided prefix (~10x slower).
            scores = (q @ k.transpose(-1, -2)) * self.head_dim**-0.5  # (B, H, 1, start+1 or max_len)
            if filled is not None:  # static-shape step over the whole cache
                scores = scores.masked_fill(~filled, float("-inf"))
            if key_mask is not None:
                scores = scores.masked_fill(~key_mask[:, None, None, : scores.size(-1)], float("-inf"))
            out = torch.softmax(scores.float(), dim=-1).type_as(v) @ v  # (B, H, 1, Dh)
        elif key_mask is not None:  # padded condition positions (LlamaGen t2i)
            mask = attention_mask(key_mask, k.size(2) - L, L)  # (B, 1, L, start+L)
            dropout = self.attn_dropout_p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
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
    """Pre-norm block: h = x + attn(norm(x)); out = h + ffn(norm(h))."""

    def __init__(self, cfg: BlockConfig, drop_path: float = 0.0):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, rope, cache=None, layer=0, start=0, key_mask=None):
        h = x + self.drop_path(self.attention(self.attention_norm(x), rope, cache, layer, start, key_mask))
        return h + self.drop_path(self.feed_forward(self.ffn_norm(h)))
