"""Config validation, output paths and the named helpers every rule uses (no logic lives in rules).

Paths (R = results/<experiment>):
    R/data/digits/                               toy dataset (tensorar.make_digits)
    R/tokenizer/vq.pt                            toy tokenizer (tensorar.train_vq)
    R/codes/<split>-<size>/manifest.json         token codes (tensorar.extract_codes)
    R/runs/<backbone>/<method>/seed<s>/final.pt  method = base | finetune | tensorar-<variant>
    R/samples/<backbone>/<method>/seed<s>/<tag>.npz   tag = final | final_draftnoise | step<N>
    R/metrics/<backbone>/<method>/seed<s>/<tag>.json
    R/diagnostics/<backbone>/tensorar-<variant>/seed<s>.json
    results/table{2..6}.md (+ .csv), results/diagnostics.md, results/figures/*.png
Real-scale inputs (ImageNet, LlamaGen checkpoints, Inception weights) are config paths passed as
params, never as inputs: a dry run needs none of them, and the entry points name a missing file and
where to get it.
"""
import hashlib
import json
import os

from snakemake.utils import validate


validate(config, "../schemas/config.schema.yaml")

# Jobs write their progress bars to log files, not a terminal: one update every 30 s, not per step
# (tqdm reads TQDM_* defaults from the environment; jobs, Slurm ones too, inherit it).
os.environ.setdefault("TQDM_MININTERVAL", "30")

R = f"results/{config['experiment']}"
SEEDS = config["seeds"]
BACKBONES = config["backbones"]
VARIANTS = config["variants"]
TABLES = config["tables"]
FIGURES = {
    "fig2": "results/figures/fig2_size_fid.png",
    "fig4": "results/figures/fig4_throughput_fid.png",
    "fig5": "results/figures/fig5_training_fid.png",
    "grid": "results/figures/samples_table2.png",
}


wildcard_constraints:
    backbone=r"[A-Za-z0-9._-]+",
    method=r"base|finetune|tensorar-[A-Za-z0-9_]+",
    variant=r"[A-Za-z0-9_]+",
    seed=r"\d+",
    tag=r"final|final_draftnoise|step\d+",
    split=r"train|val",
    table=r"table[2-6]",
    size=r"\d+",


# --------------------------------------------------------------------------------------------------
# Config checks the schema cannot express (cross references)
# --------------------------------------------------------------------------------------------------
def _check_references():
    def backbone(name, where):
        if name not in BACKBONES:
            raise ValueError(f"{where}: unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
        return BACKBONES[name]

    def variant(name, where):
        if name not in VARIANTS:
            raise ValueError(f"{where}: unknown variant {name!r}; known: {', '.join(VARIANTS)}")

    for name in TABLES["table2"]["backbones"]:
        backbone(name, "tables.table2.backbones")
    variant(TABLES["table2"]["variant"], "tables.table2.variant")
    for table in ("table5", "table6a", "table6b", "fig5"):
        spec = TABLES[table]
        if backbone(spec["backbone"], f"tables.{table}.backbone").get("pending"):
            raise ValueError(f"tables.{table}.backbone: {spec['backbone']!r} is pending, it cannot be run")
        for name in spec.get("variants", [spec.get("variant")]):
            variant(name, f"tables.{table}")
    if config["dataset"]["name"] == "imagenet":
        for key in ("train_dir", "val_dir"):
            if not config["dataset"].get(key):
                raise ValueError(f"dataset.{key} is required when dataset.name is imagenet")
    if config["evaluation"]["features"] == "inception" and not config["evaluation"].get("inception_weights"):
        raise ValueError("evaluation.inception_weights is required when evaluation.features is inception")
    for name, spec in BACKBONES.items():
        if not spec.get("pending") and not spec.get("checkpoint") and not spec.get("base_training"):
            raise ValueError(f"backbones.{name}: set either checkpoint (pretrained) or base_training")
        for stage, override in (spec.get("resources") or {}).items():
            known = set(config["resources"]["default"]) | set(config["resources"].get(stage, {}))
            if set(override) - known:
                raise ValueError(f"backbones.{name}.resources.{stage}: {sorted(set(override) - known)} must also be "
                                 f"set in resources.default or resources.{stage}")


_check_references()


# --------------------------------------------------------------------------------------------------
# Which runs exist
# --------------------------------------------------------------------------------------------------
def run_backbones():
    """Table 2 backbones that are run (not pending), in table order."""
    return [b for b in TABLES["table2"]["backbones"] if not BACKBONES[b].get("pending")]


def tensorar_runs():
    """(backbone, variant) of every TensorAR run any table or figure needs, without duplicates."""
    runs = [(b, TABLES["table2"]["variant"]) for b in run_backbones()]
    for table in ("table5", "table6a", "table6b"):
        runs += [(TABLES[table]["backbone"], v) for v in TABLES[table]["variants"]]
    runs.append((TABLES["fig5"]["backbone"], TABLES["fig5"]["variant"]))
    return list(dict.fromkeys(runs))


def variant_of(method):
    return method.removeprefix("tensorar-")


# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------
def run_dir(backbone, method, seed):
    return f"{R}/runs/{backbone}/{method}/seed{seed}"


def sample_path(backbone, method, seed, tag="final"):
    return f"{R}/samples/{backbone}/{method}/seed{seed}/{tag}.npz"


def sample_stats_path(backbone, method, seed, tag="final"):
    return f"{R}/samples/{backbone}/{method}/seed{seed}/{tag}.json"


def metrics_path(backbone, method, seed, tag="final"):
    return f"{R}/metrics/{backbone}/{method}/seed{seed}/{tag}.json"


def diagnostics_path(backbone, variant, seed):
    return f"{R}/diagnostics/{backbone}/tensorar-{variant}/seed{seed}.json"


def codes_dir(split, backbone):
    return f"{R}/codes/{split}-{BACKBONES[backbone]['image_size']}"


def dataset_dir(split):
    """ImageFolder of a split: materialised digits, or the configured ImageNet folder."""
    if config["dataset"]["name"] == "digits":
        return f"{R}/data/digits/{split}"
    return config["dataset"][f"{split}_dir"]


def split_data(wildcards):
    return dataset_dir(wildcards.split)


def reference_flags(wildcards):
    n = config["evaluation"].get("reference_max_images")
    return f"--max-images {n}" if n else ""


def dataset_inputs():
    """The digits folder is built by a rule; ImageNet is an external path (a param, not an input)."""
    return {"data": f"{R}/data/digits"} if config["dataset"]["name"] == "digits" else {}


def vq_path():
    return config["tokenizer"]["checkpoint"] or f"{R}/tokenizer/vq.pt"


def vq_inputs():
    return {} if config["tokenizer"]["checkpoint"] else {"vq": vq_path()}


def vq_flags():
    flags = f"--vq {vq_path()}"
    if config["tokenizer"]["checkpoint"]:  # an official tokenizer file needs its preset
        flags = f"{flags} --vq-preset {config['tokenizer']['preset']}"
    return flags


def base_checkpoint(backbone, seed):
    """The base model of a backbone: an official checkpoint (config path) or our trained one."""
    return BACKBONES[backbone].get("checkpoint") or f"{run_dir(backbone, 'base', seed)}/final.pt"


def official_base(backbone):
    return bool(BACKBONES[backbone].get("checkpoint"))


def reference_path(backbone):
    size = BACKBONES[backbone]["eval_image_size"]
    return config["evaluation"]["reference"] or f"{R}/reference/{config['evaluation']['reference_split']}-{size}.npz"


def classifier_path():
    return f"{R}/features/classifier.pt"


def checkpoint_of(backbone, method, seed, tag):
    """The checkpoint a sample batch is drawn from."""
    if method == "base":
        return base_checkpoint(backbone, seed)
    if tag.startswith("step"):
        return f"{run_dir(backbone, method, seed)}/checkpoints/step_{int(tag[4:]):07d}.pt"
    return f"{run_dir(backbone, method, seed)}/final.pt"


# --------------------------------------------------------------------------------------------------
# Resources: config `resources.default` < `resources.<stage>` < `backbones.<b>.resources.<stage>`
# --------------------------------------------------------------------------------------------------
def _stage_spec(stage, backbone=None):
    spec = dict(config["resources"]["default"])
    spec.update(config["resources"].get(stage) or {})
    if backbone is not None:
        spec.update((BACKBONES[backbone].get("resources") or {}).get(stage) or {})
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
# Per-rule inputs and flags
# --------------------------------------------------------------------------------------------------
def extract_codes_inputs(wildcards):
    return {**dataset_inputs(), **vq_inputs()}


def extract_codes_flags(wildcards):
    """Training codes use the configured augmentation; held-out codes (diagnostics) one plain view."""
    if wildcards.split == "val":
        return "--augment center --no-flip"
    flip = "" if config["codes"]["flip"] else "--no-flip"
    return f"--augment {config['codes']['augment']} {flip}"


def _training_flags(spec):
    return (f"--steps {spec['steps']} --global-batch-size {spec.get('global_batch_size', 64)} "
            f"--lr-base {spec.get('lr_base', 1e-5)} --warmup-steps {spec.get('warmup_steps', 0)} "
            f"--ckpt-every {spec.get('ckpt_every', 1000)}")


def train_base_flags(wildcards):
    spec = BACKBONES[wildcards.backbone]
    return f"--model {spec['preset']} {_training_flags(spec['base_training'])}"


def train_codes(wildcards):
    return codes_dir("train", wildcards.backbone)


def train_codes_manifest(wildcards):
    return f"{train_codes(wildcards)}/manifest.json"


def train_inputs(wildcards):
    inputs = {"codes": train_codes_manifest(wildcards)}
    if not official_base(wildcards.backbone):
        inputs["init"] = base_checkpoint(wildcards.backbone, wildcards.seed)
    return inputs


def keep_steps(wildcards):
    """Checkpoints kept for the training-FID curve (Fig. 5), only in the runs Fig. 5 shows."""
    fig5 = TABLES["fig5"]
    shown = {"finetune", f"tensorar-{fig5['variant']}"}
    if wildcards.backbone == fig5["backbone"] and wildcards.method in shown:
        return ",".join(str(s) for s in fig5["steps"])
    return ""


def train_flags(wildcards):
    """Mode, base checkpoint, optimisation and (TensorAR) plug-in flags of one fine-tuning run."""
    spec = BACKBONES[wildcards.backbone]
    ft = config["finetuning"]
    flags = [f"--model {spec['preset']} --init {base_checkpoint(wildcards.backbone, wildcards.seed)}",
             _training_flags(ft), f"--lr-plugin {ft.get('lr_plugin', 1e-4)}"]
    keep = keep_steps(wildcards)
    if keep:
        flags.append(f"--keep-steps {keep}")
    if wildcards.method == "finetune":
        return " ".join(["--mode finetune", *flags])
    v = VARIANTS[variant_of(wildcards.method)]
    plugin = (f"--k {v['k']} --depth {v['depth']} --schedule {v['schedule']} "
              f"--loss-weighting {v.get('loss_weighting', 'rdm')}")
    return " ".join(["--mode tensorar", *flags, plugin])


def sample_inputs(wildcards):
    inputs = dict(vq_inputs())
    if wildcards.method != "base":
        inputs["run"] = f"{run_dir(wildcards.backbone, wildcards.method, wildcards.seed)}/final.pt"
    elif not official_base(wildcards.backbone):
        inputs["ckpt"] = base_checkpoint(wildcards.backbone, wildcards.seed)
    return inputs


def sample_flags(wildcards):
    """Checkpoint, LlamaGen's sampling settings of the backbone, sample count and seed."""
    b, spec = wildcards.backbone, BACKBONES[wildcards.backbone]
    s = spec["sampling"]
    ev = config["evaluation"]
    num = TABLES["fig5"]["num_samples"] if wildcards.tag.startswith("step") else ev["num_samples"]
    flags = (f"--ckpt {checkpoint_of(b, wildcards.method, wildcards.seed, wildcards.tag)} {vq_flags()} "
             f"--num-samples {num} --seed {wildcards.seed} --batch-size {ev.get('sample_batch_size', 32)} "
             f"--cfg-scale {s.get('cfg_scale', 1.0)} --cfg-interval {s.get('cfg_interval', -1)} "
             f"--temperature {s.get('temperature', 1.0)} --top-k {s.get('top_k', 0)} --top-p {s.get('top_p', 1.0)} "
             f"--image-size {spec['eval_image_size']}")
    extra = []
    if wildcards.method == "base" and official_base(b):  # official files carry no config: name the preset
        extra.append(f"--gpt-preset {spec['preset']}")
        if spec.get("block_size"):
            extra.append(f"--block-size {spec['block_size']}")
    if wildcards.tag == "final_draftnoise":
        extra.append("--draft-noise schedule")
    if wildcards.method.startswith("tensorar-") and wildcards.tag == "final":
        extra.append(f"--drafts-png {R}/samples/{b}/{wildcards.method}/seed{wildcards.seed}/drafts.png")
    return " ".join([flags, *extra])


def evaluate_inputs(wildcards):
    inputs = {"samples": sample_path(wildcards.backbone, wildcards.method, wildcards.seed, wildcards.tag)}
    if not config["evaluation"]["reference"]:
        inputs["ref"] = reference_path(wildcards.backbone)
    if config["evaluation"]["features"] == "toy":
        inputs["classifier"] = classifier_path()
    return inputs


def evaluate_reference(wildcards):
    return reference_path(wildcards.backbone)


def evaluate_flags(wildcards):
    ev = config["evaluation"]
    flags = f"--features {ev['features']} --batch-size {ev.get('feature_batch_size', 64)}"
    if ev["features"] == "toy":
        return f"{flags} --classifier {classifier_path()}"
    return f"{flags} --inception-weights {ev['inception_weights']}"


def diagnose_inputs(wildcards):
    inputs = {
        "ckpt": f"{run_dir(wildcards.backbone, f'tensorar-{wildcards.variant}', wildcards.seed)}/final.pt",
        "codes": f"{codes_dir('val', wildcards.backbone)}/manifest.json",
    }
    if not official_base(wildcards.backbone):
        inputs["base"] = base_checkpoint(wildcards.backbone, wildcards.seed)
    return inputs


def diagnose_flags(wildcards):
    b = wildcards.backbone
    flags = (f"--base {base_checkpoint(b, wildcards.seed)} --codes {codes_dir('val', b)} "
             f"--num-samples {config['diagnostics']['num_samples']} --seed {wildcards.seed}")
    spec = BACKBONES[b]
    if official_base(b):  # official files carry no config: name the preset (and the 384 px token count)
        flags += f" --base-preset {spec['preset']}"
        if spec.get("block_size"):
            flags += f" --base-block-size {spec['block_size']}"
    return flags


# --------------------------------------------------------------------------------------------------
# Table manifests: what tensorar.tables reads (a JSON param, so a changed row re-makes its table)
# --------------------------------------------------------------------------------------------------
def config_hash():
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def provenance():
    ev = config["evaluation"]
    feature = ("Inception-v3 (ADM protocol)" if ev["features"] == "inception"
               else "toy-FID: digits classifier features, not comparable with Inception FID")
    return {
        "config_hash": config_hash(),
        "experiment": config["experiment"],
        "dataset": config["dataset"]["name"],
        "feature_network": feature,
        "seeds": SEEDS,
        "num_samples": ev["num_samples"],
    }


def _runs(backbone, method, tag="final"):
    return [{"seed": s, "metrics": metrics_path(backbone, method, s, tag),
             "stats": sample_stats_path(backbone, method, s, tag),
             "ckpt": checkpoint_of(backbone, method, s, tag)} for s in SEEDS]


def variant_label(name):
    v = VARIANTS[name]
    return f"k={v['k']}, d={v['depth']}, {v['schedule']}"


def table2_rows():
    rows = []
    variant = TABLES["table2"]["variant"]
    for b in TABLES["table2"]["backbones"]:
        spec = BACKBONES[b]
        if spec.get("pending"):
            rows.append({"key": f"{b}/base", "cells": {"Model": spec["label"], "Method": "base"},
                         "params": spec.get("params"), "pending": spec["pending"]})
            rows.append({"key": f"{b}/tensorar", "cells": {"Model": spec["label"], "Method": "with TensorAR"},
                         "params": spec.get("params"), "pending": spec["pending"]})
            continue
        res = spec["image_size"] if official_base(b) else spec["eval_image_size"]
        common = {"Model": spec["label"], "Res.": res}
        rows.append({"key": f"{b}/base", "backbone": b, "method": "base",
                     "cells": {**common, "Method": "base"}, "runs": _runs(b, "base")})
        rows.append({"key": f"{b}/finetune", "backbone": b, "method": "finetune",
                     "cells": {**common, "Method": "fine-tune control (equal steps; not in paper)"},
                     "runs": _runs(b, "finetune")})
        rows.append({"key": f"{b}/tensorar", "backbone": b, "method": "tensorar",
                     "cells": {**common, "Method": f"with TensorAR ({variant_label(variant)})"},
                     "runs": _runs(b, f"tensorar-{variant}")})
    return rows


def ablation_rows(table, column):
    spec = TABLES[table]
    b = spec["backbone"]
    rows = [{"key": f"{table}/base", "backbone": b, "method": "base",
             "cells": {"Model": BACKBONES[b]["label"], column: "base (no TensorAR)"}, "runs": _runs(b, "base")},
            # The fair comparison for every variant: the same fine-tuning steps without the plug-in.
            {"key": f"{table}/finetune", "backbone": b, "method": "finetune",
             "cells": {"Model": BACKBONES[b]["label"], column: "fine-tune control (equal steps; not in paper)"},
             "runs": _runs(b, "finetune")}]
    for name in spec["variants"]:
        value = {"Schedule": VARIANTS[name]["schedule"], "k": VARIANTS[name]["k"], "Depth": VARIANTS[name]["depth"]}[column]
        rows.append({"key": f"{table}/{value}", "backbone": b, "method": "tensorar",
                     "cells": {"Model": BACKBONES[b]["label"], column: value, "Variant": variant_label(name)},
                     "runs": _runs(b, f"tensorar-{name}")})
    return rows


def table_manifest(name):
    """JSON of the rows of results/<name>.md for `tensorar.tables`."""
    if name == "table2":
        sections = [{"name": "table2", "title": "Table 2: class-to-image generation", "rows": table2_rows()}]
    elif name in ("table3", "table4"):
        spec = TABLES[name]
        sections = [{"name": name, "title": f"Table {name[-1]}: {spec['benchmark']}",
                     "columns": [f"{spec['benchmark']} overall"],
                     "rows": [{"key": r["label"], "cells": {"Model": r["label"]}, "pending": r["reason"]}
                              for r in spec["rows"]]}]
    elif name == "table5":
        sections = [{"name": "table5", "title": "Table 5: noise schedule", "rows": ablation_rows("table5", "Schedule")}]
    elif name == "table6":
        sections = [{"name": "table6a", "title": "Table 6a: tensor size k", "rows": ablation_rows("table6a", "k")},
                    {"name": "table6b", "title": "Table 6b: plug-in depth (latency from the sampler)",
                     "rows": ablation_rows("table6b", "Depth"), "latency": True}]
    else:
        raise ValueError(f"unknown table {name!r}")
    title = f"Table {name[5:]}: " + "; ".join(section["title"].split(": ", 1)[1] for section in sections)
    return json.dumps({"title": title, "provenance": provenance(), "sections": sections}, sort_keys=True)


def table_inputs(name):
    """Metrics + sample stats of every run row of a table (checkpoints only for parameter counts)."""
    sections = json.loads(table_manifest(name))["sections"]
    files = []
    for section in sections:
        for row in section["rows"]:
            for run in row.get("runs", []):
                files += [run["metrics"], run["stats"]]
    return list(dict.fromkeys(files))


def table_manifest_param(wildcards):
    return table_manifest(wildcards.table)


def table_files(wildcards):
    return table_inputs(wildcards.table)


def diagnostics_manifest():
    """Diagnose JSON of every TensorAR run, plus the draft-noise sampling row of each Table 2 backbone."""
    rows = [{"backbone": b, "variant": v, "label": f"{BACKBONES[b]['label']} with TensorAR ({variant_label(v)})",
             "runs": [{"seed": s, "diagnostics": diagnostics_path(b, v, s)} for s in SEEDS]}
            for b, v in tensorar_runs()]
    variant = TABLES["table2"]["variant"]
    draft_noise = [{"label": f"{BACKBONES[b]['label']} with TensorAR ({variant_label(variant)}), "
                             "draft_noise: schedule (not from the paper)",
                    "reference": _runs(b, f"tensorar-{variant}"),
                    "runs": _runs(b, f"tensorar-{variant}", "final_draftnoise")} for b in run_backbones()]
    return json.dumps({"provenance": provenance(), "diagnostics": rows, "draft_noise": draft_noise}, sort_keys=True)


def diagnostics_inputs():
    m = json.loads(diagnostics_manifest())
    files = [r["diagnostics"] for row in m["diagnostics"] for r in row["runs"]]
    files += [r["metrics"] for row in m["draft_noise"] for r in row["runs"] + row["reference"]]
    return list(dict.fromkeys(files))


def figures_manifest():
    """Fig. 2 (size vs FID) and Fig. 4 (throughput vs FID) from the Table 2 rows, Fig. 5 from the kept
    training checkpoints, and a grid of samples of every Table 2 run."""
    fig5 = TABLES["fig5"]
    b = fig5["backbone"]
    curves = {}
    for method, label in (("finetune", "fine-tune control"), (f"tensorar-{fig5['variant']}", "TensorAR")):
        points = [{"step": s, "runs": _runs(b, method, f"step{s}")} for s in fig5["steps"]]
        points.append({"step": config["finetuning"]["steps"], "runs": _runs(b, method)})
        curves[label] = points
    grids = [{"label": f"{row['cells']['Model']} {row['method']}",
              "png": [f"{r['stats'].removesuffix('.json')}.png" for r in row["runs"]]}
             for row in table2_rows() if "runs" in row]
    return json.dumps({"provenance": provenance(), "table2": table2_rows(), "fig5": {"backbone": BACKBONES[b]["label"],
                       "curves": curves}, "grids": grids, "outputs": FIGURES}, sort_keys=True)


def figures_inputs():
    m = json.loads(figures_manifest())
    files = [r["metrics"] for row in m["table2"] for r in row.get("runs", [])]
    files += [r["stats"] for row in m["table2"] for r in row.get("runs", [])]
    files += [r["metrics"] for pts in m["fig5"]["curves"].values() for p in pts for r in p["runs"]]
    files += [png for grid in m["grids"] for png in grid["png"]]
    return list(dict.fromkeys(files))


def all_targets():
    return [*(f"results/table{n}.md" for n in (2, 3, 4, 5, 6)), "results/diagnostics.md", *FIGURES.values()]


def done_message():
    lines = [f"Tables ({config['experiment']}; {provenance()['feature_network']}):"]
    lines += [f"  {path}" for path in all_targets() if path.endswith(".md") and os.path.exists(path)]
    lines += ["Figures:", *(f"  {path}" for path in FIGURES.values() if os.path.exists(path))]
    lines += [f"Per-run samples (PNG grids), metrics and logs: {R}/samples, {R}/metrics, {R}/logs"]
    return "\n".join(lines)
