"""A per-token decode step compiled once with static shapes (ours; as gpt-fast and LlamaGen's `--compile`
sampler do).

The step gets its position as a device tensor (`cache.positions`) and attends over the whole
preallocated cache under a mask of the filled positions, so one graph serves every step and the loop
never waits on the host. With `mode="reduce-overhead"` on CUDA the graph is replayed as a CUDA graph;
on CPU inductor fuses the small ops. The cache is owned here and reused by later calls with the same
shape, so its address never changes (a replayed graph reads fixed addresses). Greedy fp32 tokens equal
the eager loop's (tests/test_fast_decoding.py).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


class CompiledStep:
    """`step(inputs, position, cache, **kwargs)` compiled; called as `(inputs, cache, **kwargs)` it runs at
    position `cache.length` and advances the cache, like the eager step."""

    def __init__(self, step: Callable, new_cache: Callable, weight: torch.Tensor):
        """`new_cache(batch_size, max_len)` makes caches; they follow `weight`'s dtype and device."""
        self.step = torch.compile(step, mode="reduce-overhead", fullgraph=True, dynamic=False)
        self.new_cache = new_cache
        self.weight = weight
        self.cache = None
        self.cache_key = None

    def cache_for(self, batch_size: int, max_len: int):
        """An empty cache of this shape: the same tensors as last time whenever possible."""
        key = (batch_size, max_len, self.weight.dtype, self.weight.device)
        if key != self.cache_key:
            self.cache, self.cache_key = None, None  # free the old one first
            self.cache = self.new_cache(batch_size, max_len)
            for t in self.cache.static_tensors():
                torch._dynamo.mark_static_address(t)
            self.cache_key = key
        self.cache.length = 0  # stale entries past `length` are masked out
        self.cache.key_mask = None
        return self.cache

    def __call__(self, inputs: torch.Tensor, cache, **kwargs) -> torch.Tensor:
        if inputs.is_cuda:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are consumed
        out = self.step(inputs, cache.positions[cache.length], cache, **kwargs)
        cache.length += 1
        return out


def make_decoder(model: nn.Module, step: Callable, batch_size: int, max_len: int, compile_step: bool):
    """(cache, step) for a generation loop. Eager: a new cache and `step(inputs, cache, **kw)` that runs
    at `cache.length` and advances it. Compiled: the model's `CompiledStep` (made on first use, kept on
    the model as `compiled_step`) with its reusable cache."""
    backbone = model.backbone
    if not compile_step:
        def eager(inputs, cache, **kwargs):
            out = step(inputs, cache.length, cache, **kwargs)
            cache.length += 1
            return out

        return backbone.new_cache(batch_size, max_len), eager
    if getattr(model, "compiled_step", None) is None:
        model.compiled_step = CompiledStep(step, backbone.new_cache, next(model.parameters()))
    return model.compiled_step.cache_for(batch_size, max_len), model.compiled_step
