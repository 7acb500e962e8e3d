"""The cheapest training strategy that fits a GPU (ours): DDP, then FSDP, then FSDP with activation
checkpointing, then FSDP with checkpointing on smaller micro-batches (the global batch unchanged, as
gradient accumulation keeps it). The names are TrainOptions' (`strategy`, `activation_checkpointing`,
`micro_batch_size`, 0 = the whole per-rank batch). A job nothing fits is refused, naming its numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

from tensorar.resources.architecture import Architecture
from tensorar.resources.memory import Breakdown, training_peak

GiB = 2**30
# Ours: what a GPU gives a job's tensors. The CUDA context, cuBLAS / NCCL workspaces take ~1 GiB and the
# caching allocator's fragmentation ~10 % of the rest.
CONTEXT_BYTES = GiB
FRAGMENTATION = 0.10
# The TrainOptions fields a Choice sets.
STRATEGY_FIELDS = ("strategy", "activation_checkpointing", "micro_batch_size")


class DoesNotFit(ValueError):
    """A job no strategy fits; the message names the job and the numbers."""


def usable_gpu_bytes(gpu_bytes: int) -> int:
    return int((gpu_bytes - CONTEXT_BYTES) * (1 - FRAGMENTATION))


@dataclass(frozen=True)
class Choice:
    strategy: str
    activation_checkpointing: bool
    micro_batch_size: int  # 0: the whole per-rank batch
    peak: Breakdown

    def options(self) -> dict:
        """As TrainOptions fields (what the plan passes to `tensorar train`)."""
        return dict(zip(STRATEGY_FIELDS, (self.strategy, self.activation_checkpointing, self.micro_batch_size)))


def candidates(per_rank_batch: int):
    """(strategy, checkpointing, micro-batch) from the cheapest to the most frugal."""
    yield "ddp", False, 0
    yield "fsdp", False, 0
    yield "fsdp", True, 0
    micro = per_rank_batch // 2
    while micro >= 1:
        if per_rank_batch % micro == 0:
            yield "fsdp", True, micro
        micro //= 2


def choose_training(job: str, arch: Architecture, global_batch: int, gpus: int, gpu_bytes: int,
                    fixed: tuple[str, bool, int] | None = None) -> Choice:
    """The first candidate whose predicted peak fits `usable_gpu_bytes(gpu_bytes)`, or DoesNotFit.
    `fixed`: the (strategy, checkpointing, micro-batch) the config sets, the only candidate tried."""
    if global_batch % gpus:
        raise DoesNotFit(f"{job}: global batch {global_batch} is not divisible by its {gpus} GPUs")
    per_rank = global_batch // gpus
    if fixed is not None and fixed[2] and per_rank % fixed[2]:
        raise DoesNotFit(f"{job}: micro-batch {fixed[2]} does not divide the per-GPU batch {per_rank}")
    budget = usable_gpu_bytes(gpu_bytes)
    tried = []
    for strategy, checkpointing, micro in [fixed] if fixed is not None else candidates(per_rank):
        peak = training_peak(arch, micro or per_rank, gpus, strategy, checkpointing)
        if peak.total <= budget:
            return Choice(strategy, checkpointing, micro, peak)
        tried.append(f"{strategy}{' + checkpointing' if checkpointing else ''} micro-batch {micro or per_rank}: "
                     f"{peak.total / GiB:.1f} GiB")
    what = "the config's strategy does not fit" if fixed is not None else "no strategy fits"
    raise DoesNotFit(f"{job}: {what} {budget / GiB:.1f} GiB usable of a {gpu_bytes / GiB:.0f} GiB GPU "
                     f"({arch.parameters:,} parameters, {gpus} GPUs, per-rank batch {per_rank}); tried "
                     + "; ".join(tried))
