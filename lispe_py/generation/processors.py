"""Logits processors: one small class per rule, composed into a printable chain.

Every processor is a callable `(input_ids [B, L] long, scores [B, V] float) -> scores [B, V]` with a
`describe()` that gives its s-expression form, e.g. `(top_k 50)`. They are vectorised over the batch
and the vocabulary (no Python loop over tokens), and they never modify their `scores` argument in place.
Semantics follow transformers' `generation/logits_process.py` class by class (the tests compare them);
`build_chain` puts them in the order of `docs/generation.md`:

    1. repetition_penalty  2. presence/frequency penalties  3. no_repeat_ngram, bad_words,
    min_new_tokens  4. user logits_processor functions (and extra constraint processors)
    5. sampling only: temperature -> top_k -> top_p -> min_p -> typical_p

`input_ids` may contain ids outside the vocabulary (an output pad id such as 50257 on a smaller
model): every processor ignores them.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from .config import GenerationConfig, GenerationError

NEG_INF = -math.inf


def _fmt(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "nil"
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, str):
        return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(x, (list, tuple)):
        return "(" + " ".join(_fmt(v) for v in x) + ")"
    return str(x)


class LogitsProcessor:
    """Base class: subclasses implement `__call__` and list their parameters in `params()`."""

    name = "processor"

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def params(self) -> list[Any]:
        return []

    def describe(self) -> str:
        """The processor as an s-expression, e.g. `(top_p 0.9)`."""
        return "(" + " ".join([self.name] + [_fmt(p) for p in self.params()]) + ")"

    def __repr__(self) -> str:
        return self.describe()


def _masked_ids(input_ids: torch.Tensor, ignore_lengths: torch.Tensor | None,
                vocab_size: int) -> torch.Tensor:
    """`input_ids` with ignored (left padding) positions and out-of-vocabulary ids mapped to V."""
    ids = input_ids.clamp(min=0, max=vocab_size)
    ids = torch.where(input_ids < 0, vocab_size, ids)
    if ignore_lengths is not None:
        pos = torch.arange(ids.shape[1], device=ids.device)
        ids = ids.masked_fill(pos[None, :] < ignore_lengths[:, None], vocab_size)
    return ids


class RepetitionPenalty(LogitsProcessor):
    """Penalise every token already in the row (prompt included, padding excluded): CTRL's rule.

    A score < 0 is multiplied by `penalty`, any other score divided by it (transformers'
    `RepetitionPenaltyLogitsProcessor`). `ignore_lengths[b]` leading positions of row b (its left
    padding) are not counted.
    """

    name = "repetition_penalty"

    def __init__(self, penalty: float, ignore_lengths: torch.Tensor | None = None):
        if not penalty > 0:
            raise GenerationError(f"repetition_penalty must be > 0, got {penalty}")
        self.penalty = float(penalty)
        self.ignore_lengths = ignore_lengths

    def params(self) -> list[Any]:
        return [self.penalty]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab = scores.shape[-1]
        ids = _masked_ids(input_ids, self.ignore_lengths, vocab)
        padded = torch.nn.functional.pad(scores, (0, 1))
        seen = torch.gather(padded, 1, ids)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return padded.scatter(1, ids, seen)[:, :vocab]


class PresenceFrequencyPenalty(LogitsProcessor):
    """OpenAI's penalties over the GENERATED tokens of each row (the prompt is not counted).

    `score[t] -= presence * (count[t] > 0) + frequency * count[t]`, where count is how often t has been
    generated so far.
    """

    name = "presence_frequency_penalty"

    def __init__(self, presence: float, frequency: float, prompt_length: int):
        self.presence = float(presence)
        self.frequency = float(frequency)
        self.prompt_length = int(prompt_length)

    def params(self) -> list[Any]:
        return [self.presence, self.frequency]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        gen = input_ids[:, self.prompt_length:]
        if gen.shape[1] == 0:
            return scores
        vocab = scores.shape[-1]
        ids = _masked_ids(gen, None, vocab)
        counts = torch.zeros(scores.shape[0], vocab + 1, dtype=scores.dtype, device=scores.device)
        counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=scores.dtype))
        counts = counts[:, :vocab]
        return scores - self.presence * (counts > 0).to(scores.dtype) - self.frequency * counts


class NoRepeatNGram(LogitsProcessor):
    """Ban every token that would complete an n-gram already present in the row (prompt included).

    Vectorised like transformers' `NoRepeatNGramLogitsProcessor`: the current (n-1)-suffix is compared
    with every window at once. Windows that touch a row's left padding never ban anything.
    """

    name = "no_repeat_ngram_size"

    def __init__(self, ngram_size: int, ignore_lengths: torch.Tensor | None = None):
        if ngram_size <= 0:
            raise GenerationError(f"no_repeat_ngram_size must be > 0, got {ngram_size}")
        self.n = int(ngram_size)
        self.ignore_lengths = ignore_lengths

    def params(self) -> list[Any]:
        return [self.n]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cur_len = input_ids.shape[-1]
        if cur_len < self.n:
            return scores
        vocab = scores.shape[-1]
        prefix = input_ids[:, cur_len + 1 - self.n:]
        windows = input_ids.unfold(1, self.n, 1)                     # [B, W, n]
        matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)
        if self.ignore_lengths is not None:
            start = torch.arange(windows.shape[1], device=input_ids.device)
            matches &= start[None, :] >= self.ignore_lengths[:, None]
        last = windows[..., -1]
        last = torch.where((last < 0) | (last > vocab), vocab, last)
        banned = scores.new_zeros((scores.shape[0], vocab + 1), dtype=torch.bool)
        banned.scatter_(1, torch.where(matches, last, vocab), True)
        return scores.masked_fill(banned[:, :vocab], NEG_INF)


class BadWords(LogitsProcessor):
    """Never produce any of the given token sequences (transformers' `NoBadWordsLogitsProcessor`).

    A one-token sequence is always banned; a longer one bans its last token when the row ends with the
    rest of it. Sequences equal to `[eos]` are dropped (banning the EOS is min_new_tokens' job).
    """

    name = "bad_words"

    def __init__(self, sequences: Sequence[Sequence[int]], eos_token_ids: Iterable[int] = ()):
        eos = [[int(e)] for e in eos_token_ids]
        seqs = []
        for s in sequences:
            s = [int(t) for t in s]
            if not s or any(t < 0 for t in s):
                raise GenerationError(f"bad_words: invalid token sequence {s!r}")
            if s not in eos and s not in seqs:
                seqs.append(s)
        self.sequences = seqs
        self._prepared_for: tuple | None = None
        self._single: torch.Tensor | None = None
        self._groups: list[tuple[torch.Tensor, torch.Tensor]] = []

    def params(self) -> list[Any]:
        return [s[0] if len(s) == 1 else s for s in self.sequences]

    def _prepare(self, scores: torch.Tensor) -> None:
        vocab = scores.shape[-1]
        outside = [t for s in self.sequences for t in s if t >= vocab]
        if outside:
            raise GenerationError(f"bad_words: token ids {outside} are outside the vocabulary "
                                  f"(size {vocab})")
        single = torch.zeros(vocab, dtype=torch.bool, device=scores.device)
        ones = [s[0] for s in self.sequences if len(s) == 1]
        if ones:
            single[torch.tensor(ones, device=scores.device)] = True
        by_len: dict[int, list[list[int]]] = {}
        for s in self.sequences:
            if len(s) > 1:
                by_len.setdefault(len(s) - 1, []).append(s)
        self._single = single
        self._groups = [(torch.tensor([s[:-1] for s in g], device=scores.device),
                         torch.tensor([s[-1] for s in g], device=scores.device))
                        for g in by_len.values()]
        self._prepared_for = (vocab, scores.device)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._prepared_for != (scores.shape[-1], scores.device):
            self._prepare(scores)
        banned = self._single.expand(scores.shape[0], -1)
        extra = None
        for prefixes, last in self._groups:
            plen = prefixes.shape[1]
            if plen > input_ids.shape[1]:
                continue
            match = (input_ids[:, None, -plen:] == prefixes).all(dim=-1)      # [B, G]
            # several sequences may end with the same token: add the matches up (a scatter would
            # keep an arbitrary one of the duplicates)
            hit = torch.zeros(scores.shape, dtype=torch.int32, device=scores.device).index_add_(
                1, last, match.to(torch.int32)) > 0
            extra = hit if extra is None else extra | hit
        if extra is not None:
            banned = banned | extra
        return scores.masked_fill(banned, NEG_INF)


class MinNewTokens(LogitsProcessor):
    """EOS scores -> -inf while fewer than `min_new_tokens` tokens have been generated."""

    name = "min_new_tokens"

    def __init__(self, min_new_tokens: int, prompt_length: int, eos_token_ids: Iterable[int]):
        self.min_new_tokens = int(min_new_tokens)
        self.prompt_length = int(prompt_length)
        self.eos = sorted({int(e) for e in eos_token_ids})
        self._eos_t: torch.Tensor | None = None

    def params(self) -> list[Any]:
        return [self.min_new_tokens]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] - self.prompt_length >= self.min_new_tokens or not self.eos:
            return scores
        if self._eos_t is None or self._eos_t.device != scores.device:
            self._eos_t = torch.tensor([e for e in self.eos if e < scores.shape[-1]],
                                       dtype=torch.long, device=scores.device)
        out = scores.clone()
        out[:, self._eos_t] = NEG_INF
        return out


class UserProcessor(LogitsProcessor):
    """A user function `(ids, scores) -> scores` (a Lisp lambda once wrapped by the bindings)."""

    name = "logits_processor"

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], Any]):
        self.fn = fn

    def describe(self) -> str:
        label = getattr(self.fn, "lisp_name", None) or getattr(self.fn, "__name__", None) \
            or type(self.fn).__name__
        return f"({self.name} {label})"

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = self.fn(input_ids, scores.clone())
        if out is None:
            raise GenerationError("logits_processor must return the scores, got nil")
        if not isinstance(out, torch.Tensor):
            try:
                out = torch.as_tensor(out, dtype=scores.dtype, device=scores.device)
            except (TypeError, ValueError, RuntimeError) as e:
                raise GenerationError(f"logits_processor must return a tensor of scores: {e}") from e
        if out.shape != scores.shape:
            raise GenerationError(f"logits_processor returned shape {tuple(out.shape)}, "
                                  f"expected {tuple(scores.shape)}")
        return out.to(dtype=scores.dtype, device=scores.device)


class Temperature(LogitsProcessor):
    """Divide the scores by the temperature (> 0)."""

    name = "temperature"

    def __init__(self, temperature: float):
        if not temperature > 0:
            raise GenerationError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def params(self) -> list[Any]:
        return [self.temperature]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


class TopK(LogitsProcessor):
    """Keep every score >= the k-th largest (ties with the k-th are kept, as transformers)."""

    name = "top_k"

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        if top_k <= 0:
            raise GenerationError(f"top_k must be > 0, got {top_k}")
        self.top_k = max(int(top_k), int(min_tokens_to_keep))

    def params(self) -> list[Any]:
        return [self.top_k]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.top_k, scores.shape[-1])
        kth = torch.topk(scores, k)[0][..., -1:]
        return scores.masked_fill(scores < kth, NEG_INF)


class TopP(LogitsProcessor):
    """Nucleus filtering: keep the smallest set of top tokens whose probability mass reaches p.

    The token that crosses p is kept and at least `min_tokens_to_keep` tokens survive (transformers'
    `TopPLogitsWarper`: ascending sort, drop the prefix whose cumulative mass is <= 1 - p).
    """

    name = "top_p"

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        if not 0 < top_p <= 1:
            raise GenerationError(f"top_p must be in (0, 1], got {top_p}")
        self.top_p = float(top_p)
        self.min_tokens_to_keep = int(min_tokens_to_keep)

    def params(self) -> list[Any]:
        return [self.top_p]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        sorted_logits, sorted_idx = torch.sort(scores, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cum <= (1 - self.top_p)
        remove[..., -self.min_tokens_to_keep:] = False
        remove = remove.scatter(1, sorted_idx, remove)
        return scores.masked_fill(remove, NEG_INF)


class MinP(LogitsProcessor):
    """Drop tokens whose probability is below `min_p` times the top token's probability."""

    name = "min_p"

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1):
        if not 0 <= min_p <= 1:
            raise GenerationError(f"min_p must be in [0, 1], got {min_p}")
        self.min_p = float(min_p)
        self.min_tokens_to_keep = int(min_tokens_to_keep)

    def params(self) -> list[Any]:
        return [self.min_p]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores, dim=-1)
        remove = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        k = min(self.min_tokens_to_keep, probs.shape[-1])
        remove.scatter_(-1, torch.topk(probs, k, dim=-1).indices, False)
        return scores.masked_fill(remove, NEG_INF)


class TypicalP(LogitsProcessor):
    """Locally typical sampling: keep the tokens whose surprisal is closest to the entropy, up to
    mass `typical_p` (transformers' `TypicalLogitsWarper`)."""

    name = "typical_p"

    def __init__(self, mass: float, min_tokens_to_keep: int = 1):
        if not 0 < mass <= 1:
            raise GenerationError(f"typical_p must be in (0, 1], got {mass}")
        self.mass = float(mass)
        self.min_tokens_to_keep = int(min_tokens_to_keep)

    def params(self) -> list[Any]:
        return [self.mass]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        normalized = torch.log_softmax(scores, dim=-1)
        p = torch.exp(normalized)
        ent = -(normalized * p).nansum(-1, keepdim=True)
        shifted = torch.abs(-normalized - ent)
        sorted_scores, sorted_idx = torch.sort(shifted, descending=False)
        cum = scores.gather(-1, sorted_idx).softmax(dim=-1).cumsum(dim=-1)
        last = (cum < self.mass).sum(dim=1).clamp_(max=sorted_scores.shape[-1] - 1)
        remove = sorted_scores > sorted_scores.gather(1, last.view(-1, 1))
        remove[..., :self.min_tokens_to_keep] = False
        remove = remove.scatter(1, sorted_idx, remove)
        return scores.masked_fill(remove, NEG_INF)


class LogitsChain(LogitsProcessor):
    """An ordered list of processors applied one after the other; printable as `(chain ...)`."""

    name = "chain"

    def __init__(self, processors: Iterable[LogitsProcessor] = ()):
        self.processors: list[LogitsProcessor] = list(processors)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for proc in self.processors:
            scores = proc(input_ids, scores)
        return scores

    def __iter__(self) -> Iterator[LogitsProcessor]:
        return iter(self.processors)

    def __len__(self) -> int:
        return len(self.processors)

    def __bool__(self) -> bool:
        return bool(self.processors)

    def describe(self) -> str:
        return "(" + " ".join(["chain"] + [p.describe() for p in self.processors]) + ")"


def build_chain(config: GenerationConfig, *, prompt_length: int, eos_token_ids: Sequence[int] = (),
                ignore_lengths: torch.Tensor | None = None,
                bad_words_ids: Sequence[Sequence[int]] | None = None,
                extra: Iterable[LogitsProcessor] = (),
                sampling: bool | None = None) -> LogitsChain:
    """The processor chain for `config`, in `generation.md`'s order.

    prompt_length: the (padded) prompt length, where new tokens start in `input_ids`.
    eos_token_ids: EOS ids inside the vocabulary (for min_new_tokens and bad_words).
    ignore_lengths: per-row count of left-padding positions (excluded from penalties), or None.
    bad_words_ids: `config.bad_words` already resolved to id sequences (strings need a tokenizer,
        see `generate.resolve_bad_words`); None means "use config.bad_words, which must hold ids only".
    extra: further processors (e.g. constraints) appended after the user's functions, before the
        sampling filters, so they apply to every strategy, greedy and beam search included.
    sampling: whether the step-5 filters apply; default: the config's strategy uses them.
    """
    procs: list[LogitsProcessor] = []
    if config.repetition_penalty != 1.0:
        procs.append(RepetitionPenalty(config.repetition_penalty, ignore_lengths))
    if config.presence_penalty != 0.0 or config.frequency_penalty != 0.0:
        procs.append(PresenceFrequencyPenalty(config.presence_penalty, config.frequency_penalty,
                                              prompt_length))
    if config.no_repeat_ngram_size > 0:
        procs.append(NoRepeatNGram(config.no_repeat_ngram_size, ignore_lengths))
    if bad_words_ids is None and config.bad_words:
        if any(isinstance(w, str) for w in config.bad_words):
            raise GenerationError("bad_words given as strings need the model's tokenizer")
        bad_words_ids = [[w] if isinstance(w, int) else list(w) for w in config.bad_words]
    if bad_words_ids:
        procs.append(BadWords(bad_words_ids, eos_token_ids))
    if config.min_new_tokens > 0 and eos_token_ids:
        procs.append(MinNewTokens(config.min_new_tokens, prompt_length, eos_token_ids))
    for fn in config.logits_processor or ():
        procs.append(fn if isinstance(fn, LogitsProcessor) else UserProcessor(fn))
    procs.extend(extra)

    if sampling is None:
        sampling = config.strategy in ("top_k", "top_p", "sample") and config.temperature != 0.0
    if sampling:
        strategy = config.strategy
        if config.temperature != 1.0:
            procs.append(Temperature(config.temperature))
        if strategy in ("top_k", "sample") and config.top_k > 0:
            procs.append(TopK(config.top_k))
        if strategy in ("top_p", "sample") and config.top_p < 1.0:
            procs.append(TopP(config.top_p))
        if strategy == "sample":
            if config.min_p > 0.0:
                procs.append(MinP(config.min_p))
            if config.typical_p < 1.0:
                procs.append(TypicalP(config.typical_p))
    return LogitsChain(procs)
