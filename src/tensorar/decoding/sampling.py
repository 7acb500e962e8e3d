"""Token sampling shared by every backbone and the TensorAR sampler: logits -> tokens.

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

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from tensorar.options import check_fields, option


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


DRAFT_NOISE = ("none", "schedule")  # TensorAR: feed drafts back as sampled, or re-noised (ours)


@dataclass(frozen=True)
class SamplingOptions:
    """How tokens are drawn: LlamaGen's `generate()` options, per sub-token where a backbone's tokens have
    several parts (Open-MAGVIT2 samples its pre and post sub-tokens with their own CFG scale, temperature,
    top-k and top-p: `cfg_scale=(1.9, 2.0)`). The only declaration of these knobs: `generate`, the
    `sample` and `diagnose` stages, the benchmark and the workflow config all take them from here."""

    cfg_scale: float | tuple[float, ...] = option(
        1.0, "classifier-free guidance scale; > 1 batches [cond; null] rows", min=0.0, per_part=True)
    cfg_interval: int = option(-1, "guide only the first N decode steps (-1: all)", min=-1)
    temperature: float | tuple[float, ...] = option(1.0, "softmax temperature, applied after CFG", above=0.0,
                                                    per_part=True)
    top_k: int | tuple[int, ...] = option(0, "keep the k most likely tokens (0: no top-k)", min=0, per_part=True)
    top_p: float | tuple[float, ...] = option(1.0, "nucleus filtering mass (1.0: no top-p)", above=0.0, max=1.0,
                                              per_part=True)
    greedy: bool = option(False, "argmax instead of sampling")
    draft_noise: str = option("none", "TensorAR only: re-noise each fed-back draft with the training schedule "
                                      "(ours, not the paper's)", choices=DRAFT_NOISE)

    def __post_init__(self):
        check_fields(self)

    @property
    def use_cfg(self) -> bool:
        """Guidance runs the null-condition rows beside the conditional ones (any part's scale > 1)."""
        return max(_as_tuple(self.cfg_scale)) > 1.0

    def num_parts(self) -> int:
        """How many sub-token values the per-part fields give (1 when every field is a single value)."""
        return max(len(_as_tuple(getattr(self, name))) for name in PER_PART_FIELDS)

    def part(self, name: str, part: int):
        """Field `name` for sub-token `part`: the single value, or that part's entry."""
        value = getattr(self, name)
        if not isinstance(value, tuple):
            return value
        if part >= len(value):
            raise ValueError(f"SamplingOptions.{name} = {value}: no value for sub-token {part}")
        return value[part]

    def guide(self, logits: torch.Tensor, step: int, part: int = 0) -> torch.Tensor:
        """Logits of every model row at token `step` -> logits of the B samples."""
        if not self.use_cfg:
            return logits
        # LlamaGen counts the interval over decode steps after the prefill token.
        in_interval = self.cfg_interval < 0 or step - 1 <= self.cfg_interval
        return apply_cfg(logits, self.part("cfg_scale", part), in_interval)

    def sample(self, logits: torch.Tensor, generator=None, uniforms: torch.Tensor | None = None,
               part: int = 0) -> torch.Tensor:
        return sample_from_logits(logits, self.part("temperature", part), self.part("top_k", part),
                                  self.part("top_p", part), self.greedy, generator, uniforms)


PER_PART_FIELDS = tuple(f.name for f in fields(SamplingOptions) if f.metadata.get("per_part"))


def _as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


@dataclass(frozen=True)
class SamplingConfig:
    """Which samples: with `SamplingOptions` (how tokens are drawn), everything that determines the
    output; batch size, world size and device do not."""

    num_samples: int = option(help="images to generate", min=1)
    seed: int = option(0, "seed of the labels and of every sample's draws")
    labels: str = option("balanced", "class labels: balanced (N/C per class, shuffled) or random (i.i.d., as "
                                     "LlamaGen's sampler)", choices=("balanced", "random"))
    image_size: int | None = option(None, "eval size S: bicubic resize of the decoded images (default: decoded "
                                          "size)", min=1)
    shard_size: int = option(250, "samples per resumable shard", min=1)
    # The compiled per-token step (CUDA graphs on GPU; tensorar.decoding.compiled_step). Same tokens up to
    # float rounding, kept here so shards from the two paths are never mixed.
    compile_step: bool = option(False, "compile the per-token step (torch.compile; CUDA graphs on GPU)")

    def __post_init__(self):
        check_fields(self)

    @property
    def num_shards(self) -> int:
        return math.ceil(self.num_samples / self.shard_size)

    def shard_range(self, j: int) -> range:
        return range(j * self.shard_size, min((j + 1) * self.shard_size, self.num_samples))
