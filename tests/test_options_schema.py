"""One typed home per setting: the workflow's config schema declares the same defaults, bounds and
choices as the library's option dataclasses and registries, and the CLI flags are derived from the
dataclasses. A knob added to a dataclass without the schema (or the other way round) fails here."""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from tensorar.data.codes import CodeViews
from tensorar.decoding.sampling import SamplingConfig, SamplingOptions
from tensorar.models.registry import DEFAULT_FAMILY, FAMILIES, TOKENIZERS
from tensorar.models.schedules import LOSS_WEIGHTINGS, SCHEDULES
from tensorar.models.tensorar import TensorARConfig
from tensorar.options import add_arguments, from_arguments, to_arguments
from tensorar.reporting.paper import PAPER_ROWS, T2I_PAPER_ROWS
from tensorar.evaluation.options import BootstrapOptions, FeatureOptions
from tensorar.plan.inputs import SamplingProtocol
from tensorar.sampling.options import DiagnoseOptions, RunOptions, TimingOptions
from tensorar.toy.options import CaptionsOptions, DigitsOptions
from tensorar.training.options import (
    ClassifierTrainOptions,
    TokenizerTrainOptions,
    TrainOptions,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
DEFS = SCHEMA["$defs"]

# (dataclass, schema object, fields the config does not set)
PAIRS = [
    (SamplingOptions, DEFS["sampling"], {"draft_noise"}),  # draft noise is chosen per sample batch (a tag)
    # dropout ... seed are run-level, not config; `epochs` (schema only) is turned into `steps` by the plan
    (TrainOptions, DEFS["training"], {"dropout", "keep_steps", "log_every", "seed"}),
    (TensorARConfig, DEFS["variant"], set()),
    (TokenizerTrainOptions, DEFS["tokenizer"]["properties"]["training"], {"restart_every", "seed"}),
    (ClassifierTrainOptions, SCHEMA["properties"]["evaluation"]["properties"]["classifier"],
     {"batch_size", "lr", "seed"}),
    # codes.captions declares its own defaults (centre crop, no flip: a flip breaks left / right)
    (CodeViews, SCHEMA["properties"]["codes"]["properties"]["images"], set()),
    # the plan's sampling protocol of a backbone (its values become RunOptions / SamplingConfig flags)
    (SamplingProtocol, DEFS["backbone"]["properties"]["sampling_protocol"], set()),
]


# Schema keys the plan turns into dataclass fields (tensorar.plan.lengths: epochs -> steps).
PLAN_KEYS = {TrainOptions: ("epochs",)}


def bounds(prop: dict) -> dict:
    """minimum / maximum / exclusiveMinimum of a property (of its items too, for per-part values)."""
    return {k: prop[k] for k in ("minimum", "maximum", "exclusiveMinimum") if k in prop}


@pytest.mark.parametrize("cls, schema, unset", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_schema_and_dataclass_declare_the_same_knobs(cls, schema, unset):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    props = {k: v for k, v in schema["properties"].items() if k not in PLAN_KEYS.get(cls, ())}
    assert set(props) <= set(fields), f"schema keys without a {cls.__name__} field: {set(props) - set(fields)}"
    assert set(fields) - set(props) == unset, f"{cls.__name__} fields missing from the schema"
    for name, prop in props.items():
        f = fields[name]
        if f.default is not dataclasses.MISSING and "default" in prop:
            assert prop["default"] == f.default, f"{name}: schema default {prop['default']} vs {f.default}"
        meta = f.metadata
        want = {"minimum": meta.get("min"), "maximum": meta.get("max"), "exclusiveMinimum": meta.get("above")}
        want = {k: v for k, v in want.items() if v is not None}
        assert {k: float(v) for k, v in bounds(prop).items()} == {k: float(v) for k, v in want.items()}, name
        if meta.get("choices") is not None:
            assert tuple(prop["enum"]) == tuple(meta["choices"]), name
        if meta.get("per_part"):  # one value or a list: the same bounds on every item
            assert {k: float(v) for k, v in bounds(prop["items"]).items()} == {k: float(v) for k, v in want.items()}


def test_enums_are_the_registries():
    backbone = DEFS["backbone"]["properties"]
    assert backbone["family"]["enum"] == list(FAMILIES) and backbone["family"]["default"] == DEFAULT_FAMILY
    assert DEFS["tokenizer"]["properties"]["preset"]["enum"] == [p for f in TOKENIZERS.values() for p in f.presets]
    assert DEFS["variant"]["properties"]["schedule"]["enum"] == list(SCHEDULES)
    assert DEFS["variant"]["properties"]["loss_weighting"]["enum"] == list(LOSS_WEIGHTINGS)
    assert backbone["paper_row"]["enum"] == [*PAPER_ROWS, *T2I_PAPER_ROWS, None]
    by_family = {rule["if"]["properties"]["family"]["const"]: rule["then"]["properties"]["preset"]["enum"]
                 for rule in DEFS["backbone"]["allOf"][1:]}
    assert by_family == {name: [*fam.presets, None] for name, fam in FAMILIES.items()}


def default_of(cls, name: str):
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def test_stage_defaults_the_schema_restates():
    """Config keys that set a stage option declare the option's default (one value, not 256 here and 64
    in the stage)."""
    props = SCHEMA["properties"]
    assert props["diagnostics"]["properties"]["num_samples"]["default"] == default_of(DiagnoseOptions, "num_samples")
    for key in ("batch_size", "warmup", "repeats"):
        assert props["timing"]["properties"][key]["default"] == default_of(TimingOptions, key), key
    assert props["evaluation"]["properties"]["sample_batch_size"]["default"] == default_of(RunOptions, "batch_size")
    assert props["evaluation"]["properties"]["feature_batch_size"]["default"] == default_of(FeatureOptions, "batch_size")
    assert props["evaluation"]["properties"]["bootstrap_replicates"]["default"] == default_of(BootstrapOptions, "bootstrap")
    dataset = props["dataset"]["properties"]
    assert [dataset[k]["default"] for k in ("image_size", "val_fraction", "split_seed")] == \
        [default_of(DigitsOptions, k) for k in ("image_size", "val_fraction", "seed")]
    for key in ("num_train", "num_val", "seed"):
        assert props["captions"]["properties"][key]["default"] == default_of(CaptionsOptions, key), key


KNOWN_KEYWORDS = {"$ref", "$defs", "$schema", "description", "type", "properties", "additionalProperties", "required",
                  "default", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "items",
                  "minItems", "minProperties", "pattern", "propertyNames", "oneOf", "allOf", "not", "if", "then", "else"}


def walk(node, path="schema"):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            child = f"{path}.{key}"
            if key in ("properties", "$defs"):
                for name, sub in value.items():
                    yield from walk(sub, f"{child}.{name}")
            else:
                yield from walk(value, child)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from walk(item, f"{path}[{i}]")


def test_every_schema_node_is_well_formed():
    """A description cut at a comma (an unquoted YAML flow mapping) leaves stray keys behind."""
    for path, node in walk(SCHEMA):
        if any(k in node for k in ("type", "$ref", "enum", "const", "oneOf")) or path.endswith(("]",)):
            stray = set(node) - KNOWN_KEYWORDS
            assert not stray, f"{path}: unknown keys {stray} (a description cut at a comma?)"
        if "description" in node:
            assert isinstance(node["description"], str) and not node["description"].endswith((",", "(")), path


def test_cli_flags_round_trip_the_dataclasses():
    for cls, values in ((SamplingOptions, SamplingOptions(cfg_scale=(1.9, 2.0), top_k=5, greedy=True)),
                        (TrainOptions, TrainOptions(steps=7, keep_steps=(2, 4), dropout=0.0)),
                        (TensorARConfig, TensorARConfig(k=8, schedule="sine")),
                        (SamplingConfig, SamplingConfig(num_samples=3, image_size=12))):
        parser = argparse.ArgumentParser()
        add_arguments(parser, cls)
        assert from_arguments(parser, parser.parse_args(to_arguments(values)), cls) == values


def test_a_bad_value_names_its_flag():
    parser = argparse.ArgumentParser()
    add_arguments(parser, SamplingOptions)
    with pytest.raises(SystemExit):
        from_arguments(parser, parser.parse_args(["--top-p", "1.5"]), SamplingOptions)
    with pytest.raises(ValueError, match=r"top_p \(--top-p\) = 1.5: must be <= 1"):
        SamplingOptions(top_p=1.5)
    with pytest.raises(ValueError, match=r"temperature \(--temperature\) = -1.0: must be > 0"):
        SamplingOptions(temperature=-1.0)
    assert math.isclose(SamplingOptions(cfg_scale=(1.9, 2.0)).part("cfg_scale", 1), 2.0)
