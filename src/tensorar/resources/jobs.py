"""The planned GPU jobs and their memory plan: `planned_jobs(experiment, jobs, cluster)` is the one function
that reads the experiment plan (tensorar.plan's objects, passed in: the plan imports this package); `memory_plan(jobs)` predicts each job's GPU and host memory and picks its strategy.

A training job is one (backbone, method): seeds do not change memory. Sampling jobs are the ADM sample
runs (`sample`), the timing runs (`time_sampling`) and the prompt runs of text backbones
(`sample_prompts`), each at the batch the plan gives it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from tensorar.models.registry import tokenizer_family
from tensorar.resources.architecture import Architecture, ModelSpec, architecture
from tensorar.resources.memory import (
    Breakdown,
    HostBreakdown,
    host_sampling,
    host_training,
    sampling_peak,
    training_peak,
)
from tensorar.resources.strategy import STRATEGY_FIELDS, Choice, DoesNotFit, choose_training, usable_gpu_bytes

MiB, GiB = 2**20, 2**30
# Ours, until the config says: an 80 GB GPU (A100 / H100), when `resources.<stage>.gpu_mem_mb` is unset.
ASSUMED_GPU_MB = 81920
# Classes of the class-conditional datasets (the embedding table's rows).
CLASSES = {"imagenet": 1000, "digits": 10}


@dataclass(frozen=True)
class Job:
    name: str  # "train LlamaGen-XXL-384 tensorar-default"
    stage: str  # train | sample | time_sampling | sample_prompts
    spec: ModelSpec
    batch: int  # train: the global batch; sampling: per rank
    gpus: int  # 0: a CPU job (the toy), whose tensors live in the node's memory
    gpu_bytes: int
    gpu_assumed: bool  # gpu_mem_mb not in the config: ASSUMED_GPU_MB
    node_bytes: int  # the job's mem_mb
    cfg: bool = False  # sampling under classifier-free guidance
    codes_items: int | None = None  # training: images the codes hold (None: unknown)
    augmentations: int = 1
    condition_bytes: int = 0  # training: stored condition bytes per item
    fixed: tuple[str, bool, int] | None = None  # training: the strategy the config sets (None: the plan picks)
    dtype_bytes: int = 4  # sampling: the backbone's sampling protocol's dtype (fp32 4, bf16 2)


def planned_jobs(exp, plan_jobs, cluster) -> list[Job]:
    """Every training and sampling job of a plan (tensorar.plan's Experiment, Jobs and Cluster), in table
    order. Training jobs carry the config's train options (`Jobs.configured_train_options`): the plan's
    choice of strategy is made from them."""
    jobs = []
    for backbone in dict.fromkeys([*exp.run_backbones(), *exp.text_backbones()]):
        b = exp.backbones[backbone]
        tokenizer = exp.tokenizers[b.tokenizer]
        codebook = tokenizer_family(tokenizer.preset).presets[tokenizer.preset].codebook_size
        encoder = exp.text_encoders.get(b.text_encoder) if b.text_encoder else None
        base = ModelSpec(b.family.name, b.preset, b.block_size or (b.image_size // tokenizer.downsample) ** 2,
                         codebook, None if b.text else CLASSES.get(exp.dataset.name),
                         prompt_length=encoder.prompt_length if encoder else None)
        methods = [("finetune", base)] + [(f"tensorar-{v}", replace(base, k=exp.variants[v].k,
                                                                     depth=exp.variants[v].depth))
                                          for v in exp.variants_of(backbone)]
        views = exp.codes[b.data]
        augmentations = (10 if views.augment == "tencrop" else 2) // (1 if views.flip else 2)
        items = exp.captions.count() if b.text else exp.dataset.train_items
        cfg = plan_jobs.sampling_options(backbone).use_cfg
        dtype_bytes = b.sampling_protocol.dtype_bytes

        def job(stage, method, spec, batch, **extra):
            res = cluster.stage_resources(stage, backbone)
            gpu_mb = res.get("gpu_mem_mb")
            return Job(f"{stage} {backbone} {method}", stage, spec, batch, int(res["gpu"]),
                       (gpu_mb or ASSUMED_GPU_MB) * MiB, gpu_mb is None, int(res["mem_mb"]) * MiB, **extra)

        for method, spec in methods:
            options = plan_jobs.configured_train_options(backbone, method, exp.seeds[0])
            fixed = tuple(getattr(options, k) for k in STRATEGY_FIELDS) if b.finetuning_strategy_set else None
            jobs.append(job("train", method, spec, options.global_batch_size, codes_items=items,
                            augmentations=augmentations, condition_bytes=_condition_bytes(b.family.condition, spec),
                            fixed=fixed))
        sampling = "sample_prompts" if b.text else "sample"
        for method, spec in [("base", base), *methods]:
            jobs.append(job(sampling, method, spec, exp.evaluation.sample_batch_size, cfg=cfg, dtype_bytes=dtype_bytes))
            if (backbone, method) in exp.timed_runs():
                jobs.append(job("time_sampling", method, spec, exp.timing.batch_size, cfg=cfg, dtype_bytes=dtype_bytes))
    return jobs


def _condition_bytes(condition: str, spec: ModelSpec) -> int:
    """Stored condition bytes per item (tensorar.data.conditions): T5 features of up to 120 tokens in
    fp32 (LlamaGen t2i, flan-t5-xl: 2048 wide), or a Janus prompt's int64 ids and int8 mask."""
    if condition == "caption":
        return 120 * 2048 * 4
    if condition == "prompt":
        return (spec.prompt_length or 256) * 9
    return 0


@dataclass(frozen=True)
class Planned:
    job: Job
    arch: Architecture
    gpu: Breakdown | None  # None: no strategy fits (a CPU job: its peak in host memory)
    host: HostBreakdown
    choice: Choice | None = None  # training
    refusal: str | None = None


def plan_job(job: Job) -> Planned:
    arch = architecture(job.spec)
    device, ranks = ("cuda", job.gpus) if job.gpus else ("cpu", 1)
    refusal = choice = None
    if job.stage == "train":
        host = host_training(arch, ranks, job.codes_items or 0, job.augmentations, job.spec.vocab,
                             job.condition_bytes, device=device)
        if job.gpus:
            try:
                choice = choose_training(job.name, arch, job.batch, job.gpus, job.gpu_bytes, job.fixed)
                peak = choice.peak
            except DoesNotFit as refused:
                peak, refusal = None, str(refused)
        else:
            peak = training_peak(arch, job.batch, 1, "ddp", False, device="cpu")
    else:
        peak = sampling_peak(arch, job.batch, job.cfg, job.dtype_bytes)
        host = host_sampling(arch, ranks, job.dtype_bytes, device=device)
        if job.gpus and peak.total > usable_gpu_bytes(job.gpu_bytes):
            refusal = (f"{job.name}: batch {job.batch} needs {peak.total / GiB:.1f} GiB, more than the "
                       f"{usable_gpu_bytes(job.gpu_bytes) / GiB:.1f} GiB usable of a {job.gpu_bytes / GiB:.0f} GiB GPU")
    if not job.gpus:  # the step's tensors are the process's own memory
        host = HostBreakdown(host.resident + peak.total, host.page_cache)
    if refusal is None and host.resident > job.node_bytes:
        refusal = (f"{job.name}: the node's resident memory {host.resident / GiB:.1f} GiB exceeds the "
                   f"{job.node_bytes / GiB:.1f} GiB its resources ask for (mem_mb)")
    return Planned(job, arch, peak, host, choice, refusal)


def memory_plan(jobs: list[Job]) -> list[Planned]:
    return [plan_job(job) for job in jobs]

