"""tensorar: reproduction library for TensorAR (next-tensor prediction for AR image generation).

Public API (see README "Python API"):
    GPTConfig, GPT, GPT_MODELS          -- LlamaGen-compatible class-conditional GPT
    load_gpt                            -- build + strictly load an official or tensorar checkpoint
"""
from tensorar.models.gpt import GPT, GPT_MODELS, GPTConfig

__all__ = ["GPT", "GPT_MODELS", "GPTConfig"]
__version__ = "0.1.0"
