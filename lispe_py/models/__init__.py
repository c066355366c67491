"""Decoder-only transformers in plain torch (Llama family, GPT-2), their loaders and tokenizers.

    from lispe_py.models import create_model, load_model, ModelConfig
    model = load_model("SmolLM2-135M-Instruct")

Contract (shapes, cache, special tokens): docs/internals.md, section "Models".
"""
from .config import ModelConfig
from .errors import ModelError
from .gpt2 import GPT2Model
from .layers import DecoderModel
from .llama import LlamaModel
from .loading import create_model, load_model, model_from_hf, resolve_dtype

__all__ = [
    "DecoderModel",
    "GPT2Model",
    "LlamaModel",
    "ModelConfig",
    "ModelError",
    "create_model",
    "load_model",
    "model_from_hf",
    "resolve_dtype",
]
