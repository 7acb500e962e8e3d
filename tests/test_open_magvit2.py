"""Open-MAGVIT2 AR generator: parity with the official code's reference outputs (omv_tiny_ref.pt), the
released architectures (omv_manifest.json), strict loading of both checkpoint layouts, and the TensorAR
plug-in around it (spec: shared/reference/open_magvit2/spec.md)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tensorar.checkpoint import CheckpointMismatchError
from tensorar.decoding.generate import decode_step, prefill
from tensorar.decoding.sampling import SamplingOptions
from tensorar.models.backbone import PAD
from tensorar.models.loading import load_model
from tensorar.models.open_magvit2 import (
    OMV_MODELS,
    OpenMAGVIT2,
    OpenMAGVIT2Config,
    load_official,
    omv_config,
)
from tensorar.models.registry import family
from tensorar.models.tensorar import TensorAR, TensorARConfig

GREEDY = SamplingOptions(greedy=True)


def meta_model(cfg: OpenMAGVIT2Config) -> OpenMAGVIT2:
    with torch.device("meta"):
        return OpenMAGVIT2(cfg)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def ref(omv_ref):
    return torch.load(omv_ref / "omv_tiny_ref.pt", weights_only=True)


@pytest.fixture(scope="module")
def manifest(omv_ref):
    return json.loads((omv_ref / "omv_manifest.json").read_text())["ar"]


@pytest.fixture
def tiny(ref) -> OpenMAGVIT2:
    """The official tiny GPT (2 + 1 layers, D 64, bits [3, 3], 4x4 grid, 10 classes) with its weights."""
    model = OpenMAGVIT2(OpenMAGVIT2Config.from_official(ref["config"]))
    model.load_state_dict(ref["state_dict"], strict=True)
    return model.eval()


def options_of(gen: dict, greedy: bool = False) -> SamplingOptions:
    """The official sampler's per-sub-token arguments as our options."""
    return SamplingOptions(cfg_scale=tuple(gen["cfg_scale"]), temperature=tuple(gen["temperature"]),
                           top_k=tuple(gen["top_k"]), top_p=tuple(gen["top_p"]), greedy=greedy)


# ----- configuration -----
def test_config_from_official_and_strict(ref):
    cfg = OpenMAGVIT2Config.from_official(ref["config"])
    assert (cfg.dim, cfg.n_head, cfg.spatial_n_layer, cfg.factorized_n_layer) == (64, 2, 2, 1)
    assert (cfg.factorized_bits, cfg.num_classes, cfg.block_size) == ((3, 3), 10, 16)
    assert (cfg.head_dim, cfg.ffn_hidden_dim, cfg.grid_size) == (32, 256, 4)
    assert (cfg.token_dropout_p, cfg.ffn_dropout_p, cfg.attn_dropout_p) == (0.1, 0.1, 0.0)  # official defaults
    assert OpenMAGVIT2Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="OpenMAGVIT2Config: unknown keys \\['n_layer'\\]"):
        OpenMAGVIT2Config.from_dict({**cfg.to_dict(), "n_layer": 2})
    with pytest.raises(ValueError, match="unknown Open-MAGVIT2 GPT arguments: \\['class_nums'\\]"):
        OpenMAGVIT2Config.from_official({**ref["config"], "class_nums": 10})
    with pytest.raises(ValueError, match="token_factorization=False is not supported"):
        OpenMAGVIT2Config.from_official({**ref["config"], "token_factorization": False})
    with pytest.raises(KeyError, match="unknown Open-MAGVIT2 preset 'AR-M'; known: AR-B, AR-L, AR-XL, AR-toy"):
        omv_config("AR-M")
    fam = family("open_magvit2")
    assert (fam.tokenizer, fam.condition, fam.model_class, fam.presets) == ("lfq", "class", OpenMAGVIT2, OMV_MODELS)
    with pytest.raises(KeyError, match="unknown open_magvit2 preset"):
        fam.config("AR-b")


def test_sizes_and_token_ids(tiny):
    assert (tiny.vocab_size, tiny.token_parts, tiny.prefix_length, tiny.num_tokens) == (64, 2, 1, 16)
    assert (tiny.num_classes, tiny.condition_dropout_prob) == (10, 0.1)
    full = torch.arange(64)
    pre, post = tiny.split_tokens(full)
    assert torch.equal(pre + post * 8, full) and pre.max() == 7 and post.max() == 7  # full = pre + post * 2**b0
    assert torch.equal(tiny.join_tokens(pre, post), full)
    assert all((part == PAD).all() for part in tiny.split_tokens(torch.full((3,), PAD)))
    torch.testing.assert_close(tiny.embed_tokens(full), tiny.pre_emb(pre) + tiny.post_emb(post), atol=0, rtol=0)
    assert torch.equal(tiny.as_condition(torch.tensor([[3], [7]]))["labels"], torch.tensor([3, 7]))  # official (B, 1)
    assert torch.equal(tiny.null_condition({"labels": torch.tensor([3, 7])})["labels"], torch.tensor([10, 10]))


# ----- parity with the official code -----
def test_teacher_forced_parity(tiny, ref):
    torch.testing.assert_close(tiny.rope, ref["freqs_cis"], atol=0, rtol=0)  # zero class row, interleaved pairs
    with torch.no_grad():
        (logits_pre, logits_post), loss = tiny(ref["idx_full"], ref["labels"])
        hidden = tiny.hidden_states(tiny.embed_tokens(ref["idx_full"][:, :-1]), tiny.as_condition(ref["labels"]))
        token_loss = tiny.token_loss(hidden, ref["idx_full"])
    torch.testing.assert_close(hidden, ref["h_spatial_last_block"], atol=1e-5, rtol=0)  # no norm before intra
    torch.testing.assert_close(logits_pre, ref["logits_pre"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits_post, ref["logits_post"], atol=1e-5, rtol=0)
    torch.testing.assert_close(loss, ref["loss"], atol=1e-6, rtol=0)
    torch.testing.assert_close(token_loss, ref["loss"], atol=1e-6, rtol=0)  # the Backbone role gives the same


@pytest.mark.parametrize("name", ["greedy_nocfg", "greedy_cfg", "sampled_cfg", "sampled_nocfg_topk_topp"])
def test_generation_token_for_token(tiny, ref, name):
    """Same tokens as `sample_Open_MAGVIT2`: greedy (official top_k = [1, 1], and our argmax), and seeded
    multinomial sampling from the global RNG (our draws: pre then post per step, on [B, V])."""
    gen = ref["gen"][name]
    variants = [False, True] if list(gen["top_k"]) == [1, 1] else [False]
    for greedy in variants:
        torch.manual_seed(gen["seed"])
        tokens = tiny.generate(gen["labels"], options_of(gen, greedy))
        pre, post = tiny.split_tokens(tokens)
        assert torch.equal(pre, gen["pre"]) and torch.equal(post, gen["post"])


def test_kv_cached_steps_equal_official_steps(tiny, ref):
    """Our cached spatial steps + intra head on the official greedy-CFG tokens -> the official per-step raw
    logits ([cond; null] rows)."""
    gen = ref["gen"]["greedy_cfg"]
    tokens = tiny.join_tokens(gen["pre"], gen["post"])  # (B, T)
    rows = tiny.condition_rows(tiny.as_condition(gen["labels"]), use_cfg=True)  # [cond; null]
    with torch.no_grad():
        cache = tiny.new_cache(4)
        steps = [prefill(tiny, rows, cache)]
        for i in range(1, 16):
            steps.append(decode_step(tiny, tokens[:, i - 1 : i], cache.length, cache, rows=2))
            cache.length += 1
        hidden = torch.cat(steps, dim=1)  # (2B, T, D)
        cached_pre, cached_post = tiny.sub_token_logits(hidden, gen["pre"].repeat(2, 1))
    torch.testing.assert_close(cached_pre, gen["step_logits_pre_raw"], atol=1e-5, rtol=0)
    torch.testing.assert_close(cached_post, gen["step_logits_post_raw"], atol=1e-5, rtol=0)


def test_sample_tokens_any_leading_shape_and_uniform_draws(tiny):
    """(R, k, D) hidden states as TensorAR passes them; one uniform per sub-token; CFG rows share pre."""
    torch.manual_seed(0)
    hidden = torch.randn(2 * 3, 4, 64)  # (rows·B, k, D)
    u = torch.rand(3, 4, 2)  # (B, k, parts)
    options = SamplingOptions(cfg_scale=(2.0, 1.5), temperature=(1.0, 0.7))
    with torch.no_grad():
        tokens = tiny.sample_tokens(hidden, options, 3, uniforms=u)  # (B, k)
        assert tokens.shape == (3, 4) and tokens.min() >= 0 and tokens.max() < tiny.vocab_size
        # Oracle: the teacher-forced head at the sampled pre, guided and inverse-CDF sampled by hand.
        pre, post = tiny.split_tokens(tokens)
        logits_pre, logits_post = tiny.sub_token_logits(hidden, pre.repeat(2, 1))
        for i, (logits, part, scale, temp) in enumerate(((logits_pre, pre, 2.0, 1.0), (logits_post, post, 1.5, 0.7))):
            cond, null = logits.chunk(2)
            cdf = torch.softmax((null + (cond - null) * scale) / temp, -1).cumsum(-1)  # (B, k, V)
            expected = torch.searchsorted(cdf, (u[..., i] * cdf[..., -1]).unsqueeze(-1), right=True).squeeze(-1)
            assert torch.equal(part, expected)


# ----- training loss -----
def test_token_loss_is_the_sum_of_the_sub_token_ces(tiny):
    """CE(pre) + CE(post) over the real positions, teacher-forced with the true pre (PAD handling: the
    family contract, tests/test_family_contract.py)."""
    torch.manual_seed(1)
    hidden = torch.randn(2, 16, 64)
    targets = torch.randint(64, (2, 16))
    targets[1, 10:] = PAD
    real = targets != PAD
    pre, post = tiny.split_tokens(targets[real])
    logits_pre, logits_post = tiny.sub_token_logits(hidden[real], pre)
    torch.testing.assert_close(tiny.token_loss(hidden, targets),
                               F.cross_entropy(logits_pre, pre) + F.cross_entropy(logits_post, post))


# ----- the released architectures -----
@pytest.mark.parametrize("size", ["B", "L", "XL"])
def test_presets_match_the_released_models(manifest, size):
    ref = manifest[size]
    cfg = omv_config(f"AR-{size}")
    assert cfg == OpenMAGVIT2Config.from_official(ref["transformer_params"])
    assert (cfg.head_dim, cfg.ffn_hidden_dim) == (ref["head_dim"], ref["ffn_hidden_dim"])
    model = meta_model(cfg)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == {
        e["name"]: e["shape"] for e in ref["gpt_state_dict"]}
    assert n_params(model) == ref["gpt_param_count"]  # 343,570,432 / 804,362,240 / 1,486,679,040
    assert {name: n_params(getattr(model, name)) for name in ref["gpt_param_groups"]} == ref["gpt_param_groups"]


@pytest.mark.parametrize("size", ["B", "L", "XL"])
def test_lightning_layout_loads_strictly(manifest, size):
    """AR_256_{size}.ckpt's keys (transformer.* + first_stage_model.*), as meta tensors: the generator part
    loads strictly, the tokenizer part is dropped, a sampler's kv_cache buffers are ignored."""
    state_dict = {e["name"]: torch.empty(e["shape"], device="meta") for e in manifest[size]["net2net_state_dict"]}
    state_dict["transformer.spatial_blocks.0.attention.kv_cache.k_cache"] = torch.empty(2, device="meta")
    with torch.device("meta"):
        model = load_official(f"AR_256_{size}.ckpt", f"AR-{size}", OMV_MODELS, contents={"state_dict": state_dict})
        assert n_params(model) == manifest[size]["gpt_param_count"]
        del state_dict["transformer.head.1.weight"]
        state_dict["transformer.heads.1.weight"] = torch.empty(1, device="meta")
        with pytest.raises(CheckpointMismatchError, match=r"missing \(1\): head.1.weight[\s\S]*"
                                                          r"unexpected \(1\): heads.1.weight"):
            load_official("AR.ckpt", f"AR-{size}", OMV_MODELS, contents={"state_dict": state_dict})


def test_official_files_load_through_the_registry(tiny, ref, tmp_path):
    """Both layouts as real files: the tiny model via load_official, an AR-toy one via load_model."""
    bare = tmp_path / "gpt.pt"
    torch.save(ref["state_dict"], bare)
    lightning = tmp_path / "AR_tiny.ckpt"
    torch.save({"state_dict": {**{f"transformer.{k}": v for k, v in ref["state_dict"].items()},
                               "first_stage_model.encoder.conv_in.weight": torch.zeros(4, 3, 3, 3)}}, lightning)
    presets = {"tiny": tiny.config}
    for path in (bare, lightning):
        model = load_official(path, "tiny", presets).eval()
        with torch.no_grad():
            (logits_pre, _), _ = model(ref["idx_full"], ref["labels"])
        torch.testing.assert_close(logits_pre, ref["logits_pre"], atol=1e-5, rtol=0)
    toy = OpenMAGVIT2(omv_config("AR-toy", num_classes=7))
    torch.save({"state_dict": {f"transformer.{k}": v for k, v in toy.state_dict().items()}}, tmp_path / "toy.ckpt")
    loaded = load_model(tmp_path / "toy.ckpt", "open_magvit2", "AR-toy")
    assert loaded.config == toy.config  # num_classes from the file
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in toy.state_dict().items())


def test_missing_file_and_wrong_preset_say_what_to_do(tmp_path):
    hint = r"AR_256_L\.ckpt on huggingface\.co/TencentARC/Open-MAGVIT2-AR-L-256-resolution"
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*/AR_256_L\.ckpt\n[\s\S]*" + hint):
        load_model(tmp_path / "AR_256_L.ckpt", "open_magvit2", "AR-L")
    with pytest.raises(FileNotFoundError, match=r"weights\.ckpt\n.*\(AR_256_B\.ckpt on .*AR-B-256-resolution\)$"):
        load_official(tmp_path / "weights.ckpt", "AR-B", OMV_MODELS)
    with pytest.raises(KeyError, match="unknown Open-MAGVIT2 preset 'AR-l'"):
        load_official(tmp_path / "AR_256_L.ckpt", "AR-l", OMV_MODELS)


# ----- TensorAR around Open-MAGVIT2 -----
def test_tensorar_k4_at_init_generates_the_base_tokens(tiny, ref):
    torch.manual_seed(0)
    model = TensorAR(tiny, TensorARConfig(k=4)).eval()
    for name in ("greedy_nocfg", "greedy_cfg"):
        gen = ref["gen"][name]
        tokens, drafts = model.generate(gen["labels"], options_of(gen, greedy=True), return_drafts=True)
        assert torch.equal(tokens, tiny.join_tokens(gen["pre"], gen["post"]))
        assert drafts.shape == (2, 16, 4) and (drafts[:, -1, 1:] == PAD).all()
    # Slot 0 equals the base (to fp32 rounding: the zero-initialised projections add exact zeros).
    tokens, labels = ref["idx_full"], ref["labels"].flatten()
    with torch.no_grad():
        inputs = model.noise_windows(model.windows(tokens)[:, :-1], torch.Generator().manual_seed(0))
        slot0 = model.slot_hidden_states(inputs, {"labels": labels})[:, :, 0]
        (base_pre, _), _ = tiny(tokens, labels)
        torch.testing.assert_close(tiny.sub_token_logits(slot0, tiny.split_tokens(tokens)[0])[0], base_pre)


def test_tensorar_trains_through_the_sub_token_head(tiny, ref):
    model = TensorAR(tiny, TensorARConfig(k=4)).train()
    loss, per_slot = model.training_loss(ref["idx_full"], {"labels": ref["labels"].flatten()},
                                         generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert per_slot.shape == (4,) and torch.isfinite(per_slot).all()
    assert model.q_out.mlp[-1].weight.grad.abs().sum() > 0
    assert tiny.head[1].weight.grad.abs().sum() > 0 and tiny.factorized_blocks[0].ffn_norm.weight.grad is not None


@pytest.mark.parametrize("size,paper", [("B", 0.027), ("L", 0.020)])
def test_plugin_overhead_at_k4_depth1(size, paper):
    """The plug-in's parameters relative to the base, on the meta device. Ours: B 12,599,296 (+3.67 %),
    L 19,681,280 (+2.45 %); the paper reports +2.7 % and +2.0 % (its plug-in's exact layout is not given)."""
    base = meta_model(omv_config(f"AR-{size}"))
    with torch.device("meta"):
        model = TensorAR(base, TensorARConfig(k=4, depth=1))
    added = sum(p.numel() for p in model.plugin_parameters())
    D = base.dim
    # Q_in and Q_out: cross-attention 4D² + MLP 2D² each; 1 + 4 queries, 3 norms each, 4 window positions, PAD
    assert added == 2 * 6 * D * D + (1 + 4 + 2 * 3 + 4 + 1) * D
    overhead = added / n_params(base)
    assert 0 < overhead < 2 * paper


# ----- decoding paths -----
def test_kv_cache_not_in_state_dict_and_toy_preset_runs():
    torch.manual_seed(0)
    model = OpenMAGVIT2(omv_config("AR-toy")).eval()
    keys = set(model.state_dict())
    tokens = model.generate(torch.tensor([0, 9]), SamplingOptions(cfg_scale=(1.9, 2.0)))
    assert tokens.shape == (2, 64) and tokens.max() < 256  # 8x8 grid of LFQ-toy codes (4 + 4 bits)
    assert set(model.state_dict()) == keys


def test_compiled_step_equals_eager(tiny, ref):
    gen = ref["gen"]["greedy_cfg"]
    options = options_of(gen, greedy=True)
    eager = tiny.generate(gen["labels"], options)
    assert torch.equal(tiny.generate(gen["labels"], options, compile_step=True), eager)
    model = TensorAR(tiny, TensorARConfig(k=3)).eval()
    assert torch.equal(model.generate(gen["labels"], options, compile_step=True), eager)
