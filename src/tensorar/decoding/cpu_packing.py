"""Packed CPU weights for decoding (ours): `PackableLinear`, the layer every backbone block uses, and the context
that packs a model's weights for one generation run.

A decode step multiplies a few rows (2 per image with CFG) by every weight matrix, so it is bound by
streaming the weights. With few rows MKL's `x @ W.T` runs on one core; oneDNN's matmul over a weight
reordered once into its blocked layout streams them faster from 1 to 16 rows and stays ahead of
F.linear up to 512 rows (numbers in benchmarks/README.md). `packed_for_decoding(model)` packs the weights for one generate() call or one
`tensorar sample` run; `PackableLinear` then multiplies by them. Values differ from F.linear by fp32 rounding
only; tests compare greedy tokens against F.linear.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

_PACK_ROWS = 16  # oneDNN's layout hint; 1, 16 and 64 measured within noise of each other for 1-64 rows
_PACKED_WEIGHTS = torch.utils.weak.WeakIdKeyDictionary()  # weight Parameter -> its packed copy


@functools.cache
def onednn_packing_available() -> bool:
    """Whether this torch build can pack fp32 linear weights with oneDNN (not every CPU build can)."""
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), _PACK_ROWS)
        return bool(torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), packed, None, "none", [], "").eq(2).all())
    except (AttributeError, RuntimeError):
        return False


@contextlib.contextmanager
def packed_for_decoding(model: nn.Module):
    """Within the block, the CPU fp32 `PackableLinear` weights of `model` are packed for oneDNN (GPT-B: ~0.2 s,
    one extra copy of its weights); on exit the copies are dropped. Weights must not change inside."""
    added = []
    if onednn_packing_available():
        for weight in (m.weight for m in model.modules() if isinstance(m, PackableLinear)):
            if weight.device.type == "cpu" and weight.dtype == torch.float32 and weight not in _PACKED_WEIGHTS:
                _PACKED_WEIGHTS[weight] = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), _PACK_ROWS)
                added.append(weight)
    try:
        yield
    finally:
        for weight in added:
            _PACKED_WEIGHTS.pop(weight, None)


def linear_by_packed_weight(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """F.linear, by the packed weight when `packed_for_decoding` made one."""
    packed = _PACKED_WEIGHTS.get(weight)
    if packed is None:
        return F.linear(x, weight, bias)
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


@torch.library.custom_op("tensorar::cpu_linear", mutates_args=())
def cpu_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """`linear_by_packed_weight` as an op of its own, for the compiled decode step: the packed weight is
    then looked up when the graph runs, not when it is traced. (Eager calls skip the op's dispatch: ~5 %
    of a CPU decode step at 16 rows.)"""
    return linear_by_packed_weight(x, weight, bias)


@cpu_linear.register_fake
def _(x, weight, bias):
    return x.new_empty(*x.shape[:-1], weight.size(0))


class PackableLinear(nn.Linear):
    """nn.Linear (same parameters, same state_dict keys) that uses the packed weight of
    `packed_for_decoding` in CPU fp32 inference. Training (autograd), CPU autocast (which casts inside
    F.linear) and other devices: F.linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        if x.device.type != "cpu" or x.dtype != torch.float32 or needs_grad or torch.is_autocast_enabled("cpu"):
            return F.linear(x, self.weight, self.bias)
        linear = cpu_linear if torch.compiler.is_compiling() else linear_by_packed_weight
        return linear(x, self.weight, self.bias)
