"""The generation core (pure Python + torch): config, logits processors and decoding.

See `docs/internals.md` ("Generation") for the contract and `shared/design/generation.md` for the
exact semantics.
"""
from .config import GenerationConfig, GenerationError, SpecialTokens, resolve_special_tokens, valid_keys
from .generate import active_chain, generate, generate_batch, generate_text, sequence_logprobs, stream
from .processors import LogitsChain, LogitsProcessor, build_chain

__all__ = [
    "GenerationConfig", "GenerationError", "SpecialTokens", "resolve_special_tokens", "valid_keys",
    "LogitsChain", "LogitsProcessor", "build_chain",
    "active_chain", "generate", "generate_batch", "generate_text", "sequence_logprobs", "stream",
]
