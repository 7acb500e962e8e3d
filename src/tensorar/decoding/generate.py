"""The generation loop, written once for every backbone and for TensorAR: prefill the condition into a
KV cache, then one backbone step per image token (LlamaGen's `generate.py`: prefill / decode_one_token /
generate).

A model generates windows of k tokens (paper Sec. 2.2.2, "commit and refine"): step i samples the k
slots of window i (x̂_i .. x̂_{i+k-1}; PAD past the end) from the hidden state of the window fed at step
i-1, commits slot 0 as token i and feeds the whole window back. A plain backbone is the case k = 1, so
the base and the plug-in share every line here. The model offers:

    backbone                      the Backbone (roles: condition, transformer, token head)
    k                             tokens per window (the paper's window size; 1 for a backbone)
    encode_windows(windows)       (B, L, k) ids -> input embeddings (B, L, D)
    slot_hidden(hidden)           (..., D) -> per-slot hidden states (..., k, D)
    noise_windows(windows, g, u)  TensorAR only: draft noise (`draft_noise="schedule"`, ours)
"""
from __future__ import annotations

import torch

from tensorar.decoding.compiled_step import make_decoder
from tensorar.decoding.cpu_packing import packed_for_decoding
from tensorar.decoding.sampling import SamplingOptions

PAD = -1  # token id of positions with no token (past the end of the sequence, in TensorAR windows)


def decode_step(model, window: torch.Tensor, position: int | torch.Tensor, cache, rows: int = 1) -> torch.Tensor:
    """window (B, k) at `position` -> per-slot hidden states of the next window (rows·B, k, D); does not
    advance the cache. `rows=2` repeats the encoded window for the [cond; null] rows of CFG (encoded
    once). `position` a 0-d long tensor gives the static-shape step that `CompiledStep` compiles."""
    h = model.encode_windows(window[:, None]).repeat(rows, 1, 1)  # (rows·B, 1, D)
    hidden = model.backbone.transformer(h, position, cache)  # (rows·B, 1, D)
    return model.slot_hidden(hidden[:, 0])


def prefill(model, cond_rows: dict, cache) -> torch.Tensor:
    """The condition of every row into the cache -> per-slot hidden states of the first window (R, k, D)."""
    backbone = model.backbone
    prefix = backbone.embed_condition(cond_rows)
    hidden = backbone.transformer(prefix.embeddings, 0, cache, key_mask=prefix.key_mask)  # (R, P, D)
    cache.length = hidden.size(1)
    return model.slot_hidden(hidden[:, -1])


@torch.no_grad()
def generate(
    model,
    cond,
    options: SamplingOptions | None = None,
    *,
    num_tokens: int | None = None,
    generator: torch.Generator | None = None,
    uniforms: torch.Tensor | None = None,
    noise_uniforms: torch.Tensor | None = None,
    return_drafts: bool = False,
    compile_step: bool = False,
):
    """Condition (B, ...) -> tokens (B, T); with `return_drafts`, also the windows (B, T, k).

    `options` act on every slot as the family's official sampler does (CFG, its interval, temperature,
    top-k/top-p per sub-token, greedy). `uniforms` (B, T, k, token_parts): per-sample draws for inverse-CDF
    sampling (else `generator` with torch.multinomial, as LlamaGen). `options.draft_noise="schedule"`
    (TensorAR, ours) resamples position j of each fed window with probability β(j), as in training,
    using `noise_uniforms` (B, T, k, 2) if given. `compile_step`: the per-token step compiled
    (`CompiledStep`; CUDA graphs on GPU).
    """
    opts = options or SamplingOptions()
    backbone, k = model.backbone, model.k
    if opts.draft_noise != "none" and not hasattr(model, "noise_windows"):
        raise ValueError(f"draft_noise={opts.draft_noise!r} needs a TensorAR model")
    if opts.num_parts() not in (1, backbone.token_parts):
        raise ValueError(f"sampling options give {opts.num_parts()} values per token; {backbone.family} tokens "
                         f"have {backbone.token_parts} part(s)")
    cond = backbone.as_condition(cond)
    cond_rows = backbone.condition_rows(cond, opts.use_cfg)
    B = next(iter(cond.values())).shape[0]
    rows = next(iter(cond_rows.values())).shape[0] // B
    num_tokens = num_tokens or backbone.num_tokens
    device = next(iter(cond.values())).device
    # valid[i, s]: slot s of window i is a real position (i + s < T); the rest is forced to PAD.
    steps = torch.arange(num_tokens, device=device)
    valid = (steps[:, None] + torch.arange(k, device=device)) < num_tokens  # (T, k)
    drafts = torch.empty(B, num_tokens, k, dtype=torch.long, device=device)

    def step_fn(window, position, cache, rows=1):
        return decode_step(model, window, position, cache, rows)

    with packed_for_decoding(model):
        cache, step = make_decoder(model, step_fn, rows * B, backbone.prefix_length + num_tokens, compile_step)
        slots = prefill(model, cond_rows, cache)  # (rows·B, k, D)
        for i in range(num_tokens):
            if i > 0:
                fed = drafts[:, i - 1]  # (B, k)
                if opts.draft_noise == "schedule":
                    fed = model.noise_windows(fed, generator, None if noise_uniforms is None else noise_uniforms[:, i])
                slots = step(fed, cache, rows=rows)
            u = None if uniforms is None else uniforms[:, i]
            window = backbone.sample_tokens(slots, opts, i, generator, u)  # (B, k)
            drafts[:, i] = torch.where(valid[i], window, PAD)
    tokens = drafts[:, :, 0].clone()  # (B, T): the committed slot of every step
    return (tokens, drafts) if return_drafts else tokens
