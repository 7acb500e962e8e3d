"""What the TensorAR plug-in, the trainer, the sampler, the diagnostics and the benchmark need from an
autoregressive image backbone: five roles, as diffusers pipelines hold their parts by role.

    condition embedder   a condition (class labels, caption features, a chat prompt) -> the prefix:
                         embeddings (B, P, D) and, for padded prompts, a key mask (B, P)
    null condition       the unconditional rows of classifier-free guidance (same batch size)
    token embedder       image tokens (...,) -> embeddings (..., D); a token is one id, or the full id of
                         a tuple of sub-tokens (Open-MAGVIT2: pre + post * 2**b0), split inside
    transformer          embeddings at positions [start, start+L), with a KV cache -> hidden (B, L, D)
    token head           hidden states -> a token: its cross-entropy against a target (teacher forcing)
                         or a sampled token (one head; or a sub-token head that samples part by part)

Everything above those roles is written once, here and in `tensorar.decoding.generate`: the
teacher-forced pass, the next-token loss, the generation loop. A `Condition` is a dict of batch-first
tensors ({"labels": (B,)} for class-conditional models), so it can be sliced, moved and concatenated
without knowing what it holds.

A new family is one module with a `Backbone` subclass plus one `Family` entry in
`tensorar.models.registry`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn as nn

from tensorar.decoding.generate import generate
from tensorar.decoding.sampling import SamplingOptions

Condition = dict[str, torch.Tensor]
PAD = -1  # token id of positions with no token (past the end of the sequence, in TensorAR windows)


# --------------------------------------------------------------------------------------------------
# Conditions: dicts of batch-first tensors
# --------------------------------------------------------------------------------------------------
def condition_rows(cond: Condition, null: Condition | None) -> Condition:
    """The rows the model runs: [cond; null] for classifier-free guidance (null given), else cond."""
    if null is None:
        return cond
    return {key: torch.cat([value, null[key]]) for key, value in cond.items()}


def condition_slice(cond: Condition, index) -> Condition:
    return {key: value[index] for key, value in cond.items()}


def condition_to(cond: Condition, device) -> Condition:
    return {key: value.to(device, non_blocking=True) for key, value in cond.items()}


def condition_where(drop: torch.Tensor, null: Condition, cond: Condition) -> Condition:
    """Row i from `null` where drop[i], else from `cond` (label / caption dropout for CFG training)."""
    out = {}
    for key, value in cond.items():
        mask = drop.view(-1, *([1] * (value.dim() - 1))).to(value.device)
        out[key] = torch.where(mask, null[key], value)
    return out


def batch_size_of(cond: Condition) -> int:
    return next(iter(cond.values())).shape[0]


@dataclass
class Prefix:
    """The embedded condition: what the transformer reads before the first image token."""

    embeddings: torch.Tensor  # (B, P, D)
    key_mask: torch.Tensor | None = None  # (B, P) bool; False = padding no position may attend to


# --------------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------------
class Backbone(nn.Module, abc.ABC):
    """A decoder-only AR image model seen through its roles. Subclasses set `family` and `config` (a
    frozen dataclass with `to_dict`), keep their official parameter names, and implement the abstract
    methods; the shared methods below and `tensorar.decoding.generate` do the rest."""

    family: ClassVar[str]
    config: Any

    # ----- sizes the plug-in and the sampler read -----
    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Width of the embeddings and hidden states."""

    @property
    @abc.abstractmethod
    def num_heads(self) -> int:
        """Attention heads (the plug-in's query transformers default to the same)."""

    @property
    @abc.abstractmethod
    def norm_eps(self) -> float: ...

    @property
    @abc.abstractmethod
    def initializer_range(self) -> float: ...

    @property
    @abc.abstractmethod
    def num_tokens(self) -> int:
        """Image tokens per sample (a square grid)."""

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Distinct (full) token ids; TensorAR's noising draws uniformly among them."""

    @property
    def token_parts(self) -> int:
        """Sub-tokens per token, each sampled with its own uniform draw (1 unless overridden)."""
        return 1

    @property
    @abc.abstractmethod
    def prefix_length(self) -> int:
        """Positions the condition occupies before the first image token."""

    @property
    def num_classes(self) -> int | None:
        """Classes of a class-conditional backbone (labels 0..num_classes-1); None for other conditions."""
        return None

    @property
    def condition_dropout_prob(self) -> float:
        """Probability of replacing a training condition by the null one (for CFG); 0 if none."""
        return 0.0

    # ----- conditions -----
    @abc.abstractmethod
    def as_condition(self, cond) -> Condition:
        """Accept the family's natural input (e.g. a label tensor) or an already built Condition."""

    @abc.abstractmethod
    def null_condition(self, cond: Condition) -> Condition:
        """Every row of `cond` made unconditional (the CFG branch; label/caption dropout)."""

    @abc.abstractmethod
    def embed_condition(self, cond: Condition) -> Prefix: ...

    # ----- tokens, transformer, head -----
    @abc.abstractmethod
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (...,), PAD-free -> embeddings (..., D)."""

    @abc.abstractmethod
    def new_cache(self, batch_size: int, max_len: int | None = None):
        """An empty KV cache for `batch_size` rows (default length: prefix + all image tokens)."""

    @abc.abstractmethod
    def transformer(self, h: torch.Tensor, start: int | torch.Tensor = 0, cache=None,
                    key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings (B, L, D) at positions [start, start+L) -> hidden states (B, L, D) ready for the
        head. `key_mask` (B, start+L): padded positions (no cache; with a cache, prefill records it).
        `start` may be a 0-d long tensor for one cached token: the static-shape step of a compiled loop."""

    def blocks(self) -> list[nn.Module]:
        """The transformer blocks, each called once per forward pass: the units that sharded training
        shards and checkpoints one at a time (tensorar.training.sharding)."""
        raise NotImplementedError(f"{type(self).__name__} does not name its transformer blocks (blocks())")

    @abc.abstractmethod
    def token_loss(self, hidden: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of hidden states (B, L, D) against target ids (B, L); PAD targets are ignored.
        For sub-token heads, the sum over parts (teacher forcing feeds the true earlier parts)."""

    @abc.abstractmethod
    def sample_tokens(self, hidden: torch.Tensor, options: SamplingOptions, step: int,
                      generator: torch.Generator | None = None,
                      uniforms: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states of every model row (rows·B, ..., D) -> sampled ids (B, ...).

        With CFG (options.use_cfg) the rows are [cond; null]; the head guides each part's logits with
        that part's settings. `uniforms` (B, ..., token_parts): inverse-CDF draws, one per part."""

    # ----- written once for every backbone -----
    def condition_rows(self, cond: Condition, use_cfg: bool) -> Condition:
        return condition_rows(cond, self.null_condition(cond) if use_cfg else None)

    def drop_condition(self, cond: Condition, drop: torch.Tensor) -> Condition:
        """Rows with drop[i] replaced by the null condition (CFG training, paper Sec. 3)."""
        return condition_where(drop, self.null_condition(cond), cond)

    def hidden_states(self, inputs: torch.Tensor, cond: Condition) -> torch.Tensor:
        """Teacher-forced pass: input embeddings (B, L, D) after the condition -> hidden (B, L + 1, D);
        position j predicts image token j (position 0 is the last condition position)."""
        prefix = self.embed_condition(cond)
        h = torch.cat([prefix.embeddings, inputs.to(prefix.embeddings.dtype)], dim=1)  # (B, P + L, D)
        key_mask = None
        if prefix.key_mask is not None:
            ones = prefix.key_mask.new_ones(inputs.shape[0], inputs.shape[1])
            key_mask = torch.cat([prefix.key_mask, ones], dim=1)  # (B, P + L)
        hidden = self.transformer(h, key_mask=key_mask)
        return hidden[:, self.prefix_length - 1 :]

    def training_loss(self, tokens: torch.Tensor, cond: Condition, **_) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token cross-entropy on tokens (B, T) -> (loss, per-slot losses (1,)); same signature as
        `TensorAR.training_loss`, so one training loop serves both."""
        hidden = self.hidden_states(self.embed_tokens(tokens[:, :-1]), cond)  # (B, T, D)
        loss = self.token_loss(hidden, tokens)
        return loss, loss.detach()[None]

    # The generation contract (`tensorar.decoding.generate`): a base model is a window of one token.
    window_size: ClassVar[int] = 1

    @property
    def backbone(self) -> "Backbone":
        return self

    def encode_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """Windows (B, L, 1) of the last token -> input embeddings (B, L, D)."""
        return self.embed_tokens(windows[..., 0])

    def slot_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., D) -> per-slot hidden states (..., 1, D)."""
        return hidden.unsqueeze(-2)

    def generate(self, cond, options: SamplingOptions | None = None, **kwargs):
        """Condition (B, ...) -> tokens (B, T) sampled as the family's official sampler does
        (`tensorar.decoding.generate.generate` lists the keyword arguments)."""
        return generate(self, cond, options, **kwargs)


# --------------------------------------------------------------------------------------------------
# Families: what the registry knows about each
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """One backbone family. `load_official(path, preset, **kw)` reads a released checkpoint into the
    model; `tokenizer` names the image tokenizer family its codes come from; `condition` what it is
    conditioned on ("class", "caption" or "prompt")."""

    name: str
    config_class: type
    model_class: type[Backbone]
    presets: dict[str, Any]
    load_official: Callable[..., Backbone]
    tokenizer: str
    condition: str
    weights_hint: str  # where users get the released checkpoints
    # Decoded images x in [-1, 1] become uint8 pixels as the family's official evaluation script makes
    # them: clamp(127.5 x + offset) then truncation. LlamaGen's sample_c2i_ddp.py adds 128;
    # Open-MAGVIT2's sample.py and Janus compute 255 (x + 1) / 2, i.e. 127.5.
    pixel_offset: float = 128.0

    def config(self, preset: str, **overrides):
        if preset not in self.presets:
            raise KeyError(f"unknown {self.name} preset {preset!r}; known: {', '.join(self.presets)}")
        from dataclasses import replace

        return replace(self.presets[preset], **overrides)
