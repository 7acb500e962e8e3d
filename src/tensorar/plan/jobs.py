"""Each stage's job: the files it needs that this workflow makes (its Snakemake inputs) and its argument
list (the rules shell-quote it). Run settings reach a stage through its option dataclass and
`to_arguments`, so each flag is spelled once, by the dataclass that declares it.

Config paths to released files (ImageNet, official checkpoints, Inception weights) are arguments, never
inputs: a dry run needs none of them, and the stages name a missing one and where to get it.

A per-job training setting (one picked per job, e.g. a sharding strategy) goes in `Jobs.train_options`,
where every run gets its `TrainOptions` (lengths are resolved earlier, by `tensorar.plan.lengths`).
"""
from __future__ import annotations

import re
from dataclasses import replace

from tensorar.decoding.sampling import SamplingConfig, SamplingOptions
from tensorar.options import to_arguments
from tensorar.plan.experiment import Experiment
from tensorar.plan.layout import Layout
from tensorar.training.options import TrainOptions


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


class Jobs:
    def __init__(self, experiment: Experiment, layout: Layout):
        self.experiment, self.layout = experiment, layout

    # ----------------------------------------------------------------------------------------------
    # Inputs made by this workflow
    # ----------------------------------------------------------------------------------------------
    def dataset_inputs(self) -> dict:
        return {"data": self.layout.digits_dir()} if self.experiment.dataset.name == "digits" else {}

    def images_inputs(self, tokenizer: str) -> dict:
        if self.experiment.tokenizers[tokenizer].data == "captions":
            return {"data": self.layout.captions_root()} if self.experiment.captions.name == "captioned_digits" else {}
        return self.dataset_inputs()

    def tokenizer_inputs(self, name: str) -> dict:
        return {"tokenizer": self.layout.tokenizer_path(name)} if self.trained_tokenizer(name) else {}

    def trained_tokenizer(self, name: str) -> bool:
        """A tokenizer this workflow trains (a toy one), as opposed to a released file from the config."""
        return not self.experiment.tokenizers[name].checkpoint

    def extract_codes_inputs(self, tokenizer: str) -> dict:
        return {**self.images_inputs(tokenizer), **self.tokenizer_inputs(tokenizer)}

    def conditions_inputs(self, backbone: str, split: str) -> dict:
        folder = self.layout.conditions_dir(backbone, split)
        return {"conditions": f"{folder}/conditions.json"} if folder else {}

    def train_inputs(self, backbone, method, seed) -> dict:
        inputs = {"codes": self.layout.backbone_codes_manifest(backbone, "train"),
                  **self.conditions_inputs(backbone, "train")}
        if method != "base" and not self.experiment.backbones[backbone].official_base:
            inputs["init"] = self.layout.base_checkpoint(backbone, seed)
        return inputs

    def sample_inputs(self, backbone, method, seed, tag="final") -> dict:
        inputs = self.tokenizer_inputs(self.experiment.backbones[backbone].tokenizer)
        if method != "base" or not self.experiment.backbones[backbone].official_base:
            # A kept step checkpoint (Fig. 5) is written by the same training job as final.pt, which
            # therefore stands for it (a job's intermediate checkpoints are not declared outputs).
            inputs["ckpt"] = self.layout.checkpoint(backbone, method, seed)
        return inputs

    def timing_inputs(self, backbone, method) -> dict:
        return self.sample_inputs(backbone, method, self.experiment.seeds[0])

    def evaluate_inputs(self, backbone, method, seed, tag) -> dict:
        inputs = {"samples": self.layout.sample(backbone, method, seed, tag)}
        if not self.experiment.evaluation.reference:
            inputs["ref"] = self.layout.reference(backbone)
        if self.experiment.evaluation.features == "toy":
            inputs["classifier"] = self.layout.classifier()
        return inputs

    def diagnose_inputs(self, backbone, variant, seed) -> dict:
        inputs = {"ckpt": self.layout.checkpoint(backbone, f"tensorar-{variant}", seed),
                  "codes": self.layout.backbone_codes_manifest(backbone, "val"),
                  **self.conditions_inputs(backbone, "val")}
        if not self.experiment.backbones[backbone].official_base:
            inputs["base"] = self.layout.base_checkpoint(backbone, seed)
        return inputs

    def benchmark_inputs(self, name: str) -> dict:
        """Prompt sets made here (the toy's) are inputs; official ones are config paths."""
        made_here = not self.experiment.benchmarks[name].prompts and self.experiment.captions.name == "captioned_digits"
        return {"prompts": self.layout.captions_root()} if made_here else {}

    def sample_prompts_inputs(self, name, backbone, method, seed) -> dict:
        return {**self.sample_inputs(backbone, method, seed), **self.benchmark_inputs(name)}

    def score_inputs(self, name, backbone, method, seed) -> dict:
        inputs = {"samples": self.layout.bench_file(name, backbone, method, seed, "samples.json"),
                  **self.benchmark_inputs(name)}
        if self.toy_benchmark(name):
            return {**inputs, "classifier": self.layout.classifier()}
        return {**inputs, "raw": self.layout.bench_file(name, backbone, method, seed, "raw.jsonl")}

    # ----------------------------------------------------------------------------------------------
    # Data, tokenizers, codes
    # ----------------------------------------------------------------------------------------------
    def make_digits_args(self) -> list[str]:
        d = self.experiment.dataset
        return ["--image-size", str(d.image_size), "--val-fraction", str(d.val_fraction), "--seed", str(d.split_seed)]

    def make_captions_args(self) -> list[str]:
        c = self.experiment.captions
        return ["--num-train", str(c.num_train), "--num-val", str(c.num_val), "--seed", str(c.seed)]

    def train_tokenizer_args(self, name: str) -> list[str]:
        spec = self.experiment.tokenizers[name]
        return ["--data", self.layout.images_of(name, "train"), "--val-data", self.layout.images_of(name, "val"),
                "--preset", spec.preset, "--image-size", str(self.experiment.dataset.image_size),
                *to_arguments(spec.training)]

    def tokenizer_args(self, name: str) -> list[str]:
        args = ["--vq", self.layout.tokenizer_path(name)]
        if not self.trained_tokenizer(name):  # a released file carries no config: name its preset
            args += ["--vq-preset", self.experiment.tokenizers[name].preset]
        return args

    def extract_codes_args(self, tokenizer, split, size) -> list[str]:
        """Training codes use the augmentation configured for the tokenizer's data (codes.images or
        codes.captions); held-out codes (diagnostics) one plain view."""
        args = ["--data", self.layout.images_of(tokenizer, split), *self.tokenizer_args(tokenizer),
                "--image-size", str(size)]
        if split == "val":
            return args + ["--augment", "center", "--no-flip"]
        views = self.experiment.codes[self.experiment.tokenizers[tokenizer].data]
        return args + ["--augment", views.augment, *([] if views.flip else ["--no-flip"])]

    def text_encoder_args(self, name: str) -> list[str]:
        """The flags naming a text encoder (encode_captions and sample_prompts take the same)."""
        spec = self.experiment.text_encoders[name]
        args = ["--encoder", spec.kind]
        if spec.path:
            args += ["--encoder-path", spec.path]
        if spec.kind == "toy":
            args += ["--dim", str(spec.dim), "--max-tokens", str(spec.max_tokens)]
        elif spec.kind == "janus":
            args += ["--prompt-length", str(spec.prompt_length)]
        return args

    def encode_captions_args(self, tokenizer, split, size, encoder) -> list[str]:
        return ["--codes", self.layout.codes_dir(tokenizer, split, size), *self.text_encoder_args(encoder)]

    # ----------------------------------------------------------------------------------------------
    # Training
    # ----------------------------------------------------------------------------------------------
    def keep_steps(self, backbone, method) -> tuple[int, ...]:
        """Checkpoints kept for the training-FID curve (Fig. 5), only in the runs Fig. 5 shows."""
        fig5 = self.experiment.tables.fig5
        if backbone == fig5.backbone and method in ("finetune", f"tensorar-{fig5.variant}"):
            return tuple(fig5.steps)
        return ()

    def train_options(self, backbone, method, seed) -> TrainOptions:
        """The run's optimisation: the backbone's base training, or its fine-tuning (times the method's
        -x<N>, with Fig. 5's kept checkpoints)."""
        mode, _, times = parse_method(method)
        if mode == "base":
            return replace(self.experiment.backbones[backbone].base_training, seed=int(seed))
        finetuning = self.experiment.backbones[backbone].finetuning
        return replace(finetuning, steps=finetuning.steps * times, keep_steps=self.keep_steps(backbone, method),
                       seed=int(seed))

    def train_args(self, backbone, method, seed) -> list[str]:
        spec = self.experiment.backbones[backbone]
        args = ["--codes", self.layout.backbone_codes(backbone, "train"),
                "--run-dir", self.layout.run_dir(backbone, method, seed),
                "--family", spec.family.name, "--model", spec.preset]
        if self.layout.conditions_dir(backbone, "train"):
            args += ["--conditions", self.layout.conditions_dir(backbone, "train")]
        mode, variant, _ = parse_method(method)
        args += ["--mode", mode]
        if mode != "base":
            args += ["--init", self.layout.base_checkpoint(backbone, seed)]
        if variant:
            args += to_arguments(self.experiment.variants[variant])
        return args + to_arguments(self.train_options(backbone, method, seed))

    # ----------------------------------------------------------------------------------------------
    # Sampling, timing, evaluation, diagnostics
    # ----------------------------------------------------------------------------------------------
    def sampling_options(self, backbone: str, draft_noise: str = "none") -> SamplingOptions:
        return replace(self.experiment.backbones[backbone].sampling, draft_noise=draft_noise)

    def official_model_args(self, backbone: str, preset_flag: str, block_flag: str) -> list[str]:
        """How a stage reads an official base file: its family, preset and (LlamaGen 384 px) token count."""
        spec = self.experiment.backbones[backbone]
        args = ["--family", spec.family.name, preset_flag, spec.preset]
        if spec.block_size:
            args += [block_flag, str(spec.block_size)]
        return args

    def model_args(self, backbone, method, seed, tag="final") -> list[str]:
        spec = self.experiment.backbones[backbone]
        args = ["--ckpt", self.layout.checkpoint(backbone, method, seed, tag), *self.tokenizer_args(spec.tokenizer)]
        if method == "base" and spec.official_base:
            args += self.official_model_args(backbone, "--gpt-preset", "--block-size")
        return args

    def sample_args(self, backbone, method, seed, tag) -> list[str]:
        """Checkpoint, the backbone's sampling settings (the official evaluation's), count and seed."""
        ev = self.experiment.evaluation
        num = self.experiment.tables.fig5.num_samples if tag.startswith("step") else ev.num_samples
        cfg = SamplingConfig(num_samples=num, seed=int(seed),
                             image_size=self.experiment.backbones[backbone].eval_image_size)
        options = self.sampling_options(backbone, "schedule" if tag == "final_draftnoise" else "none")
        return [*self.model_args(backbone, method, seed, tag), *to_arguments(cfg), *to_arguments(options),
                "--batch-size", str(ev.sample_batch_size)]

    def drafts_args(self, backbone, method, seed) -> list[str]:
        """A few samples of a TensorAR run with the refinement strip (paper Fig. 8/10)."""
        cfg = SamplingConfig(num_samples=4, seed=int(seed), shard_size=4)
        return [*self.model_args(backbone, method, seed), *to_arguments(cfg),
                *to_arguments(self.sampling_options(backbone)), "--batch-size", "4"]

    def timing_args(self, backbone, method) -> list[str]:
        """A model of the first seed, sampled as its Table 2 / 6b runs are, timed batch by batch."""
        t, seed = self.experiment.timing, self.experiment.seeds[0]
        cfg = SamplingConfig(num_samples=t.batch_size, seed=seed,
                             image_size=self.experiment.backbones[backbone].eval_image_size)
        return [*self.model_args(backbone, method, seed), *to_arguments(self.sampling_options(backbone)),
                *to_arguments(cfg, skip=("num_samples", "shard_size")), "--batch-size", str(t.batch_size),
                "--warmup", str(t.warmup), "--repeats", str(t.repeats)]

    def make_reference_args(self, split, size) -> list[str]:
        n = self.experiment.evaluation.reference_max_images
        return ["--data", self.layout.dataset_dir(split), "--image-size", str(size),
                *(["--max-images", str(n)] if n else [])]

    def train_classifier_args(self) -> list[str]:
        return ["--data", self.layout.dataset_dir("train"), "--val-data", self.layout.dataset_dir("val"),
                "--image-size", str(self.experiment.dataset.image_size),
                *to_arguments(self.experiment.evaluation.classifier)]

    def bootstrap_args(self) -> list[str]:
        """FID's / a benchmark score's sample bootstrap (ours, for claims.md), when configured."""
        replicates = self.experiment.evaluation.bootstrap_replicates
        return ["--bootstrap", str(replicates)] if replicates else []

    def evaluate_args(self, backbone, method, seed, tag) -> list[str]:
        ev = self.experiment.evaluation
        args = [self.layout.reference(backbone), self.layout.sample(backbone, method, seed, tag),
                "--features", ev.features, "--batch-size", str(ev.feature_batch_size), *self.bootstrap_args()]
        if ev.features == "toy":
            return args + ["--classifier", self.layout.classifier()]
        return args + ["--inception-weights", ev.inception_weights]

    def diagnose_args(self, backbone, variant, seed) -> list[str]:
        layout = self.layout
        args = ["--ckpt", layout.checkpoint(backbone, f"tensorar-{variant}", seed),
                "--base", layout.base_checkpoint(backbone, seed), "--codes", layout.backbone_codes(backbone, "val"),
                "--num-samples", str(self.experiment.diagnostics_samples), "--seed", str(seed)]
        if layout.conditions_dir(backbone, "val"):
            args += ["--conditions", layout.conditions_dir(backbone, "val")]
        if self.experiment.backbones[backbone].official_base:
            args += self.official_model_args(backbone, "--base-preset", "--base-block-size")
        # The diagnostics sample as the backbone's Table 2 runs do (draft noise: both modes are run).
        return args + to_arguments(self.sampling_options(backbone), skip=("draft_noise",))

    # ----------------------------------------------------------------------------------------------
    # Tables 3-4: prompt-file samples, the benchmark models' raw outputs, scores
    # ----------------------------------------------------------------------------------------------
    def toy_benchmark(self, name: str) -> bool:
        return self.experiment.benchmarks[name].detector == "toy"

    def sample_prompts_args(self, name, backbone, method, seed) -> list[str]:
        spec, bench = self.experiment.backbones[backbone], self.experiment.benchmarks[name]
        args = [*self.model_args(backbone, method, seed), *self.text_encoder_args(spec.text_encoder),
                "--prompts", self.layout.benchmark_prompts(name), "--layout", name,
                "--images-per-prompt", str(bench.images_per_prompt), "--seed", str(seed),
                "--batch-size", str(self.experiment.evaluation.sample_batch_size)]
        return args + to_arguments(self.sampling_options(backbone))

    def score_args(self, name, backbone, method, seed) -> list[str]:
        folder = self.layout.bench_dir(name, backbone, method, seed)
        args = [name, "--images", f"{folder}/images", *self.bootstrap_args()]
        if name == "dpg":
            args += ["--questions", self.layout.dpg_questions()]
        if self.toy_benchmark(name):
            return args + ["--toy-classifier", self.layout.classifier()]
        return args + ["--raw", f"{folder}/raw.jsonl"]

    def detect_args(self, name, backbone, method, seed) -> list[str]:
        """The official model's runner (workflow/scripts/), in its own environment."""
        bench, folder = self.experiment.benchmarks[name], self.layout.bench_dir(name, backbone, method, seed)
        if name == "geneval":
            return ["--images", f"{folder}/images", "--detector-config", bench.detector_config,
                    "--detector-checkpoint", bench.detector_checkpoint, "--clip-weights", bench.clip_weights]
        return ["--images", f"{folder}/images", "--questions", self.layout.dpg_questions(),
                "--model-dir", bench.model_dir,
                "--resolution", str(self.experiment.backbones[backbone].eval_image_size)]

    def benchmark_python(self, name: str) -> str:
        """The interpreter of the official model's environment: a configured one, or `python` (inside the
        rule's conda environment with --sdm conda)."""
        return self.experiment.benchmarks[name].python or "python"
