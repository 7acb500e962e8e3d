"""From a batch of conditions to uint8 images: per-sample random draws, generation, tokenizer decoding and
the official evaluation scripts' post-processing. Shared by `tensorar sample` (class labels -> an ADM
.npz) and `tensorar sample_prompts` (prompts -> benchmark folders).

Reproducibility (ours; LlamaGen draws from one generator per batch): sample i depends only on (seed, i).
A torch.Generator seeded from numpy's SeedSequence(seed, spawn_key=(i,)) draws the inverse-CDF uniforms
of sample i, (T, k, parts) (k = 1 for a plain backbone, parts = sub-tokens per token), then draft-noise
uniforms (T, k, 2) for TensorAR with draft noise, so the output is the same for any batch size and
world size (up to floating-point differences between kernels).
"""
from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from tensorar.decoding.sampling import SamplingOptions

DecodeFn = Callable[[torch.Tensor], torch.Tensor]  # token grid (B, h, w) long -> images (B, 3, H, W) in [-1, 1]


def sample_generator(seed: int, index: int) -> torch.Generator:
    """The generator of sample `index`: a SeedSequence child stream, independent of every other
    sample's and of the label stream (numpy's default_rng(seed) is the parent, spawn_key=())."""
    state = np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def draw_uniforms(
    seed: int, indices: np.ndarray, num_tokens: int, k: int = 1, parts: int = 1, draft_noise: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample draws, stacked: uniforms (B, T, k, parts) and draft-noise uniforms (B, T, k, 2) when
    `draft_noise` (else None). CPU float32."""
    uniforms, noise = [], []
    for i in indices:
        g = sample_generator(seed, int(i))
        uniforms.append(torch.rand(num_tokens, k, parts, generator=g))
        if draft_noise:  # drawn after the token uniforms, which are thus the same with or without noise
            noise.append(torch.rand(num_tokens, k, 2, generator=g))
    return torch.stack(uniforms), torch.stack(noise) if noise else None


# --------------------------------------------------------------------------------------------------
# One batch: conditions -> tokens -> images
# --------------------------------------------------------------------------------------------------
def generate_tokens(model, cond, indices: np.ndarray, seed: int, options: SamplingOptions, device,
                    return_drafts: bool = False, compile_step: bool = False):
    """The condition (B, ...) of samples `indices` -> tokens (B, T), or (tokens, drafts (B, T, k)) with
    `return_drafts`; sample i's draws come from (seed, i) only."""
    backbone = model.backbone
    uniforms, noise = draw_uniforms(seed, indices, backbone.num_tokens, model.k,
                                    backbone.token_parts, options.draft_noise == "schedule")
    return model.generate(
        cond, options, uniforms=uniforms.to(device), noise_uniforms=None if noise is None else noise.to(device),
        return_drafts=return_drafts, compile_step=compile_step,
    )


def decode_tokens(decode: DecodeFn, tokens: torch.Tensor) -> torch.Tensor:
    """tokens (B, T) in raster order -> images (B, 3, H, W), float32."""
    side = math.isqrt(tokens.shape[1])
    return decode(tokens.view(-1, side, side)).float()  # (B, h, w) -> (B, 3, H, W)


def to_uint8_nhwc(images: torch.Tensor, image_size: int | None = None, offset: float = 128.0) -> np.ndarray:
    """The official evaluation scripts' post-processing: images (B, 3, H, W) in [-1, 1] -> uint8 (B, S, S, 3).

    Bicubic resize only when `image_size` differs from H; `+ offset` then truncation by the uint8 cast:
    LlamaGen adds 128 (not 127.5 and round), Open-MAGVIT2 127.5 (`Family.pixel_offset`).
    """
    images = images.float()
    if image_size is not None and image_size != images.shape[-1]:
        images = F.interpolate(images, size=(image_size, image_size), mode="bicubic")
    pixels = torch.clamp(127.5 * images + offset, 0, 255)
    return pixels.permute(0, 2, 3, 1).to("cpu", torch.uint8).numpy()  # (B, S, S, 3)


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """Autocast of the AR model to `amp_dtype`, or nothing (fp32)."""
    return contextlib.nullcontext() if amp_dtype is None else torch.autocast(device.type, amp_dtype)


class StageTimer:
    """Seconds accumulated per stage; on CUDA synchronises first, so queued kernels are counted."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.seconds[stage] += time.perf_counter() - start
