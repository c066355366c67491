"""The local engine: our model and `lispe_py.generation`, in this process (today's behaviour)."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

from ..generation import (GenerationConfig, generate, generate_batch, generate_scored, generate_text,
                          resolve_special_tokens, stream)
from ..generation.config import check_model_bounds
from .base import Engine


def _human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


class LocalEngine(Engine):
    """Wraps a `lispe_py.models.DecoderModel`; every call goes to `lispe_py.generation` unchanged."""

    kind = "local"

    def __init__(self, model: Any):
        self.model = model

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def describe(self) -> str:
        return f"{self.model.config.arch} {_human_count(self.model.num_parameters())}"

    def info(self) -> dict[str, Any]:
        """The engine and its model's main sizes (torch_model_info gives the full local dictionary)."""
        m, c = self.model, self.model.config
        return {"engine": "local", "architecture": c.arch, "parameters": m.num_parameters(),
                "vocab_size": c.vocab_size, "context_length": c.max_position_embeddings,
                "dtype": str(m.dtype).removeprefix("torch."), "device": str(m.device)}

    def capabilities(self) -> dict[str, bool]:
        return dict(token_ids=True, prompt_ids=True, logprobs=True, structured=True, grammar=True,
                    beam_search=True, logits_processor=True, on_step=True, embeddings=True,
                    min_new_tokens=True, eos_token_id=True, bad_words=True)

    def check_config(self, config: GenerationConfig) -> None:
        c = self.model.config
        check_model_bounds(config, c.vocab_size, c.max_position_embeddings)
        resolve_special_tokens(config, self.model.special_tokens, c.vocab_size)

    def generate(self, input_ids: Any, config: GenerationConfig, *, tokenizer: Any = None,
                 inputs_embeds: Any = None) -> Any:
        return generate(self.model, input_ids, config, tokenizer=tokenizer, inputs_embeds=inputs_embeds)

    def stream(self, prompt: str | Sequence[int], config: GenerationConfig, *,
               tokenizer: Any = None) -> Iterator[tuple[int | None, str]]:
        tok = tokenizer if tokenizer is not None else self.model.tokenizer
        ids = tok.encode(prompt) if isinstance(prompt, str) else list(prompt)
        return stream(self.model, ids, config, tokenizer=tokenizer)

    def generate_text(self, prompt: str | Sequence[int], config: GenerationConfig, *,
                      tokenizer: Any = None) -> str | list[str]:
        return generate_text(self.model, prompt, config, tokenizer=tokenizer)

    def generate_batch(self, prompts: Sequence[str | Sequence[int]], config: GenerationConfig, *,
                       tokenizer: Any = None) -> list[str]:
        return generate_batch(self.model, prompts, config, tokenizer=tokenizer)

    def generate_scored(self, prompt: str | Sequence[int], config: GenerationConfig, *, top_n: int = 5,
                        tokenizer: Any = None) -> dict[str, Any]:
        return generate_scored(self.model, prompt, config, top_n=top_n, tokenizer=tokenizer)
