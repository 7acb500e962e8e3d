"""Config validation, the experiment plan, resources, and the input / params functions the rules use.
Which runs exist, where every file lives (`LAYOUT`), every stage's inputs and arguments (`JOBS`) and the
table manifests (`MANIFESTS`) come from `tensorar.plan` (unit-tested in tests/test_plan.py); the rules
only wire them together.

Released inputs (ImageNet, official checkpoints, Inception weights) are config paths passed as stage
arguments, never declared as inputs of a job, so a dry run needs none of them; the stages name a
missing file and where to get it. Every argument list is shell-quoted here (`args`), every path in a
shell command with `:q`, so no config value is ever read by the shell as code.
"""
import json
import os
import shlex

from snakemake.utils import validate

from tensorar.plan import Plan, manifest_inputs


validate(config, "../schemas/config.schema.yaml")

# Jobs write their progress bars to log files, not a terminal: one update every 30 s, not per step
# (tqdm reads TQDM_* defaults from the environment; jobs, Slurm ones too, inherit it).
os.environ.setdefault("TQDM_MININTERVAL", "30")

PLAN = Plan(config)
LAYOUT, JOBS, MANIFESTS = PLAN.layout, PLAN.jobs, PLAN.manifests


wildcard_constraints:
    backbone=r"[A-Za-z0-9._-]+",
    method=r"base|finetune(-x\d+)?|tensorar-[A-Za-z0-9_]+(-x\d+)?",
    variant=r"[A-Za-z0-9_]+",
    seed=r"\d+",
    tag=r"final|final_draftnoise|step\d+",
    split=r"train|val",
    table=r"table[2-6]",
    size=r"\d+",
    tokenizer=r"[A-Za-z0-9_-]+",
    encoder=r"[A-Za-z0-9_-]+",
    benchmark=r"geneval|dpg",


def args(arguments):
    """A stage's argument list as one shell-safe string."""
    return shlex.join(arguments)


# --------------------------------------------------------------------------------------------------
# Resources: config `resources.default` < `resources.<stage>` < `backbones.<b>.resources.<stage>`
# --------------------------------------------------------------------------------------------------
def _resource_getter(stage, key):
    def get(wildcards):
        return PLAN.experiment.stage_resources(stage, getattr(wildcards, "backbone", None))[key]

    get.__name__ = f"{stage}_{key}"
    return get


def stage_threads(stage):
    return _resource_getter(stage, "threads")


def stage_resources(stage):
    """Resource name -> callable(wildcards), for `resources: **stage_resources("train")`."""
    keys = set(PLAN.experiment.stage_resources(stage)) - {"threads"}
    return {key: _resource_getter(stage, key) for key in sorted(keys)}


def launcher(wildcards, resources):
    """`python` on CPU or one GPU; one torchrun process per GPU when a job holds several."""
    gpus = int(getattr(resources, "gpu", 0) or 0)
    return f"torchrun --standalone --nproc_per_node={gpus}" if gpus > 1 else "python"


# --------------------------------------------------------------------------------------------------
# Inputs and arguments, per rule (wildcards -> the plan's jobs)
# --------------------------------------------------------------------------------------------------
def job_inputs(name, *keys):
    """The input function of a rule: JOBS.<name>_inputs(wildcards.<key>, ...)."""
    plan = getattr(JOBS, f"{name}_inputs")

    def inputs(w):
        return plan(*(getattr(w, key) for key in keys))

    inputs.__name__ = f"{name}_inputs"
    return inputs


def job_args(name, *keys):
    """The shell-quoted argument list of a rule: JOBS.<name>_args(wildcards.<key>, ...)."""
    plan = getattr(JOBS, f"{name}_args")

    def arguments(w):
        return args(plan(*(getattr(w, key) for key in keys)))

    arguments.__name__ = f"{name}_args"
    return arguments


def detect_args(benchmark):
    """The argument list of an official benchmark model's runner (rules geneval_detect, dpg_vqa)."""

    def arguments(w):
        return args(JOBS.detect_args(benchmark, w.backbone, w.method, w.seed))

    arguments.__name__ = f"{benchmark}_detect_args"
    return arguments


def table_inputs(w):
    return manifest_inputs(MANIFESTS.table_manifest(w.table))


def table_manifest(w):
    return json.dumps(MANIFESTS.table_manifest(w.table))


def done_message():
    targets, root = LAYOUT.targets(), LAYOUT.root
    lines = [f"Tables ({PLAN.experiment.name}; {MANIFESTS.provenance()['feature_network']}):"]
    lines += [f"  {path}" for path in targets if path.endswith(".md") and os.path.exists(path)]
    lines += ["Figures:", *(f"  {p}" for p in targets if p.endswith(".png") and os.path.exists(p))]
    lines += [f"Per-run samples (PNG grids), metrics and logs: {root}/samples, {root}/metrics, {root}/logs",
              "HTML report of every table and figure: snakemake --report results/report.html"]
    return "\n".join(lines)
