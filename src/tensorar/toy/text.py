"""A toy text encoder for the embedded toy's text-to-image task (ours, not the paper's; it stands in for
flan-t5-xl, which cannot be downloaded here).

Captions are lower-cased and split on spaces; word w at position p becomes a fixed vector: a random
unit vector drawn from a generator seeded by a hash of w (so any word has one, with no vocabulary
file), plus a sinusoidal encoding of p (LlamaGen's 2-D RoPE rows are zero at caption positions, so word
order must come from the features, as it does from T5's contextual ones). The output has the layout of
`tensorar.data.text_features`: {"caption": (B, L, dim) float32, "caption_mask": (B, L) bool}, LEFT
padded (valid words last, padded features zero). A caption longer than L words is truncated at the end.
Nothing is learned: the text-to-image model's caption MLP (`cap_proj`) learns from these features.
"""
from __future__ import annotations

import hashlib
import math

import torch


class ToyTextEncoder:
    def __init__(self, dim: int = 32, max_tokens: int = 16):
        if dim % 2 or dim < 2 or max_tokens < 1:
            raise ValueError(f"toy text encoder: dim must be even and positive, max_tokens positive "
                             f"(got {dim}, {max_tokens})")
        self.dim, self.max_tokens = dim, max_tokens
        freqs = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
        angles = torch.arange(max_tokens, dtype=torch.float64)[:, None] * freqs  # (L, dim/2)
        self.positions = torch.stack([angles.sin(), angles.cos()], -1).flatten(1).float() * 0.5  # (L, dim)

    def identity(self) -> dict:
        return {"encoder": "toy", "dim": self.dim, "max_tokens": self.max_tokens}

    def word_vector(self, word: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little") >> 1
        v = torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
        return v / v.norm()

    def encode(self, captions: list[str]) -> dict[str, torch.Tensor]:
        B, L = len(captions), self.max_tokens
        features = torch.zeros(B, L, self.dim)
        mask = torch.zeros(B, L, dtype=torch.bool)
        for b, caption in enumerate(captions):
            words = caption.lower().split()[:L]
            n = len(words)
            for p, word in enumerate(words):
                features[b, L - n + p] = self.word_vector(word) + self.positions[p]  # left padding
            mask[b, L - n:] = n > 0
        return {"caption": features, "caption_mask": mask}

    __call__ = encode
