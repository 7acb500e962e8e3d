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
import os
import socket
from collections import OrderedDict

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
from torch.distributed._tools.mem_tracker import MemTracker
from torch.utils.hooks import RemovableHandle

from tensorar.models.registry import family
from tensorar.resources.architecture import ModelSpec, build_model
from tensorar.training.sharding import shard_model
from tensorar.training.build import param_groups


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
        kwargs["noise_uniforms"] = torch.rand(batch, backbone.num_tokens - 1, model.k, 2, device=device)
    return tokens, cond, kwargs


def tracked_training_peak(spec: ModelSpec, batch: int, checkpointing: bool = False, fake: bool = True,
                          steps: int = 2) -> dict[str, int]:
    """Peak bytes of `steps` training steps of `spec` at `batch` samples on the CPU, by MemTracker's
    categories (Parameter, Gradient, Optstate, Activation, Temp, ...) and "Total". `checkpointing`:
    every transformer block checkpointed, as the trainer does it (tensorar.training.sharding)."""
    device = "cpu"
    with FakeTensorMode() if fake else contextlib.nullcontext():
        torch.manual_seed(0)
        model = build_model(spec).train()
        loss_module = shard_model(model, "ddp", checkpointing)  # no process group: the model, as one rank
        # fused=True as on CUDA: one kernel, no per-parameter temporaries.
        opt = torch.optim.AdamW(param_groups(model, 1e-5, 1e-4, 0.05), betas=(0.9, 0.95), fused=True)
        tokens, cond, kwargs = example_batch(model, batch, device)
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


def _fsdp_rank(rank: int, world: int, port: int, spec: ModelSpec, batch: int, checkpointing: bool, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = build_model(spec).train()
        loss_module = shard_model(model, "fsdp", checkpointing, compute_dtype=torch.bfloat16)
        opt = torch.optim.AdamW(param_groups(model, 1e-5, 1e-4, 0.05), betas=(0.9, 0.95), foreach=False)
        tokens, cond, kwargs = example_batch(model, batch, "cpu")
        tracker = FSDPMemTracker(loss_module, opt)
        tracker.track_inputs((tokens, cond, kwargs))
        with tracker:
            for _ in range(2):
                tracker.reset_mod_stats()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss, _ = loss_module(tokens, cond, **kwargs)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
        out.put((rank, {str(getattr(k, "value", k)): v for k, v in peak.items()}))
    finally:
        dist.destroy_process_group()


def fsdp_tracked_peak(spec: ModelSpec, batch: int, checkpointing: bool = False, world: int = 2) -> dict[str, int]:
    """Peak bytes of rank 0 of a real `world`-process FSDP2 run (gloo, CPU, real tensors) of two training
    steps, sharded by the trainer's `shard_model` with bf16 compute, measured by torch's FSDPMemTracker.
    `batch`: samples per rank. (Without gradient clipping: its global norm is one more all-reduce.)"""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=_fsdp_rank, args=(r, world, port, spec, batch, checkpointing, out))
             for r in range(world)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=600) for _ in procs)
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"FSDP rank exited with {p.exitcode}")
    return results[0]
