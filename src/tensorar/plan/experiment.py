"""The typed experiment: a schema-validated workflow config parsed once into frozen dataclasses, and the
runs it asks for. After `parse_experiment` nothing reads the config mapping again; a bad value fails
here, naming its key, not hours later in a job.

    experiment = parse_experiment(config)          # config/config.yaml or config/paper.yaml, validated
    experiment.backbones["GPT-toy-S"].sampling     # -> SamplingOptions(cfg_scale=1.0, ...)
    experiment.tensorar_runs()                     # -> [("GPT-toy-S", "default"), ...]

Run settings are the library's own option dataclasses (`SamplingOptions`, `TrainOptions`,
`TensorARConfig`, `TokenizerTrainOptions`, `ClassifierTrainOptions`); the workflow's other settings
are small dataclasses (the data and released files read: `tensorar.plan.inputs`; tables, timing, claims,
cluster: below), whose defaults are the schema's (the
schema fills them before parsing, so none is restated here; only optional paths default to None, because
the validator does not fill defaults that sit in a shared `$ref`). Cross references the schema cannot
express are checked by `tensorar.plan.checks`. Lists become tuples (the dataclasses are frozen).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from tensorar.data.codes import CodeViews
from tensorar.decoding.sampling import SamplingOptions
from tensorar.models.backbone import Family
from tensorar.models.registry import family
from tensorar.models.tensorar import TensorARConfig
from tensorar.options import from_mapping
from tensorar.plan.inputs import (
    Benchmark,
    Captions,
    Dataset,
    Evaluation,
    SamplingProtocol,
    TextEncoder,
    Tokenizer,
)
from tensorar.plan.lengths import training_options
from tensorar.resources.strategy import STRATEGY_FIELDS
from tensorar.training.options import ClassifierTrainOptions, TokenizerTrainOptions, TrainOptions


@dataclass(frozen=True)
class Backbone:
    """One backbone: its family, the base model (an official checkpoint or trained here) and how it samples.
    A pending backbone (a table row we do not run) has only its label, family and reason."""

    key: str
    label: str
    family: Family
    pending: str | None
    paper_row: str | None
    params: str | None
    tokenizer: str | None = None
    text_encoder: str | None = None
    preset: str | None = None
    checkpoint: str | None = None  # the official base; None: trained here with base_training
    block_size: int | None = None
    image_size: int | None = None
    eval_image_size: int | None = None
    base_training: TrainOptions | None = None
    finetuning: TrainOptions | None = None  # of its TensorAR runs and control: `finetuning`, steps resolved
    # The sharding settings `finetuning` sets itself (the memory plan picks the others on GPU jobs)
    finetuning_strategy_set: tuple[str, ...] = ()
    sampling: SamplingOptions | None = None
    sampling_protocol: SamplingProtocol = SamplingProtocol()
    resources: dict = field(default_factory=dict)  # stage -> overrides of the stage's resources

    @property
    def official_base(self) -> bool:
        return bool(self.checkpoint)

    @property
    def text(self) -> bool:
        return self.family.condition != "class"

    @property
    def data(self) -> str:
        """The training data it needs: images (class-conditional) or captions."""
        return "captions" if self.text else "images"


@dataclass(frozen=True)
class ComparisonTable:
    """Table 2, 3 or 4: per backbone the base, the fine-tune control and +TensorAR (one variant)."""

    backbones: tuple[str, ...]
    variant: str


@dataclass(frozen=True)
class Ablation:
    """Table 5, 6a or 6b: TensorAR variants on one backbone."""

    backbone: str
    variants: tuple[str, ...]


@dataclass(frozen=True)
class TrainingCurve:
    """Fig. 5: FID of TensorAR and its control at kept training steps."""

    backbone: str
    variant: str
    steps: tuple[int, ...]
    num_samples: int


@dataclass(frozen=True)
class Tables:
    table2: ComparisonTable
    table3: ComparisonTable
    table4: ComparisonTable
    table5: Ablation
    table6a: Ablation
    table6b: Ablation
    fig5: TrainingCurve


@dataclass(frozen=True)
class Timing:
    batch_size: int
    warmup: int
    repeats: int


@dataclass(frozen=True)
class OurRuns:
    """Ours (claims.md): extra variants on one backbone, and an N-times longer fine-tuning."""

    backbone: str | None
    variants: tuple[str, ...]
    longer_finetuning: int


@dataclass(frozen=True)
class ClaimSettings:
    level: float
    bootstrap: int
    seed: int
    modest_latency: float
    ours: OurRuns

    def statistics(self) -> dict:
        """The settings claims.md is computed with (the manifest's `settings`)."""
        return {"level": self.level, "bootstrap": self.bootstrap, "seed": self.seed,
                "modest_latency": self.modest_latency}


@dataclass(frozen=True)
class Resources:
    """Compute per stage: `default` < the stage's < a backbone's override of the stage."""

    default: dict
    stages: dict


@dataclass(frozen=True)
class ClusterSettings:
    """How jobs use a Slurm cluster (tensorar.plan.cluster); local runs ignore them."""

    train_signal_lead: int | None  # seconds before the time limit a training job gets SIGTERM
    cpu_jobs: str  # submit | local: where jobs without a GPU run
    cpu_partition: str | None = None
    geneval_constraint: str | None = None  # Slurm node feature of the GenEval detector's GPU


@dataclass(frozen=True)
class Experiment:
    name: str
    config_hash: str  # of the validated config: the tables' provenance
    seeds: tuple[int, ...]
    dataset: Dataset
    captions: Captions
    text_encoders: dict[str, TextEncoder]
    tokenizers: dict[str, Tokenizer]
    codes: dict[str, CodeViews]  # by data: images, captions
    evaluation: Evaluation
    benchmarks: dict[str, Benchmark]
    diagnostics_samples: int
    backbones: dict[str, Backbone]
    variants: dict[str, TensorARConfig]
    tables: Tables
    timing: Timing
    claims: ClaimSettings
    resources: Resources
    cluster: ClusterSettings

    @property
    def toy(self) -> bool:
        return self.dataset.name == "digits"

    def prompts_made_here(self, benchmark: str) -> bool:
        """The toy's prompt sets are made by make_captions (and the toy GenEval's split into seen and
        held-out compositions with them); official ones are config paths."""
        return not self.benchmarks[benchmark].prompts and self.captions.name == "captioned_digits"

    # ----- which runs exist -----
    def run_backbones(self) -> list[str]:
        """Table 2 backbones that are run (not pending), in table order."""
        return [b for b in self.tables.table2.backbones if not self.backbones[b].pending]

    def text_backbones(self, table: str | None = None) -> list[str]:
        """Tables 3-4 backbones that are run (not pending): of one table, or of both."""
        tables = (table,) if table else ("table3", "table4")
        names = [b for t in tables for b in getattr(self.tables, t).backbones if not self.backbones[b].pending]
        return list(dict.fromkeys(names))

    def tensorar_runs(self) -> list[tuple[str, str]]:
        """(backbone, variant) of every TensorAR run any table, figure or claims.md needs, without duplicates."""
        t = self.tables
        runs = [(b, t.table2.variant) for b in self.run_backbones()]
        ours = self.claims.ours
        runs += [(ours.backbone, v) for v in ours.variants]
        runs += [(b, getattr(t, name).variant) for name in ("table3", "table4") for b in self.text_backbones(name)]
        for ablation in (t.table5, t.table6a, t.table6b):
            runs += [(ablation.backbone, v) for v in ablation.variants]
        runs.append((t.fig5.backbone, t.fig5.variant))
        return list(dict.fromkeys(runs))

    def timed_runs(self) -> list[tuple[str, str]]:
        """(backbone, method) of every timed model (Fig. 4 and claim 6: Table 2's rows; Table 6b and claim 5:
        its rows), first seed only: the weights do not change a forward's cost. The base comes first and the
        equal-steps control second on every backbone: claims.md's A/A check compares them."""
        variant = self.tables.table2.variant
        runs = [(b, m) for b in self.run_backbones() for m in ("base", "finetune", f"tensorar-{variant}")]
        t6b = self.tables.table6b
        runs += [(t6b.backbone, m) for m in ("base", "finetune", *(f"tensorar-{v}" for v in t6b.variants))]
        return list(dict.fromkeys(runs))

    def timed_models(self, backbone: str) -> list[str]:
        """The methods of one backbone timed together, interleaved, in its one timing job (base first)."""
        return [m for b, m in self.timed_runs() if b == backbone]

    def timed_backbones(self) -> list[str]:
        return list(dict.fromkeys(b for b, _ in self.timed_runs()))

    def variants_of(self, backbone: str) -> list[str]:
        return [v for b, v in self.tensorar_runs() if b == backbone]

    def variant_label(self, name: str) -> str:
        v = self.variants[name]
        # Settings other than the paper's (loss weights, self-drafting) are named, so no two rows share a label.
        weights = "" if v.loss_weighting == "rdm" else f", {v.loss_weighting} loss weights"
        drafts = ", self-drafting (ours)" if v.draft_source == "self" else ""
        return f"k={v.k}, d={v.depth}, {v.schedule}{weights}{drafts}"

    def longer_methods(self) -> tuple[str, str] | None:
        """(control, TensorAR) methods of our longer fine-tuning, or None when it is off."""
        times = self.claims.ours.longer_finetuning
        return (f"finetune-x{times}", f"tensorar-{self.tables.table2.variant}-x{times}") if times > 1 else None


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------
def _typed(cls, values: dict | None, where: str):
    """`from_mapping` (unknown keys named with `where`) with lists as tuples."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in (values or {}).items()}
    try:
        return from_mapping(cls, values, where)
    except TypeError as err:  # a key the schema did not require or default
        raise ValueError(f"{where}: {err}") from None


def _backbone(key: str, spec: dict, finetuning: dict, counts: dict) -> Backbone:
    where = f"backbones.{key}"
    values = dict(spec)
    values["family"] = family(values["family"])
    values["resources"] = dict(values.get("resources") or {})
    data = "captions" if values["family"].condition != "class" else "images"
    if values.get("sampling") is not None:
        values["sampling"] = from_mapping(SamplingOptions, values["sampling"], f"{where}.sampling")
    values["sampling_protocol"] = _typed(SamplingProtocol, values.get("sampling_protocol"), f"{where}.sampling_protocol")
    if values.get("base_training") is not None:
        values["base_training"] = training_options(values["base_training"], f"{where}.base_training", data, counts)
    if not values.get("pending"):
        values["finetuning"] = training_options(finetuning, "finetuning", data, counts)
        values["finetuning_strategy_set"] = tuple(k for k in STRATEGY_FIELDS if k in finetuning)
    return _typed(Backbone, {"key": key, **values}, where)


def _tables(spec: dict) -> Tables:
    comparison = {t: _typed(ComparisonTable, spec[t], f"tables.{t}") for t in ("table2", "table3", "table4")}
    ablations = {t: _typed(Ablation, spec[t], f"tables.{t}") for t in ("table5", "table6a", "table6b")}
    return Tables(**comparison, **ablations, fig5=_typed(TrainingCurve, spec["fig5"], "tables.fig5"))


def parse_experiment(config: dict) -> Experiment:
    """The typed experiment of a schema-validated config (defaults filled). Cross references between
    its parts are `tensorar.plan.checks.check_references`'s."""
    ev = dict(config["evaluation"])
    ev["classifier"] = from_mapping(ClassifierTrainOptions, ev.get("classifier"), "evaluation.classifier")
    claims = dict(config["claims"])
    claims["ours"] = _typed(OurRuns, claims["ours"], "claims.ours")
    dataset = _typed(Dataset, config["dataset"], "dataset")
    captions = _typed(Captions, config["captions"], "captions")
    counts = {"images": dataset.train_items, "captions": captions.count()}
    return Experiment(
        name=config["experiment"],
        config_hash=hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12],
        seeds=tuple(config["seeds"]),
        dataset=dataset,
        captions=captions,
        text_encoders={k: _typed(TextEncoder, {"key": k, **v}, f"text_encoders.{k}")
                       for k, v in (config.get("text_encoders") or {}).items()},
        tokenizers={k: _typed(Tokenizer, {"key": k, **v, "training": from_mapping(
            TokenizerTrainOptions, v.get("training"), f"tokenizers.{k}.training")}, f"tokenizers.{k}")
            for k, v in config["tokenizers"].items()},
        codes={data: _typed(CodeViews, config["codes"][data], f"codes.{data}") for data in ("images", "captions")},
        evaluation=_typed(Evaluation, ev, "evaluation"),
        benchmarks={k: _typed(Benchmark, {"key": k, **v}, f"benchmarks.{k}")
                    for k, v in config["benchmarks"].items()},
        diagnostics_samples=config["diagnostics"]["num_samples"],
        backbones={k: _backbone(k, v, config["finetuning"], counts) for k, v in config["backbones"].items()},
        variants={k: from_mapping(TensorARConfig, v, f"variants.{k}") for k, v in config["variants"].items()},
        tables=_tables(config["tables"]),
        timing=_typed(Timing, config["timing"], "timing"),
        claims=_typed(ClaimSettings, claims, "claims"),
        resources=Resources(default=dict(config["resources"]["default"]),
                            stages={k: dict(v) for k, v in config["resources"].items() if k != "default"}),
        cluster=_typed(ClusterSettings, config["cluster"], "cluster"),
    )
