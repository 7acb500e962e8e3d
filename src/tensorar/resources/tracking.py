"""Peak memory of the real training step measured by torch's own tracker (`torch.distributed._tools.
MemTracker`): the job's model from its preset, the trainer's AdamW groups, a forward under bf16 autocast,
`zero_grad`, backward, gradient clipping and the optimizer step, twice (the second step starts with the
optimizer's moments and the previous gradients in memory, as every step after the first does).

`fake=True` runs it under FakeTensorMode, as torchtitan's memory estimator does: no memory is allocated
and no number is computed, so every paper row (Janus-Pro-7B included) runs on a laptop in seconds.
torchtitan shards under FSDPMemTracker with a fake process group; our rules allow no fake process group,
so this tracks one unsharded rank (the DDP replica's tensors without DDP's buckets), and the FSDP rows
are checked by a real two-process gloo run (docs/resources.md).
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing
from torch.utils.hooks import RemovableHandle

from tensorar.models.registry import family
from tensorar.resources.architecture import ModelSpec, build_model, transformer_blocks
from tensorar.training.trainer import param_groups


class _Loss(nn.Module):
    """The training loss as a module call, as the trainer routes it (MemTracker attributes by module)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens, cond, **kwargs):
        return self.model.training_loss(tokens, cond, **kwargs)


def example_batch(model: nn.Module, batch: int, device: str) -> tuple[torch.Tensor, dict, dict]:
    """Random tokens, a condition of the family's kind and TensorAR's noise draws."""
    backbone = model.backbone
    tokens = torch.randint(0, backbone.vocab_size, (batch, backbone.num_tokens), device=device)
    kind = family(backbone.family).condition
    if kind == "class":
        cond = {"labels": torch.randint(0, backbone.num_classes, (batch,), device=device)}
    elif kind == "caption":
        c = backbone.config
        cond = {"caption": torch.randn(batch, c.cls_token_num, c.caption_dim, device=device),
                "caption_mask": torch.ones(batch, c.cls_token_num, dtype=torch.bool, device=device)}
    else:  # a chat prompt, left-padded to the model's prompt length
        P = backbone.prefix_length
        cond = {"input_ids": torch.randint(0, 100000, (batch, P), device=device),
                "attention_mask": torch.ones(batch, P, dtype=torch.long, device=device)}
    kwargs = {}
    if model is not backbone:
        kwargs["noise_uniforms"] = torch.rand(batch, backbone.num_tokens - 1, model.window_size, 2, device=device)
    return tokens, cond, kwargs


def tracked_training_peak(spec: ModelSpec, batch: int, checkpointing: bool = False, fake: bool = True,
                          steps: int = 2) -> dict[str, int]:
    """Peak bytes of `steps` training steps of `spec` at `batch` samples on the CPU, by MemTracker's
    categories (Parameter, Gradient, Optstate, Activation, Temp, ...) and "Total". `checkpointing`:
    torch's non-reentrant activation checkpoint around every transformer block."""
    device = "cpu"
    with FakeTensorMode() if fake else contextlib.nullcontext():
        torch.manual_seed(0)
        model = build_model(spec).train()
        if checkpointing:
            blocks = {id(b) for b in transformer_blocks(model.backbone)}
            apply_activation_checkpointing(model, check_fn=lambda m: id(m) in blocks)
        # fused=True as on CUDA: one kernel, no per-parameter temporaries.
        opt = torch.optim.AdamW(param_groups(model, 1e-5, 1e-4, 0.05), betas=(0.9, 0.95), fused=True)
        tokens, cond, kwargs = example_batch(model, batch, device)
        loss_module = _Loss(model)
        tracker = MemTracker()
        # MemTracker hooks every parameter's gradient and fails on frozen ones (Janus's understanding
        # tower): mark those as already hooked, with handles that remove nothing.
        unhooked = RemovableHandle(OrderedDict())
        for p in model.parameters():
            if not p.requires_grad:
                tracker._param_to_grad_hook_handles[p] = (unhooked, unhooked)
        tracker.track_external(model, opt, tokens, cond, kwargs)
        with tracker:
            for _ in range(steps):
                tracker.reset_mod_stats()
                with torch.autocast(device, dtype=torch.bfloat16):
                    loss, _ = loss_module(tokens, cond, **kwargs)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
        peak = tracker.get_tracker_snapshot("peak")[torch.device(device)]
    return {str(getattr(key, "value", key)): value for key, value in peak.items()}
