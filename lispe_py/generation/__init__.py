"""The generation core (pure Python + torch): config, logits processors and decoding.

See `docs/internals.md` ("Generation") for the contract and `docs/generation.md` for the
exact semantics.
"""
from .config import GenerationConfig, GenerationError, SpecialTokens, resolve_special_tokens, valid_keys
from .generate import active_chain, generate, generate_batch, generate_text, sequence_logprobs, stream
from .metrics import evaluate, generate_scored, perplexity
from .processors import LogitsChain, LogitsProcessor, build_chain
from .trace import Trace, generate_trace, replay, trace_diff

__all__ = [
    "GenerationConfig", "GenerationError", "SpecialTokens", "resolve_special_tokens", "valid_keys",
    "LogitsChain", "LogitsProcessor", "build_chain",
    "active_chain", "generate", "generate_batch", "generate_text", "sequence_logprobs", "stream",
    "evaluate", "generate_scored", "perplexity",
    "Trace", "generate_trace", "replay", "trace_diff",
]
