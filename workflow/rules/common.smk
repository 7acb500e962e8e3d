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
import sys

from snakemake.utils import validate

from tensorar.plan import Plan, manifest_inputs
from tensorar.resources.table import render


validate(config, "../schemas/config.schema.yaml")

# Jobs write their progress bars to log files, not a terminal: one update every 30 s, not per step
# (tqdm reads TQDM_* defaults from the environment; jobs, Slurm ones too, inherit it).
os.environ.setdefault("TQDM_MININTERVAL", "30")

PLAN = Plan(config)
LAYOUT, JOBS, MANIFESTS, CLUSTER = PLAN.layout, PLAN.jobs, PLAN.manifests, PLAN.cluster

# The memory plan (docs/resources.md) in the log of every run and dry run at paper scale (jobs with GPUs):
# a job that fits nothing its resources give it is refused now, not after a day in the queue.
if CLUSTER.uses_gpus():
    sys.stderr.write(f"Memory plan (tensorar resources; docs/resources.md):\n{render(JOBS.memory_plan)}")
    _refused = [p.refusal for p in JOBS.memory_plan if p.refusal]
    if _refused:
        _lines = "\n".join(_refused)
        raise ValueError(f"the memory plan refuses these jobs:\n{_lines}")


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
# Resources: config `resources.default` < `resources.<stage>` < `backbones.<b>.resources.<stage>`, plus the
# `cluster` settings (tensorar.plan.cluster)
# --------------------------------------------------------------------------------------------------
def _resource_getter(rule, key):
    def get(wildcards):
        return CLUSTER.job_resources(rule, getattr(wildcards, "backbone", None))[key]

    get.__name__ = f"{rule}_{key}"
    return get


def job_threads(rule):
    return _resource_getter(rule, "threads")


def job_resources(rule):
    """Resource name -> callable(wildcards), for `resources: **job_resources("train")`."""
    keys = set(CLUSTER.job_resources(rule)) - {"threads"}
    return {key: _resource_getter(rule, key) for key in sorted(keys)}


# Jobs without a GPU that the Snakemake process runs itself (`cluster.cpu_jobs: local`); the call is what
# a `localrules:` directive compiles to, which cannot take a computed list.
workflow.localrules(*CLUSTER.local_rules())


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
