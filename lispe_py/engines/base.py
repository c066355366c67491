"""The engine seam: what the Lisp bindings, the CLI and a server call to generate text.

An `Engine` is one implementation of generation behind one interface: `LocalEngine` runs our own
model and `lispe_py.generation` in this process; `RemoteEngine` (remote.py) sends the same calls to
an OpenAI-compatible server (vLLM, TGI, llama.cpp's server, `lispe serve`). The bindings never branch
on which one they hold: they ask the model's engine (`engine_for`).

Every method takes a validated `GenerationConfig` and raises `GenerationError` (or its subclass
`EngineError`) for bad input, so callers keep one error path. Token ids are Python ints; tensors only
where the local API returns them (`generate`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterator, Sequence

from ..generation import GenerationConfig, GenerationError


class EngineError(GenerationError):
    """A generation call an engine cannot run (an unsupported key) or a failed remote request."""


class BatchError(EngineError):
    """Some prompts of a batch failed. `results` holds every prompt's texts (None where it failed),
    `failed` the (index, message) of each failure."""

    def __init__(self, message: str, results: list, failed: list[tuple[int, str]]):
        super().__init__(message)
        self.results = results
        self.failed = failed


class Engine(ABC):
    """One generation backend. `kind` names it ("local", "lispe", "vllm", "llamacpp", "tgi")."""

    kind: str = "engine"

    # ------------------------------------------------------------------ description
    @property
    @abstractmethod
    def tokenizer(self) -> Any:
        """The engine's tokenizer: encode/decode/apply_chat_template/vocab_size (None: it has none)."""

    @abstractmethod
    def describe(self) -> str:
        """A short description for printed generators ("llama 134.5M", "lispe SmolLM2 at URL")."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """A dictionary describing the engine and its model (no secrets): "engine" (its kind), ...;
        torch_model_info shows a remote engine's as it is."""

    @abstractmethod
    def capabilities(self) -> dict[str, bool]:
        """Which features this engine runs: {"token_ids", "prompt_ids", "logprobs", "structured",
        "beam_search", "logits_processor", "on_step", "embeddings", ...}."""

    # ------------------------------------------------------------------ configs
    @abstractmethod
    def check_config(self, config: GenerationConfig) -> None:
        """Raise GenerationError when `config` cannot run on this engine (before any work is done)."""

    # ------------------------------------------------------------------ generation
    @abstractmethod
    def generate(self, input_ids: Any, config: GenerationConfig, *, tokenizer: Any = None,
                 inputs_embeds: Any = None) -> Any:
        """Prompt + new ids as a LongTensor (1-D in -> 1-D out, 2-D -> 2-D), as generation.generate."""

    @abstractmethod
    def stream(self, prompt: str | Sequence[int], config: GenerationConfig, *,
               tokenizer: Any = None) -> Iterator[tuple[int | None, str]]:
        """(token_id, piece) for each new token of one prompt, as it is produced."""

    @abstractmethod
    def generate_text(self, prompt: str | Sequence[int], config: GenerationConfig, *,
                      tokenizer: Any = None) -> str | list[str]:
        """The new text of one prompt (a list with num_return_sequences > 1)."""

    @abstractmethod
    def generate_batch(self, prompts: Sequence[str | Sequence[int]], config: GenerationConfig, *,
                       tokenizer: Any = None) -> list[str]:
        """The new text of each prompt (prompt i's sequences at i*n .. i*n+n-1)."""

    @abstractmethod
    def generate_scored(self, prompt: str | Sequence[int], config: GenerationConfig, *, top_n: int = 5,
                        tokenizer: Any = None) -> dict[str, Any]:
        """generation.generate_scored's dictionary for one prompt."""


def engine_for(model: Any) -> Engine:
    """The engine of a model: an Engine is its own; a local DecoderModel gets a LocalEngine."""
    if isinstance(model, Engine):
        return model
    from .local import LocalEngine

    return LocalEngine(model)
