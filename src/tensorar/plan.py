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
    R/runs/<backbone>/<method>/seed<s>/final.pt       method = base | finetune | tensorar-<variant>
    R/samples/<backbone>/<method>/seed<s>/<tag>.npz   tag = final | final_draftnoise | step<N> (+ .json, .png)
    R/samples/<backbone>/<method>/seed<s>/drafts.png  TensorAR refinement strip (+ drafts.npz)
    R/metrics/<backbone>/<method>/seed<s>/<tag>.json
    R/diagnostics/<backbone>/tensorar-<variant>/seed<s>.json
    R/bench/<benchmark>/<backbone>/<method>/seed<s>/  images/ (sample_prompts), raw.jsonl, scores.json
    results/table{2..6}.md (+ .csv), results/diagnostics.md, results/figures/*.png
"""
from __future__ import annotations

import hashlib
import json

from tensorar.data.codes import MANIFEST
from tensorar.decoding.sampling import SamplingConfig, SamplingOptions
from tensorar.models.registry import family, tokenizer_family
from tensorar.models.tensorar import TensorARConfig
from tensorar.options import from_mapping, to_arguments
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
        """(backbone, variant) of every TensorAR run any table or figure needs, without duplicates."""
        runs = [(b, self.tables["table2"]["variant"]) for b in self.run_backbones()]
        runs += [(b, self.tables[t]["variant"]) for t in ("table3", "table4") for b in self.text_backbones(t)]
        for table in ("table5", "table6a", "table6b"):
            runs += [(self.tables[table]["backbone"], v) for v in self.tables[table]["variants"]]
        runs.append((self.tables["fig5"]["backbone"], self.tables["fig5"]["variant"]))
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
        if method == "base":
            values = spec["base_training"]
        else:
            values = {**self.config["finetuning"], "keep_steps": self.keep_steps(backbone, method)}
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
        if method == "base":
            args += ["--mode", "base"]
        else:
            args += ["--mode", "finetune" if method == "finetune" else "tensorar",
                     "--init", self.base_checkpoint(backbone, seed)]
        if method.startswith("tensorar-"):
            args += to_arguments(from_mapping(TensorARConfig, self.variants[method.removeprefix("tensorar-")],
                                              f"variants.{method}"))
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
        args = ["--features", ev["features"], "--batch-size", str(ev["feature_batch_size"])]
        if ev["features"] == "toy":
            return args + ["--classifier", self.classifier()]
        return args + ["--inception-weights", ev["inception_weights"]]

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
        args = [name, "--images", f"{folder}/images"]
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

    def runs(self, backbone, method, tag="final") -> list[dict]:
        if method == "tensorar":  # Table 2's variant
            method = f"tensorar-{self.tables['table2']['variant']}"
        return [{"seed": s, "metrics": self.metrics(backbone, method, s, tag),
                 "stats": self.sample(backbone, method, s, tag, "json")} for s in self.seeds]

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

    def table_manifest(self, name: str) -> dict:
        """The rows of results/<name>.md, for `tensorar tables table`."""
        toy = self.is_toy()
        if name == "table2":
            sections = tables.table2_sections(self.table2_backbones(), self.variant_label(self.tables["table2"]["variant"]),
                                              self.runs, toy)
        elif name in ("table3", "table4"):
            benchmark = "geneval" if name == "table3" else "dpg"
            runs = lambda b, m, tag="final": self.bench_runs(benchmark, b, m)  # noqa: E731
            sections = tables.benchmark_sections(name, self.text_backbones_rows(name),
                                                 self.variant_label(self.tables[name]["variant"]), runs, toy)
        elif name in ("table5", "table6"):
            sections = [tables.ablation_section(t, self.ablation_backbone(t),
                                                {v: self.variants[v] for v in self.tables[t]["variants"]},
                                                self.variant_label, self.runs, toy)
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
        table2 = self.table_manifest("table2")["sections"][0]["rows"]
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
        return [*(f"results/{t}.md" for t in TABLES), "results/diagnostics.md", *FIGURES.values(), *strips]


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
        elif isinstance(node, str) and key in ("metrics", "stats", "diagnostics", "png"):
            found.append(node)

    walk(manifest)
    return list(dict.fromkeys(found))
