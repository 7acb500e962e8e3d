"""tensorar: reproduction library for TensorAR (next-tensor prediction for AR image generation).

Public API (README, "Python API"):
    GPT, GPTConfig, GPT_MODELS, gpt_config      LlamaGen-compatible class-conditional GPT and its presets
    VQModel, VQConfig, VQ_MODELS, vq_config     LlamaGen-compatible VQ tokenizer and its presets
    TensorAR, TensorARConfig                    the next-tensor plug-in around any such backbone
    load_model, load_vq                         rebuild + strictly load ours or the official checkpoints
"""
from tensorar.checkpoint import load_model
from tensorar.models.gpt import GPT, GPT_MODELS, GPTConfig, gpt_config
from tensorar.models.next_tensor import TensorAR, TensorARConfig
from tensorar.models.vq import VQ_MODELS, VQConfig, VQModel, load_vq, vq_config

__all__ = [
    "GPT", "GPTConfig", "GPT_MODELS", "gpt_config",
    "VQModel", "VQConfig", "VQ_MODELS", "vq_config",
    "TensorAR", "TensorARConfig",
    "load_model", "load_vq",
]
__version__ = "0.1.0"
