"""What an experiment reads: its datasets, text encoders, tokenizers, code augmentations, evaluation
inputs and benchmark models, as typed parts of the experiment (`tensorar.plan.experiment` parses them;
defaults are the schema's)."""
from __future__ import annotations

from dataclasses import dataclass

from tensorar.models.registry import tokenizer_family
from tensorar.training.options import ClassifierTrainOptions, TokenizerTrainOptions


@dataclass(frozen=True)
class SamplingProtocol:
    """How a backbone's sample, sample_prompts and time_sampling jobs run (`backbones.<b>.sampling_protocol`;
    the paper config's values are the official evaluation scripts'): none of it changes which tokens are
    drawn in exact arithmetic, all of it changes the rounding, the speed, and (labels) which classes."""

    dtype: str = "fp32"  # autocast dtype of the AR model (RunOptions.dtype)
    tf32: bool = False  # TF32 matmuls on CUDA (RunOptions.tf32 "on"; False: torch's defaults)
    labels: str = "balanced"  # class labels (SamplingConfig.labels); class-conditional backbones only
    compile_step: bool = False  # the compiled per-token step (SamplingConfig.compile_step)

    @property
    def dtype_bytes(self) -> int:
        return 2 if self.dtype == "bf16" else 4

    def label(self) -> str:
        """One line for a table: e.g. "bf16, TF32, random labels, eager"."""
        return ", ".join([self.dtype, *(["TF32"] if self.tf32 else []), f"{self.labels} labels",
                          "compiled step" if self.compile_step else "eager"])


@dataclass(frozen=True)
class Dataset:
    name: str  # digits (made here) or imagenet (the folders below)
    image_size: int
    val_fraction: float
    split_seed: int
    train_dir: str | None = None  # null paths: the schema's $ref defaults are not filled in
    val_dir: str | None = None
    train_items: int | None = None  # training images, for lengths in epochs


@dataclass(frozen=True)
class Captions:
    name: str  # captioned_digits (made here) or files (the paths below)
    num_train: int
    num_val: int
    seed: int
    train: str | None = None
    val: str | None = None
    train_items: int | None = None  # files: training image-caption pairs, for lengths in epochs
    seen_fraction: float = 0.2  # captioned_digits: toy GenEval prompts per tag not held out of the captions

    def count(self) -> int | None:
        return self.num_train if self.name == "captioned_digits" else self.train_items


@dataclass(frozen=True)
class TextEncoder:
    key: str
    kind: str  # toy | t5 | janus
    dim: int
    max_tokens: int
    prompt_length: int
    path: str | None = None


@dataclass(frozen=True)
class Tokenizer:
    key: str
    preset: str
    data: str  # images | captions
    training: TokenizerTrainOptions
    checkpoint: str | None = None  # a released file; None: trained here with `training`

    @property
    def downsample(self) -> int:
        return tokenizer_family(self.preset).presets[self.preset].downsample


@dataclass(frozen=True)
class Evaluation:
    features: str  # inception | toy
    reference_split: str
    reference_max_images: int | None
    classifier: ClassifierTrainOptions
    num_samples: int
    sample_batch_size: int
    feature_batch_size: int
    bootstrap_replicates: int
    inception_weights: str | None = None
    reference: str | None = None  # a released reference batch; None: built here


@dataclass(frozen=True)
class Benchmark:
    """GenEval or DPG-Bench: the prompt set and the model that answers it (toy or official)."""

    key: str
    detector: str  # toy | official
    images_per_prompt: int
    prompts: str | None = None  # None: the toy's, made by make_captions
    questions: str | None = None  # dpg
    detector_config: str | None = None  # geneval
    detector_checkpoint: str | None = None
    clip_weights: str | None = None
    model_dir: str | None = None  # dpg
    python: str | None = None
