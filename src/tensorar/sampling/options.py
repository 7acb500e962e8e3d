"""The typed inputs of the stages that load a model (sample, sample_prompts, time_sampling, diagnose) and
of the caption encoder: which model and tokenizer, which text encoder, how the run is placed and how a
timing job runs. Their flags are derived from these fields (`tensorar.options.add_arguments`) and the
workflow's argument lists are written from the same dataclasses (`to_arguments`, plan/jobs.py), so each
default is stated here once."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tensorar.models.conditioning import TEXT_ENCODERS, text_encoder
from tensorar.models.registry import FAMILIES
from tensorar.options import check_fields, option


@dataclass(frozen=True, kw_only=True)
class ModelSource:
    """A backbone or TensorAR checkpoint and its image tokenizer. Our checkpoints record their family,
    preset and size; an official file needs `family` and `preset` (and a LlamaGen 384 px one its
    `block_size`)."""

    ckpt: str = option(help="backbone or TensorAR checkpoint (ours), or an official file / folder")
    family: str | None = option(None, "backbone family of an official checkpoint (ours record theirs)",
                                choices=tuple(sorted(FAMILIES)))
    preset: str | None = option(None, "preset of an official checkpoint, e.g. GPT-B, GPT-XL, Janus-Pro-7B")
    block_size: int | None = option(None, "token count of an official LlamaGen file (576 for the 384 px "
                                          "models; default 256)", min=1)
    ema: bool = option(False, "use the EMA weights stored in our checkpoint")
    vq: str | None = option(None, "image tokenizer checkpoint (VQ or LFQ; a Janus-Pro folder for Janus-VQ16)")
    vq_preset: str | None = option(None, "preset of an official tokenizer file (VQ-16, LFQ-256, Janus-VQ16)")

    def __post_init__(self):
        check_fields(self)

    def load_model(self, device: torch.device | str):
        """The model in eval mode on `device` (strict loading, tensorar.models.loading)."""
        from tensorar.models.loading import load_model

        model = load_model(self.ckpt, self.family, self.preset, block_size=self.block_size, use_ema=self.ema)
        return model.to(device).eval()

    def load_tokenizer(self, device: torch.device | str):
        from tensorar.models.loading import load_tokenizer

        return load_tokenizer(self.vq, self.vq_preset, device=device)


@dataclass(frozen=True, kw_only=True)
class TextEncoderSpec:
    """The text encoder a caption-conditioned model was trained with (encode_captions, sample_prompts)."""

    encoder: str = option(help="text encoder", choices=TEXT_ENCODERS)
    encoder_path: str | None = option(None, "its model folder (t5: flan-t5-xl; janus: the Janus-Pro folder)")
    dim: int = option(32, "toy encoder: feature width", min=1)
    max_tokens: int = option(16, "toy encoder: caption positions", min=1)
    prompt_length: int | None = option(None, "janus encoder: prompt positions (default: the model's "
                                             "prompt_length, else 256)", min=1)

    def __post_init__(self):
        check_fields(self)

    def build(self, device, model_prompt_length: int | None = None):
        """The encoder (tensorar.models.conditioning.text_encoder); a Janus encoder's prompt length is the
        spec's, else the model's, else text_encoder's default."""
        length = self.prompt_length or model_prompt_length
        extra = {"prompt_length": length} if length else {}
        return text_encoder(self.encoder, self.encoder_path, dim=self.dim, max_tokens=self.max_tokens,
                            device=device, **extra)


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Where and how a model runs; none of it changes which samples are drawn."""

    device: str = option("auto", "auto: CUDA when available", choices=("auto", "cpu", "cuda"))
    dtype: str = option("fp32", "autocast dtype of the AR model (bf16: CUDA only); the tokenizer always "
                                "decodes in fp32", choices=("fp32", "bf16"))
    batch_size: int = option(32, "images per batch and process; does not change the samples", min=1)
    tf32: str | None = option(None, "TF32 matmuls and convolutions on CUDA: on (LlamaGen's official evaluation) "
                                    "or off; unset: torch's defaults; no effect on CPU", choices=("on", "off"))

    def __post_init__(self):
        check_fields(self)

    def apply_tf32(self, device: torch.device) -> None:
        """Set torch's TF32 switches for this process (CUDA only; a CPU run has no TF32)."""
        if self.tf32 is not None and device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.tf32 == "on"

    def torch_device(self) -> torch.device:
        """The device of a single-process stage (stages run under torchrun take theirs from
        `distributed.init_distributed`)."""
        return torch.device("cuda" if self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())
                            else "cpu")

    def amp_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype (None: fp32); bf16 off CUDA is refused."""
        if self.dtype == "bf16" and device.type != "cuda":
            raise SystemExit("--dtype bf16 needs CUDA; on CPU sampling runs in fp32")
        return torch.bfloat16 if self.dtype == "bf16" else None


@dataclass(frozen=True, kw_only=True)
class TimingOptions:
    """How time_sampling times its models: rounds of one batch per model, interleaved."""

    batch_size: int = option(128, "images per timed batch (the paper's Fig. 4 batch, Sec. 3.1.3)", min=1)
    warmup: int = option(2, "rounds run first and discarded", min=0)
    repeats: int = option(10, "timed rounds", min=1)
    order_seed: int = option(0, "seed of the per-round model order")
    threads: int | None = option(None, "torch intra-op threads (default: torch's, i.e. every core it sees)", min=1)
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self):
        check_fields(self)

    @property
    def rounds(self) -> int:
        return self.warmup + self.repeats


@dataclass(frozen=True, kw_only=True)
class DiagnoseOptions:
    """What diagnose reads besides the TensorAR checkpoint, and how many samples it draws."""

    base: str = option(help="base checkpoint (ours or official) for the reference NLL")
    codes: str = option(help="held-out codes directory (tensorar extract_codes); augmentation 0 is used")
    conditions: str | None = option(None, "text-image codes: their conditions folder (encode_captions)")
    num_samples: int = option(256, "samples per draft-noise mode for the copy rate", min=1)
    seed: int = option(0, "seed of the draft noise and of the samples")
    max_items: int | None = option(None, "use only the first N held-out items", min=1)

    def __post_init__(self):
        check_fields(self)
