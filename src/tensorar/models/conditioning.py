"""Caption text -> a backbone's condition: the text encoders by name, one per kind of text-conditioned
backbone. Training data (`tensorar encode_captions`) and prompt-file sampling (`tensorar sample_prompts`)
use the same encoder, so a model sees at sampling time exactly the features it was trained on.

    "toy"    ours: tensorar.toy.text (fixed word vectors; the embedded toy, LlamaGen t2i family)
    "t5"     LlamaGen's flan-t5-xl features (tensorar.data.text_features), from a local model folder
    "janus"  Janus-Pro's chat prompt, tokenised by the model folder's own processor

Each encoder has `encode(captions) -> Condition` and `identity()` (what makes its output: it enters the
identity of every artefact built from the features).
"""
from __future__ import annotations

from pathlib import Path

import torch

from tensorar.fileio import folder_identity
from tensorar.toy.text import ToyTextEncoder

TEXT_ENCODERS = ("toy", "t5", "janus")


def _folder_identity(path: Path) -> list:
    """A model folder's identity (tensorar.fileio.folder_identity: small files hashed, weights by size + mtime)."""
    return folder_identity(path)


class T5Encoder:
    def __init__(self, path: str | Path, device="cpu"):
        from tensorar.data.text_features import T5TextEncoder

        self.path = Path(path)
        dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
        self.model = T5TextEncoder(self.path, device=device, dtype=dtype)

    def identity(self) -> dict:
        return {"encoder": "t5", "files": _folder_identity(self.path)}

    def encode(self, captions: list[str]):
        return {k: v.cpu() for k, v in self.model.encode(list(captions)).items()}


class JanusPromptEncoder:
    def __init__(self, path: str | Path, prompt_length: int = 256):
        from transformers import AutoProcessor

        from tensorar.models.janus import model_directory

        self.path = model_directory(path)
        self.prompt_length = prompt_length
        self.processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)

    def identity(self) -> dict:
        tokenizer_files = [f for f in _folder_identity(self.path) if "token" in f[0] or "processor" in f[0]]
        return {"encoder": "janus", "prompt_length": self.prompt_length, "files": tokenizer_files}

    def encode(self, captions: list[str]):
        from tensorar.models.janus import prompt_condition

        return prompt_condition(list(captions), self.processor, self.prompt_length)


def text_encoder(kind: str, path: str | Path | None = None, *, dim: int = 32, max_tokens: int = 16,
                 prompt_length: int = 256, device="cpu"):
    """The encoder `kind` (TEXT_ENCODERS); `path`: the model folder of "t5" and "janus"."""
    if kind == "toy":
        return ToyTextEncoder(dim, max_tokens)
    if kind in ("t5", "janus") and path is None:
        raise ValueError(f"text encoder {kind!r} needs the model folder (--encoder-path)")
    if kind == "t5":
        return T5Encoder(path, device)
    if kind == "janus":
        return JanusPromptEncoder(path, prompt_length)
    raise ValueError(f"unknown text encoder {kind!r}; known: {', '.join(TEXT_ENCODERS)}")
