"""Generation settings: every key of `docs/generation.md`, validated once, immutable after.

A `GenerationConfig` is built from a dict (`from_dict`), changed only by `update` (which returns a new
config and leaves the old one untouched when the update is rejected), and read back with `to_dict`.
Bad values raise `GenerationError`, the one error type of the generation layer; values that only make
sense against a model (token ids outside its vocabulary) are checked by `resolve_special_tokens` when
the model is known.

`None` for a key means "the default" (for the special token ids: "the model's"), so a Lisp `nil` clears
a setting.
"""
from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Iterable, Mapping


class GenerationError(ValueError):
    """A bad generation config or input: the one error type of `lispe_py.generation`."""


STRATEGIES = ("greedy", "top_k", "top_p", "sample", "beam_search")
# Keys that constrain the output (lispe_py.generation.constraints); the value is the constraint's spec.
CONSTRAINT_KEYS = ("allowed_tokens", "choices", "regex", "grammar", "json_schema")

# What an `on_step` hook may change while generating (they take effect from the next step).
STEP_KEYS = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
             "presence_penalty", "frequency_penalty")
# Keys whose values are functions (never part of a replayable transcript).
FUNCTION_KEYS = ("callback", "logits_processor", "stop_when", "on_step")

# Aliases accepted by `from_dict`/`update`; `to_dict` always uses the canonical name.
ALIASES = {"max_new_tokens": "max_length"}

# Bounds that hold for every model, checked before any model is known: no vocabulary or context reaches
# 2^24 (16.7M; the largest in use are ~260k tokens and a few million positions). `check_model_bounds`
# checks the model's own sizes once a generator knows its model.
MAX_TOKEN_ID = 2 ** 24
MAX_NEW_TOKENS = 2 ** 24


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


@dataclass(frozen=True)
class GenerationConfig:
    """The settings of one generation call (see `generation.md` for the meaning of each key).

    `max_length` counts NEW tokens (lispe_torch's meaning; `max_new_tokens` is an alias).
    `num_beams=None` means 4 for `strategy="beam_search"` and 1 otherwise (see `beams`).
    """

    max_length: int = 50
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    bad_words: tuple | None = None
    strategy: str = "greedy"
    do_sample: bool = True
    num_beams: int | None = None
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    callback: Callable[[int, str], Any] | None = field(default=None, compare=False)
    logits_processor: tuple[Callable, ...] | None = field(default=None, compare=False)
    # decoding control (generate.py): predicates on a row's new text, and per-step hooks
    stop_when: tuple[Callable, ...] | None = field(default=None, compare=False)
    on_step: tuple[Callable, ...] | None = field(default=None, compare=False)
    # guided generation (lispe_py.generation.constraints): at most one of these per call
    allowed_tokens: tuple | None = None
    choices: tuple[str, ...] | None = None
    regex: str | None = None
    grammar: Any = None
    json_schema: Any = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
                  **kwargs: Any) -> "GenerationConfig":
        """A validated config from a mapping (or `(key, value)` pairs, later pairs win) plus kwargs."""
        return cls().update(values, **kwargs)

    def update(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
               **kwargs: Any) -> "GenerationConfig":
        """A new validated config with `values` applied; `self` is never changed (also on error)."""
        changes: dict[str, Any] = {}
        for key, value in list(_pairs(values)) + list(kwargs.items()):
            if not isinstance(key, str):
                raise GenerationError(f"generation config keys are strings, got {key!r}")
            name = ALIASES.get(key, key)
            if name not in _VALIDATORS:
                from ..hints import did_you_mean

                raise GenerationError(f"unknown generation config key {key!r}"
                                      f"{did_you_mean(key, valid_keys())}; valid keys: {', '.join(valid_keys())}")
            changes[name] = None if value is None and name in _NULLABLE else (
                _DEFAULTS[name] if value is None else _VALIDATORS[name](name, value))
        new = replace(self, **changes)
        new._check_together()
        return new

    def to_dict(self) -> dict[str, Any]:
        """Every key with its value (tuples as lists), suitable for `from_dict` again."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    # ------------------------------------------------------------------ derived values
    @property
    def beams(self) -> int:
        """The number of beams actually used: `num_beams`, defaulting to 4 for beam search, else 1."""
        if self.strategy != "beam_search":
            return 1
        return 4 if self.num_beams is None else self.num_beams

    @property
    def is_greedy(self) -> bool:
        """True when the next token is an argmax (greedy, temperature 0, or do_sample false)."""
        return (self.strategy == "greedy" or self.temperature == 0.0 or not self.do_sample
                or self.strategy == "beam_search")

    def _check_together(self) -> None:
        if self.strategy == "beam_search":
            if self.num_return_sequences > self.beams:
                raise GenerationError(
                    f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams "
                    f"({self.beams}) for beam_search")
        elif self.num_return_sequences > 1 and self.is_greedy:
            raise GenerationError(
                f"num_return_sequences={self.num_return_sequences} needs sampling (do_sample true, "
                f"temperature > 0, a sampling strategy) or strategy \"beam_search\": "
                f"greedy decoding would return {self.num_return_sequences} identical sequences")
        constraints = [k for k in CONSTRAINT_KEYS if getattr(self, k) is not None]
        if len(constraints) > 1:
            raise GenerationError(f"only one constraint per call, got {', '.join(constraints)}")
        if self.min_new_tokens > self.max_length:
            raise GenerationError(
                f"min_new_tokens ({self.min_new_tokens}) is larger than max_length ({self.max_length})")

    def __repr__(self) -> str:
        diff = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                if getattr(self, f.name) != f.default]
        return f"GenerationConfig({', '.join(diff)})"


def valid_keys() -> list[str]:
    """The accepted config keys (aliases included), sorted."""
    return sorted(list(_VALIDATORS) + list(ALIASES))


def _pairs(values: Any) -> Iterable[tuple[Any, Any]]:
    if values is None:
        return []
    if isinstance(values, GenerationConfig):
        return values.to_dict().items()
    if isinstance(values, Mapping):
        return values.items()
    out = []
    for item in values:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise GenerationError(
                f"a generation config is a dictionary or a list of (key value) pairs; got {item!r}")
        out.append((item[0], item[1]))
    return out


# ---------------------------------------------------------------------- validators
def _int(lo: int | None = None, hi: int | None = None, why: str = "") -> Callable[[str, Any], int]:
    def check(name: str, v: Any) -> int:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not _is_int(v):
            raise GenerationError(f"{name} must be an integer, got {v!r}")
        if lo is not None and v < lo:
            raise GenerationError(f"{name} must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise GenerationError(f"{name} must be <= {hi}{why}, got {v}")
        return int(v)
    return check


def _real(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
          hi_open: bool = False) -> Callable[[str, Any], float]:
    def check(name: str, v: Any) -> float:
        if not _is_real(v) or not math.isfinite(float(v)):
            raise GenerationError(f"{name} must be a finite number, got {v!r}")
        x = float(v)
        if lo is not None and (x <= lo if lo_open else x < lo) or \
                hi is not None and (x >= hi if hi_open else x > hi):
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            lo_s = "-inf" if lo is None else f"{lo:g}"
            hi_s = "inf" if hi is None else f"{hi:g}"
            raise GenerationError(f"{name} must be in {left}{lo_s}, {hi_s}{right}, got {x:g}")
        return x
    return check


def _temperature(name: str, v: Any) -> float:
    if _is_real(v) and float(v) < 0:
        raise GenerationError(f"temperature must be >= 0 (0 means greedy), got {float(v):g}")
    return _real(0.0)(name, v)


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise GenerationError(f"{name} must be true or false, got {v!r}")
    return v


def _strategy(name: str, v: Any) -> str:
    if not isinstance(v, str) or v not in STRATEGIES:
        raise GenerationError(
            f"unknown strategy {v!r}; valid strategies: {', '.join(repr(s) for s in STRATEGIES)}")
    return v


def _early_stopping(name: str, v: Any) -> bool | str:
    if isinstance(v, bool) or v == "never":
        return v
    raise GenerationError(f"early_stopping must be true, false or \"never\", got {v!r}")


def _token_id(name: str, v: Any) -> int:
    if not _is_int(v) or v < 0:
        raise GenerationError(f"{name} must be a non-negative integer token id, got {v!r}")
    if v >= MAX_TOKEN_ID:
        raise GenerationError(f"{name} {v} is larger than any vocabulary (token ids are below {MAX_TOKEN_ID})")
    return int(v)


def _eos(name: str, v: Any) -> int | tuple[int, ...]:
    if _is_int(v):
        return _token_id(name, v)
    if isinstance(v, (list, tuple)) and v:
        return tuple(_token_id(name, x) for x in v)
    raise GenerationError(f"{name} must be a token id or a non-empty list of token ids, got {v!r}")


def _bad_words(name: str, v: Any) -> tuple:
    """Ids, strings, or id sequences (lists of ids): each entry is one banned word."""
    items = [v] if isinstance(v, (str, int)) and not isinstance(v, bool) else v
    if not isinstance(items, (list, tuple)) or not items:
        raise GenerationError(
            f"bad_words must be a list of token ids, strings or lists of token ids, got {v!r}")
    out: list = []
    for item in items:
        if isinstance(item, str):
            if not item:
                raise GenerationError("bad_words cannot contain an empty string")
            out.append(item)
        elif _is_int(item):
            out.append(_token_id(name, item))
        elif isinstance(item, (list, tuple)) and item and all(_is_int(x) for x in item):
            out.append(tuple(_token_id(name, x) for x in item))
        else:
            raise GenerationError(
                f"bad_words entries must be token ids, strings or non-empty lists of token ids, "
                f"got {item!r}")
    return tuple(out)


def _stop(name: str, v: Any) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)) or not items or \
            not all(isinstance(s, str) and s for s in items):
        raise GenerationError(f"stop must be a non-empty string or a list of them, got {v!r}")
    return tuple(items)


def _seed(name: str, v: Any) -> int:
    if not _is_int(v):
        raise GenerationError(f"seed must be an integer, got {v!r}")
    if not 0 <= v < 2 ** 63:
        raise GenerationError(f"seed must be in [0, 2^63), got {v}")
    return int(v)


def _callable(name: str, v: Any) -> Callable:
    if not callable(v):
        raise GenerationError(f"{name} must be a function, got {v!r}")
    return v


def _processors(name: str, v: Any) -> tuple[Callable, ...]:
    items = list(v) if isinstance(v, (list, tuple)) else [v]
    if not items or not all(callable(f) for f in items):
        raise GenerationError(f"{name} must be a function (ids scores) -> scores or a list of them, "
                              f"got {v!r}")
    return tuple(items)


def _functions(what: str) -> Callable[[str, Any], tuple[Callable, ...]]:
    def check(name: str, v: Any) -> tuple[Callable, ...]:
        items = list(v) if isinstance(v, (list, tuple)) else [v]
        if not items or not all(callable(f) for f in items):
            raise GenerationError(f"{name} must be a function {what} or a list of them, got {v!r}")
        return tuple(items)
    return check


def _constraint(name: str, v: Any) -> Any:
    """A constraint spec, checked for shape (regexes and grammars compiled) without a tokenizer."""
    from .constraints import validate_spec
    return validate_spec(name, v)


_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "max_length": _int(1, MAX_NEW_TOKENS, " (longer than any model's context)"),
    "min_new_tokens": _int(0, MAX_NEW_TOKENS, " (longer than any model's context)"),
    "temperature": _temperature,
    "top_k": _int(0),
    "top_p": _real(0.0, 1.0, lo_open=True),
    "min_p": _real(0.0, 1.0),
    "typical_p": _real(0.0, 1.0, lo_open=True),
    "repetition_penalty": _real(0.0, lo_open=True),
    "presence_penalty": _real(),
    "frequency_penalty": _real(),
    "no_repeat_ngram_size": _int(0),
    "bad_words": _bad_words,
    "strategy": _strategy,
    "do_sample": _bool,
    "num_beams": _int(1),
    "length_penalty": _real(),
    "early_stopping": _early_stopping,
    "num_return_sequences": _int(1),
    "eos_token_id": _eos,
    "pad_token_id": _token_id,
    "bos_token_id": _token_id,
    "stop": _stop,
    "seed": _seed,
    "callback": _callable,
    "logits_processor": _processors,
    "stop_when": _functions("(text) -> true to end the row"),
    "on_step": _functions("(step params) -> nil or a dictionary of parameter changes"),
    **{k: _constraint for k in CONSTRAINT_KEYS},
}
_DEFAULTS = {f.name: f.default for f in fields(GenerationConfig)}
# Keys whose default is None: a None value (Lisp nil) restores "unset / the model's".
_NULLABLE = {k for k, d in _DEFAULTS.items() if d is None}
assert set(_VALIDATORS) == set(_DEFAULTS), "every config field needs a validator"


#: What `(help "key")` says about each config key: (its type, its default, its meaning), as in the
#: configuration table of docs/lispe_torch.md.
KEY_DOCS: dict[str, tuple[str, str, str]] = {
    "max_length": ("integer", "50", "maximum number of new tokens (alias max_new_tokens); at most the "
                   "model's context and never above 2^24"),
    "min_new_tokens": ("integer", "0", "the EOS is forbidden before this many new tokens"),
    "strategy": ("string", '"greedy"', '"greedy", "top_k", "top_p", "sample" (temperature, top_k, top_p, '
                 'min_p, typical_p together) or "beam_search"'),
    "temperature": ("number", "1.0", "> 0 divides the scores (sampling strategies); 0 means greedy"),
    "top_k": ("integer", "50", "keep the k best tokens (0: off)"),
    "top_p": ("number", "1.0", "keep the smallest set of tokens reaching this probability mass, in (0, 1]"),
    "min_p": ("number", "0", "drop tokens below min_p x the best token's probability"),
    "typical_p": ("number", "1.0", "locally typical sampling mass, in (0, 1]"),
    "repetition_penalty": ("number", "1.0", "> 0; scores of tokens already in the text are divided "
                           "(positive) or multiplied (negative) by it"),
    "presence_penalty": ("number", "0", "OpenAI-style penalty on tokens already generated"),
    "frequency_penalty": ("number", "0", "OpenAI-style penalty growing with how often a token was generated"),
    "no_repeat_ngram_size": ("integer", "0", "no n-gram of this size appears twice"),
    "bad_words": ("list", "nil", "token ids, strings, or id lists that are never generated"),
    "do_sample": ("true/nil", "true", "false (or nil) turns a sampling strategy into argmax over its "
                  "filtered scores"),
    "num_beams": ("integer", "4 for beam search", 'beams of "beam_search"'),
    "length_penalty": ("number", "1.0", "beam search: score / length^penalty"),
    "early_stopping": ("true/nil or \"never\"", "false", "beam search: when to stop (as transformers)"),
    "num_return_sequences": ("integer", "1", "sequences per prompt (sampling or beam search)"),
    "eos_token_id": ("integer or list", "the model's", "an id or a list of ids that end a row (kept in "
                     "the output)"),
    "pad_token_id": ("integer", "the model's, else the first EOS", "fills finished rows and left padding "
                     "in outputs"),
    "bos_token_id": ("integer", "the model's", "starts an empty prompt; must lie inside the model's "
                     "vocabulary"),
    "stop": ("string or strings", "nil", "text that ends generation (kept up to and including it)"),
    "seed": ("integer", "nil", "same seed, same tokens (alone or in a batch)"),
    "callback": ("function", "nil", "(lambda (token-id text-piece) ...), called for each new token"),
    "logits_processor": ("function or list", "nil", "(lambda (ids scores) ...) returning the changed "
                         "scores tensor"),
    "stop_when": ("function or list", "nil", "(lambda (text) ...): true ends that row (its new text so "
                  "far is given)"),
    "on_step": ("function or list", "nil", "(lambda (step params) ...), called after every step; returns "
                'nil or changes like {"temperature":0.3} that apply from the next step (keys: '
                + ", ".join(STEP_KEYS) + ")"),
    "allowed_tokens": ("list", "nil", "a constraint: only these tokens are generated (one constraint per "
                       "call, see guided.md)"),
    "choices": ("list of strings", "nil", "a constraint: the output is one of these strings"),
    "regex": ("string", "nil", "a constraint: the output matches this regular expression"),
    "grammar": ("string", "nil", "a constraint: the output follows this grammar"),
    "json_schema": ("dictionary or string", "nil", "a constraint: the output is JSON valid for this schema"),
}
assert set(KEY_DOCS) == set(_VALIDATORS), "every config key needs its KEY_DOCS entry"


def describe_key(key: str) -> str | None:
    """The help text of a generation config key (or alias): type, default and meaning; else None."""
    name = ALIASES.get(key, key)
    doc = KEY_DOCS.get(name)
    if doc is None:
        return None
    kind, default, meaning = doc
    alias = f" (alias of {name})" if name != key else ""
    return (f"{key}{alias}  [generation config key]\n  type: {kind}\n  default: {default}\n"
            f"  {meaning}\n  Set it in a config: {{\"{name}\":value}} (torch_generator_config, "
            "torch_generate_text ...).")

# ---------------------------------------------------------------------- special tokens
@dataclass(frozen=True)
class SpecialTokens:
    """Special token ids resolved against a model.

    `eos`: the ids that end a row (only those inside the vocabulary: an EOS the model cannot produce
    never matches). `pad`: the id written into finished rows and left padding of the OUTPUT, exactly as
    given (it may be outside the vocabulary: it never enters the model). `input_pad`: a valid id used
    for the internal left padding of inputs (masked out, so its value never matters).
    """

    eos: tuple[int, ...]
    pad: int
    input_pad: int
    bos: int | None


def resolve_special_tokens(config: GenerationConfig, model_special: Mapping[str, Any] | None,
                           vocab_size: int) -> SpecialTokens:
    """Fill the config's unset special ids from the model's; warn about ids outside the vocabulary.

    Mirrors transformers: pad defaults to the first EOS when the model has no pad id. An EOS id outside
    the vocabulary (e.g. GPT-2's 50256 on a smaller model) is a warning and simply never matches.
    A pad id outside the vocabulary is a warning too; it is still used for output padding.
    """
    special = dict(model_special or {})
    eos = config.eos_token_id if config.eos_token_id is not None else special.get("eos_token_id")
    if eos is None:
        eos_ids: tuple[int, ...] = ()
    elif _is_int(eos):
        eos_ids = (int(eos),)
    else:
        eos_ids = tuple(int(e) for e in eos)
    out_of_range = [e for e in eos_ids if e >= vocab_size]
    if out_of_range:
        warnings.warn(f"eos_token_id {out_of_range} is outside the model's vocabulary "
                      f"(size {vocab_size}); it will never be generated", stacklevel=3)
    valid_eos = tuple(e for e in eos_ids if e < vocab_size)

    pad = config.pad_token_id if config.pad_token_id is not None else special.get("pad_token_id")
    if pad is None:
        pad = eos_ids[0] if eos_ids else 0
    pad = int(pad)
    if pad >= vocab_size:
        if config.pad_token_id is not None:
            warnings.warn(f"pad_token_id {pad} is outside the model's vocabulary (size {vocab_size}); "
                          f"it is used for output padding only", stacklevel=3)
        input_pad = valid_eos[0] if valid_eos else 0
    else:
        input_pad = pad

    bos = config.bos_token_id if config.bos_token_id is not None else special.get("bos_token_id")
    if bos is not None and bos >= vocab_size:
        warnings.warn(f"bos_token_id {bos} is outside the model's vocabulary (size {vocab_size})",
                      stacklevel=3)
    return SpecialTokens(eos=valid_eos, pad=pad, input_pad=input_pad,
                         bos=None if bos is None else int(bos))


def check_model_bounds(config: GenerationConfig, vocab_size: int, context_length: int) -> None:
    """GenerationError when `config` cannot run on a model of this vocabulary and context, found when a
    generator is configured rather than at its first generation: max_length (new tokens) longer than the
    context, or `bad_words` / `allowed_tokens` ids outside the vocabulary. Special ids outside the
    vocabulary stay warnings (`resolve_special_tokens`): an EOS the model cannot produce never matches,
    and an output pad id never enters the model."""
    if config.max_length > context_length:
        raise GenerationError(
            f"max_length {config.max_length} new tokens exceeds the model's context of {context_length} "
            f"tokens (the prompt needs room too)")
    for key in ("bad_words", "allowed_tokens"):
        items = getattr(config, key) or ()
        ids = [i for item in items for i in (item if isinstance(item, tuple) else (item,)) if _is_int(i)]
        outside = sorted({i for i in ids if i >= vocab_size})
        if outside:
            raise GenerationError(f"{key}: token ids {outside[:5]} are outside the model's vocabulary "
                                  f"(0..{vocab_size - 1})")
    bos = config.bos_token_id
    if bos is not None and bos >= vocab_size:
        raise GenerationError(f"bos_token_id {bos} is outside the model's vocabulary (0..{vocab_size - 1}): "
                              "an empty prompt would start from it")
