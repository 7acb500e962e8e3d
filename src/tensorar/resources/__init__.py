"""Memory as a planned resource (ours; docs/resources.md): what a training or sampling job needs on its
GPUs and its node, predicted before it is queued, and the cheapest strategy that fits.

    architecture.py   a model built on the meta device -> the sizes the memory model reads
    memory.py         the analytic model: parameters, gradients, AdamW states, activations, logits, KV cache;
                      host memory (codes as memory maps, loader workers, conditions)
    strategy.py       DDP -> FSDP -> FSDP + activation checkpointing -> smaller micro-batches
    jobs.py           the planned jobs (the one place that reads `tensorar.plan`)
    tracking.py       torch's MemTracker running the real training step, on fake or real tensors
"""
