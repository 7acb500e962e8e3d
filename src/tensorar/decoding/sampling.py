"""Token sampling shared by the base GPT and the TensorAR sampler.

Logit processing follows LlamaGen's `autoregressive/models/generate.py`: classifier-free guidance on
logits (`uncond + s * (cond - uncond)`, cond rows first, null-class rows second), temperature, top-k,
top-p (nucleus, keeping at least one token).

Two sources of randomness:
- a `torch.Generator` (or the global RNG) with `torch.multinomial`, as LlamaGen does;
- pre-drawn uniforms, one per (sample, step, slot), turned into tokens by inverse-CDF sampling. The
  sampler entry point uses this so that each image depends only on (global seed, sample index),
  whatever the batch size or world size (ours; LlamaGen draws from one generator per batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def apply_cfg(logits: torch.Tensor, cfg_scale: float, use_cfg: bool = True) -> torch.Tensor:
    """Combine the batched [cond; uncond] rows. `use_cfg=False` (past `cfg_interval`) keeps cond rows."""
    cond_logits, uncond_logits = torch.chunk(logits, 2, dim=0)  # (B, ..., V) each
    if not use_cfg:
        return cond_logits
    return uncond_logits + (cond_logits - uncond_logits) * cfg_scale


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Top-k then top-p filtering along the last axis (filtered entries become -inf)."""
    if top_k > 0:
        top_k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
        cum_probs = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        # Remove tokens once the mass *before* them exceeds top_p, so the first one always stays.
        remove_sorted = cum_probs > top_p
        remove_sorted[..., 1:] = remove_sorted[..., :-1].clone()
        remove_sorted[..., 0] = False
        remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def sample_from_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    uniforms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample one token per row of `logits` (..., V) -> (...) long.

    `uniforms` (...) in [0, 1): inverse-CDF sampling with these draws instead of `torch.multinomial`.
    """
    if greedy:
        return logits.argmax(dim=-1)
    logits = logits.float() / max(temperature, 1e-5)
    logits = filter_logits(logits, top_k, top_p)
    probs = F.softmax(logits, dim=-1)
    if uniforms is not None:
        cdf = torch.cumsum(probs, dim=-1)  # (..., V)
        u = uniforms.to(cdf.dtype).unsqueeze(-1) * cdf[..., -1:]
        idx = torch.searchsorted(cdf, u, right=True).squeeze(-1)
        return idx.clamp_(max=probs.size(-1) - 1)
    flat = probs.reshape(-1, probs.size(-1))  # (N, V)
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


@dataclass(frozen=True)
class SamplingOptions:
    """LlamaGen's `generate()` options; every `generate` in tensorar takes them as keyword arguments."""

    cfg_scale: float = 1.0  # > 1 batches [cond; null-class] rows and guides the logits
    cfg_interval: int = -1  # guide only the first decode steps (-1: all)
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filtering
    top_p: float = 1.0  # 1.0: no nucleus filtering
    greedy: bool = False  # argmax instead of sampling

    @property
    def use_cfg(self) -> bool:
        return self.cfg_scale > 1.0

    def condition_rows(self, cond: torch.Tensor, null_class: int) -> torch.Tensor:
        """Labels (B,) -> the rows the model runs: (2B,) [cond; null class] with CFG, else (B,)."""
        return torch.cat([cond, torch.full_like(cond, null_class)]) if self.use_cfg else cond

    def guide(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """Logits of every model row at token `step` -> logits of the B samples."""
        if not self.use_cfg:
            return logits
        # LlamaGen counts the interval over decode steps after the prefill token.
        return apply_cfg(logits, self.cfg_scale, self.cfg_interval < 0 or step - 1 <= self.cfg_interval)

    def sample(self, logits: torch.Tensor, generator=None, uniforms: torch.Tensor | None = None) -> torch.Tensor:
        return sample_from_logits(logits, self.temperature, self.top_k, self.top_p, self.greedy, generator, uniforms)
