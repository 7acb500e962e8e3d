"""Stage settings are fields of option dataclasses (issue 25): the argument lists the plan writes for the
codes, tokenizer, classifier and training jobs parse back, through each stage's own parser, into exactly
the options the plan meant, and a bad value stops the stage with its flag's name before any work."""
from __future__ import annotations

import copy
import importlib

import pytest

from tensorar.data.codes import CodesOptions
from tensorar.models.loading import TokenizerSource
from tensorar.options import from_arguments
from tensorar.plan import Plan
from tensorar.training.options import ClassifierSetup, ClassifierTrainOptions, TokenizerSetup, TokenizerTrainOptions


@pytest.fixture(scope="module", params=["config.yaml", "paper.yaml"])
def plan(request, workflow_config) -> Plan:
    return Plan(copy.deepcopy(workflow_config(request.param)))


def test_training_arguments_parse_back_into_the_runs_setup(plan):
    from tensorar.stages.train import parse_args

    e, seed = plan.experiment, plan.experiment.seeds[0]
    for backbone, variant in e.tensorar_runs():
        spec = e.backbones[backbone]
        methods = [("finetune", "finetune"), (f"tensorar-{variant}", "tensorar")]
        for method, mode in methods if spec.official_base else [("base", "base"), *methods]:
            setup, opts, device = parse_args(plan.jobs.train_args(backbone, method, seed))
            assert (setup.family, setup.model, setup.mode) == (spec.family.name, spec.preset, mode)
            assert setup.init == (None if mode == "base" else plan.layout.base_checkpoint(backbone, seed))
            assert setup.conditions == (plan.layout.conditions_dir(backbone, "train") or None)
            assert setup.plugin == (e.variants[variant] if mode == "tensorar" else None)
            assert opts == plan.jobs.train_options(backbone, method, seed)
            assert device == "auto"  # RunOptions' default: CUDA when there is one


def test_codes_tokenizer_and_classifier_arguments_parse_back(plan):
    from tensorar.stages import extract_codes, train_classifier, train_tokenizer

    e = plan.experiment
    backbones = [b for b in dict.fromkeys(e.run_backbones() + e.text_backbones()) if e.backbones[b].tokenizer]
    assert backbones
    for backbone in backbones:
        spec = e.backbones[backbone]
        for split in ("train", "val"):
            parser = extract_codes.build_parser()
            args = parser.parse_args([*plan.jobs.extract_codes_args(spec.tokenizer, split, spec.image_size),
                                      "--out", "codes"])
            source = from_arguments(parser, args, TokenizerSource)
            released = not plan.jobs.trained_tokenizer(spec.tokenizer)
            assert source == TokenizerSource(vq=plan.layout.tokenizer_path(spec.tokenizer),
                                             vq_preset=e.tokenizers[spec.tokenizer].preset if released else None)
            assert from_arguments(parser, args, CodesOptions) == CodesOptions(image_size=spec.image_size)
    for name, tokenizer in e.tokenizers.items():
        if plan.jobs.trained_tokenizer(name):
            parser = train_tokenizer.build_parser()
            args = parser.parse_args([*plan.jobs.train_tokenizer_args(name), "--out", "TOK.pt"])
            assert from_arguments(parser, args, TokenizerSetup) == TokenizerSetup(preset=tokenizer.preset,
                                                                                  image_size=e.dataset.image_size)
            assert from_arguments(parser, args, TokenizerTrainOptions) == tokenizer.training
    if e.evaluation.features == "toy":
        parser = train_classifier.build_parser()
        args = parser.parse_args([*plan.jobs.train_classifier_args(), "--out", "CLS.pt"])
        assert from_arguments(parser, args, ClassifierSetup) == ClassifierSetup(image_size=e.dataset.image_size)
        assert from_arguments(parser, args, ClassifierTrainOptions) == e.evaluation.classifier


CODES = ["--data", "images", "--vq", "TOK.pt", "--out", "codes"]


@pytest.mark.parametrize("stage, argv, message", [
    ("train", ["--codes", "c", "--run-dir", "r", "--mode", "base"], "--mode base needs --preset PRESET"),
    ("train", ["--codes", "c", "--run-dir", "r", "--mode", "finetune", "--preset", "GPT-toy-S"],
     "--mode finetune needs --init BASE_CHECKPOINT"),
    ("train", ["--codes", "c", "--run-dir", "r", "--mode", "base", "--preset", "GPT-toy-S", "--device", "tpu"],
     "--device: invalid choice"),
    ("extract_codes", [*CODES, "--image-size", "0"], "(--image-size) = 0: must be >= 1"),
    ("extract_codes", [*CODES, "--image-size", "16", "--num-workers", "-1"], "(--num-workers) = -1: must be >= 0"),
    ("extract_codes", [*CODES, "--image-size", "16", "--vq-preset", "VQ-99"], "--vq-preset: invalid choice"),
    ("extract_codes", CODES, "--image-size"),  # required
    ("encode_captions", ["--codes", "c", "--encoder", "toy", "--out", "o", "--shard-size", "0"],
     "(--shard-size) = 0: must be >= 1"),
    ("train_tokenizer", ["--data", "d", "--val-data", "v", "--out", "o", "--preset", "GPT-B"],
     "--preset: invalid choice"),
    ("train_classifier", ["--data", "d", "--val-data", "v", "--out", "o", "--image-size", "0"],
     "(--image-size) = 0: must be >= 1"),
    ("score_benchmark", ["geneval", "--images", "i", "--raw", "r", "--out", "o", "--images-per-prompt", "0"],
     "(--images-per-prompt) = 0: must be >= 1"),
])
def test_a_bad_setting_stops_the_stage_naming_its_flag(stage, argv, message, capsys):
    module = importlib.import_module(f"tensorar.stages.{stage}")
    with pytest.raises(SystemExit) as stopped:
        module.main(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err
