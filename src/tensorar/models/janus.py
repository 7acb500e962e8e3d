"""Janus-Pro's image-generation path as a `Backbone`, run through transformers'
`JanusForConditionalGeneration` (transformers 5.24, `models/janus/modeling_janus.py`); nothing of the
model is re-implemented here, this module only assigns its parts to our roles.

Janus-Pro (DeepSeek 2025) generates a 24x24 grid of VQ-16 tokens (576 at 384 px, raster order) after a
chat prompt, with the Llama decoder of its language model (reference spec §3):

    condition        the tokenized prompt {"input_ids", "attention_mask"} (B, T), left-padded:
                     BOS "<|User|>: {caption}\\n\\n<|Assistant|>:" <begin_of_image>   (`prompt_condition`)
    prefix           the language model's input embeddings of those ids; attention_mask is the key mask
    null condition   HF's unconditional prompt: every token that is neither BOS nor <begin_of_image>
                     replaced by PAD, the attention mask unchanged (so these pads ARE attended)
    token embedder   `generation_embeddings` (16384 x 8) -> `generation_aligner` (Linear, GELU, Linear)
    transformer      `model.language_model` (LlamaModel, final norm, no lm_head) with HF's StaticCache
    head             `generation_head` (Linear, GELU, Linear -> 16384); logits in fp32 for sampling
    images           the model's own VQ decoder (`decode_image_tokens`), (B, 3, 384, 384) in about [-1, 1]

How HF's `generate(..., generation_mode="image")` is matched (checked against it in tests/test_janus.py):
- positions: HF passes no position ids, so the Llama decoder numbers positions by cache slot
  (0, 1, 2, ... over the padded prompt, then one per image token), padding included. Ours are the same
  slot numbers: `transformer(h, start)` runs at positions [start, start + L).
- padding: left pads are hidden by the attention mask (as keys; HF's mask), image positions are always
  attended. The cache keeps the prompt's mask and extends it with ones, as HF's loop grows its 2-D mask.
- cache: HF's own `StaticCache` of `prefix_length + num_tokens` slots (HF: max(max_length, T + 576)),
  allocated on first use in the dtype of the keys (bf16 under autocast).
- CFG: rows [cond; null] in blocks, `uncond + s * (cond - uncond)` (`SamplingOptions.guide`), then
  argmax or `torch.multinomial` over softmax, one draw per step for the B rows: HF's order, so a seeded
  sample with the same seed gives the same tokens. Note that HF's `generate(do_sample=True)` also keeps
  only the top 50 codes (GenerationConfig's default top_k, filled in at generate time): its samples are
  ours with `top_k=50`. The original Janus sampler has no top-k (cfg 5, temperature 1).

Differences from HF, on purpose:
- guidance 1.0 works here (no null rows are run). HF's image generation crashes at guidance_scale=1.0:
  its CFG processor is skipped but the batch is still doubled (spec §3; the error is in the fixture).
- prompts are left-padded to a fixed `prompt_length` P (the config; `prefix_length` = P), not to the
  longest prompt of the batch. The interface's `prefix_length` is one number per model (the shared
  teacher-forced pass and the generation loop read it without seeing the condition), and conditions of
  different batches must concatenate. The extra pads are masked keys and RoPE scores depend only on
  position differences, so the logits equal HF's for the same prompts up to float rounding (tested).
  A prompt longer than P raises; `load_official(..., prompt_length=...)` or the config changes P.
- the compiled static-shape decode step (`compile_step=True`) is not supported: HF's decoder runs eagerly
  (a clear NotImplementedError).

Needs transformers (5.24, the version the reference fixtures were made with) and safetensors.
Presets "Janus-Pro-1B" / "Janus-Pro-7B" hold the published sizes (spec §3 parameter table; untied lm_head
as the original release). Real weights come from a transformers model directory (`load_official`).
Reading order: config -> prompts -> cache -> backbone -> VQ tokenizer -> presets -> official weights.
(~500 lines, above the ~400 guide: the release's image tokenizer and its model-directory loader read
the same files and config as the backbone, so they stay with it.)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from tensorar.checkpoint import load_state_dict_strict
from tensorar.models.backbone import Backbone, Condition, Prefix
from tensorar.options import DictForm

# transformers is imported inside functions: importing its Janus modules costs seconds, and the model
# registry (imported by every command) imports this module.


@dataclass(frozen=True)
class JanusBackboneConfig(DictForm):
    """What rebuilds a JanusBackbone: saved in our checkpoints (`to_dict`), read back by `from_dict`."""

    hf_config: dict = field(default_factory=dict)  # transformers JanusConfig(**hf_config); sub-configs as dicts
    num_image_tokens: int = 576  # tokens per image: (image_size / patch_size)^2 of the vision config
    prompt_length: int = 256  # P: prompt positions (left-padded) before the first image token
    bos_token_id: int = 100000
    pad_token_id: int = 100002
    boi_token_id: int | None = None  # <begin_of_image>: read from the release (generation_config / tokenizer)
    # CFG training: a prompt replaced by the null prompt with this probability. 0.1 is LlamaGen's rate;
    # no Janus training code is public to confirm Janus's own (its papers report 10% caption dropout).
    condition_dropout_prob: float = 0.1

    def __post_init__(self):
        if self.prompt_length < 2:
            raise ValueError(f"prompt_length {self.prompt_length}: a prompt holds at least BOS and <begin_of_image>")
        if self.num_image_tokens < 1 or round(self.num_image_tokens**0.5) ** 2 != self.num_image_tokens:
            raise ValueError(f"num_image_tokens {self.num_image_tokens} is not a square token grid")
        if not 0.0 <= self.condition_dropout_prob < 1.0:
            raise ValueError(f"condition_dropout_prob {self.condition_dropout_prob} is not in [0, 1)")


# --------------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------------
def prompt_condition(captions: Sequence[str], processor, length: int | None = None) -> Condition:
    """Captions -> the condition {"input_ids", "attention_mask"} (B, T) long, left-padded, built as HF's
    image-generation example builds it: `processor.apply_chat_template([user message],
    add_generation_prompt=True)` (BOS "<|User|>: {caption}\\n\\n<|Assistant|>:", the original's 'deepseek'
    format with an empty system prompt), then `processor(text=..., generation_mode="image")`, which
    appends <begin_of_image>. `processor`: the model's `JanusProcessor` (AutoProcessor on the model
    directory). `length`: left-pad further to this many tokens (e.g. the model's prompt_length, so the
    conditions of different batches concatenate); a longer prompt raises."""
    texts = [processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": c}]}],
                                           add_generation_prompt=True) for c in captions]
    enc = processor(text=texts, generation_mode="image", padding=True, padding_side="left", return_tensors="pt")
    cond = {"input_ids": enc["input_ids"].long(), "attention_mask": enc["attention_mask"].long()}
    return cond if length is None else left_pad(cond, length, processor.tokenizer.pad_token_id)


def left_pad(cond: Condition, length: int, pad_token_id: int) -> Condition:
    """A prompt condition (B, T) left-padded to (B, length): PAD ids, attention mask 0."""
    ids, mask = cond["input_ids"], cond["attention_mask"]
    extra = length - ids.size(1)
    if extra < 0:
        raise ValueError(f"prompts of {ids.size(1)} tokens exceed prompt_length {length}: raise the model's "
                         "prompt_length (its config; load_official(..., prompt_length=N)) or shorten the prompts")
    if extra == 0:
        return {"input_ids": ids, "attention_mask": mask}
    return {"input_ids": F.pad(ids, (extra, 0), value=pad_token_id), "attention_mask": F.pad(mask, (extra, 0), value=0)}


# --------------------------------------------------------------------------------------------------
# The KV cache: HF's StaticCache plus what our generation loop reads
# --------------------------------------------------------------------------------------------------
class JanusCache:
    """HF's `StaticCache` (the cache HF's image generation uses), with `length` (the slots our loop
    counts as filled) and the 2-D attention mask of the filled slots: the prompt's, recorded at prefill,
    then ones. HF's cache appends at its own fill count, so every position is written exactly once, in
    order; `transformer` checks that `start` is that count."""

    def __init__(self, hf_config, batch_size: int, max_len: int):
        from transformers import StaticCache

        self.hf = StaticCache(config=hf_config, max_cache_len=max_len)
        self.batch_size, self.max_len = batch_size, max_len
        self.filled = 0  # slots written into `hf` (our loop's `length` trails it until it advances)
        self.length = 0
        self.mask: torch.Tensor | None = None  # (B, max_len) long: 1 = attendable key

    def static_tensors(self):
        raise NotImplementedError("compile_step is not supported for Janus: transformers' Llama decoder runs "
                                  "eagerly here (use the default eager decoding loop)")

    def attention_mask(self, start: int, length: int, key_mask: torch.Tensor | None, device) -> torch.Tensor:
        """Record key_mask (B, start + length) for the new slots -> the mask of slots [0, start + length)."""
        end = start + length
        if start != self.filled:
            raise RuntimeError(f"Janus cache: a step at position {start}, but {self.filled} slots are filled "
                               "(HF's cache appends; positions must come in order, each once)")
        if end > self.max_len:
            raise RuntimeError(f"KV cache overflow: position {end} > capacity {self.max_len}")
        if self.mask is None:
            self.mask = torch.ones(self.batch_size, self.max_len, dtype=torch.long, device=device)
        if key_mask is not None:
            self.mask[:, start:end] = key_mask[:, start:end].long()
        self.filled = end
        return self.mask[:, :end]


# --------------------------------------------------------------------------------------------------
# The backbone
# --------------------------------------------------------------------------------------------------
class JanusBackbone(Backbone):
    """Janus-Pro's image generation through `JanusForConditionalGeneration` (held as `model`; its state
    dict keys are HF's under "model."). Condition: {"input_ids": (B, T), "attention_mask": (B, T)} long,
    left-padded, T <= prompt_length (`prompt_condition` builds it from captions).

    The whole HF model is held, so a release loads strictly and saves back whole. The parts image
    generation never runs (the understanding tower and its aligner, the VQ, an untied text lm_head) are
    frozen (requires_grad False): the trainer's optimizer skips them and DDP expects no gradient there."""

    family = "janus"
    supports_compiled_step = False  # HF's decoder runs eagerly (see the module docstring)

    def __init__(self, cfg: JanusBackboneConfig, hf_model: nn.Module | None = None):
        """`hf_model`: an already loaded JanusForConditionalGeneration with this config (load_official);
        else one is built from `cfg.hf_config` with transformers' random init."""
        super().__init__()
        from transformers import JanusConfig, JanusForConditionalGeneration

        hf_config = JanusConfig(**cfg.hf_config) if hf_model is None else hf_model.config
        grid = hf_config.vq_config.num_patches  # = image_size // patch_size (JanusConfig sets it)
        if cfg.num_image_tokens != hf_config.vision_config.num_image_tokens or grid * grid != cfg.num_image_tokens:
            raise ValueError(f"num_image_tokens {cfg.num_image_tokens} does not fit the HF config "
                             f"(vision_config.num_image_tokens {hf_config.vision_config.num_image_tokens}, "
                             f"VQ grid {grid}x{grid})")
        self.config = cfg
        self.model = JanusForConditionalGeneration(hf_config) if hf_model is None else hf_model
        hf = self.model.model
        generation_path = (hf.language_model, hf.generation_embeddings, hf.generation_aligner, hf.generation_head)
        used = {id(p) for module in generation_path for p in module.parameters()}
        for p in self.model.parameters():
            if id(p) not in used:  # a tied lm_head is the prompt embedding: used, stays trainable
                p.requires_grad_(False)

    @property
    def _text(self):
        return self.model.config.text_config

    # ----- sizes -----
    dim = property(lambda self: self._text.hidden_size)
    num_heads = property(lambda self: self._text.num_attention_heads)
    norm_eps = property(lambda self: self._text.rms_norm_eps)
    initializer_range = property(lambda self: self._text.initializer_range)
    num_tokens = property(lambda self: self.config.num_image_tokens)
    vocab_size = property(lambda self: self.model.config.vq_config.num_embeddings)
    # Fixed per model (see the module docstring): every prompt is left-padded to P positions.
    prefix_length = property(lambda self: self.config.prompt_length)
    condition_dropout_prob = property(lambda self: self.config.condition_dropout_prob)

    # ----- conditions -----
    def as_condition(self, cond) -> Condition:
        """A Condition, or the processor's BatchEncoding (its input_ids and attention_mask)."""
        if isinstance(cond, (str, list, tuple)):
            raise TypeError("a Janus condition is the tokenized prompt {'input_ids', 'attention_mask'}: build it "
                            "from captions with tensorar.models.janus.prompt_condition(captions, processor)")
        return {"input_ids": cond["input_ids"].long(), "attention_mask": cond["attention_mask"].long()}

    def null_condition(self, cond: Condition) -> Condition:
        """HF's unconditional prompt: every id that is neither BOS nor <begin_of_image> becomes PAD; the
        attention mask is kept, so those pads are attended (left padding stays masked)."""
        if self.config.boi_token_id is None:
            raise ValueError("boi_token_id (<begin_of_image>) is not set in this model's config: no null prompt "
                             "(load_official reads it from the release's generation_config or tokenizer)")
        ids = cond["input_ids"]
        keep = (ids == self.config.bos_token_id) | (ids == self.config.boi_token_id)
        return {"input_ids": ids.masked_fill(~keep, self.config.pad_token_id), "attention_mask": cond["attention_mask"]}

    def example_condition(self, batch_size: int, generator: torch.Generator | None = None) -> Condition:
        """Random prompts of prompt_length ids: BOS, random text ids, <begin_of_image>; row i left-padded by
        i positions (at most P - 2)."""
        cfg, device = self.config, self.model.get_input_embeddings().weight.device
        if cfg.boi_token_id is None:
            raise ValueError("boi_token_id (<begin_of_image>) is not set in this model's config: no prompt")
        P = cfg.prompt_length
        ids = torch.randint(self._text.vocab_size, (batch_size, P), generator=generator)
        start = torch.arange(batch_size).clamp(max=P - 2)[:, None]  # (B, 1): first prompt position
        positions = torch.arange(P)[None]  # (1, P)
        ids = torch.where(positions == start, cfg.bos_token_id, ids)
        ids[:, -1] = cfg.boi_token_id
        mask = positions >= start  # (B, P)
        ids = ids.masked_fill(~mask, cfg.pad_token_id)
        return {"input_ids": ids.to(device), "attention_mask": mask.long().to(device)}

    def embed_condition(self, cond: Condition) -> Prefix:
        """The prompt (left-padded to prompt_length) -> text embeddings (B, P, D), attention mask as keys."""
        cond = left_pad(cond, self.config.prompt_length, self.config.pad_token_id)
        embeddings = self.model.get_input_embeddings()(cond["input_ids"])  # (B, P, D)
        return Prefix(embeddings, cond["attention_mask"].bool())

    # ----- tokens, transformer, head -----
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Image token ids (...,) -> generation_aligner(generation_embeddings(ids)) (..., D)."""
        return self.model.prepare_embeddings_for_image_generation(tokens)

    def new_cache(self, batch_size: int, max_len: int | None = None) -> JanusCache:
        return JanusCache(self.model.config, batch_size, max_len or self.config.prompt_length + self.num_tokens)

    def transformer(self, h: torch.Tensor, start: int | torch.Tensor = 0, cache: JanusCache | None = None,
                    key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The Llama decoder (final norm included) at positions [start, start + L): HF's own numbering
        (cache slots, pads included), with the 2-D attention mask HF's image generation passes."""
        if isinstance(start, torch.Tensor):
            raise NotImplementedError("compile_step is not supported for Janus (eager decoding only)")
        L = h.size(1)
        if torch.is_autocast_enabled(h.device.type):
            # One input dtype at every step: under autocast the prompt embeddings (an Embedding) come in
            # the weights' dtype but the image embeddings (the aligner's Linear) in the autocast dtype,
            # and HF's cache keeps the dtype of the first keys written (RoPE follows the input dtype).
            h = h.to(torch.get_autocast_dtype(h.device.type))
        if cache is not None:
            mask = cache.attention_mask(start, L, key_mask, h.device)  # (B, start + L)
        else:
            if start:
                raise ValueError("without a cache, the decoder runs from position 0")
            mask = None if key_mask is None else key_mask.long()  # (B, L)
        positions = torch.arange(start, start + L, device=h.device)[None]  # (1, L)
        out = self.model.model.language_model(inputs_embeds=h, attention_mask=mask, position_ids=positions,
                                              cache=None if cache is None else cache.hf, use_cache=cache is not None)
        return out.last_hidden_state  # (B, L, D)

    def blocks(self) -> list[nn.Module]:
        return list(self.model.model.language_model.layers)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """generation_head -> logits over the 16384 image codes, fp32 (Backbone's token loss and sampler)."""
        return self.model.model.generation_head(hidden).float()

    # ----- images -----
    @torch.no_grad()
    def decode_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grid (B, h, w) or (B, N) -> images (B, 3, H, W), nominally in [-1, 1] and not clamped:
        HF's `decode_image_tokens` (VQ codebook rows, L2-normalised -> post_quant_conv -> decoder)."""
        images = self.model.decode_image_tokens(tokens.reshape(tokens.size(0), -1))  # (B, H, W, 3)
        return images.permute(0, 3, 1, 2).float()

    # ----- teacher-forced logits (parity tests, diagnostics) -----
    def forward(self, idx: torch.Tensor, cond) -> torch.Tensor:
        """idx (B, L) image tokens -> gen-head logits (B, L + 1, V); position j predicts token j."""
        return self.logits(self.hidden_states(self.embed_tokens(idx), self.as_condition(cond)))


# --------------------------------------------------------------------------------------------------
# Janus's VQ as an image tokenizer (a `TokenizerFamily` of tensorar.models.registry)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JanusVQConfig:
    hf_config: dict = field(default_factory=dict)  # transformers JanusVQVAEConfig(**hf_config)

    @property
    def codebook_size(self) -> int:
        return self.hf_config.get("num_embeddings", 16384)

    @property
    def downsample(self) -> int:
        """Image pixels per token along each side: one halving per channel multiplier after the first."""
        return 2 ** (len(self.hf_config.get("channel_multiplier", (1, 1, 2, 2, 4))) - 1)


class JanusVQ(nn.Module):
    """transformers' `JanusVQVAE` (held as `vq`) with our tokenizer methods: encode images (B, 3, H, W)
    in [-1, 1] -> ids (B, h, w), decode ids (B, h, w) -> images. HF decodes only its configured grid
    (`num_patches` per side: 24 for Janus-Pro)."""

    def __init__(self, cfg: JanusVQConfig):
        super().__init__()
        from transformers import JanusVQVAE, JanusVQVAEConfig

        self.config = cfg
        self.vq = JanusVQVAE(JanusVQVAEConfig(**cfg.hf_config))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        d = self.config.downsample
        return self.vq.encode(x).image_tokens.view(B, H // d, W // d)

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        return self.vq.decode(indices.reshape(indices.size(0), -1))


JANUS_VQ_MODELS: dict[str, JanusVQConfig] = {
    # Janus-Pro's VQ-16 (LlamaGen's architecture, HF key names): 16384 codes, 24x24 grid at 384 px; 71,883,403.
    "Janus-VQ16": JanusVQConfig({"num_patches": 24}),
}


def load_janus_vq(path, preset: str | None = None, device: str | torch.device = "cpu") -> JanusVQ:
    """The VQ of a transformers Janus model directory (only its `model.vqmodel.*` weights are read from the
    safetensors files), in eval mode."""
    from transformers import JanusConfig

    path = model_directory(path)
    if preset is not None and preset not in JANUS_VQ_MODELS:
        raise KeyError(f"unknown Janus VQ preset {preset!r}; known: {', '.join(JANUS_VQ_MODELS)}")
    vq_config = JanusConfig.from_pretrained(path, local_files_only=True).vq_config.to_dict()
    model = JanusVQ(JanusVQConfig(vq_config))
    load_state_dict_strict(model.vq, read_safetensors(path, "model.vqmodel."), f"{path} (model.vqmodel.*)")
    return model.to(device).eval()


def read_safetensors(directory: Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with `prefix` (prefix removed) from a model directory's
    model.safetensors or its index of shards."""
    from safetensors import safe_open

    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({name for key, name in json.loads(index.read_text())["weight_map"].items()
                        if key.startswith(prefix)})
    else:
        files = ["model.safetensors"]
    out = {}
    for name in files:
        with safe_open(str(directory / name), framework="pt") as f:
            out.update({k.removeprefix(prefix): f.get_tensor(k) for k in f.keys() if k.startswith(prefix)})
    if not out:
        raise ValueError(f"{directory}: no tensors named {prefix}* in its safetensors files")
    return out


# --------------------------------------------------------------------------------------------------
# Presets: the published sizes (spec §3), built on transformers' defaults (SigLIP-L/16-384, VQ-16)
# --------------------------------------------------------------------------------------------------
def _janus_pro(width: int, layers: int, intermediate: int, heads: int) -> JanusBackboneConfig:
    """The original language_config (LlamaConfig defaults + layers, vocab 102400, 16384 positions) and
    aligner / gen aligner / gen head at the LM width; untied lm_head, as the original release."""
    text = dict(hidden_size=width, num_hidden_layers=layers, intermediate_size=intermediate, num_attention_heads=heads,
                vocab_size=102400, max_position_embeddings=16384, bos_token_id=100000, eos_token_id=100001,
                pad_token_id=100002)
    hf = dict(text_config=text, vision_config=dict(projection_dim=width),
              vq_config=dict(projection_dim=width, image_token_embed_dim=width), tie_word_embeddings=False)
    return JanusBackboneConfig(hf_config=hf)


def _janus_toy() -> JanusBackboneConfig:
    """Ours: a 4x4 grid of 64 codes after 8 prompt positions, 2 decoder layers of width 32 (random
    weights: tests/test_family_contract.py) (special ids 0 = PAD, 1 = BOS, 2 = EOS, 3 = <begin_of_image>)."""
    text = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=4, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    vision = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=4,
                  projection_dim=32, num_image_tokens=16)
    vq = dict(embed_dim=8, num_embeddings=64, base_channels=32, channel_multiplier=[1, 1, 1], num_res_blocks=1,
              latent_channels=32, num_patches=4, projection_dim=32, image_token_embed_dim=32)
    hf = dict(text_config=text, vision_config=vision, vq_config=vq, tie_word_embeddings=False)
    return JanusBackboneConfig(hf_config=hf, num_image_tokens=16, prompt_length=8, bos_token_id=1, pad_token_id=0,
                               boi_token_id=3)


JANUS_MODELS: dict[str, JanusBackboneConfig] = {
    # 2,076,636,811 parameters (1,485,053,952 on the image-generation path: LM + gen embed / aligner / head).
    "Janus-Pro-1B": _janus_pro(2048, 24, 5632, 16),
    # 7,407,773,323 parameters (6,591,791,104 on the image-generation path).
    "Janus-Pro-7B": _janus_pro(4096, 30, 11008, 32),
}
# Ours, not a workflow preset (the toy workflow has no Janus prompt encoder): the registry's toy size.
JANUS_TOY = _janus_toy()


# --------------------------------------------------------------------------------------------------
# Official weights: a transformers model directory
# --------------------------------------------------------------------------------------------------
WEIGHTS_HINT = ("Janus-Pro in the transformers layout: a model directory downloaded from "
                "huggingface.co/deepseek-community/Janus-Pro-7B (or -1B), e.g. "
                "`huggingface-cli download deepseek-community/Janus-Pro-7B --local-dir DIR`")

# Sizes the preset names, checked against the directory's config.
_CHECKED = ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads", "vocab_size")


def model_directory(path) -> Path:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"Janus model directory not found (no config.json): {path}\n  ({WEIGHTS_HINT})")
    return path


def special_token_ids(hf_model, path: Path, defaults: JanusBackboneConfig) -> dict[str, Any]:
    """BOS, PAD and <begin_of_image> as HF's image generation reads them: the directory's
    generation_config.json (`generation_kwargs["boi_token_id"]`; read raw, because transformers rebuilds
    a generation config marked `_from_model_config` from the model config and drops generation_kwargs),
    else the text config, else the tokenizer in the directory, else the preset's."""
    raw = {}
    if (path / "generation_config.json").is_file():
        raw = json.loads((path / "generation_config.json").read_text())
    text = hf_model.config.text_config
    boi = (raw.get("generation_kwargs") or {}).get("boi_token_id", raw.get("boi_token_id"))
    bos = raw["bos_token_id"] if raw.get("bos_token_id") is not None else text.bos_token_id
    pad = raw["pad_token_id"] if raw.get("pad_token_id") is not None else text.pad_token_id
    if boi is None or bos is None or pad is None:
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            boi = boi if boi is not None else tok.convert_tokens_to_ids("<begin_of_image>")
            bos = bos if bos is not None else tok.bos_token_id
            pad = pad if pad is not None else tok.pad_token_id
        except (OSError, ValueError, KeyError):  # no tokenizer files in the directory
            pass
    return {"bos_token_id": defaults.bos_token_id if bos is None else int(bos),
            "pad_token_id": defaults.pad_token_id if pad is None else int(pad),
            "boi_token_id": defaults.boi_token_id if boi is None else int(boi)}


def load_official(path, preset: str, presets: dict[str, JanusBackboneConfig], *, contents=None,
                  block_size: int | None = None, allow_unsafe_pickle: bool | None = None,
                  prompt_length: int | None = None, dtype: torch.dtype | str = "auto") -> JanusBackbone:
    """A transformers model directory (the deepseek-community/Janus-Pro-7B layout: config.json,
    generation_config.json, safetensors shards) -> JanusBackbone, loaded by
    `JanusForConditionalGeneration.from_pretrained(path, local_files_only=True)` (no download). The
    directory's config is the model's; the preset's sizes are checked against it and its prompt_length
    used unless `prompt_length` is given. `dtype`: "auto" keeps the release's (bf16 for Janus-Pro);
    torch.float32 for training. `block_size` must be the config's token count (576) or None; `contents`
    and `allow_unsafe_pickle` concern single-file releases, not this one."""
    from transformers import JanusForConditionalGeneration

    if preset not in presets:
        raise KeyError(f"unknown Janus preset {preset!r}; known: {', '.join(presets)}")
    if contents is not None:
        raise ValueError(f"{path}: Janus-Pro loads from a transformers model directory, not a checkpoint file")
    path = model_directory(path)
    hf_model = JanusForConditionalGeneration.from_pretrained(path, local_files_only=True, dtype=dtype)
    preset_cfg = presets[preset]
    theirs, ours = hf_model.config.text_config, preset_cfg.hf_config.get("text_config", {})
    wrong = [f"{k} {getattr(theirs, k)} (preset {ours[k]})" for k in _CHECKED if k in ours and getattr(theirs, k) != ours[k]]
    if wrong:
        raise ValueError(f"{path} is not a {preset} model: " + ", ".join(wrong))
    tokens = hf_model.config.vision_config.num_image_tokens
    if block_size is not None and block_size != tokens:
        raise ValueError(f"block_size {block_size}: this Janus model generates {tokens} image tokens (its config)")
    cfg = JanusBackboneConfig(hf_config=hf_model.config.to_dict(), num_image_tokens=tokens,
                              prompt_length=prompt_length or preset_cfg.prompt_length,
                              condition_dropout_prob=preset_cfg.condition_dropout_prob,
                              **special_token_ids(hf_model, path, preset_cfg))
    return JanusBackbone(cfg, hf_model)
