"""Generation metrics: scored generation, perplexity, and evaluation over a list of texts.

- `generate_scored(model, prompt, config, top_n=5)`: generate (any strategy but beam search) and
  report, for every new token, its log-probability under the model (`raw_logprob`: log_softmax of
  the model's logits) and under the processed distribution the token was actually chosen from
  (`logprob`: log_softmax of the scores after the whole chain: penalties, user processors,
  constraints, temperature and the sampling filters), with the `top_n` best alternatives of both.
  `sequence_logprob` is the sum of the processed log-probabilities (the log-probability of the
  sampled path), `raw_sequence_logprob` the sum of the raw ones (the model's score of the text).
- `perplexity(model, text)`: exp(-mean log p(token | previous tokens)) over a text's tokens.
- `evaluate(model, texts)`: perplexity per text and over all of them (token-weighted: the exp of
  minus the mean log-probability of every scored token of every text).

The recorder costs two log_softmax and two topk over the vocabulary per step, on the device; it only
exists when one of these functions asks for it (a plain `generate` records nothing).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from .config import GenerationConfig, GenerationError
from .generate import _check_single, _config, _execute, make_plan, new_text, sequence_logprobs


class StepRecorder:
    """Per-step statistics of the decode loop's rows (plan.recorder): the chosen token's raw and
    processed log-probabilities, the size of the kept set (finite processed scores), and the top_n
    alternatives (raw and processed). Tensors stay on the device until `collect`."""

    def __init__(self, top_n: int = 0):
        self.top_n = int(top_n)
        self.steps: list[tuple] = []

    def __call__(self, step: int, logits: torch.Tensor, scores: torch.Tensor, tokens: torch.Tensor,
                 unfinished: torch.Tensor) -> None:
        raw = torch.log_softmax(logits.float(), dim=-1)
        proc = torch.log_softmax(scores.float(), dim=-1)
        idx = tokens.clamp(0, raw.shape[-1] - 1)[:, None]
        entry = [raw.gather(-1, idx)[:, 0], proc.gather(-1, idx)[:, 0],
                 torch.isfinite(scores).sum(dim=-1)]
        if self.top_n:
            k = min(self.top_n, raw.shape[-1])
            entry += list(torch.topk(raw, k, dim=-1)) + list(torch.topk(proc, k, dim=-1))
        self.steps.append(tuple(entry))

    def collect(self) -> dict[str, torch.Tensor]:
        """Stacked [rows, steps] tensors (and [rows, steps, top_n] for the alternatives), on the CPU."""
        if not self.steps:
            return {}
        names = ["raw_logprob", "logprob", "kept"]
        if self.top_n:
            names += ["raw_top_values", "raw_top_ids", "top_values", "top_ids"]
        return {name: torch.stack([s[i] for s in self.steps], dim=1).cpu() for i, name in enumerate(names)}


def _encode(tokenizer: Any, text: Any, what: str) -> list[int]:
    if isinstance(text, str):
        if tokenizer is None:
            raise GenerationError(f"{what}: a text needs the model's tokenizer (the model has none); "
                                  f"pass token ids")
        return list(tokenizer.encode(text))
    if isinstance(text, torch.Tensor):
        if text.dim() != 1 or text.is_floating_point():
            raise GenerationError(f"{what}: token ids must be a 1-D integer tensor")
        return text.tolist()
    if isinstance(text, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) for t in text):
        return list(text)
    raise GenerationError(f"{what}: expected a string or a list of token ids, got {type(text).__name__}")


def _piece(tokenizer: Any, tok: int) -> str | None:
    return None if tokenizer is None else tokenizer.decode([tok])


def generate_scored(model: Any, prompt: str | Sequence[int], config: GenerationConfig | dict | None = None,
                    *, top_n: int = 5, tokenizer: Any = None, **overrides: Any) -> dict[str, Any]:
    """Generate from one prompt and score every new token (see the module docstring).

    Returns {"ids": new ids, "text": new text (None without a tokenizer), "tokens": [{"id", "text",
    "logprob", "raw_logprob", "top": [(id, text, logprob)...], "raw_top": [...]}...],
    "sequence_logprob", "raw_sequence_logprob", "perplexity" (exp of minus the mean raw logprob)}.
    """
    if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 0:
        raise GenerationError(f"top_n must be an integer >= 0, got {top_n!r}")
    config = _config(config, overrides)
    tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    ids = _encode(tok, prompt, "generate_scored")
    if config.strategy == "beam_search":
        raise GenerationError("scores are reported for the greedy and sampling strategies, not beam_search")
    plan = make_plan(model, ids, config, None, tok)
    _check_single(plan, "generate_scored")
    rec = plan.recorder = StepRecorder(top_n)
    _execute(model, plan)
    n = int(plan.new_lengths[0])
    out = plan.result.view(-1)
    new = out[len(ids):len(ids) + n].tolist()
    data = rec.collect()
    tokens = []
    for i, t in enumerate(new):
        entry: dict[str, Any] = {"id": t, "text": _piece(tok, t),
                                 "logprob": float(data["logprob"][0, i]),
                                 "raw_logprob": float(data["raw_logprob"][0, i])}
        if top_n:
            for key, vals, tids in (("top", "top_values", "top_ids"), ("raw_top", "raw_top_values", "raw_top_ids")):
                entry[key] = [(int(j), _piece(tok, int(j)), float(v))
                              for j, v in zip(data[tids][0, i].tolist(), data[vals][0, i].tolist())
                              if v != -math.inf]
        tokens.append(entry)
    raw_sum = sum(e["raw_logprob"] for e in tokens)
    return {
        "ids": new,
        "text": None if tok is None else new_text(tok, ids, new, config.stop),
        "tokens": tokens,
        "sequence_logprob": sum(e["logprob"] for e in tokens),
        "raw_sequence_logprob": raw_sum,
        "perplexity": math.exp(-raw_sum / len(tokens)) if tokens else None,
    }


def text_logprobs(model: Any, text: Any, tokenizer: Any = None, what: str = "perplexity") -> list[float]:
    """The log-probability of each token of `text` (a string or ids) given the ones before it."""
    tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    ids = _encode(tok, text, what)
    if len(ids) < 2:
        raise GenerationError(f"{what}: a text needs at least two tokens to be scored, got {len(ids)}")
    return sequence_logprobs(model, ids).tolist()


def perplexity(model: Any, text: Any, *, tokenizer: Any = None) -> float:
    """exp(-mean log p(token | previous)) over the tokens of `text` (a string or token ids); the
    first token is the context only. A string is encoded as the tokenizer does by default (with
    its BOS, if it adds one)."""
    lp = text_logprobs(model, text, tokenizer, "perplexity")
    return math.exp(-sum(lp) / len(lp))


def evaluate(model: Any, texts: Sequence[Any], *, tokenizer: Any = None) -> dict[str, Any]:
    """Perplexity of each text and over all of them (token-weighted).

    Returns {"perplexity", "mean_logprob" (per scored token), "tokens" (scored tokens, all texts),
    "texts": [{"index", "tokens", "logprob" (sum), "perplexity"}...]}.
    """
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence) or not texts:
        raise GenerationError("evaluate needs a non-empty list of texts")
    per_text = []
    total, count = 0.0, 0
    for i, text in enumerate(texts):
        try:
            lp = text_logprobs(model, text, tokenizer, "evaluate")
        except GenerationError as exc:
            raise GenerationError(f"text {i}: {exc}") from None
        s = sum(lp)
        per_text.append({"index": i, "tokens": len(lp), "logprob": s, "perplexity": math.exp(-s / len(lp))})
        total += s
        count += len(lp)
    return {"perplexity": math.exp(-total / count), "mean_logprob": total / count, "tokens": count,
            "texts": per_text}


__all__ = ["StepRecorder", "evaluate", "generate_scored", "perplexity", "text_logprobs"]
