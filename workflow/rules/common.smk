"""Config validation, the experiment plan, resources, and the named input / params functions the rules
use. Which runs exist, where every file lives, every stage's arguments and the table manifests come
from `tensorar.plan` (one place, unit-tested in tests/test_plan.py); the rules only wire them together.

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
R = PLAN.root


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
def _stage_spec(stage, backbone=None):
    spec = dict(config["resources"]["default"])
    spec.update(config["resources"].get(stage) or {})
    if backbone is not None:
        spec.update((config["backbones"][backbone].get("resources") or {}).get(stage) or {})
    return spec


def _resource_getter(stage, key):
    def get(wildcards):
        return _stage_spec(stage, getattr(wildcards, "backbone", None))[key]

    get.__name__ = f"{stage}_{key}"
    return get


def stage_threads(stage):
    return _resource_getter(stage, "threads")


def stage_resources(stage):
    """Resource name -> callable(wildcards), for `resources: **stage_resources("train")`."""
    keys = set(_stage_spec(stage)) - {"threads"}
    return {key: _resource_getter(stage, key) for key in sorted(keys)}


def launcher(wildcards, resources):
    """`python` on CPU or one GPU; one torchrun process per GPU when a job holds several."""
    gpus = int(getattr(resources, "gpu", 0) or 0)
    return f"torchrun --standalone --nproc_per_node={gpus}" if gpus > 1 else "python"


# --------------------------------------------------------------------------------------------------
# Inputs and arguments, per rule (wildcards -> the plan)
# --------------------------------------------------------------------------------------------------
def make_reference_args(w):
    return args(PLAN.make_reference_args(w.split, w.size))


def train_tokenizer_args(w):
    return args(PLAN.train_tokenizer_args(w.tokenizer))


def extract_codes_inputs(w):
    return {**PLAN.images_inputs(w.tokenizer), **PLAN.tokenizer_inputs(w.tokenizer)}


def train_tokenizer_inputs(w):
    return PLAN.images_inputs(w.tokenizer)


def extract_codes_args(w):
    return args(PLAN.extract_codes_args(w.tokenizer, w.split, w.size))


def train_inputs(w):
    return PLAN.train_inputs(w.backbone, w.method, w.seed)


def train_args(w):
    return args(PLAN.train_args(w.backbone, w.method, w.seed))


def sample_inputs(w):
    return PLAN.sample_inputs(w.backbone, w.method, w.seed, w.tag)


def sample_args(w):
    return args(PLAN.sample_args(w.backbone, w.method, w.seed, w.tag))


def timing_inputs(w):
    return PLAN.sample_inputs(w.backbone, w.method, PLAN.seeds[0])


def timing_args(w):
    return args(PLAN.timing_args(w.backbone, w.method))


def drafts_inputs(w):
    return PLAN.sample_inputs(w.backbone, w.method, w.seed)


def drafts_args(w):
    return args(PLAN.drafts_args(w.backbone, w.method, w.seed))


def evaluate_inputs(w):
    return PLAN.evaluate_inputs(w.backbone, w.method, w.seed, w.tag)


def evaluate_args(w):
    return args([PLAN.reference(w.backbone), PLAN.sample(w.backbone, w.method, w.seed, w.tag),
                 *PLAN.evaluate_args(w.backbone)])


def diagnose_inputs(w):
    return PLAN.diagnose_inputs(w.backbone, w.variant, w.seed)


def diagnose_args(w):
    return args(PLAN.diagnose_args(w.backbone, w.variant, w.seed))


def encode_captions_args(w):
    return args(PLAN.encode_captions_args(w.tokenizer, w.split, w.size, w.encoder))


def sample_prompts_inputs(w):
    return {**PLAN.sample_inputs(w.backbone, w.method, w.seed), **PLAN.benchmark_inputs(w.benchmark)}


def sample_prompts_args(w):
    return args(PLAN.sample_prompts_args(w.benchmark, w.backbone, w.method, w.seed))


def geneval_detect_args(w):
    return args(PLAN.detect_args("geneval", w.backbone, w.method, w.seed))


def dpg_vqa_args(w):
    return args(PLAN.detect_args("dpg", w.backbone, w.method, w.seed))


def score_inputs(w):
    folder = PLAN.bench_dir(w.benchmark, w.backbone, w.method, w.seed)
    inputs = {"samples": f"{folder}/samples.json", **PLAN.benchmark_inputs(w.benchmark)}
    if PLAN.toy_benchmark(w.benchmark):
        return {**inputs, "classifier": PLAN.classifier()}
    return {**inputs, "raw": f"{folder}/raw.jsonl"}


def score_args(w):
    return args(PLAN.score_args(w.benchmark, w.backbone, w.method, w.seed))


def table_inputs(w):
    return manifest_inputs(PLAN.table_manifest(w.table))


def table_manifest(w):
    return json.dumps(PLAN.table_manifest(w.table))


def done_message():
    lines = [f"Tables ({config['experiment']}; {PLAN.provenance()['feature_network']}):"]
    lines += [f"  {path}" for path in PLAN.targets() if path.endswith(".md") and os.path.exists(path)]
    lines += ["Figures:", *(f"  {p}" for p in PLAN.targets() if p.endswith(".png") and os.path.exists(p))]
    lines += [f"Per-run samples (PNG grids), metrics and logs: {R}/samples, {R}/metrics, {R}/logs",
              "HTML report of every table and figure: snakemake --report results/report.html"]
    return "\n".join(lines)
