"""The training knobs, declared once (the `train` stage's flags and the workflow's `base_training` and
`finetuning` config keys are derived from / checked against these fields)."""
from __future__ import annotations

from dataclasses import dataclass

from tensorar.models.loading import TOKENIZER_PRESETS
from tensorar.models.registry import DEFAULT_FAMILY, FAMILIES
from tensorar.options import check_fields, option
from tensorar.training.sharding import STRATEGIES

MODES = ("base", "finetune", "tensorar")


@dataclass(frozen=True, kw_only=True)
class TrainSource:
    """What a `tensorar train` run starts from besides its codes: the backbone, the mode and the base
    checkpoint (tensorar.training.build.RunSetup holds them for the trainer; `preset` is its `model`).
    Fields in the order the workflow writes them."""

    family: str = option(DEFAULT_FAMILY, "backbone family", choices=tuple(sorted(FAMILIES)))
    preset: str | None = option(None, "the backbone's preset, e.g. GPT-toy-S, GPT-B: what --mode base builds "
                                      "(required there) and what an official --init file holds (ours record theirs)")
    conditions: str | None = option(None, "text-image codes: the conditions folder written by tensorar encode_captions")
    mode: str = option(help="base: a backbone from --preset; finetune / tensorar: from --init", choices=MODES)
    init: str | None = option(None, "base checkpoint for finetune / tensorar: ours or an official file")
    init_preset: str | None = option(None, "preset of an official --init file that is not checked against "
                                           "--preset (default: --preset)")

    def __post_init__(self):
        check_fields(self)
        if self.mode == "base" and not self.preset:
            raise ValueError("--mode base needs --preset PRESET")
        if self.mode != "base" and not self.init:
            raise ValueError(f"--mode {self.mode} needs --init BASE_CHECKPOINT")


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation of one run. The paper's fine-tuning recipe: AdamW (0.9, 0.95), weight decay 0.05 on
    >= 2-D weights, lr 1e-4 for the plug-in and 1e-5 for the base weights, constant after warm-up."""

    steps: int = option(1000, "optimizer steps in total (not per restart)", min=1)
    global_batch_size: int = option(64, "samples per step, summed over all processes", min=1)
    lr_base: float = option(1e-5, "learning rate of the base weights (every mode)", min=0.0)
    lr_plugin: float = option(1e-4, "learning rate of the plug-in modules (tensorar mode)", min=0.0)
    warmup_steps: int = option(0, "linear lr warm-up from 0 (0: none)", min=0)
    weight_decay: float = option(0.05, "AdamW weight decay, on >= 2-D weights only", min=0.0)
    grad_clip: float = option(1.0, "max gradient norm (0: no clipping)", min=0.0)
    ema_decay: float = option(0.0, "EMA of the weights (0: off), e.g. 0.9999", min=0.0, max=0.999999999)
    dropout: float | None = option(None, "token/resid/ffn dropout (default: the preset's or the --init model's)",
                                   min=0.0, max=1.0)
    ckpt_every: int = option(1000, "checkpoint every N steps", min=1)
    keep_steps: tuple[int, ...] = option((), "steps whose checkpoints are always kept (never pruned)")
    log_every: int = option(10, "a metrics.jsonl line every N steps", min=1)
    seed: int = option(0, "seed of the data order, noise, dropout and initial weights")
    # How a step is spread over memory (ours; the memory plan picks them per job): none changes what a
    # step computes beyond float reduction order, except that dropout masks follow the micro-batches.
    strategy: str = option("ddp", "ddp: a full replica per process; fsdp: parameters, gradients and optimizer "
                           "states sharded per transformer block (FSDP2)", choices=STRATEGIES)
    activation_checkpointing: bool = option(False, "recompute each transformer block's activations in the "
                                            "backward pass instead of storing them")
    micro_batch_size: int = option(0, "samples per forward/backward pass on each process, gradients "
                                   "accumulated up to the per-process batch (0: the whole per-process batch)", min=0)

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class TokenizerTrainOptions:
    """Training of a toy image tokenizer (`tensorar train_tokenizer`; the workflow's `tokenizers.<t>.training`)."""

    steps: int = option(400, "optimizer steps", min=1)
    batch_size: int = option(32, "images per step", min=1)
    lr: float = option(2e-3, "peak learning rate (cosine decay to 0)", above=0.0)
    restart_every: int = option(25, "VQ: re-seed codes unused in the last 65536 tokens every N steps (0: never)",
                                min=0)
    seed: int = option(0, "seed of the initial weights and the batches")

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class TokenizerSetup:
    """Which toy tokenizer `tensorar train_tokenizer` trains, on images of which side."""

    preset: str = option("VQ-toy", "tokenizer preset", choices=TOKENIZER_PRESETS)
    image_size: int = option(16, "images are resized + center-cropped to this", min=1)

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class ClassifierSetup:
    """The toy feature network's input side, and where `tensorar train_classifier` trains it."""

    image_size: int = option(16, "classifier input side (images are resized)", min=1)
    device: str = option("cpu", "cpu or cuda (the network is tiny: cpu is fine)")

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class ClassifierTrainOptions:
    """Training of the toy feature network (`tensorar train_classifier`; `evaluation.classifier`)."""

    steps: int = option(300, "optimizer steps", min=1)
    batch_size: int = option(64, "images per step", min=1)
    lr: float = option(3e-3, "peak learning rate", above=0.0)
    seed: int = option(0, "seed of the initial weights, augmentations and batches")

    def __post_init__(self):
        check_fields(self)
