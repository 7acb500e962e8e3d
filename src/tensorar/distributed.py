"""torch.distributed set-up in the style of DiT's train.py.

`RANK` unset -> a plain single process (laptop, tests). Under `torchrun` (or srun + torchrun on SLURM)
-> NCCL on CUDA, gloo on CPU. Only rank 0 logs.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()


def init_distributed(device: str = "auto", group: bool = False) -> DistInfo:
    """Initialise the process group from torchrun's environment, or return a single-process info.
    `group`: a single process also gets a process group of one (FSDP shards over a group, even of one),
    rendezvousing in memory."""
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if "RANK" not in os.environ:
        dev = torch.device("cuda" if want_cuda else "cpu")
        if group and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if want_cuda else "gloo", store=dist.HashStore(), rank=0,
                                    world_size=1)
        return DistInfo(rank=0, world_size=1, local_rank=0, device=dev)
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of `value` over ranks (a no-op in a single process)."""
    if not dist.is_initialized():
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


def get_logger(name: str, is_main: bool = True, logfile: str | None = None) -> logging.Logger:
    """A logger that writes on rank 0 only (other ranks get a silent logger), like DiT's."""
    logger = logging.getLogger(f"tensorar.{name}")
    logger.handlers.clear()
    logger.propagate = False
    if is_main:
        logger.setLevel(logging.INFO)
        fmt = logging.Formatter("[%(asctime)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
        handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
        if logfile:
            handlers.append(logging.FileHandler(logfile))
        for h in handlers:
            h.setFormatter(fmt)
            logger.addHandler(h)
    else:
        logger.addHandler(logging.NullHandler())
    return logger
