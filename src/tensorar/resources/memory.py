"""The analytic memory model (ours): peak GPU bytes of one training rank and one sampling rank, and the
host bytes of a node, from an `Architecture`, the batch, the precision and the strategy.

Training follows the trainer (tensorar.training.trainer): fp32 master weights, bf16 autocast for compute
(CUDA), AdamW (two fp32 moments per trainable weight), `zero_grad(set_to_none=True)` after the forward,
so the previous step's gradients are still held while the forward runs. Every count below is what
autograd keeps alive, read off the code of the block it describes (see `block_bytes`); docs/resources.md
checks the totals against torch's MemTracker on the real training step.

Sizes are bytes; "per token" means per position the transformer runs (prefix + image tokens).
"""
from __future__ import annotations

from dataclasses import dataclass

from tensorar.resources.architecture import Architecture, Stack

FP32, BF16 = 4, 2
# DDP keeps one fp32 gradient-sized bucket buffer beside the gradients (gradient_as_bucket_view=False,
# DistributedDataParallel's default and the trainer's), per torch's DDP documentation.
DDP_BUCKETS = True


@dataclass(frozen=True)
class Breakdown:
    """Peak bytes by what holds them (the peak's components, not each one's own maximum)."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int  # what autograd saves, incl. autocast's bf16 weight copies
    logits: int  # the head's logits and their gradients at the peak
    other: int = 0  # DDP buckets, FSDP's gathered blocks, KV cache (sampling)

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.activations + self.logits + self.other


def mask_bytes(device: str, dtype_bytes: int) -> int:
    """A dropout mask element: CUDA's fused dropout keeps a bool; the CPU kernel keeps a tensor of the
    dropped tensor's dtype (so CPU validation runs count that)."""
    return 1 if device == "cuda" else dtype_bytes


def block_bytes(s: Stack, device: str, bf16_params: bool = False, checkpointed_input_only: bool = False) -> int:
    """Saved bytes per token of one block in training (bf16 autocast). `checkpointed_input_only`: with
    activation checkpointing a block keeps only its input (the residual stream) until it is recomputed.
    `bf16_params`: FSDP's gathered parameters are bf16 (MixedPrecisionPolicy), so the embeddings and the
    residual stream are bf16 and no projection casts its input; each RMSNorm keeps its fp32 upcast, its
    bf16 value before the weight and its output (either block kind).

    "llamagen" (tensorar.models.layers.TransformerBlock): the residual stream stays fp32 (the embeddings
    are fp32 and bf16 branch outputs promote on the add). Attention saves: the block input and the fp32
    normed input (RMSNorm), its bf16 cast (wqkv), the fused qkv output (v is a view of it), the roped q
    and k (SDPA), the attention output (wo), the dropout mask and the fp32 log-sum-exp per head. The FFN:
    the residual and the normed input, two bf16 casts (w1, w3 cast separately), silu's input, its output,
    w3's output, their product (w2) and the dropout mask.

    "hf_llama" (transformers' LlamaDecoderLayer, Janus): the residual stream is bf16 (JanusBackbone casts
    the embeddings); each RMSNorm keeps its fp32 upcast and its bf16 value before the fp32 weight, whose
    product is fp32 again, so every projection reading it keeps its own bf16 cast (q, k, v; gate, up);
    then the roped q and k, v, the attention output, and the FFN's four F-wide bf16 tensors; no dropout.
    """
    D, F, kv = s.dim, s.ffn_hidden, s.dim // s.heads * s.kv_heads
    mask = mask_bytes(device, BF16) * D if s.dropout else 0
    if checkpointed_input_only:
        return (BF16 if bf16_params or s.kind == "hf_llama" else FP32) * D
    # SDPA's roped q and k (and v); ours keep the fused qkv output whole (v is a view of it)
    qkv = BF16 * (D + 2 * kv) + (BF16 * (D + kv) if s.kind == "llamagen" else 0)
    if bf16_params:
        norm = FP32 * D + 2 * BF16 * D
        attention = norm + qkv + BF16 * D + mask + FP32 * s.heads
        return attention + norm + 4 * BF16 * F + mask
    if s.kind == "llamagen":
        attention = 2 * FP32 * D + BF16 * D + qkv + BF16 * D + mask + FP32 * s.heads
        ffn = 2 * FP32 * D + 2 * BF16 * D + 4 * BF16 * F + mask
        return attention + ffn
    if s.kind == "hf_llama":
        norm = FP32 * D + BF16 * D
        attention = norm + 3 * BF16 * D + qkv + BF16 * D + FP32 * s.heads
        ffn = norm + 2 * BF16 * D + 4 * BF16 * F
        return attention + ffn
    raise ValueError(f"unknown block kind {s.kind!r}")


def plugin_bytes(a: Architecture) -> int:
    """TensorAR's M_enc and M_dec per token (tensorar.models.tensorar): the window embeddings through Q_in's
    norm, bf16 cast and fused kv (k rows of D each), and Q_out's k query rows through its cross-attention,
    MLP and the fp32 per-slot hidden states (B, T, k, D) the per-slot loss reads. Zero for a plain backbone."""
    if a.k == 0:
        return 0
    D, k = a.spatial.dim, a.k
    encode = (2 * FP32 + BF16 + 2 * BF16) * k * D * a.depth + 2 * FP32 * D
    decode = (FP32 + 3 * BF16 + FP32) * k * D * a.depth + (2 * FP32 + 4 * BF16 + FP32) * k * D
    return encode + decode


def logits_bytes(a: Architecture, image_positions: int) -> tuple[int, int]:
    """(forward, backward) peak bytes of the head: fp32 logits (the bf16 matmul output upcast) and
    log-softmax's output, then in the backward two fp32 gradient buffers beside the saved output. A plain
    backbone keeps every position's log-softmax from the forward; TensorAR runs each slot's head inside an
    activation checkpoint, so one slot's logits exist at a time (k slots summed over time, not space)."""
    width = sum(a.logit_widths)
    return 2 * FP32 * width * image_positions, 3 * FP32 * width * image_positions


def activation_bytes(a: Architecture, micro_batch: int, device: str, checkpointing: bool,
                     bf16_params: bool = False) -> tuple[int, int]:
    """(saved, recomputed): activations of one micro-batch held at the end of the forward (without the
    head's logits), and with checkpointing the one block recomputed at a time in the backward."""
    positions = micro_batch * (a.prefix + a.tokens)
    stacks = [(a.spatial, positions)] + ([(a.intra, 2 * micro_batch * a.tokens)] if a.intra else [])
    saved = recomputed = 0
    for stack, n in stacks:
        if checkpointing:  # every block's input; one block's activations again in the backward
            saved += n * stack.layers * block_bytes(stack, device, bf16_params, True)
            recomputed = max(recomputed, n * block_bytes(stack, device, bf16_params))
        else:
            saved += n * stack.layers * block_bytes(stack, device, bf16_params)
    # The embeddings (fp32) and their dropout mask, the final norm, the head's bf16 input.
    residual = FP32 if a.spatial.kind == "llamagen" and not bf16_params else BF16
    D = a.spatial.dim
    ends = positions * (residual * D + (mask_bytes(device, FP32) * D if a.token_dropout else 0) + 2 * FP32 * D)
    return saved + ends + micro_batch * a.tokens * (plugin_bytes(a) + BF16 * D), recomputed


def training_peak(a: Architecture, micro_batch: int, world: int, strategy: str, checkpointing: bool,
                  device: str = "cuda") -> Breakdown:
    """Peak GPU bytes of one rank of a training step. `world`: the ranks FSDP shards over."""
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"strategy {strategy!r}: ddp or fsdp")
    shard = world if strategy == "fsdp" else 1
    params = FP32 * a.parameters // shard
    grads = FP32 * a.trainable // shard
    optimizer = 2 * FP32 * a.trainable // shard
    if strategy == "ddp":
        # autocast caches a bf16 copy of every trainable Linear weight for the forward; the backward holds
        # them until each matmul's gradient is taken.
        other = grads if DDP_BUCKETS else 0
        cast = BF16 * a.matmul_weights
    else:
        # FSDP2 with bf16 param_dtype: the root's parameters stay gathered, one block is gathered while the
        # next is prefetched, and a block's fp32 gradient is whole until it is reduce-scattered.
        other = BF16 * (a.root_parameters + 2 * a.block_parameters) + FP32 * a.block_parameters
        cast = 0
    saved, recomputed = activation_bytes(a, micro_batch, device, checkpointing, bf16_params=strategy == "fsdp")
    forward_logits, backward_logits = logits_bytes(a, micro_batch * a.tokens)
    moments = [
        # end of the forward: last step's gradients are still held (zero_grad comes after the forward)
        Breakdown(params, grads, optimizer, saved + cast, forward_logits, other),
        # start of the backward: the gradients are gone, the head's are at their largest
        Breakdown(params, 0, optimizer, saved + cast, backward_logits, other),
        # a checkpointed block recomputed in the backward (the logits are gone by then)
        Breakdown(params, 0, optimizer, saved + cast + recomputed, 0, other),
        # the optimizer step
        Breakdown(params, grads, optimizer, 0, 0, other),
    ]
    return max(moments, key=lambda b: b.total)


def sampling_peak(a: Architecture, batch: int, cfg: bool, dtype_bytes: int = FP32) -> Breakdown:
    """Peak GPU bytes of one sampling rank: the weights in the sampling dtype, the KV cache of every
    row ([cond; null] under CFG) over prefix + image tokens, the prefill's widest activations, and
    the fp32 logits of the k slots with their guided copy and the sampler's probabilities and CDF."""
    rows = batch * (2 if cfg else 1)
    s = a.spatial
    head_dim = s.dim // s.heads
    cache = 2 * s.layers * rows * (a.prefix + a.tokens) * s.kv_heads * head_dim * dtype_bytes
    if a.intra:
        cache += 2 * a.intra.layers * rows * max(a.k, 1) * 2 * s.kv_heads * head_dim * dtype_bytes
    prefill = rows * a.prefix * (3 * s.dim + 2 * s.ffn_hidden) * dtype_bytes
    logits = 4 * FP32 * rows * max(a.k, 1) * max(a.logit_widths)
    return Breakdown(dtype_bytes * a.parameters, 0, 0, prefill, logits, cache)


def smallest_int_bytes(vocab: int) -> int:
    """The smallest unsigned integer type that holds every code (codes are stored as such)."""
    for size in (1, 2, 4):
        if vocab <= 2 ** (8 * size):
            return size
    return 8


@dataclass(frozen=True)
class HostBreakdown:
    resident: int  # RSS of the node's processes: what a job's memory limit must hold
    page_cache: int  # memory-mapped codes and conditions, shared by the node's ranks, reclaimable

    @property
    def total(self) -> int:
        return self.resident + self.page_cache


# Ours: a CUDA process of torch holds ~2.5 GiB of host memory before it allocates anything (runtime,
# kernels, pinned staging), a CPU-only one ~0.5 GiB; a DataLoader worker ~0.5 GiB.
PROCESS_BYTES = {"cuda": int(2.5 * 2**30), "cpu": 2**29}
WORKER_BYTES = 2**29


def host_training(a: Architecture, ranks_per_node: int, codes_items: int, augmentations: int, vocab: int,
                  condition_bytes_per_item: int, workers: int = 0, device: str = "cuda") -> HostBreakdown:
    """Host memory of one training node: per rank the process, its loader workers and the model built
    on the CPU beside the checkpoint it loads (both fp32) before they move to the GPU; shared by the
    ranks: the codes (smallest integer type, memory-mapped) and the stored conditions, in page cache."""
    per_rank = PROCESS_BYTES[device] + workers * WORKER_BYTES + 2 * FP32 * a.parameters
    codes = codes_items * augmentations * a.tokens * smallest_int_bytes(vocab)
    return HostBreakdown(ranks_per_node * per_rank, codes + codes_items * condition_bytes_per_item)


def host_sampling(a: Architecture, ranks_per_node: int, dtype_bytes: int = FP32, device: str = "cuda") -> HostBreakdown:
    """Host memory of one sampling node: per rank the process and the checkpoint read on the CPU."""
    return HostBreakdown(ranks_per_node * (PROCESS_BYTES[device] + (FP32 + dtype_bytes) * a.parameters), 0)
