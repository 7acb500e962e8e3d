"""The experiment plan: from a validated workflow config to plain data — which runs exist, where every
file lives, the arguments of every stage's command line, and the manifests the tables, diagnostics and
figures are assembled from.

    plan = Plan(config)                      # config/config.yaml or config/paper.yaml, schema-validated
    plan.sample_args("GPT-toy-S", "tensorar-default", 0, "final")   # -> ["--ckpt", ..., "--cfg-scale", ...]
    plan.table_manifest("table2")            # -> {"title", "provenance", "sections": [...]}

The Snakemake rules (workflow/rules/*.smk) only wire these together: paths, inputs, resources. Every
run setting reaches its stage through the stage's option dataclass (`SamplingOptions`, `TrainOptions`,
`TensorARConfig`, `SamplingConfig`), so a setting has one default, declared there, and one spelling of its
flag (`tensorar.options.to_arguments`). What each table holds is `tensorar.reporting.tables`'s business.

Layout (R = results/<experiment>):
    R/data/digits/                                    toy dataset (make_digits)
    R/data/captions/{train,val,geneval,dpg}/          toy captioned canvases and prompt sets (make_captions)
    R/tokenizers/<tokenizer>.pt                       toy tokenizer (train_tokenizer)
    R/codes/<tokenizer>/<split>-<size>/manifest.json  token codes (extract_codes)
    R/codes/<tokenizer>/<split>-<size>/conditions-<encoder>/   caption features / prompts (encode_captions)
    R/runs/<backbone>/<method>/seed<s>/final.pt       method = base | finetune[-x<N>] | tensorar-<variant>[-x<N>]
                                                      (-x<N>: N times the fine-tuning steps; ours, claims.md)
    R/samples/<backbone>/<method>/seed<s>/<tag>.npz   tag = final | final_draftnoise | step<N> (+ .json, .png)
    R/samples/<backbone>/<method>/seed<s>/drafts.png  TensorAR refinement strip (+ drafts.npz)
    R/metrics/<backbone>/<method>/seed<s>/<tag>.json
    R/diagnostics/<backbone>/tensorar-<variant>/seed<s>.json
    R/bench/<benchmark>/<backbone>/<method>/seed<s>/  images/ (sample_prompts), raw.jsonl, scores.json
    R/timing/<backbone>/<method>.json                 latency / throughput in a job that holds every core
    results/table{2..6}.md (+ .csv), results/diagnostics.md, results/figures/*.png
"""
from __future__ import annotations

import hashlib
import json
import re
from functools import partial

from tensorar.data.codes import MANIFEST
from tensorar.decoding.sampling import SamplingConfig, SamplingOptions
from tensorar.models.registry import family, tokenizer_family
from tensorar.models.tensorar import TensorARConfig
from tensorar.options import from_mapping, to_arguments
from tensorar.reporting import claims as reporting_claims
from tensorar.reporting import tables
from tensorar.training.options import (
    ClassifierTrainOptions,
    TokenizerTrainOptions,
    TrainOptions,
)

FIGURES = {
    "fig2": "results/figures/fig2_size_fid.png",
    "fig4": "results/figures/fig4_throughput_fid.png",
    "fig5": "results/figures/fig5_training_fid.png",
    "grid": "results/figures/samples_table2.png",
}
TABLES = ("table2", "table3", "table4", "table5", "table6")
CLAIMS = "results/claims.md"


def parse_method(method: str) -> tuple[str, str | None, int]:
    """A method name -> (mode, variant, steps multiplier): "base" -> ("base", None, 1), "finetune-x3" ->
    ("finetune", None, 3), "tensorar-default" -> ("tensorar", "default", 1). The -x<N> suffix (ours:
    the longer fine-tuning of claims.md) multiplies the fine-tuning steps of TensorAR and control alike."""
    name, _, times = method.rpartition("-x") if re.fullmatch(r".+-x\d+", method) else (method, "", "1")
    if name in ("base", "finetune"):
        if name == "base" and times != "1":
            raise ValueError(f"method {method!r}: only fine-tunes take a -x<N> steps multiplier")
        return name, None, int(times)
    if name.startswith("tensorar-"):
        return "tensorar", name.removeprefix("tensorar-"), int(times)
    raise ValueError(f"unknown method {method!r}: base, finetune[-x<N>] or tensorar-<variant>[-x<N>]")


class Plan:
    def __init__(self, config: dict):
        self.config = config
        self.root = f"results/{config['experiment']}"
        self.seeds = list(config["seeds"])
        self.backbones = config["backbones"]
        self.variants = config["variants"]
        self.tables = config["tables"]
        self.check_references()

    # ----------------------------------------------------------------------------------------------
    # Cross references the schema cannot express
    # ----------------------------------------------------------------------------------------------
    def check_references(self) -> None:
        def backbone(name, where):
            if name not in self.backbones:
                raise ValueError(f"{where}: unknown backbone {name!r}; known: {', '.join(self.backbones)}")
            return self.backbones[name]

        def variant(name, where):
            if name not in self.variants:
                raise ValueError(f"{where}: unknown variant {name!r}; known: {', '.join(self.variants)}")

        for name in self.tables["table2"]["backbones"]:
            if family(backbone(name, "tables.table2.backbones").get("family", "llamagen")).condition != "class":
                raise ValueError(f"tables.table2.backbones: {name!r} is text-conditioned (Tables 3-4 hold those)")
        variant(self.tables["table2"]["variant"], "tables.table2.variant")
        for table in ("table3", "table4"):
            for name in self.tables[table]["backbones"]:
                spec = backbone(name, f"tables.{table}.backbones")
                if not spec.get("pending") and family(spec["family"]).condition == "class":
                    raise ValueError(f"tables.{table}.backbones: {name!r} is class-conditional (Table 2 holds those)")
            variant(self.tables[table]["variant"], f"tables.{table}.variant")
        for table in ("table5", "table6a", "table6b", "fig5"):
            spec = self.tables[table]
            if backbone(spec["backbone"], f"tables.{table}.backbone").get("pending"):
                raise ValueError(f"tables.{table}.backbone: {spec['backbone']!r} is pending, it cannot be run")
            for name in spec.get("variants", [spec.get("variant")]):
                variant(name, f"tables.{table}")
        dataset = self.config["dataset"]
        if dataset["name"] == "imagenet":
            for key in ("train_dir", "val_dir"):
                if not dataset.get(key):
                    raise ValueError(f"dataset.{key} is required when dataset.name is imagenet")
        ev = self.config["evaluation"]
        if ev["features"] == "inception" and not ev.get("inception_weights"):
            raise ValueError("evaluation.inception_weights is required when evaluation.features is inception")
        for name, spec in self.backbones.items():
            if spec.get("pending"):
                continue
            where = f"backbones.{name}"
            fam = family(spec["family"])
            if spec["tokenizer"] not in self.config["tokenizers"]:
                raise ValueError(f"{where}.tokenizer: unknown tokenizer {spec['tokenizer']!r}; known: "
                                 f"{', '.join(self.config['tokenizers'])}")
            if spec["preset"] not in fam.presets:
                raise ValueError(f"{where}.preset: {spec['preset']!r} is not a {fam.name} preset; known: "
                                 f"{', '.join(fam.presets)}")
            if not spec.get("checkpoint") and not spec.get("base_training"):
                raise ValueError(f"{where}: set either checkpoint (pretrained) or base_training")
            text = fam.condition != "class"
            if text and spec.get("text_encoder") not in self.config.get("text_encoders", {}):
                raise ValueError(f"{where}.text_encoder: a {fam.name} backbone needs one of text_encoders "
                                 f"({', '.join(self.config.get('text_encoders', {})) or 'none defined'})")
            wants = "captions" if text else "images"
            if self.tokenizer_data(spec["tokenizer"]) != wants:
                raise ValueError(f"{where}.tokenizer: {spec['tokenizer']!r} makes codes of the {self.tokenizer_data(spec['tokenizer'])} "
                                 f"dataset, but a {fam.name} backbone trains on {wants} (set tokenizers.<t>.data)")
            tokenizer = tokenizer_family(self.config["tokenizers"][spec["tokenizer"]]["preset"])
            downsample = tokenizer.presets[self.config["tokenizers"][spec["tokenizer"]]["preset"]].downsample
            num_tokens = spec.get("block_size") or (spec["image_size"] // downsample) ** 2
            for vname in self.variants_of(name):
                if self.variants[vname]["k"] > num_tokens:
                    raise ValueError(f"variants.{vname}.k = {self.variants[vname]['k']} exceeds the {num_tokens} "
                                     f"tokens of backbone {name}")
            for stage, override in (spec.get("resources") or {}).items():
                known = set(self.config["resources"]["default"]) | set(self.config["resources"].get(stage, {}))
                if set(override) - known:
                    raise ValueError(f"{where}.resources.{stage}: {sorted(set(override) - known)} must also be "
                                     f"set in resources.default or resources.{stage}")
            # Built here so that a bad value fails now, naming its key, not hours later in a job.
            from_mapping(SamplingOptions, spec["sampling"], f"{where}.sampling")
            if spec.get("base_training"):
                from_mapping(TrainOptions, spec["base_training"], f"{where}.base_training")
        from_mapping(TrainOptions, self.config["finetuning"], "finetuning")
        ours = self.config["claims"]["ours"]
        if ours["variants"] or ours["longer_finetuning"] > 1:
            if not ours["backbone"]:
                raise ValueError("claims.ours.backbone: our variants need a backbone to run on")
            if backbone(ours["backbone"], "claims.ours.backbone").get("pending") or \
                    family(self.backbones[ours["backbone"]]["family"]).condition != "class":
                raise ValueError(f"claims.ours.backbone: {ours['backbone']!r} must be a class-conditional backbone that is run")
        for name in ours["variants"]:
            variant(name, "claims.ours.variants")
        for vname, spec in self.variants.items():
            from_mapping(TensorARConfig, spec, f"variants.{vname}")

    # ----------------------------------------------------------------------------------------------
    # Which runs exist
    # ----------------------------------------------------------------------------------------------
    def run_backbones(self) -> list[str]:
        """Table 2 backbones that are run (not pending), in table order."""
        return [b for b in self.tables["table2"]["backbones"] if not self.backbones[b].get("pending")]

    def text_backbones(self, table: str | None = None) -> list[str]:
        """Tables 3-4 backbones that are run (not pending): of one table, or of both."""
        tables = (table,) if table else ("table3", "table4")
        names = [b for t in tables for b in self.tables[t]["backbones"] if not self.backbones[b].get("pending")]
        return list(dict.fromkeys(names))

    def tensorar_runs(self) -> list[tuple[str, str]]:
        """(backbone, variant) of every TensorAR run any table, figure or claims.md needs, without duplicates."""
        runs = [(b, self.tables["table2"]["variant"]) for b in self.run_backbones()]
        ours = self.config["claims"]["ours"]
        runs += [(ours["backbone"], v) for v in ours["variants"]]
        runs += [(b, self.tables[t]["variant"]) for t in ("table3", "table4") for b in self.text_backbones(t)]
        for table in ("table5", "table6a", "table6b"):
            runs += [(self.tables[table]["backbone"], v) for v in self.tables[table]["variants"]]
        runs.append((self.tables["fig5"]["backbone"], self.tables["fig5"]["variant"]))
        return list(dict.fromkeys(runs))

    def timed_runs(self) -> list[tuple[str, str]]:
        """(backbone, method) of every model timed alone (Fig. 4 and claim 6: Table 2's rows; Table 6b
        and claim 5: its rows), first seed only: the weights do not change a forward's cost."""
        variant = self.tables["table2"]["variant"]
        runs = [(b, m) for b in self.run_backbones() for m in ("base", "finetune", f"tensorar-{variant}")]
        t6b = self.tables["table6b"]
        runs += [(t6b["backbone"], m) for m in ("base", "finetune", *(f"tensorar-{v}" for v in t6b["variants"]))]
        return list(dict.fromkeys(runs))

    def variants_of(self, backbone: str) -> list[str]:
        return [v for b, v in self.tensorar_runs() if b == backbone]

    def variant_label(self, name: str) -> str:
        v = self.variants[name]
        return f"k={v['k']}, d={v['depth']}, {v['schedule']}"

    # ----------------------------------------------------------------------------------------------
    # Paths (called with wildcard names, e.g. "{backbone}", they give the rules' patterns)
    # ----------------------------------------------------------------------------------------------
    def dataset_dir(self, split: str) -> str:
        """ImageFolder of a split: materialised digits, or the configured ImageNet folder."""
        if self.config["dataset"]["name"] == "digits":
            return f"{self.root}/data/digits/{split}"
        return self.config["dataset"][f"{split}_dir"]

    def digits_dir(self) -> str:
        return f"{self.root}/data/digits"

    def captions_root(self) -> str:
        return f"{self.root}/data/captions"

    def captions_dir(self, split: str) -> str:
        """A captioned split: the toy's canvases (made here) or the configured JSONL / tar shards."""
        captions = self.config["captions"]
        if captions["name"] == "captioned_digits":
            return f"{self.captions_root()}/{split}"
        if not captions.get(split):
            raise ValueError(f"captions.{split} is required when captions.name is files")
        return captions[split]

    def tokenizer_data(self, name: str) -> str:
        return self.config["tokenizers"][name].get("data", "images")

    def images_of(self, tokenizer: str, split: str) -> str:
        """The images a tokenizer is trained on / makes codes of: class folders or a captioned set."""
        return self.captions_dir(split) if self.tokenizer_data(tokenizer) == "captions" else self.dataset_dir(split)

    def images_inputs(self, tokenizer: str) -> dict:
        if self.tokenizer_data(tokenizer) == "captions":
            return {"data": self.captions_root()} if self.config["captions"]["name"] == "captioned_digits" else {}
        return self.dataset_inputs()

    def tokenizer_path(self, name: str) -> str:
        return self.config["tokenizers"][name].get("checkpoint") or f"{self.root}/tokenizers/{name}.pt"

    def trained_tokenizer(self, name: str) -> bool:
        """A tokenizer this workflow trains (a toy one), as opposed to a released file from the config."""
        return not self.config["tokenizers"][name].get("checkpoint")

    def codes_dir(self, tokenizer: str, split: str, size) -> str:
        return f"{self.root}/codes/{tokenizer}/{split}-{size}"

    def codes_manifest(self, tokenizer: str, split: str, size) -> str:
        return f"{self.codes_dir(tokenizer, split, size)}/{MANIFEST}"

    def backbone_codes(self, backbone: str, split: str) -> str:
        spec = self.backbones[backbone]
        return self.codes_dir(spec["tokenizer"], split, spec["image_size"])

    def conditions_dir(self, backbone: str, split: str) -> str | None:
        """A text backbone's stored conditions (tensorar encode_captions); None for class labels."""
        encoder = self.backbones[backbone].get("text_encoder")
        spec = self.backbones[backbone]
        return self.conditions_folder(spec["tokenizer"], split, spec["image_size"], encoder) if encoder else None

    def conditions_inputs(self, backbone: str, split: str) -> dict:
        folder = self.conditions_dir(backbone, split)
        return {"conditions": f"{folder}/conditions.json"} if folder else {}

    def bench_dir(self, benchmark, backbone, method, seed) -> str:
        return f"{self.root}/bench/{benchmark}/{backbone}/{method}/seed{seed}"

    def bench_file(self, benchmark, backbone, method, seed, name: str) -> str:
        """A run's benchmark files: images/ (sample_prompts), samples.json, raw.jsonl, scores.json."""
        return f"{self.bench_dir(benchmark, backbone, method, seed)}/{name}"

    def conditions_folder(self, tokenizer, split, size, encoder) -> str:
        return f"{self.codes_dir(tokenizer, split, size)}/conditions-{encoder}"

    def run_dir(self, backbone, method, seed) -> str:
        return f"{self.root}/runs/{backbone}/{method}/seed{seed}"

    def sample(self, backbone, method, seed, tag="final", ext="npz") -> str:
        return f"{self.root}/samples/{backbone}/{method}/seed{seed}/{tag}.{ext}"

    def drafts(self, backbone, method, seed, ext="png") -> str:
        return f"{self.root}/samples/{backbone}/{method}/seed{seed}/drafts.{ext}"

    def metrics(self, backbone, method, seed, tag="final") -> str:
        return f"{self.root}/metrics/{backbone}/{method}/seed{seed}/{tag}.json"

    def diagnostics(self, backbone, variant, seed) -> str:
        return f"{self.root}/diagnostics/{backbone}/tensorar-{variant}/seed{seed}.json"

    def timing(self, backbone, method) -> str:
        return f"{self.root}/timing/{backbone}/{method}.json"

    def reference(self, backbone: str) -> str:
        ev = self.config["evaluation"]
        size = self.backbones[backbone]["eval_image_size"]
        return ev["reference"] or self.built_reference(ev["reference_split"], size)

    def built_reference(self, split, size) -> str:
        return f"{self.root}/reference/{split}-{size}.npz"

    def classifier(self) -> str:
        return f"{self.root}/features/classifier.pt"

    def official_base(self, backbone: str) -> bool:
        return bool(self.backbones[backbone].get("checkpoint"))

    def base_checkpoint(self, backbone: str, seed) -> str:
        """The base model of a backbone: an official checkpoint (config path) or our trained one."""
        return self.backbones[backbone].get("checkpoint") or f"{self.run_dir(backbone, 'base', seed)}/final.pt"

    def checkpoint(self, backbone, method, seed, tag="final") -> str:
        """The checkpoint a sample batch is drawn from."""
        if method == "base":
            return self.base_checkpoint(backbone, seed)
        if tag.startswith("step"):
            return f"{self.run_dir(backbone, method, seed)}/checkpoints/step_{int(tag[4:]):07d}.pt"
        return f"{self.run_dir(backbone, method, seed)}/final.pt"

    # ----------------------------------------------------------------------------------------------
    # Inputs that are files this workflow makes (config paths to released files are not inputs: a dry
    # run needs none of them, and the stages name a missing one and where to get it)
    # ----------------------------------------------------------------------------------------------
    def dataset_inputs(self) -> dict:
        return {"data": self.digits_dir()} if self.config["dataset"]["name"] == "digits" else {}

    def tokenizer_inputs(self, name: str) -> dict:
        return {"tokenizer": self.tokenizer_path(name)} if self.trained_tokenizer(name) else {}

    def train_inputs(self, backbone, method, seed) -> dict:
        inputs = {"codes": f"{self.backbone_codes(backbone, 'train')}/{MANIFEST}",
                  **self.conditions_inputs(backbone, "train")}
        if method != "base" and not self.official_base(backbone):
            inputs["init"] = self.base_checkpoint(backbone, seed)
        return inputs

    def sample_inputs(self, backbone, method, seed, tag="final") -> dict:
        inputs = self.tokenizer_inputs(self.backbones[backbone]["tokenizer"])
        if method != "base" or not self.official_base(backbone):
            # A kept step checkpoint (Fig. 5) is written by the same training job as final.pt, which
            # therefore stands for it (a job's intermediate checkpoints are not declared outputs).
            inputs["ckpt"] = self.checkpoint(backbone, method, seed)
        return inputs

    def evaluate_inputs(self, backbone, method, seed, tag) -> dict:
        inputs = {"samples": self.sample(backbone, method, seed, tag)}
        if not self.config["evaluation"]["reference"]:
            inputs["ref"] = self.reference(backbone)
        if self.config["evaluation"]["features"] == "toy":
            inputs["classifier"] = self.classifier()
        return inputs

    def diagnose_inputs(self, backbone, variant, seed) -> dict:
        inputs = {"ckpt": self.checkpoint(backbone, f"tensorar-{variant}", seed),
                  "codes": f"{self.backbone_codes(backbone, 'val')}/{MANIFEST}", **self.conditions_inputs(backbone, "val")}
        if not self.official_base(backbone):
            inputs["base"] = self.base_checkpoint(backbone, seed)
        return inputs

    # ----------------------------------------------------------------------------------------------
    # Stage arguments (lists; the rules shell-quote them)
    # ----------------------------------------------------------------------------------------------
    def make_digits_args(self) -> list[str]:
        d = self.config["dataset"]
        return ["--image-size", str(d["image_size"]), "--val-fraction", str(d["val_fraction"]),
                "--seed", str(d["split_seed"])]

    def train_tokenizer_args(self, name: str) -> list[str]:
        spec = self.config["tokenizers"][name]
        training = from_mapping(TokenizerTrainOptions, spec.get("training"), f"tokenizers.{name}.training")
        return ["--data", self.images_of(name, "train"), "--val-data", self.images_of(name, "val"),
                "--preset", spec["preset"], "--image-size", str(self.config["dataset"]["image_size"]),
                *to_arguments(training)]

    def tokenizer_args(self, name: str) -> list[str]:
        args = ["--vq", self.tokenizer_path(name)]
        if not self.trained_tokenizer(name):  # a released file carries no config: name its preset
            args += ["--vq-preset", self.config["tokenizers"][name]["preset"]]
        return args

    def extract_codes_args(self, tokenizer, split, size) -> list[str]:
        """Training codes use the configured augmentation; held-out codes (diagnostics) one plain view."""
        args = ["--data", self.images_of(tokenizer, split), *self.tokenizer_args(tokenizer), "--image-size", str(size)]
        if split == "val":
            return args + ["--augment", "center", "--no-flip"]
        codes = self.config["codes"]
        return args + ["--augment", codes["augment"], *([] if codes["flip"] else ["--no-flip"])]

    def keep_steps(self, backbone, method) -> tuple[int, ...]:
        """Checkpoints kept for the training-FID curve (Fig. 5), only in the runs Fig. 5 shows."""
        fig5 = self.tables["fig5"]
        if backbone == fig5["backbone"] and method in ("finetune", f"tensorar-{fig5['variant']}"):
            return tuple(fig5["steps"])
        return ()

    def train_options(self, backbone, method, seed) -> TrainOptions:
        spec = self.backbones[backbone]
        mode, _, times = parse_method(method)
        if mode == "base":
            values = spec["base_training"]
        else:
            values = {**self.config["finetuning"], "keep_steps": self.keep_steps(backbone, method)}
            values["steps"] = values["steps"] * times
        return from_mapping(TrainOptions, {**values, "seed": int(seed)}, f"backbones.{backbone}")

    def official_model_args(self, backbone: str, preset_flag: str, block_flag: str) -> list[str]:
        """How a stage reads an official base file: its family, preset and (LlamaGen 384 px) token count."""
        spec = self.backbones[backbone]
        args = ["--family", spec["family"], preset_flag, spec["preset"]]
        if spec.get("block_size"):
            args += [block_flag, str(spec["block_size"])]
        return args

    def train_args(self, backbone, method, seed) -> list[str]:
        spec = self.backbones[backbone]
        args = ["--codes", self.backbone_codes(backbone, "train"), "--run-dir", self.run_dir(backbone, method, seed),
                "--family", spec["family"], "--model", spec["preset"]]
        if self.conditions_dir(backbone, "train"):
            args += ["--conditions", self.conditions_dir(backbone, "train")]
        mode, variant, _ = parse_method(method)
        args += ["--mode", mode]
        if mode != "base":
            args += ["--init", self.base_checkpoint(backbone, seed)]
        if variant:
            args += to_arguments(from_mapping(TensorARConfig, self.variants[variant], f"variants.{variant}"))
        return args + to_arguments(self.train_options(backbone, method, seed))

    def sampling_options(self, backbone: str, draft_noise: str = "none") -> SamplingOptions:
        values = {**self.backbones[backbone]["sampling"], "draft_noise": draft_noise}
        return from_mapping(SamplingOptions, values, f"backbones.{backbone}.sampling")

    def model_args(self, backbone, method, seed, tag="final") -> list[str]:
        spec = self.backbones[backbone]
        args = ["--ckpt", self.checkpoint(backbone, method, seed, tag), *self.tokenizer_args(spec["tokenizer"])]
        if method == "base" and self.official_base(backbone):
            args += self.official_model_args(backbone, "--gpt-preset", "--block-size")
        return args

    def sample_args(self, backbone, method, seed, tag) -> list[str]:
        """Checkpoint, the backbone's sampling settings (the official evaluation's), count and seed."""
        ev = self.config["evaluation"]
        num = self.tables["fig5"]["num_samples"] if tag.startswith("step") else ev["num_samples"]
        cfg = SamplingConfig(num_samples=num, seed=int(seed), image_size=self.backbones[backbone]["eval_image_size"])
        options = self.sampling_options(backbone, "schedule" if tag == "final_draftnoise" else "none")
        return [*self.model_args(backbone, method, seed, tag), *to_arguments(cfg), *to_arguments(options),
                "--batch-size", str(ev["sample_batch_size"])]

    def drafts_args(self, backbone, method, seed) -> list[str]:
        """A few samples of a TensorAR run with the refinement strip (paper Fig. 8/10)."""
        cfg = SamplingConfig(num_samples=4, seed=int(seed), shard_size=4)
        return [*self.model_args(backbone, method, seed), *to_arguments(cfg),
                *to_arguments(self.sampling_options(backbone)), "--batch-size", "4"]

    def make_reference_args(self, split, size) -> list[str]:
        n = self.config["evaluation"].get("reference_max_images")
        return ["--data", self.dataset_dir(split), "--image-size", str(size), *(["--max-images", str(n)] if n else [])]

    def train_classifier_args(self) -> list[str]:
        training = from_mapping(ClassifierTrainOptions, self.config["evaluation"].get("classifier"),
                                "evaluation.classifier")
        return ["--data", self.dataset_dir("train"), "--val-data", self.dataset_dir("val"),
                "--image-size", str(self.config["dataset"]["image_size"]), *to_arguments(training)]

    def evaluate_args(self, backbone) -> list[str]:
        ev = self.config["evaluation"]
        args = ["--features", ev["features"], "--batch-size", str(ev["feature_batch_size"]), *self.bootstrap_args()]
        if ev["features"] == "toy":
            return args + ["--classifier", self.classifier()]
        return args + ["--inception-weights", ev["inception_weights"]]

    def bootstrap_args(self) -> list[str]:
        """FID's / a benchmark score's sample bootstrap (ours, for claims.md), when configured."""
        replicates = self.config["evaluation"]["bootstrap_replicates"]
        return ["--bootstrap", str(replicates)] if replicates else []

    def timing_args(self, backbone, method) -> list[str]:
        """A model of the first seed, sampled as its Table 2 / 6b runs are, timed batch by batch."""
        t = self.config["timing"]
        cfg = SamplingConfig(num_samples=t["batch_size"], seed=self.seeds[0],
                             image_size=self.backbones[backbone]["eval_image_size"])
        return [*self.model_args(backbone, method, self.seeds[0]), *to_arguments(self.sampling_options(backbone)),
                *to_arguments(cfg, skip=("num_samples", "shard_size")), "--batch-size", str(t["batch_size"]),
                "--warmup", str(t["warmup"]), "--repeats", str(t["repeats"])]

    def diagnose_args(self, backbone, variant, seed) -> list[str]:
        args = ["--ckpt", self.checkpoint(backbone, f"tensorar-{variant}", seed),
                "--base", self.base_checkpoint(backbone, seed), "--codes", self.backbone_codes(backbone, "val"),
                "--num-samples", str(self.config["diagnostics"]["num_samples"]), "--seed", str(seed)]
        if self.conditions_dir(backbone, "val"):
            args += ["--conditions", self.conditions_dir(backbone, "val")]
        if self.official_base(backbone):
            args += self.official_model_args(backbone, "--base-preset", "--base-block-size")
        # The diagnostics sample as the backbone's Table 2 runs do (draft noise: both modes are run).
        return args + to_arguments(self.sampling_options(backbone), skip=("draft_noise",))

    def text_encoder_args(self, name: str) -> list[str]:
        """The flags naming a text encoder (encode_captions and sample_prompts take the same)."""
        spec = self.config["text_encoders"][name]
        args = ["--encoder", spec["kind"]]
        if spec.get("path"):
            args += ["--encoder-path", spec["path"]]
        if spec["kind"] == "toy":
            args += ["--dim", str(spec["dim"]), "--max-tokens", str(spec["max_tokens"])]
        elif spec["kind"] == "janus":
            args += ["--prompt-length", str(spec["prompt_length"])]
        return args

    def encode_captions_args(self, tokenizer, split, size, encoder) -> list[str]:
        return ["--codes", self.codes_dir(tokenizer, split, size), *self.text_encoder_args(encoder)]

    def make_captions_args(self) -> list[str]:
        c = self.config["captions"]
        return ["--num-train", str(c["num_train"]), "--num-val", str(c["num_val"]), "--seed", str(c["seed"])]

    # ----- Tables 3-4: prompt-file samples, the benchmark models' raw outputs, scores -----
    def benchmark(self, name: str) -> dict:
        return self.config["benchmarks"][name]

    def benchmark_prompts(self, name: str) -> str:
        """The official prompt set (config path) or the toy's (made by make_captions)."""
        given = self.benchmark(name).get("prompts")
        if given:
            return given
        return f"{self.captions_root()}/geneval/evaluation_metadata.jsonl" if name == "geneval" else \
            f"{self.captions_root()}/dpg/prompts"

    def dpg_questions(self) -> str:
        return self.benchmark("dpg").get("questions") or f"{self.captions_root()}/dpg/dpg_bench.csv"

    def toy_benchmark(self, name: str) -> bool:
        return self.benchmark(name)["detector"] == "toy"

    def benchmark_inputs(self, name: str) -> dict:
        """Prompt sets made here (the toy's) are inputs; official ones are config paths."""
        return {"prompts": self.captions_root()} if not self.benchmark(name).get("prompts") and \
            self.config["captions"]["name"] == "captioned_digits" else {}

    def sample_prompts_args(self, name, backbone, method, seed) -> list[str]:
        spec, bench = self.backbones[backbone], self.benchmark(name)
        args = [*self.model_args(backbone, method, seed), *self.text_encoder_args(spec["text_encoder"]),
                "--prompts", self.benchmark_prompts(name), "--layout", name,
                "--images-per-prompt", str(bench["images_per_prompt"]), "--seed", str(seed),
                "--batch-size", str(self.config["evaluation"]["sample_batch_size"])]
        return args + to_arguments(self.sampling_options(backbone))

    def score_args(self, name, backbone, method, seed) -> list[str]:
        folder = self.bench_dir(name, backbone, method, seed)
        args = [name, "--images", f"{folder}/images", *self.bootstrap_args()]
        if name == "dpg":
            args += ["--questions", self.dpg_questions()]
        if self.toy_benchmark(name):
            return args + ["--toy-classifier", self.classifier()]
        return args + ["--raw", f"{folder}/raw.jsonl"]

    def detect_args(self, name, backbone, method, seed) -> list[str]:
        """The official model's runner (workflow/scripts/), in its own environment."""
        bench, folder = self.benchmark(name), self.bench_dir(name, backbone, method, seed)
        if name == "geneval":
            return ["--images", f"{folder}/images", "--detector-config", bench["detector_config"],
                    "--detector-checkpoint", bench["detector_checkpoint"], "--clip-weights", bench["clip_weights"]]
        return ["--images", f"{folder}/images", "--questions", self.dpg_questions(), "--model-dir", bench["model_dir"],
                "--resolution", str(self.backbones[backbone]["eval_image_size"])]

    def benchmark_python(self, name: str) -> str:
        """The interpreter of the official model's environment: a configured one, or `python` (inside the
        rule's conda environment with --sdm conda)."""
        return self.benchmark(name).get("python") or "python"

    # ----------------------------------------------------------------------------------------------
    # Manifests of the tables, diagnostics and figures
    # ----------------------------------------------------------------------------------------------
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:12]

    def is_toy(self) -> bool:
        return self.config["dataset"]["name"] == "digits"

    def provenance(self) -> dict:
        ev = self.config["evaluation"]
        feature = ("Inception-v3 (ADM protocol)" if ev["features"] == "inception"
                   else "toy-FID: digits classifier features, not comparable with Inception FID")
        return {"config_hash": self.config_hash(), "experiment": self.config["experiment"],
                "dataset": self.config["dataset"]["name"], "feature_network": feature, "seeds": self.seeds,
                "num_samples": ev["num_samples"]}

    def runs(self, backbone, method, tag="final", timed=False) -> list[dict]:
        """Per-seed files of a run: metrics, sampler stats and, `timed`, the timing job's (first seed)."""
        if method == "tensorar":  # Table 2's variant
            method = f"tensorar-{self.tables['table2']['variant']}"
        runs = [{"seed": s, "metrics": self.metrics(backbone, method, s, tag),
                 "stats": self.sample(backbone, method, s, tag, "json")} for s in self.seeds]
        if timed and tag == "final" and (backbone, method) in self.timed_runs():
            runs[0]["timing"] = self.timing(backbone, method)
        return runs

    def bench_runs(self, benchmark, backbone, method) -> list[dict]:
        if method == "tensorar":
            method = f"tensorar-{self.tables['table3' if benchmark == 'geneval' else 'table4']['variant']}"
        return [{"seed": s, "metrics": f"{self.bench_dir(benchmark, backbone, method, s)}/scores.json",
                 "stats": f"{self.bench_dir(benchmark, backbone, method, s)}/samples.json"} for s in self.seeds]

    def text_backbones_rows(self, table: str) -> list[dict]:
        return [{"key": b, "label": self.backbones[b]["label"], "paper_row": self.backbones[b].get("paper_row"),
                 "pending": self.backbones[b].get("pending")} for b in self.tables[table]["backbones"]]

    def table2_backbones(self) -> list[dict]:
        out = []
        for b in self.tables["table2"]["backbones"]:
            spec = self.backbones[b]
            res = spec.get("image_size") if self.official_base(b) else spec.get("eval_image_size")
            out.append({"key": b, "label": spec["label"], "resolution": res, "paper_row": spec.get("paper_row"),
                        "pending": spec.get("pending")})
        return out

    def ablation_backbone(self, table: str) -> dict:
        b = self.tables[table]["backbone"]
        return {"key": b, "label": self.backbones[b]["label"], "paper_row": self.backbones[b].get("paper_row")}

    def table2_sections(self, timed: bool = False) -> list[dict]:
        return tables.table2_sections(self.table2_backbones(), self.variant_label(self.tables["table2"]["variant"]),
                                      partial(self.runs, timed=timed), self.is_toy())

    def table_manifest(self, name: str) -> dict:
        """The rows of results/<name>.md, for `tensorar tables table`."""
        toy = self.is_toy()
        if name == "table2":
            sections = self.table2_sections()
        elif name in ("table3", "table4"):
            benchmark = "geneval" if name == "table3" else "dpg"
            runs = lambda b, m, tag="final": self.bench_runs(benchmark, b, m)  # noqa: E731
            sections = tables.benchmark_sections(name, self.text_backbones_rows(name),
                                                 self.variant_label(self.tables[name]["variant"]), runs, toy)
        elif name in ("table5", "table6"):
            # Only Table 6b's latency column waits for the timing jobs.
            sections = [tables.ablation_section(t, self.ablation_backbone(t),
                                                {v: self.variants[v] for v in self.tables[t]["variants"]},
                                                self.variant_label, partial(self.runs, timed=t == "table6b"), toy)
                        for t in (("table5",) if name == "table5" else ("table6a", "table6b"))]
        else:
            raise ValueError(f"unknown table {name!r}")
        titles = [s["title"].split(": ", 1)[1] for s in sections if s["name"] != "table2_other"]
        return {"title": f"Table {name[5:]}: " + "; ".join(titles), "provenance": self.provenance(),
                "sections": sections}

    def diagnostics_manifest(self) -> dict:
        """Diagnose JSON of every TensorAR run, plus the draft-noise sampling row of each Table 2 backbone."""
        rows = [{"backbone": b, "variant": v,
                 "label": f"{self.backbones[b]['label']} with TensorAR ({self.variant_label(v)})",
                 "runs": [{"seed": s, "diagnostics": self.diagnostics(b, v, s)} for s in self.seeds]}
                for b, v in self.tensorar_runs()]
        variant = self.tables["table2"]["variant"]
        draft_noise = [{"label": f"{self.backbones[b]['label']} with TensorAR ({self.variant_label(variant)}), "
                                 "draft_noise: schedule (ours, not the paper's)",
                        "reference": self.runs(b, "tensorar"), "runs": self.runs(b, "tensorar", "final_draftnoise")}
                       for b in self.run_backbones()]
        return {"provenance": self.provenance(), "diagnostics": rows, "draft_noise": draft_noise}

    def figures_manifest(self) -> dict:
        """Fig. 2 (size vs FID) and Fig. 4 (throughput vs FID) from the Table 2 rows, Fig. 5 from the kept
        training checkpoints, and a grid of samples of every Table 2 run."""
        fig5 = self.tables["fig5"]
        b = fig5["backbone"]
        curves = {}
        for method, label in (("finetune", "fine-tune control"), (f"tensorar-{fig5['variant']}", "TensorAR")):
            points = [{"step": s, "runs": self.runs(b, method, f"step{s}")} for s in fig5["steps"]]
            points.append({"step": self.config["finetuning"]["steps"], "runs": self.runs(b, method)})
            curves[label] = points
        table2 = self.table2_sections(timed=True)[0]["rows"]  # Fig. 4's throughput: the timing jobs
        grids = [{"label": f"{row['cells']['Model']} {row['method']}",
                  "png": [r["stats"].removesuffix(".json") + ".png" for r in row["runs"]]}
                 for row in table2 if "runs" in row]
        return {"provenance": self.provenance(), "table2": table2,
                "fig5": {"backbone": self.backbones[b]["label"], "curves": curves}, "grids": grids,
                "outputs": FIGURES}

    # ----------------------------------------------------------------------------------------------
    def figures(self) -> dict[str, str]:
        return dict(FIGURES)

    def targets(self) -> list[str]:
        """What `snakemake --cores all` makes: every table, the diagnostics, the figures and a refinement
        strip of each Table 2 TensorAR model (first seed)."""
        variant = f"tensorar-{self.tables['table2']['variant']}"
        strips = [self.drafts(b, variant, self.seeds[0]) for b in self.run_backbones()]
        return [*(f"results/{t}.md" for t in TABLES), "results/diagnostics.md", CLAIMS, *FIGURES.values(), *strips]

    # ----------------------------------------------------------------------------------------------
    # claims.md: which comparison decides which of the paper's claims (texts: tensorar.reporting.claims)
    # ----------------------------------------------------------------------------------------------
    def longer_methods(self) -> tuple[str, str] | None:
        """(control, TensorAR) methods of our longer fine-tuning, or None when it is off."""
        times = self.config["claims"]["ours"]["longer_finetuning"]
        variant = self.tables["table2"]["variant"]
        return (f"finetune-x{times}", f"tensorar-{variant}-x{times}") if times > 1 else None

    def claims_manifest(self) -> dict:
        settings = {k: v for k, v in self.config["claims"].items() if k != "ours"}
        fid = {"kind": "paired", "metric": "fid", "unit": "FID"}
        label = lambda b: self.backbones[b]["label"]  # noqa: E731

        def paired(name, a, b, side="less", **extra):
            return {**fid, "label": name, "a": a, "b": b, "side": side, **extra}

        def timing(name, a, b, side, null, relative):
            return {"kind": "timing", "label": name, "a": {"timing": self.timing(*a)}, "b": {"timing": self.timing(*b)},
                    "side": side,
                    "null": null, "relative": relative, "unit": "%" if relative else "s"}

        table2 = f"tensorar-{self.tables['table2']['variant']}"
        claims = {
            "1": [paired(f"{label(b)}: TensorAR - base", self.runs(b, table2), self.runs(b, "base"))
                  for b in self.run_backbones()],
            "1b": [{"kind": "overhead", "label": label(b), "stats": self.runs(b, table2)[0]["stats"],
                    "range": [1.5, 4.6]} for b in self.run_backbones()],
            "2": [paired(f"{label(b)}: control - base", self.runs(b, "finetune"), self.runs(b, "base"), "greater")
                  for b in self.run_backbones()]
            + [paired(f"2b {label(b)}: TensorAR - control", self.runs(b, table2), self.runs(b, "finetune"))
               for b in self.run_backbones()],
        }
        t5 = self.tables["table5"]
        schedules = {v: self.runs(t5["backbone"], f"tensorar-{v}") for v in t5["variants"]}
        best = [v for v in t5["variants"] if self.variants[v]["schedule"] == "exponential"]
        claims["3"] = [paired(f"{self.variants[v]['schedule']} - base", runs, self.runs(t5["backbone"], "base"))
                       for v, runs in schedules.items()]
        claims["3"] += [paired(f"exponential - {self.variants[v]['schedule']}", schedules[best[0]], runs)
                        for v, runs in schedules.items() if best and v != best[0]]
        t6a = self.tables["table6a"]
        by_k = sorted(t6a["variants"], key=lambda v: self.variants[v]["k"])
        claims["4"] = [{**fid, "kind": "trend", "label": f"{label(t6a['backbone'])}: k = "
                        + ", ".join(str(self.variants[v]["k"]) for v in by_k), "direction": "decreasing",
                        "arms": [{"label": f"k={self.variants[v]['k']}", "runs": self.runs(t6a["backbone"], f"tensorar-{v}")}
                                 for v in by_k]}]
        t6b = self.tables["table6b"]
        by_depth = sorted(t6b["variants"], key=lambda v: self.variants[v]["depth"])
        depth = lambda v: self.variants[v]["depth"]  # noqa: E731
        claims["5"] = [paired(f"d={depth(by_depth[0])} - d={depth(v)}", self.runs(t6b["backbone"], f"tensorar-{by_depth[0]}"),
                              self.runs(t6b["backbone"], f"tensorar-{v}")) for v in by_depth[1:]]
        claims["5"] += [timing(f"latency d={depth(after)} - d={depth(before)}", (t6b["backbone"], f"tensorar-{after}"),
                               (t6b["backbone"], f"tensorar-{before}"), "greater", 0.0, False)
                        for before, after in zip(by_depth, by_depth[1:])]
        claims["6"] = [timing(f"{label(b)}: latency TensorAR / base - 1", (b, table2), (b, "base"), "less",
                              settings["modest_latency"], True) for b in self.run_backbones()]
        claims["7"] = [{"kind": "paired", "metric": "overall", "unit": "score", "side": "greater",
                        "label": f"{label(b)}, {'GenEval' if bench == 'geneval' else 'DPG-Bench'}: TensorAR - base",
                        "a": self.bench_runs(bench, b, "tensorar"), "b": self.bench_runs(bench, b, "base")}
                       for bench, table in (("geneval", "table3"), ("dpg", "table4")) for b in self.text_backbones(table)]
        claims["ours-a"] = [paired(f"{label(b)}: draft noise - control", self.runs(b, table2, "final_draftnoise"),
                                   self.runs(b, "finetune")) for b in self.run_backbones()]
        claims["ours-a"] += [paired(f"{label(b)}: draft noise - TensorAR", self.runs(b, table2, "final_draftnoise"),
                                    self.runs(b, table2), in_verdict=False) for b in self.run_backbones()]
        ours = self.config["claims"]["ours"]
        if ours["variants"]:
            b = ours["backbone"]
            claims["ours-b"] = [paired(f"{label(b)}: {v} - control", self.runs(b, f"tensorar-{v}"), self.runs(b, "finetune"))
                                for v in ours["variants"]]
            claims["ours-b"] += [paired(f"{label(b)}: {v} - TensorAR", self.runs(b, f"tensorar-{v}"), self.runs(b, table2),
                                        in_verdict=False) for v in ours["variants"]]
        if self.longer_methods():
            control, longer = self.longer_methods()
            claims["ours-c"] = [paired(f"{label(ours['backbone'])}: TensorAR - control, {longer.rsplit('-', 1)[1]} steps",
                                       self.runs(ours["backbone"], longer), self.runs(ours["backbone"], control))]
        return {"title": "Which of the paper's claims hold", "provenance": self.provenance(), "settings": settings,
                "note": "toy scale: a verdict here is about the toy, not about the paper's scale" if self.is_toy() else None,
                "claims": [{"id": i, "claim": reporting_claims.CLAIMS[i][0], "reading": reporting_claims.CLAIMS[i][1],
                            "tests": tests} for i, tests in claims.items() if tests]}


def manifest_inputs(manifest) -> list[str]:
    """Every file a manifest names (metrics, stats, diagnostics, PNG grids): the rule's inputs."""
    found: list[str] = []

    def walk(node, key=None):
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in ("outputs", "provenance"):
                    walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in ("metrics", "stats", "diagnostics", "png", "timing"):
            found.append(node)

    walk(manifest)
    return list(dict.fromkeys(found))
