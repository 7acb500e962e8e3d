"""The planned GPU jobs and their memory plan: `planned_jobs(plan)` is the one function that reads the
experiment plan; `memory_plan(jobs)` predicts each job's GPU and host memory and picks its strategy.

A training job is one (backbone, method): seeds do not change memory. Sampling jobs are the ADM sample
runs (`sample`), the timing runs (`time_sampling`) and the prompt runs of text backbones
(`sample_prompts`), each at the batch the plan gives it.
"""
from __future__ import annotations

from dataclasses import dataclass

from tensorar.models.registry import family, tokenizer_family
from tensorar.resources.architecture import Architecture, ModelSpec, architecture
from tensorar.resources.memory import Breakdown, HostBreakdown, host_sampling, host_training, sampling_peak
from tensorar.resources.strategy import Choice, DoesNotFit, choose_training, usable_gpu_bytes

MiB, GiB = 2**20, 2**30
# Ours, until the config says: an 80 GB GPU (A100 / H100), when `resources.<stage>.gpu_mem_mb` is unset.
ASSUMED_GPU_MB = 81920
# Images per dataset the codes are made of, where the config names a known one (ILSVRC-2012 train).
KNOWN_ITEMS = {"imagenet": 1_281_167}


@dataclass(frozen=True)
class Job:
    name: str  # "train LlamaGen-XXL-384 tensorar-default"
    stage: str  # train | sample | time_sampling | sample_prompts
    spec: ModelSpec
    batch: int  # train: the global batch; sampling: per rank
    gpus: int
    gpu_bytes: int
    gpu_assumed: bool  # gpu_mem_mb not in the config: ASSUMED_GPU_MB
    node_bytes: int  # the job's mem_mb
    cfg: bool = False  # sampling under classifier-free guidance
    codes_items: int | None = None  # training: images the codes hold (None: unknown)
    augmentations: int = 1
    condition_bytes: int = 0  # training: stored condition bytes per item


def _resources(config: dict, stage: str, backbone: str) -> dict:
    """config `resources.default` < `resources.<stage>` < `backbones.<b>.resources.<stage>` (as the rules)."""
    spec = dict(config["resources"]["default"])
    spec.update(config["resources"].get(stage) or {})
    spec.update((config["backbones"][backbone].get("resources") or {}).get(stage) or {})
    return spec


def planned_jobs(plan) -> list[Job]:
    """Every training and sampling job of `plan` (a tensorar.plan.Plan), in table order."""
    config = plan.config
    names = list(dict.fromkeys([*plan.run_backbones(), *plan.text_backbones()]))
    codes = config["codes"]
    augmentations = (10 if codes["augment"] == "tencrop" else 2) // (1 if codes["flip"] else 2)
    jobs = []
    for backbone in names:
        b = config["backbones"][backbone]
        tok = config["tokenizers"][b["tokenizer"]]
        tok_preset = tokenizer_family(tok["preset"]).presets[tok["preset"]]
        fam = family(b["family"])
        tokens = b.get("block_size") or (b["image_size"] // tok_preset.downsample) ** 2
        encoder = (config.get("text_encoders") or {}).get(b.get("text_encoder"), {})
        base = ModelSpec(b["family"], b["preset"], tokens, tok_preset.codebook_size,
                         1000 if fam.condition == "class" else None, prompt_length=encoder.get("prompt_length"))
        methods = [("finetune", base)] + [(f"tensorar-{v}", ModelSpec(**{**base.__dict__, "k": plan.variants[v]["k"],
                                                                         "depth": plan.variants[v]["depth"]}))
                                          for v in plan.variants_of(backbone)]
        items = KNOWN_ITEMS.get(config["dataset"]["name"]) if fam.condition == "class" else None
        cfg = plan.sampling_options(backbone).use_cfg

        def job(stage, method, spec, batch, **extra):
            res = _resources(config, stage, backbone)
            gpu_mb = res.get("gpu_mem_mb")
            return Job(f"{stage} {backbone} {method}", stage, spec, batch, max(int(res["gpu"]), 1),
                       (gpu_mb or ASSUMED_GPU_MB) * MiB, gpu_mb is None, int(res["mem_mb"]) * MiB, **extra)

        for method, spec in methods:
            jobs.append(job("train", method, spec, plan.train_options(backbone, method, plan.seeds[0]).global_batch_size,
                            codes_items=items, augmentations=augmentations,
                            condition_bytes=_condition_bytes(fam.condition, spec)))
        for method, spec in [("base", base), *methods]:
            if fam.condition == "class":
                jobs.append(job("sample", method, spec, config["evaluation"]["sample_batch_size"], cfg=cfg))
            else:
                jobs.append(job("sample_prompts", method, spec, config["evaluation"]["sample_batch_size"], cfg=cfg))
            if backbone in plan.run_backbones():
                jobs.append(job("time_sampling", method, spec, config["timing"]["batch_size"], cfg=cfg))
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
    gpu: Breakdown | None  # None: refused
    host: HostBreakdown
    choice: Choice | None = None  # training
    refusal: str | None = None


def plan_job(job: Job) -> Planned:
    arch = architecture(job.spec)
    if job.stage == "train":
        host = host_training(arch, job.gpus, job.codes_items or 0, job.augmentations, job.spec.vocab,
                             job.condition_bytes)
        try:
            choice = choose_training(job.name, arch, job.batch, job.gpus, job.gpu_bytes)
        except DoesNotFit as refused:
            return Planned(job, arch, None, host, refusal=str(refused))
        planned = Planned(job, arch, choice.peak, host, choice)
    else:
        peak = sampling_peak(arch, job.batch, job.cfg)
        host = host_sampling(arch, job.gpus)
        refusal = None
        if peak.total > usable_gpu_bytes(job.gpu_bytes):
            refusal = (f"{job.name}: batch {job.batch} needs {peak.total / GiB:.1f} GiB, more than the "
                       f"{usable_gpu_bytes(job.gpu_bytes) / GiB:.1f} GiB usable of a {job.gpu_bytes / GiB:.0f} GiB GPU")
        planned = Planned(job, arch, peak, host, refusal=refusal)
    if planned.refusal is None and host.resident > job.node_bytes:
        return Planned(job, arch, planned.gpu, host, planned.choice,
                       f"{job.name}: the node's resident memory {host.resident / GiB:.0f} GiB exceeds the "
                       f"{job.node_bytes / GiB:.0f} GiB its resources ask for (mem_mb)")
    return planned


def memory_plan(jobs: list[Job]) -> list[Planned]:
    return [plan_job(job) for job in jobs]

