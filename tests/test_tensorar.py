"""TensorAR plug-in: identity at initialisation, noise, loss, commit-and-refine sampling, I/O.

Checked on the LlamaGen c2i backbone. The invariants every family must keep (k = 1 is the backbone,
cached = uncached decoding, checkpoint round trips, compiled = eager) are checked for every registered
family in tests/test_family_contract.py.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tensorar.decoding.generate import decode_step, prefill
from tensorar.decoding.sampling import SamplingOptions, apply_cfg, sample_from_logits
from tensorar.models.backbone import PAD
from tensorar.models.loading import load_model, save_model
from tensorar.models.tensorar import TensorAR, TensorARConfig

T, V, NUM_CLASSES = 16, 64, 5


@pytest.fixture
def make(tiny):
    """TensorAR(k, trained=...) around a fresh tiny base (dim 32, vocab 64, 5 classes, 16 tokens)."""

    def build(k: int, trained: bool = False, seed: int = 0, **plugin) -> TensorAR:
        return tiny.tensorar(tiny.gpt(seed, vocab=V, classes=NUM_CLASSES, tokens=T), k, trained=trained, **plugin)

    return build


def data(B: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(V, (B, T), generator=g), torch.randint(NUM_CLASSES, (B,), generator=g)


def slot_logits(model: TensorAR, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits of every slot: input windows (B, L, k) -> (B, L + 1, k, V)."""
    return model.base.logits(model.slot_hidden_states(inputs, {"labels": labels}))


# ----- identity at initialisation -----
@pytest.mark.parametrize("k", [2, 4])
def test_slot0_equals_base_at_init(make, k):
    model = make(k=k)
    tokens, labels = data()
    inputs = model.noise_windows(model.windows(tokens)[:, :-1], torch.Generator().manual_seed(0))
    greedy = SamplingOptions(greedy=True)
    with torch.no_grad():
        base_logits, _ = model.base(tokens[:, :-1], labels)
        logits = slot_logits(model, inputs, labels)  # (B, T, k, V)
        gen = model.generate(labels, greedy)
    assert logits.shape == (3, T, k, V)
    # Equal up to fp32 rounding: the two heads see different row counts, hence different matmul kernels.
    torch.testing.assert_close(logits[:, :, 0], base_logits)
    assert torch.equal(gen, model.base.generate(labels, greedy))


def test_plugin_initialised_without_touching_base(tiny):
    base = tiny.gpt(vocab=V, classes=NUM_CLASSES, tokens=T)
    before = {n: p.clone() for n, p in base.state_dict().items()}
    model = TensorAR(base, TensorARConfig(k=4))
    assert all(torch.equal(before[n], p) for n, p in model.base.state_dict().items())
    plugin, base_params = model.plugin_parameters(), model.base_parameters()
    assert {id(p) for p in plugin} | {id(p) for p in base_params} == {id(p) for p in model.parameters()}
    assert not {id(p) for p in plugin} & {id(p) for p in base_params}
    assert model.q_in.queries.abs().sum() > 0 and model.q_out.mlp[-1].weight.abs().sum() == 0


# ----- noise -----
def test_noise_applied_at_rate_beta(make):
    model = make(k=4, schedule="linear")
    n = 20000
    windows = torch.full((n, 4), 7)
    windows[: n // 10, 3] = PAD  # PAD positions must never be noised
    noised = model.noise_windows(windows, torch.Generator().manual_seed(0))
    assert (noised[: n // 10, 3] == PAD).all()
    assert torch.equal(noised[:, 0], windows[:, 0])
    for j in (1, 2, 3):
        rows = slice(n // 10, None) if j == 3 else slice(None)
        changed = (noised[rows, j] != 7).double()
        p = model.beta[j].item() * (1 - 1 / V)  # a resampled token can land on the original one
        assert abs(changed.mean().item() - p) < 4 * (p * (1 - p) / changed.numel()) ** 0.5
        # Replacements are uniform over the vocabulary: every token id shows up.
        assert noised[rows, j].unique().numel() == V


def test_literal_weighting_noises_at_table1_positions_and_uses_its_weights(make):
    # loss_weighting="literal" (Algorithm 1 with Table 1's 1-based positions): the last draft is pure noise.
    model = make(k=4, schedule="linear", loss_weighting="literal")
    assert model.beta.tolist() == pytest.approx([0.0, 0.5, 0.75, 1.0])
    assert model.slot_weight.tolist() == pytest.approx([1.0, 1.0, 0.5, 1 / 3])
    windows = torch.full((4000, 4), 7)
    noised = model.noise_windows(windows, torch.Generator().manual_seed(0))
    assert torch.equal(noised[:, 0], windows[:, 0])
    assert abs((noised[:, 3] != 7).double().mean().item() - (1 - 1 / V)) < 0.01  # always resampled
    # The default is unchanged: our reading, 0-based positions.
    assert make(k=4, schedule="linear").beta.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_training_loss_is_weighted_slot_ce_on_noised_non_pad_targets(make):
    k = 4
    model = make(k=k, trained=True, schedule="linear")
    tokens, labels = data()
    cond = {"labels": labels}
    loss, per_slot = model.training_loss(tokens, cond, generator=torch.Generator().manual_seed(4))
    inputs = model.noise_windows(model.windows(tokens)[:, :-1], torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = slot_logits(model, inputs, labels)  # (B, T, k, V)
    # Slot s of step t predicts token t + s; steps with t + s >= T are padding and ignored.
    manual = torch.stack(
        [F.cross_entropy(logits[:, : T - s, s].reshape(-1, V), tokens[:, s:].reshape(-1)) for s in range(k)]
    )
    torch.testing.assert_close(per_slot, manual)
    # The linear schedule's RDM weights are 1 / (s + 1) (docs/method.md works them out).
    torch.testing.assert_close(loss, (torch.tensor([1, 1 / 2, 1 / 3, 1 / 4]) * manual).sum())
    uniform = make(k=k, trained=True, schedule="linear", loss_weighting="uniform")
    u_loss, _ = uniform.training_loss(tokens, cond, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(u_loss, manual.sum())


def test_padding_slots_change_nothing(make):
    model = make(k=4, trained=True)
    tokens, labels = data()
    cond = {"labels": labels}
    windows = model.windows(tokens)
    assert (windows[:, T - 1, 1:] == PAD).all() and (windows[:, T - 4, :] != PAD).all()
    g = lambda: torch.Generator().manual_seed(2)
    with torch.no_grad():
        loss, _ = model.training_loss(tokens, cond, generator=g())
        inputs = model.noise_windows(windows[:, :-1], g())  # (B, T-1, k)
        slot_hidden = model.slot_hidden_states(inputs, cond)  # (B, T, k, D)
    # The slots whose target is PAD get no gradient: they never reach the loss.
    slot_hidden.requires_grad_(True)
    ce = sum(model.slot_weight[s] * model.base.token_loss(slot_hidden[:, :, s], windows[..., s]) for s in range(4))
    torch.testing.assert_close(ce, loss)
    ce.backward()
    grad = slot_hidden.grad.abs().sum(-1)  # (B, T, k)
    pad = windows == PAD
    assert (grad[pad] == 0).all() and (grad[~pad] > 0).all()
    # Sampled windows hold PAD exactly past the end of the sequence.
    _, drafts = model.generate(labels, return_drafts=True, generator=torch.Generator().manual_seed(0))
    steps, slots = torch.meshgrid(torch.arange(T), torch.arange(4), indexing="ij")
    assert torch.equal(drafts == PAD, (steps + slots >= T).expand_as(drafts))


# ----- sampling -----
def test_sampled_windows_are_draws_from_the_teacher_forced_logits(make):
    """Every sampled window slot is the inverse-CDF draw from the teacher-forced logits of the window fed
    before it; greedy commits their argmax, which is not simply the draft it was fed."""
    k = 3
    model = make(k=k, trained=True)
    _, labels = data(B=4)
    u = torch.rand(4, T, k, 1, generator=torch.Generator().manual_seed(0))
    tokens, drafts = model.generate(labels, uniforms=u, return_drafts=True)
    assert torch.equal(tokens, drafts[:, :, 0])
    with torch.no_grad():
        logits = slot_logits(model, drafts[:, :-1], labels)  # (B, T, k, V): step i fed the window sampled at i - 1
    resampled = sample_from_logits(logits, uniforms=u[..., 0])  # (B, T, k)
    real = drafts != PAD
    assert torch.equal(resampled[real], drafts[real])
    greedy = model.generate(labels, SamplingOptions(greedy=True), return_drafts=True)[1]
    with torch.no_grad():
        assert torch.equal(slot_logits(model, greedy[:, :-1], labels)[:, :, 0].argmax(-1), greedy[:, :, 0])
    assert not torch.equal(greedy[:, 1:, 0], greedy[:, :-1, 1])


@pytest.mark.parametrize("cfg_interval", [-1, 2])
def test_cfg_batches_cond_and_null_rows(make, cfg_interval):
    model = make(k=3, trained=True)
    _, labels = data(B=2)
    null = torch.full_like(labels, NUM_CLASSES)

    def first_window(rows: torch.Tensor, cache) -> torch.Tensor:
        return model.base.logits(prefill(model, {"labels": rows}, cache))  # (rows, k, V)

    def next_window(window: torch.Tensor, cache) -> torch.Tensor:
        hidden = decode_step(model, window, cache.length, cache)
        cache.length += 1
        return model.base.logits(hidden)

    with torch.no_grad():
        both = first_window(torch.cat([labels, null]), model.base.new_cache(4))
        alone = first_window(labels, model.base.new_cache(2))
    torch.testing.assert_close(apply_cfg(both, 1.0), alone)  # scale 1 is no guidance
    scale = 4.0
    options = SamplingOptions(greedy=True, cfg_scale=scale, cfg_interval=cfg_interval)
    out = model.generate(labels, options, return_drafts=True)[1]
    # Oracle: two separate caches, guidance combined by hand, LlamaGen's interval convention.
    with torch.no_grad():
        caches = [model.base.new_cache(2), model.base.new_cache(2)]
        window = None
        for i in range(T):
            c, n = (
                first_window(lab, cache) if i == 0 else next_window(window, cache)
                for lab, cache in zip((labels, null), caches)
            )
            guided = n + scale * (c - n) if cfg_interval < 0 or i - 1 <= cfg_interval else c
            window = guided.argmax(-1).masked_fill(torch.arange(3) + i >= T, PAD)
            assert torch.equal(out[:, i], window)


def test_cfg_scale_one_equals_no_cfg(make):
    model = make(k=2, trained=True)
    _, labels = data()
    u = torch.rand(3, T, 2, 1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(model.generate(labels, SamplingOptions(cfg_scale=1.0), uniforms=u),
                       model.generate(labels, uniforms=u))


def test_draft_noise_schedule_uses_the_given_draws(make):
    k = 4
    model = make(k=k, trained=True)
    _, labels = data()
    u = torch.rand(3, T, k, 1, generator=torch.Generator().manual_seed(1))
    noise = SamplingOptions(draft_noise="schedule")
    plain = model.generate(labels, uniforms=u, return_drafts=True)
    never = torch.ones(3, T, k, 2)  # mask draws of 1 never resample (β < 1)
    same = model.generate(labels, noise, uniforms=u, noise_uniforms=never, return_drafts=True)
    assert all(torch.equal(a, b) for a, b in zip(plain, same))
    always = torch.zeros(3, T, k, 2)  # mask draws of 0 resample every draft position to token 0
    noisy = model.generate(labels, noise, uniforms=u, noise_uniforms=always)
    with torch.no_grad():
        fed = torch.zeros(3, T - 1, k, dtype=torch.long)
        fed[:, :, 0] = noisy[:, :-1]
        fed = torch.where(model.windows(noisy)[:, :-1] == PAD, PAD, fed)
        expected = sample_from_logits(slot_logits(model, fed, labels)[:, :, 0], uniforms=u[:, :, 0, 0])
    assert torch.equal(noisy, expected)
    with pytest.raises(ValueError, match="draft_noise"):
        SamplingOptions(draft_noise="gaussian")
    with pytest.raises(ValueError, match="needs a TensorAR"):
        model.base.generate(labels, noise)


def test_self_drafts_are_the_windows_the_sampler_feeds_back(make):
    """Self-drafting (ours): given the sampler's own fed windows and the same draws, the no-grad pass
    samples exactly the windows the sampler sampled (slot 0: the committed token; PAD stays PAD)."""
    k = 3
    model = make(k=k, trained=True)
    _, labels = data(B=4)
    u = torch.rand(4, T, k, 1, generator=torch.Generator().manual_seed(3))
    _, drafts = model.generate(labels, uniforms=u, return_drafts=True)  # (B, T, k)
    inputs = drafts[:, :-1]  # the window fed at step t + 1 is the one sampled at step t
    drafted = model.self_drafts(inputs, {"labels": labels}, uniforms=u[:, :-1])
    assert torch.equal(drafted, inputs)
    # From noised inputs the drafts change, slot 0 and PAD do not.
    noised = model.noise_windows(inputs, uniforms=torch.zeros(*inputs.shape, 2))  # every draft -> token 0
    redrafted = model.self_drafts(noised, {"labels": labels}, uniforms=u[:, :-1])
    assert torch.equal(redrafted[..., 0], inputs[..., 0]) and torch.equal(redrafted == PAD, inputs == PAD)
    assert not torch.equal(redrafted, inputs)


def test_self_drafting_loss_trains_on_the_models_drafts(make):
    k = 3
    noise_model = make(k=k, trained=True)
    self_model = make(k=k, trained=True, draft_source="self")
    self_model.load_state_dict(noise_model.state_dict())
    tokens, labels = data()
    noise = torch.rand(3, T - 1, k, 2, generator=torch.Generator().manual_seed(0))
    draws = torch.rand(3, T - 1, k, 1, generator=torch.Generator().manual_seed(1))
    cond = {"labels": labels}
    loss, _ = self_model.training_loss(tokens, cond, noise_uniforms=noise, draft_uniforms=draws)
    again, _ = self_model.training_loss(tokens, cond, noise_uniforms=noise, draft_uniforms=draws)
    plain, _ = noise_model.training_loss(tokens, cond, noise_uniforms=noise)
    assert loss == again and loss != plain
    # The loss is the teacher-forced loss on the self-drafted inputs; the drafting pass gets no gradient.
    inputs = self_model.self_drafts(self_model.noise_windows(self_model.windows(tokens)[:, :-1], uniforms=noise),
                                    cond, uniforms=draws)
    targets = self_model.windows(tokens)
    hidden = self_model.slot_hidden_states(inputs, cond)
    want = sum(w * self_model.base.token_loss(hidden[:, :, s], targets[..., s])
               for s, w in enumerate(self_model.slot_weight))
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert all(p.grad is not None for p in self_model.plugin_parameters())


# ----- configuration and checkpoints -----
def test_config_is_strict():
    cfg = TensorARConfig(k=3, depth=2, schedule="sine", loss_weighting="uniform", n_head=4)
    assert TensorARConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="window"):
        TensorARConfig.from_dict({**cfg.to_dict(), "window": 3})
    with pytest.raises(ValueError, match="schedule.*exponential"):
        TensorARConfig(schedule="cosine")
    with pytest.raises(ValueError, match="k .--k. = 0: must be >= 1"):
        TensorARConfig(k=0)


def test_base_checkpoint_into_wrapper(tiny, tmp_path):
    base = tiny.gpt(seed=3, vocab=V, classes=NUM_CLASSES, tokens=T)
    save_model(tmp_path / "base.pt", base)
    model = TensorAR(load_model(tmp_path / "base.pt"), TensorARConfig(k=4)).eval()
    assert all(torch.equal(v, model.base.state_dict()[n]) for n, v in base.state_dict().items())
    tokens, labels = data()
    with torch.no_grad():
        torch.testing.assert_close(slot_logits(model, model.windows(tokens)[:, :-1], labels)[:, :, 0],
                                   base(tokens[:, :-1], labels)[0])


def test_one_step_trains_plugin_and_base(make):
    model = make(k=4).train()
    tokens, labels = data()
    groups = [{"params": model.plugin_parameters(), "lr": 1e-2}, {"params": model.base_parameters(), "lr": 1e-3}]
    opt = torch.optim.AdamW(groups)
    loss, per_slot = model.training_loss(tokens, {"labels": labels}, generator=torch.Generator().manual_seed(0))
    assert per_slot.shape == (4,) and not per_slot.requires_grad
    loss.backward()
    assert model.q_out.mlp[-1].weight.grad.abs().sum() > 0 and model.base.output.weight.grad.abs().sum() > 0
    opt.step()
    assert model.q_out.mlp[-1].weight.abs().sum() > 0


def test_parameter_counts_on_the_meta_device_match_a_real_model():
    from dataclasses import replace

    from tensorar.models.llamagen import GPT, GPT_MODELS
    from tensorar.models.overhead import parameter_counts

    plugin = TensorARConfig(k=4, depth=1)
    total, base = parameter_counts("llamagen", "GPT-toy-S", plugin, vocab_size=64, num_classes=5, block_size=16)
    real = TensorAR(GPT(replace(GPT_MODELS["GPT-toy-S"], vocab_size=64, num_classes=5, block_size=16)), plugin)
    assert total == sum(p.numel() for p in real.parameters())
    assert base == sum(p.numel() for p in real.backbone.parameters())
    # LlamaGen's GPT-B: 111M as its preset comment says, +7.09M with the plug-in (docs/method.md §1).
    total, base = parameter_counts("llamagen", "GPT-B", plugin)
    assert base == 110_888_448 and total - base == 7_090_176
