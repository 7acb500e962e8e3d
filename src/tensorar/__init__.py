"""tensorar: reproduction library for TensorAR (next-tensor prediction for AR image generation).

Public API (README, "Python API"):
    GPT, GPTConfig, GPT_MODELS, gpt_config      LlamaGen's GPT (c2i, t2i) and its presets
    VQModel, VQConfig, VQ_MODELS, vq_config     LlamaGen's VQ tokenizer and its presets
    TensorAR, TensorARConfig                    the next-tensor plug-in around any backbone
    SamplingOptions                             how tokens are drawn (CFG, temperature, top-k/p, ...)
    load_model, save_model, load_vq             rebuild + strictly load ours or the official checkpoints
    FAMILIES                                    backbone families by name (tensorar.models.registry)

Package map (docs/architecture.md): models/ (backbones, tokenizers, the plug-in), decoding/ (sampling,
the generation loop), data/, training/, evaluation/, reporting/, plan/ (the experiment plan) and
stages/ (one module per `tensorar <stage>` entry point).
"""
import os as _os

from tensorar.decoding.sampling import SamplingOptions
from tensorar.models.llamagen import GPT, GPT_MODELS, GPTConfig, gpt_config
from tensorar.models.loading import load_model, save_model
from tensorar.models.registry import FAMILIES
from tensorar.models.tensorar import TensorAR, TensorARConfig
from tensorar.models.vq import VQ_MODELS, VQConfig, VQModel, load_vq, vq_config

# The entry points live in stages/; listing that folder on the package path makes `python -m
# tensorar.<stage>` run stages/<stage>.py (Python searches every entry of a package's __path__).
__path__.append(_os.path.join(_os.path.dirname(__file__), "stages"))

__all__ = [
    "GPT", "GPTConfig", "GPT_MODELS", "gpt_config",
    "VQModel", "VQConfig", "VQ_MODELS", "vq_config",
    "TensorAR", "TensorARConfig", "SamplingOptions",
    "load_model", "save_model", "load_vq", "FAMILIES",
]
__version__ = "0.1.0"
