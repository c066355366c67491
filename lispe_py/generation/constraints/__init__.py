"""Constrained generation: token masks that keep the output inside a set of tokens, a list of
choices, a regular expression, a context-free grammar, or a JSON schema.

    from lispe_py.generation.constraints import build_constraint
    c = build_constraint("regex", r"[0-9]{3}-[0-9]{4}", tokenizer, eos_token_ids=[2])
    scores = c(input_ids, scores)      # a logits processor: disallowed tokens -> -inf, per row

Kinds and specs (see docs/guided.md):
  "allowed_tokens"  list of token ids and/or token strings (each string must be one token)
  "choices"         list of strings: the output is exactly one of them
  "regex"           a Python regular expression the whole output must match
  "grammar"         a grammar in the Python form of the Lisp s-expression (grammar.py)
  "json_schema"     a JSON schema (dict or JSON text) of the subset in json_schema.py

The vocabulary index (a byte trie of the tokenizer) and each compiled automaton, with every mask it
has computed, are cached per tokenizer: the same constraint on the same tokenizer is compiled once.
A `Constraint` object holds the per-row state of one generation call; build one per call.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from ..config import GenerationError
from .automata import DEAD, Automaton, DFAAutomaton, TokenSetAutomaton
from .dfa import MAX_DFA_STATES, ByteDFA, TooLarge
from .grammar import Grammar, GrammarAutomaton
from .json_schema import schema_to_grammar
from .processor import ENDED, Constraint
from .vocab import VocabIndex, vocab_index

KINDS = ("allowed_tokens", "choices", "regex", "grammar", "json_schema")
_CACHE_SIZE = 64

__all__ = [
    "KINDS", "Automaton", "ByteDFA", "Constraint", "DEAD", "DFAAutomaton", "ENDED", "Grammar",
    "GrammarAutomaton", "TokenSetAutomaton", "TooLarge", "VocabIndex", "build_constraint", "compile_automaton",
    "schema_to_grammar", "validate_spec", "vocab_index",
]


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _freeze(x: Any) -> Any:
    """A hashable form of a spec (lists -> tuples, dicts -> sorted item tuples)."""
    if isinstance(x, dict):
        return ("<dict>",) + tuple(sorted((str(k), _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v) for v in x)
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    name = getattr(x, "name", None)       # a Lisp symbol: kept apart from the string of its name
    return ("<symbol>", name) if isinstance(name, str) else ("<object>", repr(x))


def _short_repr(x: Any, n: int = 200) -> str:
    text = repr(x)
    return text if len(text) <= n else text[:n] + f"... ({len(text)} characters)"


def check_choices_size(choices: Iterable[str]) -> None:
    """TooLarge when the choices' byte trie (one automaton state per distinct prefix) would have more than
    MAX_DFA_STATES states; counted without building the automaton, stopping at the limit."""
    root: dict = {}
    nodes = 1
    for choice in choices:
        node = root
        for b in choice.encode("utf-8", "surrogatepass"):
            nxt = node.get(b)
            if nxt is None:
                nodes += 1
                if nodes >= MAX_DFA_STATES:
                    raise TooLarge(f"choices: the choices would need more than {MAX_DFA_STATES} automaton "
                                   "states (one per distinct prefix byte); use fewer or shorter choices")
                nxt = node[b] = {}
            node = nxt


def validate_spec(kind: str, spec: Any) -> Any:
    """Check a constraint spec's shape without a tokenizer (for config validation); returns it
    normalised (lists as tuples). GenerationError with a clear message when malformed."""
    if kind not in KINDS:
        raise GenerationError(f"unknown constraint kind {kind!r}; valid: {', '.join(KINDS)}")
    if kind == "allowed_tokens":
        items = [spec] if isinstance(spec, (int, str)) and not isinstance(spec, bool) else spec
        if not isinstance(items, (list, tuple)) or not items or not all(
                (isinstance(t, int) and not isinstance(t, bool) and t >= 0) or
                (isinstance(t, str) and t) for t in items):
            raise GenerationError(f"allowed_tokens must be a non-empty list of token ids (>= 0) or "
                                  f"token strings, got {spec!r}")
        return tuple(items)
    if kind == "choices":
        if not isinstance(spec, (list, tuple)) or not spec or not all(isinstance(c, str) for c in spec):
            raise GenerationError(f"choices must be a non-empty list of strings, got {_short_repr(spec)}")
        check_choices_size(spec)
        return tuple(spec)
    if kind == "regex":
        if not isinstance(spec, str):
            raise GenerationError(f"regex must be a string (a regular expression), got {spec!r}")
        dfa = ByteDFA.from_regex(spec)
        if dfa.empty_language:
            raise GenerationError(f"regex {_short_repr(spec)} matches nothing")
        return spec
    if kind == "grammar":
        Grammar(spec)
        return spec
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise GenerationError(f"json_schema: not valid JSON: {e}") from None
    Grammar(schema_to_grammar(spec))
    return spec


def _token_ids(spec: Any, tokenizer: Any, vocab: VocabIndex) -> list[int]:
    items = [spec] if isinstance(spec, (int, str)) and not isinstance(spec, bool) else list(spec)
    by_bytes: dict[bytes, int] | None = None
    out = []
    for t in items:
        if isinstance(t, bool) or not isinstance(t, (int, str)):
            raise GenerationError(f"allowed_tokens: {t!r} is neither a token id nor a string")
        if isinstance(t, int):
            if not 0 <= t < vocab.vocab_size:
                raise GenerationError(f"allowed_tokens: token id {t} is outside the vocabulary "
                                      f"(0..{vocab.vocab_size - 1})")
            out.append(t)
            continue
        if by_bytes is None:
            by_bytes = {}
            for i, b in enumerate(vocab.token_bytes):
                if b is not None:
                    by_bytes.setdefault(b, i)
        tid = by_bytes.get(t.encode("utf-8"))
        if tid is None:
            ids = tokenizer.encode(t, add_special_tokens=False)
            if len(ids) != 1:
                raise GenerationError(f"allowed_tokens: {t!r} is not a single token (it encodes to "
                                      f"{ids}); use \"choices\" to allow whole strings")
            tid = ids[0]
        out.append(tid)
    return out


def compile_automaton(kind: str, spec: Any, tokenizer: Any) -> tuple[Automaton, str]:
    """The (cached per tokenizer) automaton of a constraint and its printed spec."""
    if kind not in KINDS:
        raise GenerationError(f"unknown constraint kind {kind!r}; valid: {', '.join(KINDS)}")
    vocab = vocab_index(tokenizer)
    key = (kind, _freeze(spec))
    with vocab.lock:
        hit = vocab.cache.get(key)
        if hit is not None:
            vocab.cache[key] = vocab.cache.pop(key)     # most recently used last
            return hit
    if kind == "allowed_tokens":
        validate_spec(kind, spec)
        ids = _token_ids(spec, tokenizer, vocab)
        auto: Automaton = TokenSetAutomaton(vocab, ids)
        text = "(" + " ".join(str(i) for i in auto.ids) + ")"
    elif kind == "choices":
        choices = validate_spec(kind, spec)
        auto = DFAAutomaton(vocab, ByteDFA.from_literals(choices))
        text = "(" + " ".join(_q(c) for c in choices) + ")"
    elif kind == "regex":
        validate_spec(kind, spec)
        auto = DFAAutomaton(vocab, ByteDFA.from_regex(spec))
        text = _q(spec)
    elif kind == "grammar":
        g = Grammar(spec)
        auto = GrammarAutomaton(vocab, g)
        text = g.describe()
    else:
        schema = json.loads(spec) if isinstance(spec, str) else spec
        auto = GrammarAutomaton(vocab, Grammar(schema_to_grammar(schema)))
        text = _q(json.dumps(schema, separators=(",", ":"), sort_keys=True))
    with vocab.lock:
        vocab.cache[key] = (auto, text)
        while len(vocab.cache) > _CACHE_SIZE:
            vocab.cache.pop(next(iter(vocab.cache)))
    return auto, text


def build_constraint(kind: str, spec: Any, tokenizer: Any,
                     eos_token_ids: Iterable[int] = ()) -> Constraint:
    """A fresh `Constraint` logits processor for one generation call.

    kind: one of KINDS; spec: as described in the module docstring; tokenizer: the model's
    tokenizer (lispe_py.models.tokenizer.Tokenizer or anything with vocab_size, all_special_ids and
    token_bytes/id_to_token); eos_token_ids: the ids allowed once the output is complete.
    """
    if tokenizer is None:
        raise GenerationError(f"a {kind!r} constraint needs the model's tokenizer (the model has none)")
    auto, text = compile_automaton(kind, spec, tokenizer)
    return Constraint(auto, eos_token_ids, kind, text)
