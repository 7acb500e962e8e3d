"""The backbone interface's contract, written once and checked for every registered family (its
`toy_config`), as transformers' common model tests are: TensorAR at k = 1 is the backbone, and at
initialisation (any k) generates the backbone's tokens; KV-cached decoding gives the uncached
teacher-forced hidden states; the compiled decode step gives the eager tokens (or is refused clearly);
checkpoints round-trip; PAD targets are ignored by the loss; --dropout is set or refused clearly.

`TiedGPT` below is a family defined here (a GPT whose output head is its token embedding): one module's
worth of code plus one `Family` entry, registered by a fixture, and it runs the whole suite. The
per-family test files keep only what is particular to a family (parity with its official code).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tensorar.decoding.generate import decode_step, prefill
from tensorar.decoding.sampling import SamplingOptions
from tensorar.errors import InputError
from tensorar.models.backbone import PAD, Backbone, Condition, Family, Prefix
from tensorar.models.layers import KVCache, RMSNorm, TransformerBlock, TransformerShape, precompute_rope_2d, rope_rows
from tensorar.models.llamagen import LabelEmbedder
from tensorar.models.loading import load_model, save_model
from tensorar.models.registry import FAMILIES
from tensorar.models.tensorar import TensorAR, TensorARConfig

B, T, V, CLASSES = 3, 16, 64, 5  # rows, image tokens, vocabulary (where the family takes one), classes


# --------------------------------------------------------------------------------------------------
# A new family, defined in one module's worth of code: a GPT with a tied output head
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TiedGPTConfig(TransformerShape):
    dim: int = 32
    n_layer: int = 2
    n_head: int = 2
    n_kv_head: int | None = None
    multiple_of: int = 32
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    initializer_range: float = 0.02
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.1
    ffn_dropout_p: float = 0.1
    num_classes: int = 10
    class_dropout_prob: float = 0.1
    vocab_size: int = 256
    block_size: int = 64

    def __post_init__(self):
        self.check_shape()


class TiedGPT(Backbone):
    """Class-conditional; the logits are the hidden states against the token embedding (tied head)."""

    family = "tied_gpt"
    data_fields = {"vocab_size": "vocab_size", "num_tokens": "block_size", "num_classes": "num_classes"}
    dropout_fields = ("resid_dropout_p", "ffn_dropout_p")

    def __init__(self, cfg: TiedGPTConfig):
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.cls_embedding = LabelEmbedder(cfg.num_classes, cfg.dim, cfg.class_dropout_prob)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.register_buffer("rope", precompute_rope_2d(cfg.grid_size, cfg.head_dim, cfg.rope_base, 1),
                             persistent=False)

    prefix_length = property(lambda self: 1)
    num_classes = property(lambda self: self.config.num_classes)
    condition_dropout_prob = property(lambda self: self.config.class_dropout_prob)

    def embed_condition(self, cond: Condition) -> Prefix:
        return Prefix(self.cls_embedding(cond["labels"]))

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tok_embeddings(tokens)

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        weight = self.tok_embeddings.weight
        return KVCache(self.config, self.config.n_layer, batch_size, max_len or 1 + self.num_tokens, weight.device,
                       weight.dtype)

    def transformer(self, h, start=0, cache=None, key_mask=None) -> torch.Tensor:
        rope = rope_rows(self.rope, start, h.size(1))
        for i, layer in enumerate(self.layers):
            h = layer(h, rope, cache, i, start, key_mask)
        return self.norm(h)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.tok_embeddings.weight).float()


def _no_official_weights(path, preset, **_):
    raise NotImplementedError("tied_gpt is defined in the tests: it has no released weights")


TIED = TiedGPTConfig()
TIED_FAMILY = Family(name="tied_gpt", config_class=TiedGPTConfig, model_class=TiedGPT, presets={"tied-toy": TIED},
                     load_official=_no_official_weights, tokenizer="vq", condition="class",
                     weights_hint="none (a family defined in tests/test_family_contract.py)", toy_config=TIED)

EVERY_FAMILY = {**FAMILIES, TIED_FAMILY.name: TIED_FAMILY}
COMPILED = [name for name, fam in EVERY_FAMILY.items() if fam.model_class.supports_compiled_step]
NOT_COMPILED = [name for name in EVERY_FAMILY if name not in COMPILED]


@pytest.fixture
def register(monkeypatch):
    """The registry with `name` in it (the test family is added as any new family would be)."""

    def registered(name: str) -> Family:
        if name == TIED_FAMILY.name:
            monkeypatch.setitem(FAMILIES, name, TIED_FAMILY)
        if name == "janus":
            pytest.importorskip("transformers", reason="Janus runs transformers' JanusForConditionalGeneration")
        return FAMILIES[name]

    return registered


@pytest.fixture(params=list(EVERY_FAMILY))
def fam(request, register) -> Family:
    return register(request.param)


# --------------------------------------------------------------------------------------------------
# Tiny models, conditions and tokens of any family
# --------------------------------------------------------------------------------------------------
def build(fam: Family, seed: int = 0) -> Backbone:
    """The family's toy size fitted to the test data, with the weights its init leaves at zero (output
    heads) redrawn, so every output depends on its input and an invariance check can fail."""
    torch.manual_seed(seed)
    classes = CLASSES if fam.condition == "class" else None
    model = fam.model_class(fam.fit(fam.toy_config, vocab_size=V, num_tokens=T, num_classes=classes))
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.5)
    return model.eval()


def plugin(base: Backbone, k: int, trained: bool = True, seed: int = 2) -> TensorAR:
    """TensorAR around `base`; `trained` redraws its zero-initialised output projections."""
    torch.manual_seed(seed)
    model = TensorAR(base, TensorARConfig(k=k))
    if trained:
        with torch.no_grad():
            for qt in (model.q_in, model.q_out):
                qt.mlp[-1].weight.normal_(std=0.3)
    return model.eval()


def data(model: Backbone, seed: int = 1) -> tuple[torch.Tensor, Condition]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(model.vocab_size, (B, model.num_tokens), generator=g), model.example_condition(B, g)


def uniforms(model: Backbone, k: int, seed: int = 3) -> torch.Tensor:
    return torch.rand(B, model.num_tokens, k, model.token_parts, generator=torch.Generator().manual_seed(seed))


GREEDY_CFG = SamplingOptions(cfg_scale=3.0, greedy=True)


# --------------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------------
def test_the_toy_size_fits_the_data(fam):
    model = build(fam)
    assert model.family == fam.name and isinstance(model.config, fam.config_class)
    assert model.num_tokens == T and model.k == 1 and model.prefix_length >= 1
    assert (model.num_classes == CLASSES) == (fam.condition == "class")
    tokens, cond = data(model)
    assert model.as_condition(cond).keys() == model.null_condition(cond).keys()
    loss, per_slot = model.training_loss(tokens, cond)
    assert loss.ndim == 0 and torch.isfinite(loss) and torch.equal(per_slot, loss.detach()[None])


def test_tensorar_k1_is_the_backbone(fam):
    base = build(fam)
    model = plugin(base, k=1, trained=False)
    tokens, cond = data(base)
    with torch.no_grad():
        base_loss, _ = base.training_loss(tokens, cond)
        loss, per_slot = model.training_loss(tokens, cond)
    assert torch.equal(loss, base_loss) and torch.equal(per_slot, base_loss[None])
    # Train mode (dropout on): the same RNG stream gives the same loss and the same gradients.
    model.train()
    torch.manual_seed(5)
    base.training_loss(tokens, cond)[0].backward()
    base_grads = [None if p.grad is None else p.grad.clone() for p in base.parameters()]
    base.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    model.training_loss(tokens, cond)[0].backward()
    grads = [p.grad for p in base.parameters()]
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(base_grads, grads))
    assert any(g is not None for g in grads)
    model.eval()
    for options, u in ((GREEDY_CFG, None), (SamplingOptions(greedy=True), None),
                       (SamplingOptions(cfg_scale=2.0), uniforms(base, 1)), (SamplingOptions(), None)):
        g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
        assert torch.equal(model.generate(cond, options, generator=g1, uniforms=u),
                           base.generate(cond, options, generator=g2, uniforms=u))


def test_tensorar_at_initialisation_generates_the_backbone_tokens(fam):
    base = build(fam)
    model = plugin(base, k=4, trained=False)
    _, cond = data(base)
    tokens, drafts = model.generate(cond, GREEDY_CFG, return_drafts=True)
    assert torch.equal(tokens, base.generate(cond, GREEDY_CFG))
    assert drafts.shape == (B, T, 4) and (drafts[:, -1, 1:] == PAD).all() and torch.equal(drafts[..., 0], tokens)


@pytest.mark.parametrize("k", [1, 3])
def test_cached_decoding_gives_the_uncached_hidden_states(fam, k):
    """Prefill + one cached step per window, fed the windows the sampler drew, under CFG rows ->
    the teacher-forced per-slot hidden states of the same windows."""
    model = plugin(build(fam), k) if k > 1 else build(fam)
    _, cond = data(model.backbone)
    _, drafts = model.generate(cond, SamplingOptions(cfg_scale=2.0), uniforms=uniforms(model.backbone, k),
                               return_drafts=True)  # (B, T, k)
    rows = model.backbone.condition_rows(cond, use_cfg=True)  # [cond; null]
    with torch.no_grad():
        full = model.slot_hidden(model.backbone.hidden_states(model.encode_windows(drafts[:, :-1].repeat(2, 1, 1)),
                                                              rows))  # (2B, T, k, D)
        cache = model.backbone.new_cache(2 * B)
        cached = [prefill(model, rows, cache)]
        for i in range(1, T):
            cached.append(decode_step(model, drafts[:, i - 1], cache.length, cache, rows=2))
            cache.length += 1
    torch.testing.assert_close(torch.stack(cached, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NOT_COMPILED)
def test_compiled_step_is_refused_where_unsupported(register, name):
    model = build(register(name))
    _, cond = data(model)
    with pytest.raises(NotImplementedError, match="compile_step"):
        model.generate(cond, GREEDY_CFG, compile_step=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", COMPILED)
def test_compiled_step_gives_the_eager_tokens(register, name):
    base = build(register(name))
    _, cond = data(base)
    for model in (base, plugin(base, k=3)):
        eager = model.generate(cond, GREEDY_CFG)
        assert torch.equal(model.generate(cond, GREEDY_CFG, compile_step=True), eager)


def test_checkpoints_round_trip(fam, tmp_path):
    base = build(fam)
    _, cond = data(base)
    for model in (base, plugin(base, k=3)):
        save_model(tmp_path / "model.pt", model, step=1)
        loaded = load_model(tmp_path / "model.pt").eval()
        assert type(loaded) is type(model) and loaded.backbone.config == base.config
        assert getattr(loaded, "plugin_config", None) == getattr(model, "plugin_config", None)
        assert loaded.state_dict().keys() == model.state_dict().keys()
        assert all(torch.equal(v, loaded.state_dict()[n]) for n, v in model.state_dict().items())
        assert torch.equal(loaded.generate(cond, GREEDY_CFG), model.generate(cond, GREEDY_CFG))


def test_pad_targets_are_ignored_by_the_loss(fam):
    model = build(fam)
    g = torch.Generator().manual_seed(6)
    hidden = torch.randn(2, T, model.dim, generator=g)
    targets = torch.randint(model.vocab_size, (2, T), generator=g)
    targets[1, 10:] = PAD
    real = targets != PAD
    with torch.no_grad():
        per_token = model.token_loss(hidden, targets, "none")  # (2T,)
        kept = model.token_loss(hidden[real][None], targets[real][None], "sum")  # the real positions alone
        mean = model.token_loss(hidden, targets)
    assert per_token.shape == (2 * T,) and (per_token[~real.flatten()] == 0).all()
    assert (per_token[real.flatten()] > 0).all()
    torch.testing.assert_close(per_token.sum(), kept)
    torch.testing.assert_close(mean, kept / real.sum())


def test_dropout_is_set_or_refused_clearly(fam):
    config = fam.fit(fam.toy_config, vocab_size=V, num_tokens=T)
    assert fam.same_architecture(config, fam.toy_config)
    if not fam.model_class.dropout_fields:
        with pytest.raises(InputError, match=f"--dropout 0.2: the {fam.name} family has no dropout"):
            fam.with_dropout(config, 0.2)
        return
    dropped = fam.with_dropout(config, 0.2)
    assert all(getattr(dropped, name) == 0.2 for name in fam.model_class.dropout_fields)
    assert fam.same_architecture(dropped, config) and dropped != config
    model = fam.model_class(dropped)
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0} == {0.2}


def test_the_docs_list_every_registered_family(repo_root):
    """docs/architecture.md's family table names every family of the registry, with its condition and
    tokenizer, and no other."""
    text = (repo_root / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| `models/(\w+)\.py` \| (\w+) \| `(\w+)` \|", text, flags=re.M)
    documented = {name: (module, condition, tokenizer) for name, module, condition, tokenizer in rows}
    assert documented == {name: (fam.model_class.__module__.rsplit(".", 1)[1], fam.condition, fam.tokenizer)
                          for name, fam in FAMILIES.items()}
