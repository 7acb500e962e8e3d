"""The fast decoding paths give the plain path's results: packed CPU weights (`PackableLinear`), the
static-shape step over a masked full cache, and the compiled step (`compile_step=True`)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tensorar.decoding import cpu_packing
from tensorar.decoding.cpu_packing import PackableLinear
from tensorar.decoding.generate import decode_step, prefill
from tensorar.decoding.sampling import SamplingOptions

T, V, NUM_CLASSES = 16, 96, 5
GREEDY, GUIDED = SamplingOptions(greedy=True), SamplingOptions(cfg_scale=2.0, greedy=True)


@pytest.fixture
def models(tiny):
    """A random base (dim 64, 4 heads) and a TensorAR (k=3) around it, as if trained."""

    def build(seed: int = 0):
        base = tiny.gpt(seed, vocab=V, classes=NUM_CLASSES, tokens=T, dim=64, heads=4)
        return base, tiny.tensorar(base, k=3, seed=seed)

    return build


def aten_ops(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key for event in prof.key_averages()}


needs_onednn = pytest.mark.skipif(not cpu_packing.onednn_packing_available(),
                                  reason="this torch build cannot pack weights with oneDNN")


# ----- PackableLinear with packed weights -----
@needs_onednn
@pytest.mark.parametrize("rows", [1, 2, 5, 16, 64, 513])
@pytest.mark.parametrize("out_features, bias", [(96, False), (100, True)])
def test_packed_linear_equals_f_linear(rows, out_features, bias):
    torch.manual_seed(rows)
    layer = PackableLinear(48, out_features, bias=bias)
    x = torch.randn(rows, 1, 48)  # (rows, 1, in): a decode step's shape
    with torch.no_grad():
        with cpu_packing.packed_for_decoding(layer):
            assert "mkldnn::_linear_pointwise" in aten_ops(lambda: layer(x))
            packed = layer(x)
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))  # unpacked again on exit
    assert packed.shape == (rows, 1, out_features) and packed.is_contiguous()
    torch.testing.assert_close(packed, F.linear(x, layer.weight, layer.bias))


@needs_onednn
def test_packed_weights_live_only_inside_the_block_and_never_under_autograd(models):
    base, _ = models()
    x = torch.randn(4, 1, 64, requires_grad=True)
    linear = base.layers[0].attention.wqkv
    with cpu_packing.packed_for_decoding(base):
        with cpu_packing.packed_for_decoding(base):  # nested: the inner block packs nothing new, drops nothing
            pass
        assert linear.weight in cpu_packing._PACKED_WEIGHTS
        assert "mkldnn::_linear_pointwise" not in aten_ops(lambda: linear(x).sum().backward())  # training
        grads = x.grad.clone(), linear.weight.grad.clone()
    assert len(cpu_packing._PACKED_WEIGHTS) == 0
    x.grad, linear.weight.grad = None, None
    F.linear(x, linear.weight).sum().backward()
    assert torch.equal(grads[0], x.grad) and torch.equal(grads[1], linear.weight.grad)


@needs_onednn
def test_packed_weights_leave_cpu_autocast_to_f_linear():
    layer = PackableLinear(48, 96)
    x = torch.randn(4, 48)
    with torch.no_grad(), cpu_packing.packed_for_decoding(layer), torch.autocast("cpu", torch.bfloat16):
        out = layer(x)
        assert torch.equal(out, F.linear(x, layer.weight, layer.bias))
    assert out.dtype == torch.bfloat16  # autocast took effect


@needs_onednn
def test_generate_packs_the_weights_it_is_called_with(models):
    """Packed copies are made per generate() call, so new weights (load_state_dict) are never stale."""
    base, _ = models(seed=0)
    other, _ = models(seed=1)
    labels = torch.tensor([0, 3])
    assert "mkldnn::_linear_pointwise" in aten_ops(lambda: base.generate(labels, GREEDY))
    base.load_state_dict(other.state_dict())
    assert torch.equal(base.generate(labels, GUIDED), other.generate(labels, GUIDED))


@needs_onednn
@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_greedy_decoding_equals_plain_linear(models, cfg_scale, monkeypatch):
    base, model = models()
    labels = torch.tensor([0, 3])
    labels8 = torch.arange(8) % NUM_CLASSES
    options = SamplingOptions(cfg_scale=cfg_scale, greedy=True)
    packed = (base.generate(labels, options), model.generate(labels, options, return_drafts=True)[1],
              model.generate(labels8, options))
    monkeypatch.setattr(cpu_packing, "onednn_packing_available", lambda: False)
    assert "mkldnn::_linear_pointwise" not in aten_ops(lambda: base.generate(labels, GREEDY))
    assert torch.equal(packed[0], base.generate(labels, options))
    assert torch.equal(packed[1], model.generate(labels, options, return_drafts=True)[1])
    assert torch.equal(packed[2], model.generate(labels8, options))


# ----- static-shape step (masked full cache, position as a tensor) -----
def test_static_step_equals_prefix_step(models):
    base, model = models()
    cond = {"labels": torch.tensor([1, 2, 4])}
    tokens = torch.randint(V, (3, T), generator=torch.Generator().manual_seed(0))
    windows = model.windows(tokens)  # (B, T, k)
    for net, step_inputs in ((base, tokens[..., None]), (model, windows)):
        prefix_cache, static_cache = base.new_cache(3), base.new_cache(3)
        for t in (*static_cache.k, *static_cache.v):
            t.fill_(1e3)  # stale garbage past the filled positions must be masked out
        with torch.no_grad():
            torch.testing.assert_close(prefill(net, cond, static_cache), prefill(net, cond, prefix_cache))
            for i in range(T - 1):
                position = static_cache.positions[static_cache.length]
                static = decode_step(net, step_inputs[:, i], position, static_cache)
                static_cache.length += 1
                eager = decode_step(net, step_inputs[:, i], prefix_cache.length, prefix_cache)
                prefix_cache.length += 1
                torch.testing.assert_close(static, eager)


# ----- compiled step -----
@pytest.mark.slow
def test_compiled_step_greedy_equals_eager_and_compiles_once(models):
    base, model = models()
    labels = torch.tensor([0, 3])
    for net in (base, model):
        eager = net.generate(labels, GUIDED)
        compiled = net.generate(labels, GUIDED, compile_step=True)
        assert torch.equal(compiled, eager)
        cache = net.compiled_step.cache
        with torch._dynamo.config.patch(error_on_recompile=True):  # same shapes: no new graph
            again = net.generate(labels.flip(0), GUIDED, compile_step=True)
        assert net.compiled_step.cache is cache  # the cache (and its address) is reused
        if cpu_packing.onednn_packing_available():  # the compiled graph multiplies by the packed weights
            assert "mkldnn::_linear_pointwise" in aten_ops(lambda: net.generate(labels, GREEDY, compile_step=True))
        assert torch.equal(again, net.generate(labels.flip(0), GUIDED))
