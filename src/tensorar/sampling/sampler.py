"""The sampler: a model with its tokenizer's decoder and how it draws tokens, on one device and dtype.
Sample i's draws depend only on (seed, i) (tensorar.decoding.images), so what it makes does not depend
on the batch size or the world size.

Post-processing is the backbone family's official evaluation script's (LlamaGen's `sample_c2i_ddp.py`,
Open-MAGVIT2's `sample.py`), so numbers compare with theirs: tokens -> tokenizer decode -> bicubic
resize to the eval size (when it differs from the decoded size) -> clamp(127.5 x + offset, 0, 255) ->
uint8 NHWC, offset 128 for LlamaGen and 127.5 for Open-MAGVIT2 (`Family.pixel_offset`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from tensorar.data.conditions import check_trained_with
from tensorar.decoding.images import DecodeFn, StageTimer, autocast, decode_tokens, generate_tokens, to_uint8_nhwc
from tensorar.decoding.sampling import SamplingConfig, SamplingOptions
from tensorar.fileio import content_id
from tensorar.models.registry import family
from tensorar.reporting import image_grids
from tensorar.sampling.options import ModelSource


def is_tensorar(model: nn.Module) -> bool:
    return getattr(model, "plugin_config", None) is not None


@dataclass
class Sampler:
    """`model` (a backbone or TensorAR, eval mode, on `device`) sampled with `options`; with `amp_dtype` the
    AR model is cast to it and runs under its autocast, the tokenizer decodes in fp32."""

    model: nn.Module
    decode: DecodeFn
    options: SamplingOptions
    device: torch.device
    amp_dtype: torch.dtype | None = None
    batch_size: int = 32

    def __post_init__(self):
        if self.amp_dtype is not None:
            # The official evaluation scripts cast the AR model to their precision (LlamaGen's sample_c2i_ddp
            # `.to(dtype=precision)`), so its weights and the KV cache, which takes their dtype, are bf16;
            # the heads still return fp32 logits and tokens are drawn in fp32. The memory plan counts the
            # same (tensorar.resources.memory.sampling_peak).
            self.model.to(self.amp_dtype)

    @property
    def pixel_offset(self) -> float:
        return family(self.model.backbone.family).pixel_offset

    def tokens(self, cond, indices: np.ndarray, seed: int, *, compile_step: bool = False,
               return_drafts: bool = False):
        """Tokens (B, T) of samples `indices` under condition `cond` (or (tokens, drafts) with
        `return_drafts`)."""
        with autocast(self.device, self.amp_dtype):
            return generate_tokens(self.model, cond, indices, seed, self.options, self.device,
                                   return_drafts=return_drafts, compile_step=compile_step)

    def pixels(self, tokens: torch.Tensor, image_size: int | None) -> np.ndarray:
        """Tokens (B, T) -> uint8 (B, S, S, 3) at `image_size` (None: the decoded size)."""
        return to_uint8_nhwc(decode_tokens(self.decode, tokens), image_size, self.pixel_offset)

    @torch.no_grad()
    def class_images(self, labels: np.ndarray, indices: np.ndarray, cfg: SamplingConfig,
                     timer: StageTimer | None = None, pbar: tqdm | None = None) -> dict[str, np.ndarray]:
        """Samples `indices` with their `labels`, in batches -> {"arr_0": uint8 (n, S, S, 3), "labels",
        "indices", "tokens" (n, T) int32}; `timer` times generation and decoding apart."""
        timer = timer or StageTimer(self.device)
        images, tokens = [], []
        for start in range(0, len(indices), self.batch_size):
            batch = indices[start : start + self.batch_size]
            y = torch.as_tensor(labels[start : start + self.batch_size], device=self.device)
            with timer("generate"):
                batch_tokens = self.tokens(y, batch, cfg.seed, compile_step=cfg.compile_step)
            with timer("decode"):
                images.append(self.pixels(batch_tokens, cfg.image_size))
            tokens.append(batch_tokens.to("cpu", torch.int32).numpy())
            if pbar is not None:
                pbar.update(len(batch))
        return {
            "arr_0": np.concatenate(images),
            "labels": np.asarray(labels, dtype=np.int64),
            "indices": np.asarray(indices, dtype=np.int64),
            "tokens": np.concatenate(tokens),
        }

    @torch.no_grad()
    def write_refinement_strip(self, path: str | Path, labels: np.ndarray, cfg: SamplingConfig,
                               rows: int = image_grids.DRAFT_ROWS, columns: int = image_grids.DRAFT_COLUMNS) -> list[int]:
        """TensorAR refinement strip of the first `rows` samples (the same draws as in the .npz): a row
        per sample, a column per decoding step, and the finished sample last. Returns the steps shown."""
        indices = np.arange(min(rows, cfg.num_samples))
        y = torch.as_tensor(labels[indices], device=self.device)
        tokens, drafts = self.tokens(y, indices, cfg.seed, compile_step=cfg.compile_step, return_drafts=True)
        steps = image_grids.refinement_steps(tokens.shape[1], columns)
        frames, shown = image_grids.refinement_frames(tokens, drafts, steps)  # (B, S + 1, T) each
        B, S1, T = frames.shape
        side = math.isqrt(T)
        # Decoded size (no eval resize), so each token is a whole block of pixels to grey out.
        images = self.pixels(frames.reshape(B * S1, T), None)  # (B * (S + 1), H, W, 3)
        image_grids.write_refinement_strip(path, images, shown.reshape(B * S1, side, side).cpu().numpy(), S1)
        return steps


def load_class_conditional(source: ModelSource, device: torch.device, options: SamplingOptions,
                           drafts: bool = False):
    """(model in eval mode, tokenizer) named by `source`, checked to fit each other; `drafts`: a
    refinement strip is asked for (a TensorAR checkpoint is needed)."""
    model = source.load_model(device)
    backbone = model.backbone
    if not is_tensorar(model) and (options.draft_noise != "none" or drafts):
        raise SystemExit(f"{source.ckpt} is a plain {backbone.family} checkpoint: --draft-noise schedule and "
                         "--drafts-png need a TensorAR checkpoint")
    if backbone.num_classes is None:
        raise SystemExit(f"{source.ckpt} is not class-conditional: sample it from a prompt file "
                         "(tensorar sample_prompts)")
    tokenizer = source.load_tokenizer(device)
    check_trained_with(getattr(model, "trained_on", None), source.ckpt, content_id(source.vq), source.vq)
    if tokenizer.config.codebook_size != backbone.vocab_size:
        raise SystemExit(f"tokenizer {source.vq} has {tokenizer.config.codebook_size} codes but the model's "
                         f"vocabulary is {backbone.vocab_size}: they were not trained together")
    return model, tokenizer


def model_summary(model) -> dict:
    """The "model" block of sample's and time_sampling's JSON: sizes the tables print."""
    backbone = model.backbone
    return {
        "kind": "tensorar" if is_tensorar(model) else "backbone",
        "family": backbone.family,
        "parameters": sum(p.numel() for p in model.parameters()),
        "base_parameters": sum(p.numel() for p in backbone.parameters()),
        "k": model.k,
        "num_tokens": backbone.num_tokens,
        "num_classes": backbone.num_classes,
    }
