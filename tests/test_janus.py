"""Janus-Pro image generation through transformers' JanusForConditionalGeneration: parity of our roles
(condition, transformer, head), of our generation loop and of the VQ decode with the fixtures that HF's
own code produced (reference spec §3, janus_tiny_ref.pt), HF's generate on left-padded prompts, TensorAR
around Janus, checkpoints, and the published parameter counts (meta device)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers", reason="the Janus backbone runs transformers' JanusForConditionalGeneration")

from tensorar.decoding.sampling import SamplingOptions, apply_cfg
from tensorar.models import janus
from tensorar.models.backbone import PAD
from tensorar.models.janus import (
    JANUS_MODELS,
    JanusBackbone,
    JanusBackboneConfig,
    left_pad,
    load_janus_vq,
    prompt_condition,
)
from tensorar.models.loading import load_model, load_tokenizer
from tensorar.models.registry import FAMILIES, TOKENIZERS
from tensorar.models.tensorar import TensorAR, TensorARConfig

BOS, EOS, PAD_ID, BOI = 1, 2, 0, 3  # the tiny fixture's special ids


def tiny_config(ref, prompt_length: int = 9) -> JanusBackboneConfig:
    return JanusBackboneConfig(hf_config=ref["config"], num_image_tokens=16, prompt_length=prompt_length,
                               bos_token_id=BOS, pad_token_id=PAD_ID, boi_token_id=BOI)


def build(ref, prompt_length: int = 9) -> JanusBackbone:
    model = JanusBackbone(tiny_config(ref, prompt_length))
    model.model.load_state_dict(ref["state_dict"], strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def ref(t2i_ref):
    return torch.load(t2i_ref / "janus_tiny_ref.pt", weights_only=True)


@pytest.fixture(scope="module")
def model(ref):
    return build(ref)


def condition(ref) -> dict:
    return {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}


def padded_condition(ref) -> dict:
    """The fixture's prompts with the second one 3 tokens shorter, left-padded (HF's layout)."""
    ids, mask = ref["input_ids"].clone(), ref["attention_mask"].clone()
    ids[1] = torch.cat([torch.full((3,), PAD_ID), ids[1, :1], ids[1, 4:]])
    mask[1, :3] = 0
    return {"input_ids": ids, "attention_mask": mask}


def hf_generate(model: JanusBackbone, cond: dict, guidance: float, do_sample: bool) -> torch.Tensor:
    """HF's own image generation on the same weights (the special ids set as the fixture script does)."""
    hf = model.model
    hf.generation_config.bos_token_id, hf.generation_config.pad_token_id = BOS, PAD_ID
    hf.generation_config.eos_token_id = EOS
    hf.generation_config.generation_kwargs = {"boi_token_id": BOI}
    return hf.generate(cond["input_ids"], attention_mask=cond["attention_mask"], generation_mode="image",
                       do_sample=do_sample, guidance_scale=guidance)


# ----- teacher forcing through our roles -----
def test_teacher_forced_gen_head_logits(model, ref):
    cond = condition(ref)
    null = model.null_condition(cond)
    assert torch.equal(null["input_ids"], ref["uncond_input_ids"])
    assert torch.equal(null["attention_mask"], cond["attention_mask"])
    with torch.no_grad():
        logits_cond = model(ref["image_tokens"][:, :-1], cond)  # (B, 16, 64)
        logits_uncond = model(ref["image_tokens"][:, :-1], null)
    assert logits_cond.shape == (2, 16, 64) and logits_cond.dtype == torch.float32
    torch.testing.assert_close(logits_cond, ref["logits_cond"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits_uncond, ref["logits_uncond"], atol=1e-5, rtol=0)
    guided = apply_cfg(torch.cat([logits_cond, logits_uncond]), ref["cfg_scale_for_logits"])
    torch.testing.assert_close(guided, ref["logits_cfg"], atol=5e-5, rtol=0)  # s = 5 scales the rounding


def test_token_loss_is_ce_over_gen_head_ignoring_pad(model, ref):
    cond, tokens = condition(ref), ref["image_tokens"]
    with torch.no_grad():
        loss, per_slot = model.training_loss(tokens, cond)
        hidden = model.hidden_states(model.embed_tokens(tokens[:, :-1]), cond)  # (B, 16, D)
        padded = tokens.clone()
        padded[:, 10:] = PAD
        masked = model.token_loss(hidden, padded)
    expected = F.cross_entropy(ref["logits_cond"].reshape(-1, 64), tokens.reshape(-1))
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)
    assert torch.equal(per_slot, loss[None])
    torch.testing.assert_close(masked, F.cross_entropy(ref["logits_cond"][:, :10].reshape(-1, 64),
                                                       tokens[:, :10].reshape(-1)), atol=1e-5, rtol=0)


# ----- our generation loop against HF's generate -----
@pytest.mark.parametrize("scale,key", [(5.0, "gen_greedy_cfg5"), (1.5, "gen_greedy_cfg1.5")])
def test_greedy_generation_token_for_token(model, ref, scale, key):
    tokens = model.generate(condition(ref), SamplingOptions(cfg_scale=scale, greedy=True))
    assert torch.equal(ref[f"{key}_tf_logits_argmax"], ref[key])  # the fixture's own cache == uncached check
    if not torch.equal(tokens, ref[key]):  # a divergence may only follow a reference near-tie
        b, t = (tokens != ref[key]).nonzero()[0].tolist()
        pytest.fail(f"first divergence at sample {b}, token {t}; reference margin {ref[key + '_margins'][b, t]:.2e}")


def test_seeded_sample_matches_hf(model, ref):
    # HF samples with top_k=50: GenerationConfig's default, resolved inside generate(do_sample=True). On
    # this 64-code model top-k 50 and no top-k happen to give the same draws; on 16384 codes they differ.
    for top_k in (50, 0):
        torch.manual_seed(ref["sample_seed"])
        tokens = model.generate(condition(ref), SamplingOptions(cfg_scale=5.0, top_k=top_k))
        assert torch.equal(tokens, ref["gen_sample_cfg5_seed"])


@pytest.mark.parametrize("scale", [5.0, 1.5])
def test_left_padded_prompts_match_hf_generate(model, ref, scale):
    """Positions (cache slots, pads counted), the padding mask and the null prompt as HF's loop has them."""
    cond = padded_condition(ref)
    assert torch.equal(hf_generate(model, cond, scale, do_sample=False),
                       model.generate(cond, SamplingOptions(cfg_scale=scale, greedy=True)))
    torch.manual_seed(1)
    theirs = hf_generate(model, cond, scale, do_sample=True)
    torch.manual_seed(1)
    assert torch.equal(theirs, model.generate(cond, SamplingOptions(cfg_scale=scale, top_k=50)))


def test_longer_prompt_length_changes_nothing_but_rounding(model, ref):
    """Prompts left-padded to a longer prompt_length: masked keys, RoPE shifted as a whole."""
    longer = build(ref, prompt_length=13)
    assert longer.prefix_length == 13
    cond = padded_condition(ref)
    with torch.no_grad():
        torch.testing.assert_close(longer(ref["image_tokens"][:, :-1], cond),
                                   model(ref["image_tokens"][:, :-1], cond), atol=1e-5, rtol=0)
        # the shorter prompt alone, unpadded, gives its row's logits too
        alone = {k: v[1:, 3:] for k, v in cond.items()}
        torch.testing.assert_close(build(ref, prompt_length=6)(ref["image_tokens"][1:, :-1], alone),
                                   model(ref["image_tokens"][:, :-1], cond)[1:], atol=1e-5, rtol=0)
    for scale in (5.0, 1.5):
        options = SamplingOptions(cfg_scale=scale, greedy=True)
        assert torch.equal(longer.generate(cond, options), model.generate(cond, options))
    with pytest.raises(ValueError, match="exceed prompt_length 6"):
        build(ref, prompt_length=6).embed_condition(cond)


def test_guidance_one_runs_here_and_crashes_in_hf(model, ref):
    assert "expanded size" in ref["cfg1_error"]
    with pytest.raises(RuntimeError, match="expanded size"):
        hf_generate(model, condition(ref), 1.0, do_sample=False)
    tokens = model.generate(condition(ref), SamplingOptions(cfg_scale=1.0, greedy=True))
    assert tokens.shape == (2, 16) and tokens.min() >= 0 and tokens.max() < 64
    with torch.no_grad():  # the cached loop agrees with the teacher-forced conditional logits
        assert torch.equal(model(tokens[:, :-1], condition(ref)).argmax(-1), tokens)


def test_decode_images_matches_hf(model, ref):
    images = model.decode_images(ref["gen_greedy_cfg5"].view(2, 4, 4))  # (B, 3, H, W)
    assert images.shape == (2, 3, 16, 16)
    torch.testing.assert_close(images.permute(0, 2, 3, 1), ref["decoded_greedy_cfg5"], atol=1e-4, rtol=0)


def test_autocast_bf16_keeps_one_cache_dtype_and_fp32_logits(model, ref):
    """Under autocast the prompt embeddings come in fp32 and the image embeddings in bf16: the decoder's
    inputs are cast to one dtype, so HF's cache (dtype of its first keys) accepts every step."""
    cond = condition(ref)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        tokens = model.generate(cond, SamplingOptions(cfg_scale=5.0, greedy=True))
        cache = model.new_cache(2)
        prefix = model.embed_condition(cond)
        hidden = model.transformer(prefix.embeddings, 0, cache, key_mask=prefix.key_mask)
        assert model.logits(hidden).dtype == torch.float32
    assert cache.hf.layers[0].keys.dtype == torch.bfloat16
    assert tokens.shape == (2, 16) and next(model.parameters()).dtype == torch.float32


def test_cache_positions_must_come_in_order(model, ref):
    cache = model.new_cache(2)
    with torch.no_grad():
        prefix = model.embed_condition(condition(ref))
        model.transformer(prefix.embeddings, 0, cache, key_mask=prefix.key_mask)
        with pytest.raises(RuntimeError, match="9 slots are filled"):
            model.transformer(model.embed_tokens(ref["image_tokens"][:, :1]), 5, cache)


# ----- TensorAR around Janus -----
def test_only_the_generation_path_is_trainable(model):
    trainable = {name.split(".")[2] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"language_model", "generation_embeddings", "generation_aligner", "generation_head"}
    assert not model.model.lm_head.weight.requires_grad  # untied in the tiny model, as in the original


def test_tensorar_k4_at_init_generates_base_greedy(model, ref):
    torch.manual_seed(0)
    plugin = TensorAR(model, TensorARConfig(k=4)).eval()
    options = SamplingOptions(cfg_scale=5.0, greedy=True)
    tokens, drafts = plugin.generate(condition(ref), options, return_drafts=True)
    assert torch.equal(tokens, ref["gen_greedy_cfg5"])
    assert drafts.shape == (2, 16, 4) and (drafts[:, -1, 1:] == PAD).all()


def test_plugin_overhead_on_janus_pro_7b():
    with torch.device("meta"):
        plugin = TensorAR(JanusBackbone(JANUS_MODELS["Janus-Pro-7B"]), TensorARConfig(k=4, depth=1))
    overhead = sum(p.numel() for p in plugin.plugin_parameters())
    D, k = 4096, 4
    # Q_in and Q_out: wq + wkv + wo (4 D^2) and the MLP (2 D^2) each, plus norms, queries, positions, pad.
    assert overhead == 12 * D * D + (2 * k + 8) * D == 201_392_128
    assert round(overhead / 6_591_791_104, 4) == 0.0306  # of the image-generation path


# ----- checkpoints, official directories, registry -----
def test_load_official_from_a_model_directory(model, ref, tmp_path):
    hf = model.model
    hf.generation_config.bos_token_id, hf.generation_config.pad_token_id = BOS, PAD_ID
    hf.generation_config.generation_kwargs = {"boi_token_id": BOI}
    hf.save_pretrained(tmp_path / "janus-tiny")
    presets = {"tiny": JanusBackboneConfig(hf_config={"text_config": {"hidden_size": 32}}, num_image_tokens=16)}
    loaded = janus.load_official(tmp_path / "janus-tiny", "tiny", presets, prompt_length=9).eval()
    assert (loaded.config.bos_token_id, loaded.config.pad_token_id, loaded.config.boi_token_id) == (BOS, PAD_ID, BOI)
    assert loaded.prefix_length == 9 and loaded.num_tokens == 16
    assert torch.equal(loaded.generate(condition(ref), SamplingOptions(cfg_scale=1.5, greedy=True)),
                       ref["gen_greedy_cfg1.5"])
    # Through the generic loader: the preset's sizes are checked against the directory's config.
    with pytest.raises(ValueError, match="is not a Janus-Pro-7B model"):
        load_model(tmp_path / "janus-tiny", "janus", "Janus-Pro-7B")
    with pytest.raises(ValueError, match="block_size 576"):
        janus.load_official(tmp_path / "janus-tiny", "tiny", presets, block_size=576)
    with pytest.raises(FileNotFoundError, match="deepseek-community/Janus-Pro-7B"):
        FAMILIES["janus"].load_official(tmp_path / "missing", "Janus-Pro-7B")
    # Janus's own VQ as a tokenizer, read from the same directory.
    vq = load_tokenizer(tmp_path / "janus-tiny", "Janus-VQ16")
    assert (vq.config.codebook_size, vq.config.downsample) == (64, 4)
    grid = ref["gen_greedy_cfg5"].view(2, 4, 4)
    torch.testing.assert_close(vq.decode(grid), model.decode_images(grid), atol=0, rtol=0)
    assert vq.encode(torch.rand(2, 3, 16, 16) * 2 - 1).shape == (2, 4, 4)
    assert load_janus_vq(tmp_path / "janus-tiny").training is False


def test_registry_entries():
    fam = FAMILIES["janus"]
    assert (fam.model_class, fam.config_class, fam.condition, fam.tokenizer) == (
        JanusBackbone, JanusBackboneConfig, "prompt", "janus_vq")
    assert set(fam.presets) == {"Janus-Pro-1B", "Janus-Pro-7B"}
    assert fam.pixel_offset == 127.5  # Janus's generation_inference.py: clip((x + 1) / 2 * 255), then uint8
    assert fam.config("Janus-Pro-7B", prompt_length=64).prompt_length == 64
    assert TOKENIZERS[fam.tokenizer].load is load_janus_vq


def test_config_is_strict_and_validated():
    cfg = JANUS_MODELS["Janus-Pro-1B"]
    assert JanusBackboneConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="JanusBackboneConfig: unknown keys"):
        JanusBackboneConfig.from_dict({**cfg.to_dict(), "prompt_len": 3})
    with pytest.raises(ValueError, match="square"):
        JanusBackboneConfig(num_image_tokens=575)
    with pytest.raises(ValueError, match="does not fit the HF config"), torch.device("meta"):
        JanusBackbone(JanusBackboneConfig(hf_config=cfg.hf_config, num_image_tokens=256))


def test_null_condition_needs_the_boi_id():
    with torch.device("meta"):
        model = JanusBackbone(JANUS_MODELS["Janus-Pro-1B"])  # presets leave <begin_of_image> to the release
    with pytest.raises(ValueError, match="boi_token_id"):
        model.null_condition({"input_ids": torch.ones(1, 3, dtype=torch.long), "attention_mask": torch.ones(1, 3)})
    with pytest.raises(TypeError, match="prompt_condition"):
        model.as_condition(["a photo of a cat"])


# ----- prompts -----
class FakeProcessor:
    """Stands in for JanusProcessor: the chat template and word-level ids, left padding, BOI appended."""

    class tokenizer:
        pad_token_id = PAD_ID

    def apply_chat_template(self, conversation, add_generation_prompt=False):
        assert add_generation_prompt and conversation[0]["role"] == "user"
        return f"<|User|>: {conversation[0]['content'][0]['text']}\n\n<|Assistant|>:"

    def __call__(self, text, generation_mode, padding, padding_side, return_tensors):
        assert generation_mode == "image" and padding and padding_side == "left" and return_tensors == "pt"
        rows = [[BOS] + [10 + len(w) for w in t.split()] + [BOI] for t in text]
        T = max(map(len, rows))
        return {"input_ids": torch.tensor([[PAD_ID] * (T - len(r)) + r for r in rows]),
                "attention_mask": torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])}


def test_prompt_condition_left_pads_to_the_model_length():
    cond = prompt_condition(["a red cube", "a photo of two cats"], FakeProcessor())
    assert cond["input_ids"].shape == (2, 9) and cond["attention_mask"][0].tolist() == [0, 0] + [1] * 7
    fixed = prompt_condition(["a red cube", "a photo of two cats"], FakeProcessor(), length=12)
    assert torch.equal(fixed["input_ids"][:, 3:], cond["input_ids"]) and (fixed["input_ids"][:, :3] == PAD_ID).all()
    assert torch.equal(fixed["attention_mask"].sum(1), cond["attention_mask"].sum(1))
    with pytest.raises(ValueError, match="exceed prompt_length 5"):
        left_pad(cond, 5, PAD_ID)


# ----- published sizes (meta device) -----
@pytest.mark.parametrize("preset", ["Janus-Pro-7B", "Janus-Pro-1B"])
def test_parameter_counts_match_the_release(t2i_ref, preset):
    counts = json.loads((t2i_ref / "janus_pro_params.json").read_text())
    from dataclasses import replace

    for tied in (False, True):
        ref = counts[f"{preset} ({'tied' if tied else 'untied'} lm_head)"]
        cfg = JANUS_MODELS[preset]
        if tied:
            cfg = replace(cfg, hf_config={**cfg.hf_config, "tie_word_embeddings": True})
        with torch.device("meta"):
            model = JanusBackbone(cfg)
        assert sum(p.numel() for p in model.parameters()) == ref["total_params"]
        hf = model.model
        by_module = {f"model.{name}": sum(p.numel() for p in m.parameters()) for name, m in hf.model.named_children()}
        if not tied:
            by_module["lm_head"] = hf.lm_head.weight.numel()
        assert by_module == ref["by_module"]
        gen_path = sum(by_module[f"model.{n}"] for n in ("language_model", "generation_embeddings",
                                                            "generation_aligner", "generation_head"))
        key = next(k for k in ref if k.startswith("image_generation_path_params"))
        assert gen_path == ref[key]
        assert (model.num_tokens, model.vocab_size, model.prefix_length) == (576, 16384, 256)
