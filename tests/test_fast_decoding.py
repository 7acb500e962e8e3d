"""The fast decoding paths give the plain path's results: packed CPU weights (`Linear`), the
static-shape step over a masked full cache, and the compiled step (`compile_step=True`)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tensorar.models import gpt
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


needs_onednn = pytest.mark.skipif(not gpt.onednn_packing_available(),
                                  reason="this torch build cannot pack weights with oneDNN")


# ----- Linear with packed weights -----
@needs_onednn
@pytest.mark.parametrize("rows", [1, 2, 5, 16, 64, 513])
@pytest.mark.parametrize("out_features, bias", [(96, False), (100, True)])
def test_packed_linear_equals_f_linear(rows, out_features, bias):
    torch.manual_seed(rows)
    layer = Linear(48, out_features, bias=bias)
    x = torch.randn(rows, 1, 48)  # (rows, 1, in): a decode step's shape
    with torch.no_grad():
        with gpt.packed_for_decoding(layer):
            assert "mkldnn::_linear_pointwise" in aten_ops(lambda: layer(x))
            packed = layer(x)
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))  # unpacked again on exit
    assert packed.shape == (rows, 1, out_features) and packed.is_contiguous()
    torch.testing.assert_close(packed, F.linear(x, layer.weight, layer.bias))


@needs_onednn
def test_packed_weights_live_only_inside_the_block_and_never_under_autograd():
    base, _ = tiny_models()
    x = torch.randn(4, 1, 64, requires_grad=True)
    linear = base.layers[0].attention.wqkv
    with gpt.packed_for_decoding(base):
        with gpt.packed_for_decoding(base):  # nested: the inner block packs nothing new, drops nothing
            pass
        assert linear.weight in gpt._PACKED_WEIGHTS
        assert "mkldnn::_linear_pointwise" not in aten_ops(lambda: linear(x).sum().backward())  # training
        grads = x.grad.clone(), linear.weight.grad.clone()
    assert len(gpt._PACKED_WEIGHTS) == 0
    x.grad, linear.weight.grad = None, None
    F.linear(x, linear.weight).sum().backward()
    assert torch.equal(grads[0], x.grad) and torch.equal(grads[1], linear.weight.grad)


@needs_onednn
def test_packed_weights_leave_cpu_autocast_to_f_linear():
    layer = Linear(48, 96)
    x = torch.randn(4, 48)
    with torch.no_grad(), gpt.packed_for_decoding(layer), torch.autocast("cpu", torch.bfloat16):
        out = layer(x)
        assert torch.equal(out, F.linear(x, layer.weight, layer.bias))
    assert out.dtype == torch.bfloat16  # autocast took effect


@needs_onednn
def test_generate_packs_the_weights_it_is_called_with():
    """Packed copies are made per generate() call, so new weights (load_state_dict) are never stale."""
    base, _ = tiny_models(seed=0)
    other, _ = tiny_models(seed=1)
    labels = torch.tensor([0, 3])
    assert "mkldnn::_linear_pointwise" in aten_ops(lambda: base.generate(labels, greedy=True))
    base.load_state_dict(other.state_dict())
    assert torch.equal(base.generate(labels, cfg_scale=2.0, greedy=True),
                       other.generate(labels, cfg_scale=2.0, greedy=True))


@needs_onednn
@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_greedy_decoding_equals_plain_linear(cfg_scale, monkeypatch):
    base, model = tiny_models()
    labels = torch.tensor([0, 3])
    labels8 = torch.arange(8) % NUM_CLASSES
    packed = (base.generate(labels, cfg_scale=cfg_scale, greedy=True),
              model.generate(labels, cfg_scale=cfg_scale, greedy=True, return_drafts=True)[1],
              model.generate(labels8, cfg_scale=cfg_scale, greedy=True))
    monkeypatch.setattr(gpt, "onednn_packing_available", lambda: False)
    assert "mkldnn::_linear_pointwise" not in aten_ops(lambda: base.generate(labels, greedy=True))
    assert torch.equal(packed[0], base.generate(labels, cfg_scale=cfg_scale, greedy=True))
    assert torch.equal(packed[1], model.generate(labels, cfg_scale=cfg_scale, greedy=True, return_drafts=True)[1])
    assert torch.equal(packed[2], model.generate(labels8, cfg_scale=cfg_scale, greedy=True))


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
        if gpt.onednn_packing_available():  # the compiled graph multiplies by the packed weights
            assert "mkldnn::_linear_pointwise" in aten_ops(lambda: net.generate(labels, greedy=True, compile_step=True))
        assert torch.equal(again, net.generate(labels.flip(0), cfg_scale=2.0, greedy=True))
