"""Each stage's job: the files it needs that this workflow makes (its Snakemake inputs) and its argument
list (the rules shell-quote it). Run settings reach a stage through its option dataclass and
`to_arguments`, so each flag is spelled once, by the dataclass that declares it.

Config paths to released files (ImageNet, official checkpoints, Inception weights) are arguments, never
inputs: a dry run needs none of them, and the stages name a missing one and where to get it.

A per-job training setting (one picked per job, e.g. a sharding strategy) goes in `Jobs.train_options`,
where every run gets its `TrainOptions` (lengths are resolved earlier, by `tensorar.plan.lengths`): on a
GPU job, the memory plan's strategy (tensorar.resources; docs/resources.md).
"""
from __future__ import annotations

import re
from dataclasses import replace
from functools import cached_property

from tensorar.decoding.sampling import SamplingConfig, SamplingOptions
from tensorar.data.codes import CodesOptions, CodeViews
from tensorar.evaluation.options import BootstrapOptions, FeatureOptions, ReferenceOptions
from tensorar.models.loading import TokenizerSource
from tensorar.options import to_arguments
from tensorar.plan.cluster import Cluster
from tensorar.plan.experiment import Experiment
from tensorar.plan.layout import Layout
from tensorar.sampling.options import DiagnoseOptions, ModelSource, RunOptions, TextEncoderSpec, TimingOptions
from tensorar.resources.jobs import Planned, memory_plan, planned_jobs
from tensorar.sampling.prompts import PromptSamples
from tensorar.toy.options import CaptionsOptions, DigitsOptions
from tensorar.training.options import ClassifierSetup, TokenizerSetup, TrainOptions, TrainSource


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
    def __init__(self, experiment: Experiment, layout: Layout, cluster: Cluster):
        self.experiment, self.layout, self.cluster = experiment, layout, cluster

    @cached_property
    def memory_plan(self) -> list[Planned]:
        """Every planned training and sampling job's predicted memory and training strategy."""
        return memory_plan(planned_jobs(self.experiment, self, self.cluster))

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
        spec = self.experiment.backbones[backbone]
        if not spec.text_encoder:
            return {}
        return {"conditions": self.layout.conditions_manifest(spec.tokenizer, split, spec.image_size, spec.text_encoder)}

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

    def timing_inputs(self, backbone) -> dict:
        """Every timed model's checkpoint (keyed by method) and the tokenizer."""
        inputs = {}
        for method in self.experiment.timed_models(backbone):
            found = self.sample_inputs(backbone, method, self.experiment.seeds[0])
            if "ckpt" in found:
                found[f"ckpt_{method}"] = found.pop("ckpt")
            inputs.update(found)
        return inputs

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
        return {"prompts": self.layout.captions_root()} if self.experiment.prompts_made_here(name) else {}

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
        return to_arguments(DigitsOptions(image_size=d.image_size, val_fraction=d.val_fraction, seed=d.split_seed))

    def make_captions_args(self) -> list[str]:
        c = self.experiment.captions
        return to_arguments(CaptionsOptions(num_train=c.num_train, num_val=c.num_val, seed=c.seed,
                                            seen_fraction=c.seen_fraction))

    def train_tokenizer_args(self, name: str) -> list[str]:
        spec = self.experiment.tokenizers[name]
        setup = TokenizerSetup(preset=spec.preset, image_size=self.experiment.dataset.image_size)
        return ["--data", self.layout.images_of(name, "train"), "--val-data", self.layout.images_of(name, "val"),
                *to_arguments(setup), *to_arguments(spec.training)]

    def tokenizer_source(self, name: str) -> TokenizerSource:
        released = not self.trained_tokenizer(name)  # a released file carries no config: name its preset
        return TokenizerSource(vq=self.layout.tokenizer_path(name),
                               vq_preset=self.experiment.tokenizers[name].preset if released else None)

    def extract_codes_args(self, tokenizer, split, size) -> list[str]:
        """Training codes use the augmentation configured for the tokenizer's data (codes.images or
        codes.captions); held-out codes (diagnostics) one plain view. The shard size, batch size and
        workers are the stage's defaults (ours: unset in the config), left off the command line."""
        codes = CodesOptions(image_size=int(size))
        args = ["--data", self.layout.images_of(tokenizer, split), *to_arguments(self.tokenizer_source(tokenizer)),
                *to_arguments(codes, skip=("shard_size", "batch_size", "num_workers"))]
        if split == "val":
            return args + to_arguments(CodeViews(augment="center", flip=False))
        return args + to_arguments(self.experiment.codes[self.experiment.tokenizers[tokenizer].data])

    def text_encoder_args(self, name: str) -> list[str]:
        """The flags naming a text encoder (encode_captions and sample_prompts take the same); the toy's
        sizes only for the toy, the prompt length only for Janus."""
        spec = self.experiment.text_encoders[name]
        encoder = TextEncoderSpec(encoder=spec.kind, encoder_path=spec.path, dim=spec.dim, max_tokens=spec.max_tokens,
                                  prompt_length=spec.prompt_length if spec.kind == "janus" else None)
        return to_arguments(encoder, skip=() if spec.kind == "toy" else ("dim", "max_tokens"))

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
        """The run's options as configured, with a GPU fine-tuning job's strategy from the memory plan:
        its choice (DDP -> FSDP -> + activation checkpointing -> smaller micro-batches), or the config's
        own setting if it fits. A job that does not fit is refused here, naming it and its numbers.
        CPU jobs (the toy) and base training keep the config's values."""
        options = self.configured_train_options(backbone, method, seed)
        mode, variant, _ = parse_method(method)
        if mode == "base" or not self.cluster.stage_resources("train", backbone).get("gpu"):
            return options
        # -x<N> trains longer on the same batch: the same memory as its method
        name = f"train {backbone} {'finetune' if mode == 'finetune' else f'tensorar-{variant}'}"
        planned = next(p for p in self.memory_plan if p.job.name == name)
        if planned.refusal:
            raise ValueError(f"memory plan (tensorar resources): {planned.refusal}")
        return replace(options, **planned.choice.options())

    def configured_train_options(self, backbone, method, seed) -> TrainOptions:
        """The run's optimisation as configured: the backbone's base training, or its fine-tuning (times
        the method's -x<N>, with Fig. 5's kept checkpoints)."""
        mode, _, times = parse_method(method)
        if mode == "base":
            return replace(self.experiment.backbones[backbone].base_training, seed=int(seed))
        finetuning = self.experiment.backbones[backbone].finetuning
        return replace(finetuning, steps=finetuning.steps * times, keep_steps=self.keep_steps(backbone, method),
                       seed=int(seed))

    def train_args(self, backbone, method, seed) -> list[str]:
        spec = self.experiment.backbones[backbone]
        mode, variant, _ = parse_method(method)
        source = TrainSource(family=spec.family.name, preset=spec.preset, mode=mode,
                             conditions=self.layout.conditions_dir(backbone, "train") or None,
                             init=self.layout.base_checkpoint(backbone, seed) if mode != "base" else None)
        args = ["--codes", self.layout.backbone_codes(backbone, "train"),
                "--run-dir", self.layout.run_dir(backbone, method, seed), *to_arguments(source)]
        if variant:
            args += to_arguments(self.experiment.variants[variant])
        return args + to_arguments(self.train_options(backbone, method, seed))

    # ----------------------------------------------------------------------------------------------
    # Sampling, timing, evaluation, diagnostics
    # ----------------------------------------------------------------------------------------------
    def sampling_options(self, backbone: str, draft_noise: str = "none") -> SamplingOptions:
        return replace(self.experiment.backbones[backbone].sampling, draft_noise=draft_noise)

    def protocol_run_options(self, backbone: str, **values) -> RunOptions:
        """RunOptions with the backbone's sampling protocol (dtype, TF32) for sample, sample_prompts and
        time_sampling jobs."""
        protocol = self.experiment.backbones[backbone].sampling_protocol
        return RunOptions(dtype=protocol.dtype, tf32="on" if protocol.tf32 else None, **values)

    def protocol_sampling_config(self, backbone: str, **values) -> SamplingConfig:
        """SamplingConfig with the backbone's sampling protocol (label order, compiled step)."""
        protocol = self.experiment.backbones[backbone].sampling_protocol
        return SamplingConfig(labels=protocol.labels, compile_step=protocol.compile_step, **values)

    def model_source(self, backbone: str, ckpt: str, *, official: bool, tokenizer: bool = True) -> ModelSource:
        """A checkpoint of `backbone` and its tokenizer; `official`: the checkpoint (or, for diagnose and
        time_sampling, one of the files named with it) is an official file, which needs its family,
        preset and (LlamaGen 384 px) token count."""
        spec = self.experiment.backbones[backbone]
        vq = vq_preset = None
        if tokenizer:
            vq = self.layout.tokenizer_path(spec.tokenizer)
            if not self.trained_tokenizer(spec.tokenizer):  # a released file carries no config: name its preset
                vq_preset = self.experiment.tokenizers[spec.tokenizer].preset
        if not official:
            return ModelSource(ckpt=ckpt, vq=vq, vq_preset=vq_preset)
        return ModelSource(ckpt=ckpt, family=spec.family.name, preset=spec.preset, block_size=spec.block_size or None,
                           vq=vq, vq_preset=vq_preset)

    def model_args(self, backbone, method, seed, tag="final") -> list[str]:
        official = method == "base" and self.experiment.backbones[backbone].official_base
        return to_arguments(self.model_source(backbone, self.layout.checkpoint(backbone, method, seed, tag),
                                              official=official))

    def sample_args(self, backbone, method, seed, tag) -> list[str]:
        """Checkpoint, the backbone's sampling settings (the official evaluation's), count and seed."""
        ev = self.experiment.evaluation
        num = self.experiment.tables.fig5.num_samples if tag.startswith("step") else ev.num_samples
        cfg = self.protocol_sampling_config(backbone, num_samples=num, seed=int(seed),
                                            image_size=self.experiment.backbones[backbone].eval_image_size)
        options = self.sampling_options(backbone, "schedule" if tag == "final_draftnoise" else "none")
        return [*self.model_args(backbone, method, seed, tag), *to_arguments(cfg), *to_arguments(options),
                *to_arguments(self.protocol_run_options(backbone, batch_size=ev.sample_batch_size))]

    def drafts_args(self, backbone, method, seed) -> list[str]:
        """A few samples of a TensorAR run with the refinement strip (paper Fig. 8/10)."""
        cfg = SamplingConfig(num_samples=4, seed=int(seed), shard_size=4)
        return [*self.model_args(backbone, method, seed), *to_arguments(cfg),
                *to_arguments(self.sampling_options(backbone)), *to_arguments(RunOptions(batch_size=4))]

    def timing_args(self, backbone) -> list[str]:
        """The backbone's timed models of the first seed (`--ckpt METHOD=CKPT`, base first), sampled as their
        Table 2 / 6b runs are, timed together in interleaved rounds (tensorar time_sampling)."""
        t, seed, spec = self.experiment.timing, self.experiment.seeds[0], self.experiment.backbones[backbone]
        cfg = self.protocol_sampling_config(backbone, num_samples=t.batch_size, seed=seed,
                                            image_size=spec.eval_image_size)
        ckpts = [a for m in self.experiment.timed_models(backbone)
                 for a in ("--ckpt", f"{m}={self.layout.checkpoint(backbone, m, seed)}")]
        # An official base file needs its family and preset; our checkpoints record theirs and accept the same.
        source = self.model_source(backbone, self.layout.checkpoint(backbone, "base", seed), official=spec.official_base)
        timing = TimingOptions(batch_size=t.batch_size, warmup=t.warmup, repeats=t.repeats)
        return [*ckpts, *to_arguments(source, skip=("ckpt",)), *to_arguments(self.sampling_options(backbone)),
                *to_arguments(cfg, skip=("num_samples", "shard_size")), *to_arguments(timing),
                *to_arguments(self.protocol_run_options(backbone), skip=("batch_size",))]

    def make_reference_args(self, split, size) -> list[str]:
        reference = ReferenceOptions(image_size=int(size), max_images=self.experiment.evaluation.reference_max_images)
        return ["--data", self.layout.dataset_dir(split), *to_arguments(reference)]

    def train_classifier_args(self) -> list[str]:
        # The toy network is trained on the stage's default device (cpu: it is tiny).
        setup = ClassifierSetup(image_size=self.experiment.dataset.image_size)
        return ["--data", self.layout.dataset_dir("train"), "--val-data", self.layout.dataset_dir("val"),
                *to_arguments(setup, skip=("device",)), *to_arguments(self.experiment.evaluation.classifier)]

    def bootstrap_args(self) -> list[str]:
        """FID's / a benchmark score's sample bootstrap (ours, for claims.md; 0 replicates: none)."""
        return to_arguments(BootstrapOptions(bootstrap=self.experiment.evaluation.bootstrap_replicates))

    def evaluate_args(self, backbone, method, seed, tag) -> list[str]:
        ev = self.experiment.evaluation
        toy = ev.features == "toy"
        features = FeatureOptions(features=ev.features, batch_size=ev.feature_batch_size,
                                  classifier=self.layout.classifier() if toy else None,
                                  inception_weights=None if toy else ev.inception_weights)
        return [self.layout.reference(backbone), self.layout.sample(backbone, method, seed, tag),
                *to_arguments(features), *self.bootstrap_args()]

    def diagnose_args(self, backbone, variant, seed) -> list[str]:
        layout = self.layout
        # --family / --preset / --block-size describe an official --base file.
        source = self.model_source(backbone, layout.checkpoint(backbone, f"tensorar-{variant}", seed), tokenizer=False,
                                   official=self.experiment.backbones[backbone].official_base)
        options = DiagnoseOptions(base=layout.base_checkpoint(backbone, seed), codes=layout.backbone_codes(backbone, "val"),
                                  conditions=layout.conditions_dir(backbone, "val") or None,
                                  num_samples=self.experiment.diagnostics_samples, seed=int(seed))
        # The diagnostics sample as the backbone's Table 2 runs do (draft noise: both modes are run).
        return [*to_arguments(source), *to_arguments(options), *to_arguments(RunOptions(), skip=("dtype", "tf32")),
                *to_arguments(self.sampling_options(backbone), skip=("draft_noise",))]

    # ----------------------------------------------------------------------------------------------
    # Tables 3-4: prompt-file samples, the benchmark models' raw outputs, scores
    # ----------------------------------------------------------------------------------------------
    def toy_benchmark(self, name: str) -> bool:
        return self.experiment.benchmarks[name].detector == "toy"

    def sample_prompts_args(self, name, backbone, method, seed) -> list[str]:
        spec, bench = self.experiment.backbones[backbone], self.experiment.benchmarks[name]
        samples = PromptSamples(prompts=self.layout.benchmark_prompts(name), layout=name,
                                images_per_prompt=bench.images_per_prompt, seed=int(seed))
        return [*self.model_args(backbone, method, seed), *self.text_encoder_args(spec.text_encoder),
                *to_arguments(samples),
                *to_arguments(self.protocol_run_options(backbone, batch_size=self.experiment.evaluation.sample_batch_size)),
                *to_arguments(self.sampling_options(backbone))]

    def score_args(self, name, backbone, method, seed) -> list[str]:
        folder = self.layout.bench_dir(name, backbone, method, seed)
        args = [name, "--images", f"{folder}/images", *self.bootstrap_args()]
        if name == "dpg":
            args += ["--questions", self.layout.dpg_questions()]
        if name == "geneval" and self.experiment.prompts_made_here(name):
            args += ["--seen-prompts", self.layout.geneval_seen_prompts()]
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
