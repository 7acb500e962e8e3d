"""The fast decoding paths give the plain path's results: few-row CPU matmuls (`Linear`), the
static-shape step over a masked full cache, and the compiled step (`compile_step=True`)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tensorar.models.gpt import GPT, GPTConfig, Linear
from tensorar.models.next_tensor import TensorAR, TensorARConfig

T, V, NUM_CLASSES = 16, 96, 5


def tiny_models(seed: int = 0) -> tuple[GPT, TensorAR]:
    """A random base (head redrawn: LlamaGen zero-inits it) and a TensorAR around it with its
    zero-initialised projections redrawn, as if trained."""
    torch.manual_seed(seed)
    cfg = GPTConfig(dim=64, n_layer=2, n_head=4, vocab_size=V, num_classes=NUM_CLASSES, block_size=T, multiple_of=32)
    base = GPT(cfg)
    nn.init.normal_(base.output.weight, std=0.5)
    model = TensorAR(base, TensorARConfig(k=3))
    for qt in (model.q_in, model.q_out):
        nn.init.normal_(qt.mlp[-1].weight, std=0.3)
    return base.eval(), model.eval()


def aten_ops(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key for event in prof.key_averages()}


@pytest.fixture
def plain_linear(monkeypatch):
    """Every `Linear` computes F.linear (the reference path)."""
    monkeypatch.setattr(Linear, "max_gemv_rows", 0)
    monkeypatch.setattr(Linear, "max_split_rows", 0)


# ----- Linear -----
@pytest.mark.parametrize("rows", [1, 2, 4, 5, 16, 64, 65])
@pytest.mark.parametrize("out_features, bias", [(96, False), (100, True), (97, False)])
def test_linear_equals_f_linear(rows, out_features, bias):
    torch.manual_seed(rows)
    layer = Linear(48, out_features, bias=bias)
    x = torch.randn(rows, 1, 48)  # (rows, 1, in): a decode step's shape
    out = layer(x)
    assert out.shape == (rows, 1, out_features) and out.is_contiguous()
    torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias))


def test_linear_takes_the_fast_paths_on_cpu():
    layer = Linear(48, 96, bias=False)
    assert "aten::bmm" in aten_ops(lambda: layer(torch.randn(16, 48)))  # split over output chunks
    gemv = aten_ops(lambda: layer(torch.randn(2, 48)))
    assert "aten::mm" in gemv and "aten::bmm" not in gemv
    assert "aten::bmm" not in aten_ops(lambda: layer(torch.randn(65, 48)))  # many rows: plain F.linear


def test_linear_gradients_match():
    torch.manual_seed(0)
    layer = Linear(48, 96)
    x = torch.randn(16, 48, requires_grad=True)
    layer(x).square().sum().backward()
    fast = (x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone())
    x.grad, layer.weight.grad, layer.bias.grad = None, None, None
    F.linear(x, layer.weight, layer.bias).square().sum().backward()
    for a, b in zip(fast, (x.grad, layer.weight.grad, layer.bias.grad)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_greedy_decoding_equals_plain_linear(cfg_scale, monkeypatch):
    base, model = tiny_models()
    labels = torch.tensor([0, 3])  # 2 images: 4 rows with CFG, the gemv path
    fast = (base.generate(labels, cfg_scale=cfg_scale, greedy=True),
            model.generate(labels, cfg_scale=cfg_scale, greedy=True, return_drafts=True)[1])
    labels8 = torch.arange(8) % NUM_CLASSES  # 8 images: the split path
    fast8 = model.generate(labels8, cfg_scale=cfg_scale, greedy=True)
    monkeypatch.setattr(Linear, "max_gemv_rows", 0)
    monkeypatch.setattr(Linear, "max_split_rows", 0)
    assert torch.equal(fast[0], base.generate(labels, cfg_scale=cfg_scale, greedy=True))
    assert torch.equal(fast[1], model.generate(labels, cfg_scale=cfg_scale, greedy=True, return_drafts=True)[1])
    assert torch.equal(fast8, model.generate(labels8, cfg_scale=cfg_scale, greedy=True))


# ----- static-shape step (masked full cache, position as a tensor) -----
def test_static_step_equals_prefix_step():
    base, model = tiny_models()
    labels = torch.tensor([1, 2, 4])
    tokens = torch.randint(V, (3, T), generator=torch.Generator().manual_seed(0))
    windows = model.windows(tokens)  # (B, T, k)
    for net, step_inputs in ((base, tokens), (model, windows)):
        prefix_cache, static_cache = base.new_cache(3), base.new_cache(3)
        for t in (*static_cache.k, *static_cache.v):
            t.fill_(1e3)  # stale garbage past the filled positions must be masked out
        with torch.no_grad():
            torch.testing.assert_close(net.prefill(labels, static_cache), net.prefill(labels, prefix_cache))
            for i in range(T - 1):
                position = static_cache.positions[static_cache.length]
                static = net.decode_step(step_inputs[:, i], position, static_cache)
                static_cache.length += 1
                eager = net.decode_step(step_inputs[:, i], prefix_cache.length, prefix_cache)
                prefix_cache.length += 1
                torch.testing.assert_close(static, eager)


# ----- compiled step -----
@pytest.mark.slow
def test_compiled_step_greedy_equals_eager_and_compiles_once():
    base, model = tiny_models()
    labels = torch.tensor([0, 3])
    for net in (base, model):
        eager = net.generate(labels, cfg_scale=2.0, greedy=True)
        compiled = net.generate(labels, cfg_scale=2.0, greedy=True, compile_step=True)
        assert torch.equal(compiled, eager)
        cache = net.compiled_step.cache
        with torch._dynamo.config.patch(error_on_recompile=True):  # same shapes: no new graph
            again = net.generate(labels.flip(0), cfg_scale=2.0, greedy=True, compile_step=True)
        assert net.compiled_step.cache is cache  # the cache (and its address) is reused
        assert torch.equal(again, net.generate(labels.flip(0), cfg_scale=2.0, greedy=True))
