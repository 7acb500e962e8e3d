"""TensorAR: next-tensor prediction as a plug-in around a decoder-only AR image model.

Paper: "TensorAR: Refinement is All You Need in Autoregressive Image Generation", Sec. 2.2-2.3,
Algorithm 1. Tokens x_1..x_T are regrouped into overlapping windows x_{t,k} = [x_t, ..., x_{t+k-1}];
at step t the model reads x_{t,k} (its first token committed, the others drafts) and predicts the whole
next window x_{t+1,k}. The base transformer is untouched -- one backbone position per token, T steps:

    M_enc: k token embeddings --Q_in (1 learned query)--> one vector, added to the first token's embedding
    M_dec: one hidden state --Q_out (k learned queries)--> k vectors, each added to the hidden state
           and sent through the base output head -> k logits

Both query transformers end in a zero-initialised projection, so at initialisation the wrapper is the
base model exactly (slot-0 logits are the base logits; k = 1 is bit-identical). Training resamples
position j of every input window with probability β(j) (`tensorar.schedules`) and weights slot s of the
cross-entropy by the RDM weight w_s. Sampling commits slot 0 of every step and feeds the whole sampled
window back as the next input ("commit and refine").

Conventions: a window position past the last token holds PAD (-1). PAD positions are embedded with a
learned vector, never noised, never a target, and are re-imposed on every sampled window.

Ours, not the paper's (docs/method.md): `draft_noise="schedule"` (noise drafts at sampling as in
training), inverse-CDF sampling from per-sample uniforms, and a learned window-position embedding on
Q_in's keys (cross-attention alone cannot tell which position a token sits at).

Reading order: config -> query transformer -> TensorAR (encoder, decoder, training, sampling).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tensorar.models.gpt import GPT, KVCache, Linear, RMSNorm, make_decoder, with_packed_weights
from tensorar.sampling import SamplingOptions
from tensorar.schedules import LOSS_WEIGHTINGS, SCHEDULES, beta, slot_weights

PAD = -1  # token id of window positions past the end of the sequence
DRAFT_NOISE = ("none", "schedule")


@dataclass(frozen=True)
class TensorARConfig:
    k: int = 4  # window size: tokens per input/output tensor
    depth: int = 1  # cross-attention layers in each query transformer
    schedule: str = "exponential"  # input noise schedule, a key of tensorar.schedules.SCHEDULES
    loss_weighting: str = "rdm"  # "rdm" (w_s of Algorithm 1) or "uniform"
    n_head: int | None = None  # query-transformer heads (None -> the base model's n_head)

    def __post_init__(self):
        if self.k < 1 or self.depth < 1:
            raise ValueError(f"k and depth must be >= 1, got k={self.k}, depth={self.depth}")
        if self.schedule not in SCHEDULES:
            raise KeyError(f"unknown noise schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise KeyError(f"unknown loss weighting {self.loss_weighting!r}; known: {', '.join(LOSS_WEIGHTINGS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TensorARConfig":
        """Strict: unknown keys raise."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown TensorARConfig keys: {sorted(unknown)}")
        return cls(**d)


# --------------------------------------------------------------------------------------------------
# Query transformer (Q_in and Q_out)
# --------------------------------------------------------------------------------------------------
class CrossAttention(nn.Module):
    """Pre-norm cross-attention of queries onto a context, with a residual on the queries."""

    def __init__(self, dim: int, n_head: int, eps: float):
        super().__init__()
        self.n_head = n_head
        self.query_norm = RMSNorm(dim, eps)
        self.context_norm = RMSNorm(dim, eps)
        self.wq = Linear(dim, dim, bias=False)
        self.wkv = Linear(dim, 2 * dim, bias=False)
        self.wo = Linear(dim, dim, bias=False)

    def forward(self, q: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """q (N, Q, D), context (N, C, D) -> (N, Q, D)."""
        N, Q, D = q.shape
        C, Dh = context.size(1), D // self.n_head
        query = self.wq(self.query_norm(q)).view(N, Q, self.n_head, Dh).transpose(1, 2)  # (N, H, Q, Dh)
        kv = self.wkv(self.context_norm(context)).view(N, C, 2, self.n_head, Dh)  # (N, C, 2, H, Dh)
        k, v = kv.permute(2, 0, 3, 1, 4)  # (N, H, C, Dh) each
        out = F.scaled_dot_product_attention(query, k, v)  # (N, H, Q, Dh)
        return q + self.wo(out.transpose(1, 2).reshape(N, Q, D))


class QueryTransformer(nn.Module):
    """`n_queries` learned queries read a context through `depth` cross-attention layers, then an MLP
    with bottleneck ratio 1 (hidden width = dim) maps each query to the output.

    The MLP's last projection is zero-initialised: the branch outputs exactly 0 at initialisation, so
    adding it residually leaves the base model unchanged (as DiT's adaLN-Zero does for its blocks).
    """

    def __init__(self, dim: int, n_queries: int, n_head: int, depth: int, eps: float):
        super().__init__()
        self.queries = nn.Parameter(torch.empty(n_queries, dim))
        self.layers = nn.ModuleList(CrossAttention(dim, n_head, eps) for _ in range(depth))
        self.mlp_norm = RMSNorm(dim, eps)
        self.mlp = nn.Sequential(Linear(dim, dim, bias=False), nn.GELU(), Linear(dim, dim, bias=False))

    def initialize_weights(self, std: float):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
        nn.init.normal_(self.queries, std=std)
        nn.init.zeros_(self.mlp[-1].weight)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """context (N, C, D) -> (N, n_queries, D)."""
        q = self.queries.expand(context.size(0), -1, -1)  # (N, Q, D)
        for layer in self.layers:
            q = layer(q, context)
        return self.mlp(self.mlp_norm(q))


# --------------------------------------------------------------------------------------------------
# The wrapper
# --------------------------------------------------------------------------------------------------
class TensorAR(nn.Module):
    """Wraps a base GPT (backbone interface: tok_embeddings, embed_condition, transformer, head)."""

    def __init__(self, base: GPT, cfg: TensorARConfig):
        super().__init__()
        bc = base.config
        if cfg.k > bc.block_size:
            raise ValueError(f"k={cfg.k} exceeds the sequence length {bc.block_size}")
        n_head = cfg.n_head or bc.n_head
        if bc.dim % n_head:
            raise ValueError(f"dim {bc.dim} is not divisible by the query-transformer heads {n_head}")
        self.base = base
        self.plugin_config = cfg
        self.k = cfg.k
        # Where each token sits in the window: Q_in's cross-attention is otherwise order-blind.
        self.window_pos = nn.Parameter(torch.empty(cfg.k, bc.dim))
        # k = 1 windows never reach past the sequence; an unused parameter would break DDP.
        self.pad_embedding = nn.Parameter(torch.empty(bc.dim)) if cfg.k > 1 else None
        self.q_in = QueryTransformer(bc.dim, 1, n_head, cfg.depth, bc.norm_eps)
        self.q_out = QueryTransformer(bc.dim, cfg.k, n_head, cfg.depth, bc.norm_eps)
        # Derived from the config, so not saved in the state dict.
        self.register_buffer("beta", beta(cfg.schedule, cfg.k).float(), persistent=False)  # (k,)
        self.register_buffer(
            "slot_weight", slot_weights(cfg.schedule, cfg.k, cfg.loss_weighting).float(), persistent=False
        )  # (k,)
        self.initialize_plugin()

    def initialize_plugin(self):
        """Initialise the added modules only; the base weights are left as they are."""
        std = self.base.config.initializer_range
        for p in (self.window_pos, self.pad_embedding):
            if p is not None:
                nn.init.normal_(p, std=std)
        self.q_in.initialize_weights(std)
        self.q_out.initialize_weights(std)

    @classmethod
    def from_base_checkpoint(cls, path, cfg: TensorARConfig, **load_kwargs) -> "TensorAR":
        """Wrap a trained base GPT (ours or an official LlamaGen file; kwargs go to `load_model`)."""
        from tensorar.checkpoint import load_model

        base = load_model(path, **load_kwargs)
        if not isinstance(base, GPT):
            raise ValueError(f"{path} is not a base GPT checkpoint (found {type(base).__name__})")
        return cls(base, cfg)

    def plugin_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("base.")]

    def base_parameters(self) -> list[nn.Parameter]:
        return list(self.base.parameters())

    # ----- windows and noise -----
    def windows(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> overlapping windows (B, T, k): row t is tokens[t : t+k], PAD past T."""
        padded = F.pad(tokens, (0, self.k - 1), value=PAD)  # (B, T + k - 1)
        return padded.unfold(1, self.k, 1)  # (B, T, k)

    def noise_tensors(
        self, windows: torch.Tensor, generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Resample position j of windows (..., k) uniformly over the vocabulary with probability β(j).

        `uniforms` (..., k, 2): per-position draws (mask, replacement); drawn from `generator` if None.
        PAD positions stay PAD.
        """
        if uniforms is None:
            uniforms = torch.rand(*windows.shape, 2, generator=generator, device=windows.device)  # (..., k, 2)
        vocab = self.base.config.vocab_size
        replace = (uniforms[..., 0] < self.beta) & (windows != PAD)  # (..., k)
        random_tokens = (uniforms[..., 1] * vocab).long().clamp_(max=vocab - 1)  # (..., k)
        return torch.where(replace, random_tokens, windows)

    # ----- M_enc and M_dec -----
    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """M_enc: windows (B, L, k) -> input embeddings (B, L, D)."""
        emb = self.base.tok_embeddings(windows.clamp(min=0))  # (B, L, k, D)
        if self.pad_embedding is not None:
            emb = torch.where((windows == PAD).unsqueeze(-1), self.pad_embedding.to(emb.dtype), emb)
        B, L, k, D = emb.shape
        summary = self.q_in((emb + self.window_pos).reshape(B * L, k, D))  # (B*L, 1, D)
        return emb[:, :, 0] + summary.view(B, L, D)

    def decode(self, hidden: torch.Tensor) -> torch.Tensor:
        """M_dec before the head: hidden states (..., D) -> per-slot hidden states (..., k, D)."""
        flat = hidden.reshape(-1, 1, hidden.size(-1))  # (N, 1, D)
        expansion = self.q_out(flat).view(*hidden.shape[:-1], self.k, hidden.size(-1))  # (..., k, D)
        return hidden.unsqueeze(-2) + expansion

    def hidden_states(self, inputs: torch.Tensor, cond_idx: torch.Tensor, force_drop=None) -> torch.Tensor:
        """Teacher-forced backbone pass: input windows (B, L, k) -> hidden states (B, L + 1, D).

        Position 0 of the result is the condition token's (it predicts the first window).
        """
        cls_token_num = self.base.config.cls_token_num
        h = torch.cat([self.base.embed_condition(cond_idx, force_drop), self.encode(inputs)], dim=1)  # (B, cls+L, D)
        hidden = self.base.transformer(self.base.tok_dropout(h))
        return hidden[:, cls_token_num - 1 :]  # (B, L + 1, D)

    def forward(
        self, inputs: torch.Tensor, cond_idx: torch.Tensor, force_drop=None, num_slots: int | None = None
    ) -> torch.Tensor:
        """Input windows (B, L, k), labels (B,) -> logits (B, L + 1, num_slots, V) of the first slots.

        Materialises every requested slot; training uses `training_loss`, which does not.
        """
        slot_hidden = self.decode(self.hidden_states(inputs, cond_idx, force_drop))  # (B, L + 1, k, D)
        return self.base.head(slot_hidden[:, :, : num_slots or self.k])

    # ----- training -----
    def slot_cross_entropy(self, slot_hidden: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"):
        """One slot: hidden (B, T, D), targets (B, T) with PAD -> cross-entropy over non-PAD targets."""
        logits = self.base.head(slot_hidden)  # (B, T, V)
        return F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=PAD, reduction=reduction
        )

    def training_loss(
        self,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
        noise_uniforms: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T), labels (B,) -> (Σ_s w_s · CE_s, per-slot CE (k,) detached).

        The input noise draws come from `noise_uniforms` (B, T-1, k, 2) when given (the training loop
        draws them per global sample, so the noise does not depend on the world size), else `generator`.

        CE_s is the mean cross-entropy of slot s over its non-PAD targets, so k = 1 is exactly the base
        model's loss. Each slot's logits are built inside an activation checkpoint: only one slot's
        (B, T, V) logits exist at a time, in the forward and in the backward pass.
        """
        targets = self.windows(tokens)  # (B, T, k): the step-t target is x_{t+1,k}
        inputs = targets[:, :-1]  # (B, T-1, k): the step-t input is x_{t,k}
        if self.k > 1:  # k = 1 has nothing to noise (β(0) = 0); not drawing keeps the base's RNG stream
            inputs = self.noise_tensors(inputs, generator, noise_uniforms)
        slot_hidden = self.decode(self.hidden_states(inputs, labels))  # (B, T, k, D)
        per_slot = torch.stack(
            [
                checkpoint(self.slot_cross_entropy, slot_hidden[:, :, s], targets[..., s], use_reentrant=False)
                for s in range(self.k)
            ]
        )  # (k,)
        return (self.slot_weight * per_slot).sum(), per_slot.detach()

    # ----- cached decoding: prefill / decode_one_tensor / generate -----
    def slot_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Last hidden states (B, D) -> logits of all k slots (B, k, V), one head matmul."""
        return self.base.head(self.decode(hidden))

    def prefill(self, cond_idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Condition tokens into the cache -> logits of the first window (B, k, V)."""
        hidden = self.base.transformer(self.base.embed_condition(cond_idx), 0, cache)  # (B, cls, D)
        cache.length = hidden.size(1)
        return self.slot_logits(hidden[:, -1])

    def decode_step(self, window: torch.Tensor, position: int | torch.Tensor, cache: KVCache, rows: int = 1):
        """window (B, k) at `position` -> logits of the next window (rows·B, k, V); does not advance
        the cache (`position` as in `GPT.decode_step`).

        `rows=2` repeats the encoded window for the [cond; null-class] rows of CFG (encoded once).
        """
        h = self.encode(window[:, None]).repeat(rows, 1, 1)  # (rows·B, 1, D)
        hidden = self.base.transformer(h, position, cache)  # (rows·B, 1, D)
        return self.slot_logits(hidden[:, 0])

    def decode_one_tensor(self, window: torch.Tensor, cache: KVCache, rows: int = 1) -> torch.Tensor:
        """window (B, k) at position cache.length -> logits of the next window; advances the cache."""
        logits = self.decode_step(window, cache.length, cache, rows)
        cache.length += 1
        return logits

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        return self.base.new_cache(batch_size, max_len)

    @torch.no_grad()
    @with_packed_weights
    def generate(
        self,
        cond: torch.Tensor,
        num_tokens: int | None = None,
        *,
        generator: torch.Generator | None = None,
        uniforms: torch.Tensor | None = None,
        draft_noise: str = "none",
        noise_uniforms: torch.Tensor | None = None,
        return_drafts: bool = False,
        compile_step: bool = False,
        **sampling,
    ):
        """Labels (B,) -> tokens (B, T) by commit-and-refine; with `return_drafts`, also (B, T, k).

        Step i samples all k slots of window i (x̂_i..x̂_{i+k-1}; PAD past T) from the logits of the
        window fed at step i-1, commits slot 0 as token i and feeds the whole window back. `sampling`
        (the options of `SamplingOptions`: CFG, its interval, temperature, top-k/top-p, greedy) acts on
        every slot as in `GPT.generate`. `uniforms` (B, T, k): per-sample draws for inverse-CDF
        sampling. `draft_noise="schedule"` (ours) resamples position j of each fed window with
        probability β(j), as in training, using `noise_uniforms` (B, T, k, 2) if given.
        `compile_step`: run the per-token step compiled (`CompiledStep`).
        """
        if draft_noise not in DRAFT_NOISE:
            raise ValueError(f"unknown draft_noise {draft_noise!r}; known: {', '.join(DRAFT_NOISE)}")
        opts = SamplingOptions(**sampling)
        num_tokens = num_tokens or self.base.config.block_size
        B, k, device = cond.shape[0], self.k, cond.device
        cond_rows = opts.condition_rows(cond, self.base.config.num_classes)  # (rows·B,)
        max_len = self.base.config.cls_token_num + num_tokens
        cache, step = make_decoder(self, self.decode_one_tensor, cond_rows.shape[0], max_len, compile_step)
        # valid[i, s]: slot s of window i is a real position (i + s < T); the rest is forced to PAD.
        steps = torch.arange(num_tokens, device=device)
        valid = (steps[:, None] + torch.arange(k, device=device)) < num_tokens  # (T, k)
        drafts = torch.empty(B, num_tokens, k, dtype=torch.long, device=device)
        logits = self.prefill(cond_rows, cache)  # (rows·B, k, V)
        for i in range(num_tokens):
            if i > 0:
                fed = drafts[:, i - 1]  # (B, k)
                if draft_noise == "schedule":
                    u = None if noise_uniforms is None else noise_uniforms[:, i]
                    fed = self.noise_tensors(fed, generator, u)
                logits = step(fed, cache, rows=cond_rows.shape[0] // B)
            u = None if uniforms is None else uniforms[:, i]
            window = opts.sample(opts.guide(logits, i), generator, u)  # (B, k)
            drafts[:, i] = torch.where(valid[i], window, PAD)
        tokens = drafts[:, :, 0].clone()  # (B, T): the committed slot of every step
        return (tokens, drafts) if return_drafts else tokens
