"""How a model is spread over the training processes: DDP (a full replica per rank) or FSDP2 (each
rank holds 1/world of the parameters, gradients and optimizer states, all-gathered block by block).

    loss_module = shard_model(model, "fsdp", activation_checkpointing=True, compute_dtype=torch.bfloat16)
    loss, per_slot = loss_module(tokens, cond)   # model.training_loss, through the sharding hooks

FSDP follows torchtitan (and LlamaGen's own FSDP training of its largest models): `fully_shard` on each
transformer block that the backbone names (`Backbone.blocks()`), then on a root that holds the rest
(embeddings, head, condition embedder, the TensorAR plug-in's Q_in / Q_out). Parameters stay fp32
(the master weights the optimizer updates); `MixedPrecisionPolicy` casts the all-gathered copies to
`compute_dtype` for the forward and backward passes and reduces gradients in fp32. Activation
checkpointing recomputes each block's activations in the backward pass instead of storing them; it is
applied in place (`torch.distributed._composable.checkpoint`), so state-dict keys do not change.
"""
from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed._composable import checkpoint as checkpoint_activations
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel as DDP

STRATEGIES = ("ddp", "fsdp")


class TrainingLoss(nn.Module):
    """The training loss as a module's forward: DDP synchronises, and FSDP all-gathers and reshards,
    around what runs inside forward(), so `training_loss` is routed through it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, cond: dict, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.training_loss(tokens, cond, **kwargs)


def shard_model(model: nn.Module, strategy: str, activation_checkpointing: bool = False,
                compute_dtype: torch.dtype = torch.float32) -> nn.Module:
    """`model` (a Backbone or TensorAR, fp32, already on its device) -> the module whose forward is its
    training loss, with the blocks checkpointed if asked and the parameters replicated ("ddp") or
    sharded ("fsdp"). DDP without a process group (a single process) leaves the model as it is.
    `compute_dtype` is FSDP's parameter dtype in the forward pass (DDP's comes from autocast)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: known {', '.join(STRATEGIES)}")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise ValueError("shard_model expects fp32 master weights (call model.float() first)")
    blocks = model.backbone.blocks()
    if activation_checkpointing:
        for block in blocks:
            checkpoint_activations(block)
    loss_module = TrainingLoss(model)
    if strategy == "fsdp":
        if not dist.is_initialized():
            raise RuntimeError("FSDP needs a process group (tensorar.distributed.init_distributed(group=True))")
        policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
        for block in blocks:
            fully_shard(block, mp_policy=policy)
        fully_shard(loss_module, mp_policy=policy)
        return loss_module
    if not dist.is_initialized():
        return loss_module
    device = next(model.parameters()).device
    return DDP(loss_module, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)


def gradient_sync(loss_module: nn.Module, last_micro_batch: bool):
    """DDP all-reduces the gradients of the last micro-batch only (earlier ones accumulate locally).
    FSDP reduce-scatters every micro-batch: keeping unsharded gradients until the last one would cost
    the memory that sharding saves."""
    if isinstance(loss_module, DDP) and not last_micro_batch:
        return loss_module.no_sync()
    return contextlib.nullcontext()


def is_sharded(loss_module: nn.Module) -> bool:
    return isinstance(loss_module, FSDPModule)
