"""Cross references the config schema cannot express (a table names a backbone that exists and is of the
right kind, a backbone's tokenizer makes codes of its data, k fits the backbone's tokens, ...), checked
on the typed experiment before any job is planned. Each error names the config key to fix."""
from __future__ import annotations

from tensorar.plan.experiment import Experiment


def check_references(experiment: Experiment) -> None:
    backbones, variants, tables = experiment.backbones, experiment.variants, experiment.tables

    def backbone(name, where):
        if name not in backbones:
            raise ValueError(f"{where}: unknown backbone {name!r}; known: {', '.join(backbones)}")
        return backbones[name]

    def variant(name, where):
        if name not in variants:
            raise ValueError(f"{where}: unknown variant {name!r}; known: {', '.join(variants)}")

    for name in tables.table2.backbones:
        if backbone(name, "tables.table2.backbones").text:
            raise ValueError(f"tables.table2.backbones: {name!r} is text-conditioned (Tables 3-4 hold those)")
    variant(tables.table2.variant, "tables.table2.variant")
    for table in ("table3", "table4"):
        for name in getattr(tables, table).backbones:
            spec = backbone(name, f"tables.{table}.backbones")
            if not spec.pending and not spec.text:
                raise ValueError(f"tables.{table}.backbones: {name!r} is class-conditional (Table 2 holds those)")
        variant(getattr(tables, table).variant, f"tables.{table}.variant")
    for table in ("table5", "table6a", "table6b", "fig5"):
        spec = getattr(tables, table)
        if backbone(spec.backbone, f"tables.{table}.backbone").pending:
            raise ValueError(f"tables.{table}.backbone: {spec.backbone!r} is pending, it cannot be run")
        for name in getattr(spec, "variants", (getattr(spec, "variant", None),)):
            variant(name, f"tables.{table}")
    _check_inputs(experiment)
    fig5 = tables.fig5
    length = backbones[fig5.backbone].finetuning.steps
    for step in fig5.steps:
        if step > length:  # the kept checkpoint would never be written: fail now, not after training
            raise ValueError(f"tables.fig5.steps: step {step} is past the {length} fine-tuning steps of "
                             f"{fig5.backbone} (finetuning.steps, or finetuning.epochs in steps)")
    for spec in backbones.values():
        if not spec.pending:
            _check_backbone(experiment, spec)
    ours = experiment.claims.ours
    if ours.variants or ours.longer_finetuning > 1:
        if not ours.backbone:
            raise ValueError("claims.ours.backbone: our variants need a backbone to run on")
        spec = backbone(ours.backbone, "claims.ours.backbone")
        if spec.pending or spec.text:
            raise ValueError(f"claims.ours.backbone: {ours.backbone!r} must be a class-conditional backbone "
                             "that is run")
    for name in ours.variants:
        variant(name, "claims.ours.variants")


def _check_inputs(experiment: Experiment) -> None:
    dataset, ev = experiment.dataset, experiment.evaluation
    if dataset.name == "imagenet":
        for key in ("train_dir", "val_dir"):
            if not getattr(dataset, key):
                raise ValueError(f"dataset.{key} is required when dataset.name is imagenet")
    if ev.features == "inception" and not ev.inception_weights:
        raise ValueError("evaluation.inception_weights is required when evaluation.features is inception")


def _check_backbone(experiment: Experiment, spec) -> None:
    where, fam = f"backbones.{spec.key}", spec.family
    if spec.tokenizer not in experiment.tokenizers:
        raise ValueError(f"{where}.tokenizer: unknown tokenizer {spec.tokenizer!r}; known: "
                         f"{', '.join(experiment.tokenizers)}")
    if spec.preset not in fam.presets:
        raise ValueError(f"{where}.preset: {spec.preset!r} is not a {fam.name} preset; known: {', '.join(fam.presets)}")
    if not spec.checkpoint and not spec.base_training:
        raise ValueError(f"{where}: set either checkpoint (pretrained) or base_training")
    if spec.text and spec.text_encoder not in experiment.text_encoders:
        raise ValueError(f"{where}.text_encoder: a {fam.name} backbone needs one of text_encoders "
                         f"({', '.join(experiment.text_encoders) or 'none defined'})")
    tokenizer = experiment.tokenizers[spec.tokenizer]
    wants = "captions" if spec.text else "images"
    if tokenizer.data != wants:
        raise ValueError(f"{where}.tokenizer: {spec.tokenizer!r} makes codes of the {tokenizer.data} "
                         f"dataset, but a {fam.name} backbone trains on {wants} (set tokenizers.<t>.data)")
    num_tokens = spec.block_size or (spec.image_size // tokenizer.downsample) ** 2
    for name in experiment.variants_of(spec.key):
        if experiment.variants[name].k > num_tokens:
            raise ValueError(f"variants.{name}.k = {experiment.variants[name].k} exceeds the {num_tokens} "
                             f"tokens of backbone {spec.key}")
    resources = experiment.resources
    for stage, override in spec.resources.items():
        known = set(resources.default) | set(resources.stages.get(stage, {}))
        if set(override) - known:
            raise ValueError(f"{where}.resources.{stage}: {sorted(set(override) - known)} must also be "
                             f"set in resources.default or resources.{stage}")
