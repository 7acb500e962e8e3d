"""Our model checkpoints (a backbone or a TensorAR model, any family) and the official releases, read
into models: `load_model`, `save_model`.

Our files hold enough to rebuild the model from the file alone (nanoGPT/DiT style):
`{"kind": "backbone"|"tensorar", "family", "model_config", "plugin_config", "model": state_dict, ...}`
plus training state. Files written before families existed have no "family" and are LlamaGen's
(their kind then reads "gpt").
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from tensorar.checkpoint import (
    GENERIC_HINT,
    CheckpointMismatchError,
    extract_state_dict,
    load_state_dict_strict,
    read_checkpoint,
)
from tensorar.errors import InputError
from tensorar.fileio import atomic_torch_save
from tensorar.models.backbone import Backbone
from tensorar.models.registry import DEFAULT_FAMILY, TOKENIZERS, family, tokenizer_family
from tensorar.models.tensorar import TensorAR, TensorARConfig
from tensorar.options import check_fields, option

TOKENIZER_PRESETS = tuple(sorted(p for f in TOKENIZERS.values() for p in f.presets))


def is_ours(contents) -> bool:
    return isinstance(contents, Mapping) and "model_config" in contents


def load_model(
    path: str | os.PathLike,
    family_name: str | None = None,
    preset: str | None = None,
    *,
    block_size: int | None = None,
    allow_unsafe_pickle: bool | None = None,
    use_ema: bool = False,
) -> nn.Module:
    """Rebuild a backbone or TensorAR model from one of our checkpoints, or a backbone from an official
    file (name its family and preset, e.g. load_model("c2i_B_256.pt", "llamagen", "GPT-B"), and for
    LlamaGen at 384 px the token count, block_size=576)."""
    if Path(path).is_dir():  # a transformers model directory (Janus-Pro)
        with folder_errors(path):
            return _load_official(path, family_name, preset, None, block_size=block_size)
    hint = family(family_name).weights_hint if family_name else GENERIC_HINT
    contents = read_checkpoint(path, allow_unsafe_pickle, hint=hint)
    if not is_ours(contents):
        return _load_official(path, family_name, preset, contents, block_size=block_size,
                              allow_unsafe_pickle=allow_unsafe_pickle)
    fam = family(contents.get("family", DEFAULT_FAMILY))
    if family_name is not None and family_name != fam.name:
        raise InputError(f"{path} holds a {fam.name} model, not {family_name}")
    base = fam.model_class(fam.config_class.from_dict(contents["model_config"]))
    model: nn.Module = base
    if contents.get("kind") == "tensorar":
        model = TensorAR(base, TensorARConfig.from_dict(contents["plugin_config"]))
    if use_ema and contents.get("ema") is None:
        raise InputError(f"{path} has no EMA weights (trained without --ema-decay): drop --ema")
    weights = contents["ema"] if use_ema else contents["model"]
    load_state_dict_strict(model, extract_state_dict(weights), str(path))
    model.trained_on = contents.get("data")  # the tokenizer / codes / text encoder it was trained on (or None)
    return model


def _load_official(path, family_name, preset, contents, **kwargs) -> Backbone:
    if family_name is None or preset is None:
        raise InputError(f"{path} is not a tensorar checkpoint: name its backbone family and preset "
                         "(e.g. --family llamagen --preset GPT-B)")
    fam = family(family_name)
    try:
        return fam.load_official(path, preset, contents=contents, **kwargs)
    except KeyError as err:  # a weight the family's official layout must have is absent: another family's file
        raise InputError(f"{path} is not a {fam.name} checkpoint (it has no {err}): another family's file? "
                         f"(--family names the file's backbone family)\n  ({fam.weights_hint})") from None


@contextlib.contextmanager
def folder_errors(path):
    """Around loading a model folder: transformers / safetensors report a damaged or partial download as
    many error types (SafetensorError, OSError, JSONDecodeError, ...) that name no file; ours name the folder."""
    try:
        yield
    except (InputError, FileNotFoundError, CheckpointMismatchError):
        raise
    except Exception as err:
        if isinstance(err, ValueError) and not isinstance(err, (json.JSONDecodeError, UnicodeDecodeError)):
            raise  # our own checks (a preset that does not fit the folder) say what is wrong
        files = ", ".join(sorted(p.name for p in Path(path).iterdir() if p.is_file()))
        raise InputError(f"{path}: the model folder cannot be loaded ({type(err).__name__}: "
                         f"{str(err).strip()[:300] or 'no detail'}; files: {files}). A damaged or partial download? "
                         "Download it again.") from err


def model_checkpoint(model: nn.Module, **extra) -> dict:
    """The dict we save: enough to rebuild the model from the file alone (plus training state)."""
    plugin_config = getattr(model, "plugin_config", None)
    base = model.backbone
    return {
        "kind": "backbone" if plugin_config is None else "tensorar",
        "family": base.family,
        "model_config": base.config.to_dict(),
        "plugin_config": None if plugin_config is None else plugin_config.to_dict(),
        "model": model.state_dict(),
        **extra,
    }


def save_model(path: str | os.PathLike, model: nn.Module, **extra) -> None:
    atomic_torch_save(model_checkpoint(model, **extra), path)


@dataclass(frozen=True, kw_only=True)
class TokenizerSource:
    """An image tokenizer file (extract_codes): ours names its kind and config; a released one needs its preset."""

    vq: str = option(help="tokenizer checkpoint (ours, or LlamaGen's vq_ds16_c2i.pt)")
    vq_preset: str | None = option(None, "architecture of a released tokenizer file, which stores none (VQ-16, "
                                         "LFQ-256)", choices=TOKENIZER_PRESETS)

    def __post_init__(self):
        check_fields(self)

    def load(self, device="cpu") -> nn.Module:
        return load_tokenizer(self.vq, self.vq_preset, device=device)


def load_tokenizer(path: str | os.PathLike, preset: str | None = None, device="cpu") -> nn.Module:
    """An image tokenizer (VQ or LFQ) in eval mode: ours (the file names its kind) or a released file
    (name its preset: VQ-16, LFQ-256, ...)."""
    if preset is not None:
        with folder_errors(path) if Path(path).is_dir() else contextlib.nullcontext():
            return tokenizer_family(preset).load(path, preset=preset, device=device)
    contents = read_checkpoint(path)
    if not isinstance(contents, Mapping) or "config" not in contents:  # a released file stores no config
        raise InputError(f"{path} has no 'config': a released tokenizer file needs its preset, --vq-preset VQ-16 "
                         "(LlamaGen's vq_ds16_c2i.pt) or --vq-preset LFQ-256 (Open-MAGVIT2's imagenet_256_L.ckpt "
                         "or AR_256_*.ckpt)")
    kind = contents.get("tokenizer", "vq")
    if kind not in TOKENIZERS:
        raise ValueError(f"{path}: unknown tokenizer kind {kind!r}; known: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[kind].load(path, device=device)
