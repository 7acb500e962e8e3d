"""TensorAR: next-tensor prediction as a plug-in around a decoder-only AR image model.

Paper: ../shared/reference/paper/paper.txt, Sec. 2.2 (2.2.1 framework, 2.2.2 refinement, 2.2.3 noise,
Eq. 3-5, Table 1), Appendix A.1 (query transformers) and Appendix B (Algorithm 1, training). Tokens
x_1..x_T are regrouped into overlapping windows x_{t,k} = [x_t, ..., x_{t+k-1}];
at step t the model reads x_{t,k} (its first token committed, the others drafts) and predicts the whole
next window x_{t+1,k}. The base transformer is untouched -- one backbone position per token, T steps:

    M_enc: k token embeddings --Q_in (1 learned query)--> one vector, added to the first token's embedding
    M_dec: one hidden state --Q_out (k learned queries)--> k vectors, each added to the hidden state
           and sent through the base output head -> k logits

Both query transformers end in a zero-initialised projection, so at initialisation the wrapper is the
base model exactly (slot-0 logits are the base logits; k = 1 is bit-identical). Training resamples
position j of every input window with probability β(j) (`tensorar.models.schedules`) and weights slot s of the
cross-entropy by w_s (`loss_weighting`: our RDM reading, or Algorithm 1's literal one). Sampling commits slot 0 of every step and feeds the whole sampled
window back as the next input ("commit and refine").

Conventions: a window position past the last token holds PAD (-1). PAD positions are embedded with a
learned vector, never noised, never a target, and are re-imposed on every sampled window.

Ours, not the paper's (docs/method.md): `draft_noise="schedule"` (noise drafts at sampling as in
training), `draft_source="self"` (train on drafts the model samples itself, as at sampling),
inverse-CDF sampling from per-sample uniforms, and a learned window-position embedding on Q_in's keys
(cross-attention alone cannot tell which position a token sits at).

Reading order: config -> query transformer -> TensorAR (encoder, decoder, training, sampling).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tensorar.decoding.cpu_packing import PackableLinear
from tensorar.decoding.generate import generate
from tensorar.decoding.sampling import SamplingOptions
from tensorar.models.backbone import PAD, Backbone, Condition
from tensorar.models.layers import RMSNorm
from tensorar.models.schedules import LOSS_WEIGHTINGS, SCHEDULES, noise_levels, slot_weights
from tensorar.options import DictForm, check_fields, option

DRAFT_SOURCES = ("noise", "self")


@dataclass(frozen=True)
class TensorARConfig(DictForm):
    """The plug-in's settings (saved in every TensorAR checkpoint; the workflow's `variants`)."""

    k: int = option(4, "tokens per input/output tensor (window size)", min=1)
    depth: int = option(1, "cross-attention layers in each query transformer", min=1)
    schedule: str = option("exponential", "input noise schedule (tensorar.models.schedules)", choices=tuple(SCHEDULES))
    loss_weighting: str = option("rdm", "reading of Algorithm 1's loss weights (tensorar.models.schedules): rdm "
                                 "(ours: 0-based positions, w_s = (β(s+1) - β(s)) / β(s+1)), literal (Table 1's "
                                 "1-based positions, the last draft pure noise, w_j = (β(j) - β(j-1)) / β(j)) or "
                                 "uniform", choices=LOSS_WEIGHTINGS)
    n_head: int | None = option(None, "query-transformer heads (default: the backbone's)", min=1)
    draft_source: str = option("noise", "drafts of the training inputs: noise (the paper: noised ground truth) "
                               "or self (ours: sampled by the model in a no-grad pass, as the sampler makes them)",
                               choices=DRAFT_SOURCES)

    def __post_init__(self):
        check_fields(self)


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
        self.wq = PackableLinear(dim, dim, bias=False)
        self.wkv = PackableLinear(dim, 2 * dim, bias=False)
        self.wo = PackableLinear(dim, dim, bias=False)

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
        self.mlp = nn.Sequential(PackableLinear(dim, dim, bias=False), nn.GELU(), PackableLinear(dim, dim, bias=False))

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
    """Wraps any `Backbone` (tensorar.models.backbone): it reads token embeddings, the transformer and the
    token head through the backbone's roles only, so one plug-in serves every family. Sub-token
    backbones (Open-MAGVIT2) need nothing special: windows hold full token ids, noise resamples whole
    tokens, and each slot's hidden state goes through the backbone's own (sub-token) head."""

    def __init__(self, base: Backbone, cfg: TensorARConfig):
        super().__init__()
        if cfg.k > base.num_tokens:
            raise ValueError(f"k={cfg.k} exceeds the sequence length {base.num_tokens}")
        n_head = cfg.n_head or base.num_heads
        if base.dim % n_head:
            raise ValueError(f"dim {base.dim} is not divisible by the query-transformer heads {n_head}")
        self.base = base
        self.plugin_config = cfg
        self.k = cfg.k  # the window size (the generation contract reads it, as Backbone.k = 1)
        # Where each token sits in the window: Q_in's cross-attention is otherwise order-blind.
        self.window_pos = nn.Parameter(torch.empty(cfg.k, base.dim))
        # k = 1 windows never reach past the sequence; an unused parameter would break DDP.
        self.pad_embedding = nn.Parameter(torch.empty(base.dim)) if cfg.k > 1 else None
        self.q_in = QueryTransformer(base.dim, 1, n_head, cfg.depth, base.norm_eps)
        self.q_out = QueryTransformer(base.dim, cfg.k, n_head, cfg.depth, base.norm_eps)
        # Derived from the config, so not saved in the state dict.
        self.register_buffer("beta", noise_levels(cfg.schedule, cfg.k, cfg.loss_weighting).float(),
                             persistent=False)  # (k,)
        self.register_buffer(
            "slot_weight", slot_weights(cfg.schedule, cfg.k, cfg.loss_weighting).float(), persistent=False
        )  # (k,)
        self.initialize_plugin()

    def initialize_plugin(self):
        """Initialise the added modules only; the base weights are left as they are."""
        std = self.base.initializer_range
        for p in (self.window_pos, self.pad_embedding):
            if p is not None:
                nn.init.normal_(p, std=std)
        self.q_in.initialize_weights(std)
        self.q_out.initialize_weights(std)

    @property
    def backbone(self) -> Backbone:
        return self.base

    def plugin_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("base.")]

    def base_parameters(self) -> list[nn.Parameter]:
        return list(self.base.parameters())

    # ----- windows and noise -----
    def windows(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> overlapping windows (B, T, k): row t is tokens[t : t+k], PAD past T."""
        padded = F.pad(tokens, (0, self.k - 1), value=PAD)  # (B, T + k - 1)
        return padded.unfold(1, self.k, 1)  # (B, T, k)

    def noise_windows(
        self, windows: torch.Tensor, generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Resample position j of windows (..., k) uniformly over the vocabulary with probability β(j).

        `uniforms` (..., k, 2): per-position draws (mask, replacement); drawn from `generator` if None.
        PAD positions stay PAD. A resampled position gets a whole new token (every sub-token redrawn).
        """
        if uniforms is None:
            uniforms = torch.rand(*windows.shape, 2, generator=generator, device=windows.device)  # (..., k, 2)
        vocab = self.base.vocab_size
        replace = (uniforms[..., 0] < self.beta) & (windows != PAD)  # (..., k)
        random_tokens = (uniforms[..., 1] * vocab).long().clamp_(max=vocab - 1)  # (..., k)
        return torch.where(replace, random_tokens, windows)

    # ----- M_enc and M_dec -----
    def encode_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """M_enc: windows (B, L, k) -> input embeddings (B, L, D)."""
        emb = self.base.embed_tokens(windows.clamp(min=0))  # (B, L, k, D)
        if self.pad_embedding is not None:
            emb = torch.where((windows == PAD).unsqueeze(-1), self.pad_embedding.to(emb.dtype), emb)
        B, L, k, D = emb.shape
        summary = self.q_in((emb + self.window_pos).reshape(B * L, k, D))  # (B*L, 1, D)
        return emb[:, :, 0] + summary.view(B, L, D)

    def slot_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """M_dec before the head: hidden states (..., D) -> per-slot hidden states (..., k, D)."""
        flat = hidden.reshape(-1, 1, hidden.size(-1))  # (N, 1, D)
        expansion = self.q_out(flat).view(*hidden.shape[:-1], self.k, hidden.size(-1))  # (..., k, D)
        return hidden.unsqueeze(-2) + expansion

    def slot_hidden_states(self, inputs: torch.Tensor, cond: Condition) -> torch.Tensor:
        """Teacher-forced pass: input windows (B, L, k) -> per-slot hidden states (B, L + 1, k, D)."""
        return self.slot_hidden(self.base.hidden_states(self.encode_windows(inputs), cond))

    # ----- training -----
    @torch.no_grad()
    def self_drafts(self, inputs: torch.Tensor, cond: Condition, generator: torch.Generator | None = None,
                    uniforms: torch.Tensor | None = None) -> torch.Tensor:
        """Ours (`draft_source="self"`, docs/method.md): input windows (B, L, k) -> the same windows with
        positions 1..k-1 replaced by what the model samples for them, as the sampler's fed-back windows.

        One teacher-forced no-grad pass on `inputs`: the hidden state that predicts window t is sampled
        (temperature 1, no CFG, no top-k: the model's own distribution) slot by slot; slot 0 keeps the
        true committed token, PAD stays PAD. `uniforms` (B, L, k, token_parts): inverse-CDF draws.
        """
        hidden = self.slot_hidden_states(inputs, cond)[:, :-1]  # (B, L, k, D): row t predicts window t
        plain = SamplingOptions(cfg_scale=1.0)
        drafted = torch.stack([self.base.sample_tokens(hidden[:, :, s], plain, 0, generator,
                                                       None if uniforms is None else uniforms[:, :, s])
                               for s in range(self.k)], dim=-1)  # (B, L, k)
        drafted[..., 0] = inputs[..., 0]
        return torch.where(inputs == PAD, inputs, drafted)

    def training_loss(
        self,
        tokens: torch.Tensor,
        cond: Condition,
        generator: torch.Generator | None = None,
        noise_uniforms: torch.Tensor | None = None,
        draft_uniforms: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T), condition -> (Σ_s w_s · CE_s, per-slot CE (k,) detached).

        The input noise draws come from `noise_uniforms` (B, T-1, k, 2) when given (the training loop
        draws them per global sample, so the noise does not depend on the world size), else `generator`;
        with `draft_source="self"`, the drafts' sampling draws from `draft_uniforms` (B, T-1, k, parts).

        CE_s is the backbone's token loss of slot s over its non-PAD targets, so k = 1 is exactly the
        base model's loss. Each slot's head runs inside an activation checkpoint: only one slot's
        (B, T, V) logits exist at a time, in the forward and in the backward pass.
        """
        targets = self.windows(tokens)  # (B, T, k): the step-t target is x_{t+1,k}
        inputs = targets[:, :-1]  # (B, T-1, k): the step-t input is x_{t,k}
        if self.k > 1:  # k = 1 has nothing to noise (β(0) = 0); not drawing keeps the base's RNG stream
            inputs = self.noise_windows(inputs, generator, noise_uniforms)
            if self.plugin_config.draft_source == "self":
                inputs = self.self_drafts(inputs, cond, generator, draft_uniforms)
        slot_hidden = self.slot_hidden_states(inputs, cond)  # (B, T, k, D)
        per_slot = torch.stack(
            [
                checkpoint(self.base.token_loss, slot_hidden[:, :, s], targets[..., s], use_reentrant=False)
                for s in range(self.k)
            ]
        )  # (k,)
        return (self.slot_weight * per_slot).sum(), per_slot.detach()

    # ----- sampling (tensorar.decoding.generate: commit and refine) -----
    def generate(self, cond, options: SamplingOptions | None = None, **kwargs):
        """Condition (B, ...) -> tokens (B, T) by commit-and-refine; with `return_drafts=True`, also the
        sampled windows (B, T, k). Keyword arguments as `tensorar.decoding.generate.generate`."""
        return generate(self, cond, options, **kwargs)
