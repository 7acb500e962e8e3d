"""A run's training state on disk: written at checkpoints, read back on resume.

- DDP: one file per checkpoint (`step_XXXXXXX.pt`, `final.pt`), written by rank 0: the model in our
  usual format (`tensorar.models.loading`) plus the optimizer, EMA, step, settings and loss history.
- FSDP: one folder per checkpoint (`step_XXXXXXX/`), a `torch.distributed.checkpoint` of the sharded
  model, optimizer and EMA (every rank writes its own shards; a later run on another number of
  processes reads them resharded) plus `training_state.pt` with everything else. It is written under
  a temporary name and renamed once complete, so a kill leaves either the whole folder or none.
  The run's end also writes `final.pt` consolidated on rank 0, the same format as a DDP run's (model
  and EMA, no optimizer), so sampling and evaluation read either.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor

from tensorar.distributed import DistInfo, barrier
from tensorar.fileio import atomic_torch_save
from tensorar.models.loading import model_checkpoint, save_model
from tensorar.training.build import EMA
from tensorar.training.checkpoints import TRAINING_STATE

# Master weights are fp32 whatever the compute dtype; recorded in every checkpoint and checked on resume.
MASTER_DTYPE = "float32"


def save_full(path: Path, model: nn.Module, opt: torch.optim.Optimizer, ema: EMA | None, extra: dict,
              info: DistInfo) -> None:
    """DDP: rank 0 writes the whole state to one file (atomically)."""
    if info.is_main:
        save_model(path, model, ema=None if ema is None else ema.state, optimizer=opt.state_dict(), **extra)
    barrier()


def sharded_state(model: nn.Module, opt: torch.optim.Optimizer, ema: EMA | None) -> dict:
    """What a sharded checkpoint holds, keyed by parameter names (so it reshards to any world size)."""
    state = {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, opt)}
    if ema is not None:
        state["ema"] = ema.state
    return state


def save_sharded(path: Path, model: nn.Module, opt: torch.optim.Optimizer, ema: EMA | None, extra: dict,
                 info: DistInfo) -> None:
    """FSDP: every rank writes its shards into a temporary folder; rank 0 adds the training state and
    renames the folder to `path` once all shards are on disk."""
    tmp = path.with_name(f".{path.name}.tmp")
    if info.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    dcp.save(sharded_state(model, opt, ema), checkpoint_id=str(tmp))  # returns once every rank has written
    if info.is_main:
        architecture = model_checkpoint_configs(model)
        ema_mark = None if ema is None else "in the shards"  # as a file's "ema" entry: None when there is none
        atomic_torch_save({**architecture, **extra, "ema": ema_mark}, tmp / TRAINING_STATE)
        if path.exists():  # the same step saved again by a rerun: replace it
            shutil.rmtree(path)
        os.replace(tmp, path)
    barrier()


def load_sharded(path: Path, model: nn.Module, opt: torch.optim.Optimizer, ema: EMA | None) -> None:
    """Read a sharded checkpoint into the already sharded model, optimizer and EMA, in place."""
    state = sharded_state(model, opt, ema)
    dcp.load(state, checkpoint_id=str(path))
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, opt, state["optimizer"])


def save_consolidated(path: Path, model: nn.Module, ema: EMA | None, extra: dict, info: DistInfo) -> None:
    """FSDP: gather the full weights (and EMA) to rank 0's CPU, tensor by tensor, and write our usual model
    file. Every rank takes part in the gathers."""
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    full_ema = None
    if ema is not None:
        full_ema = {k: (v.full_tensor() if isinstance(v, DTensor) else v).cpu() for k, v in ema.state.items()}
    if info.is_main:
        atomic_torch_save({**model_checkpoint_configs(model), "model": full, "ema": full_ema, **extra}, path)
    barrier()


def model_checkpoint_configs(model: nn.Module) -> dict:
    """Our model file's header (kind, family, configs): enough to rebuild the architecture."""
    return {k: v for k, v in model_checkpoint(model).items() if k != "model"}


def check_master_dtype(saved: dict, path) -> None:
    """A checkpoint records its master weights' dtype; resuming keeps it (and files before the record
    held fp32 masters)."""
    dtype = saved.get("param_dtype", MASTER_DTYPE)
    if dtype != MASTER_DTYPE:
        raise SystemExit(f"{path} holds {dtype} master weights; tensorar train keeps {MASTER_DTYPE} masters "
                         "(start a fresh run directory)")
