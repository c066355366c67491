"""Replayable transcripts of a generation: record, replay, diff.

`generate_trace(model, prompt, config)` runs one generation (greedy or sampling) and returns a
`Trace`: the prompt ids, every replayable config key, the seed (one is drawn and recorded when a
sampling config has none, so every trace replays), the processor chain, each step's (token,
processed log-probability, kept-set size), the parameter changes `on_step` hooks made, and the text.

`replay(model, trace)` runs the same generation again from the trace alone: same prompt, config and
seed, and the recorded parameter changes applied after the same steps (the hooks themselves are not
needed). Function-valued keys (`logits_processor`, `stop_when`) cannot be written down: the trace
names them, and `replay(model, trace, {"logits_processor": f})` supplies them again.
`trace_diff(a, b)` gives the first step where two traces chose different tokens (None if none).

A trace's canonical form is a LispE s-expression (`to_sexp()` / `dumps()`, read back by
`from_sexp()` / `loads()`, or by the interpreter's reader):

    (trace (format 1) (model "llama" 300) (prompt 5 9 13) (seed 42)
           (config ("max_length" 8) ("strategy" "sample") ("temperature" 0.8))
           (chain (temperature 0.8) (top_k 50))
           (steps (0 17 -1.2345 50) (1 ...))      ; (step token logprob kept)
           (changes (3 ("temperature" 0.3)))       ; after step 3, from on_step hooks
           (functions) (text "..."))

Floats that the LispE printer would round (it prints 6 significant digits) are written as strings
in `config` and `changes` and read back exactly; the step log-probabilities are informative only.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

from .config import FUNCTION_KEYS, GenerationConfig, GenerationError
from .generate import _check_single, _config, _execute, make_plan, new_text
from .metrics import StepRecorder, _encode

FORMAT = 1
# config keys that hold real numbers: a string there is an exactly written float (see _num_out)
_REAL_KEYS = ("temperature", "top_p", "min_p", "typical_p", "repetition_penalty", "presence_penalty",
              "frequency_penalty", "length_penalty")


@dataclass
class Trace:
    """One recorded generation (see the module docstring)."""

    prompt: list[int]
    config: dict[str, Any]                    # replayable keys that differ from the defaults
    seed: int | None
    chain: str                                # the chain at the start, as printed by describe()
    steps: list[tuple[int, float, int]]       # per step: (token, processed logprob, kept-set size)
    changes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)   # function-valued keys that were set
    text: str | None = None
    model: tuple[str, int] = ("", 0)          # architecture and vocabulary size

    @property
    def tokens(self) -> list[int]:
        return [s[0] for s in self.steps]

    # ------------------------------------------------------------------ s-expression form
    def to_sexp(self) -> list:
        """The trace as LispE data (lists, symbols, strings, numbers)."""
        from ..reader import read_one
        from ..values import Symbol

        def sym(name: str) -> Any:
            return Symbol(name)

        config = [sym("config")] + [[k, _value_out(k, v)] for k, v in self.config.items()]
        changes = [sym("changes")] + [[n] + [[k, _value_out(k, v)] for k, v in c.items()]
                                      for n, c in self.changes]
        chain = read_one(self.chain) if self.chain else [sym("chain")]
        return [sym("trace"), [sym("format"), FORMAT], [sym("model"), self.model[0], self.model[1]],
                [sym("prompt")] + list(self.prompt), [sym("seed"), self.seed], config, _plain(chain),
                [sym("steps")] + [[i, t, lp, k] for i, (t, lp, k) in enumerate(self.steps)],
                changes, [sym("functions")] + list(self.functions), [sym("text"), self.text]]

    def dumps(self) -> str:
        """The printed s-expression (what `(string trace)` gives in LispE)."""
        from ..printer import to_string
        return to_string(self.to_sexp())

    @classmethod
    def loads(cls, text: str) -> "Trace":
        """A trace from its printed form (read with the LispE reader)."""
        from ..errors import LispEError
        from ..reader import read_one
        try:
            data = read_one(text)
        except LispEError as exc:
            raise GenerationError(f"trace: cannot read the printed trace: {exc.message}") from None
        return cls.from_sexp(data)

    @classmethod
    def from_sexp(cls, data: Any) -> "Trace":
        """A trace from LispE data (the result of `to_sexp`, or its printed form read back)."""
        if isinstance(data, Trace):
            return data
        if not isinstance(data, list) or not data or _name(data[0]) != "trace":
            raise GenerationError("a trace is a list (trace (prompt ...) (config ...) (steps ...) ...), "
                                  "as torch_generate_trace returns it")
        parts: dict[str, list] = {}
        for item in data[1:]:
            if not isinstance(item, list) or not item or _name(item[0]) is None:
                raise GenerationError(f"trace: unexpected entry {item!r}")
            parts[_name(item[0])] = list(item[1:])
        for needed in ("prompt", "config", "steps"):
            if needed not in parts:
                raise GenerationError(f"trace: the ({needed} ...) entry is missing")
        fmt = parts.get("format", [FORMAT])
        if fmt != [FORMAT]:
            raise GenerationError(f"trace: unknown format {fmt!r} (this version reads format {FORMAT})")
        try:
            prompt = [_int(x) for x in parts["prompt"]]
            config = {}
            for pair in parts["config"]:
                k, v = _pair(pair)
                config[k] = _value_in(k, v)
            steps = []
            for s in parts["steps"]:
                if not isinstance(s, list) or len(s) != 4:
                    raise ValueError(f"a step is (step token logprob kept), got {s!r}")
                steps.append((_int(s[1]), float(s[2]), _int(s[3])))
            changes = []
            for c in parts.get("changes", []):
                if not isinstance(c, list) or not c:
                    raise ValueError(f"a change is (step (\"key\" value) ...), got {c!r}")
                changes.append((_int(c[0]), {k: _value_in(k, v) for k, v in map(_pair, c[1:])}))
            seed = (parts.get("seed") or [None])[0]
            seed = None if seed is None else _int(seed)
            chain = parts.get("chain")
            text = (parts.get("text") or [None])[0]
            model = parts.get("model") or ["", 0]
        except (TypeError, ValueError) as exc:
            raise GenerationError(f"trace: {exc}") from None
        from ..printer import to_string
        return cls(prompt=prompt, config=config, seed=seed,
                   chain=to_string([_sym_like("chain")] + chain) if chain is not None else "",
                   steps=steps, changes=changes,
                   functions=[str(f) for f in parts.get("functions", [])],
                   text=text if isinstance(text, str) else None,
                   model=(str(model[0]), _int(model[1]) if len(model) > 1 else 0))


def _name(x: Any) -> str | None:
    if isinstance(x, str):
        return x
    n = getattr(x, "name", None)
    return n if isinstance(n, str) else None


def _sym_like(name: str) -> Any:
    from ..values import Symbol
    return Symbol(name)


def _plain(x: Any) -> Any:
    """Reader forms as plain lists (so the trace prints and compares like any Lisp list)."""
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


def _int(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise ValueError(f"expected an integer, got {x!r}")
    return int(x)


def _pair(p: Any) -> tuple[str, Any]:
    if not isinstance(p, list) or len(p) != 2 or not isinstance(p[0], str):
        raise ValueError(f"a setting is (\"key\" value), got {p!r}")
    return p[0], p[1]


def _short_float(v: float) -> str:
    return f"{v:g}"


def _value_out(key: str, v: Any) -> Any:
    """A config value as LispE data that reads back to the same value."""
    if isinstance(v, bool):
        return "true" if v else "false"        # LispE has no false: nil would read back as "unset"
    if isinstance(v, float) and math.isfinite(v) and float(_short_float(v)) != v:
        return repr(v)                         # the printer would round it
    if key == "json_schema" and not isinstance(v, str):
        return json.dumps(v)
    if key == "grammar" and isinstance(v, dict):
        return [[k, _value_out("", e)] for k, e in v.items()]
    if isinstance(v, tuple):
        return [_value_out(key, x) for x in v]
    if isinstance(v, list):
        return [_value_out(key, x) for x in v]
    return v


def _value_in(key: str, v: Any) -> Any:
    if key in ("do_sample", "early_stopping") and v in ("true", "false"):
        return v == "true"
    if key in _REAL_KEYS and isinstance(v, str):
        return float(v)
    if isinstance(v, list):
        return [_value_in("", x) for x in v]
    return v


# ---------------------------------------------------------------------------- record and replay
def _replayable(config: GenerationConfig) -> tuple[dict[str, Any], list[str]]:
    defaults = GenerationConfig()
    out: dict[str, Any] = {}
    functions = []
    for k, v in config.to_dict().items():
        if k in FUNCTION_KEYS:
            if v:
                functions.append(k)
            continue
        if k == "seed":
            continue
        if v != getattr(defaults, k) and not (isinstance(v, list) and tuple(v) == getattr(defaults, k)):
            out[k] = v
    return out, functions


def generate_trace(model: Any, prompt: str | Sequence[int], config: GenerationConfig | dict | None = None,
                   *, tokenizer: Any = None, schedule: dict[int, dict] | None = None,
                   **overrides: Any) -> Trace:
    """Generate from one prompt and record a replayable `Trace` (greedy and sampling strategies)."""
    config = _config(config, overrides)
    if config.strategy == "beam_search":
        raise GenerationError("traces record the greedy and sampling strategies, not beam_search")
    if config.seed is None and not config.is_greedy:
        config = config.update({"seed": random.SystemRandom().randrange(2 ** 31)})
    tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    ids = _encode(tok, prompt, "generate_trace")
    plan = make_plan(model, ids, config, None, tok)
    _check_single(plan, "generate_trace")
    chain = plan.chain.describe()
    plan.recorder = rec = StepRecorder(0)
    plan.schedule = schedule
    _execute(model, plan)
    n = int(plan.new_lengths[0])
    out = plan.result.view(-1)
    new = out[len(ids):len(ids) + n].tolist()
    data = rec.collect()
    steps = [(t, float(data["logprob"][0, i]), int(data["kept"][0, i])) for i, t in enumerate(new)]
    replayable, functions = _replayable(config)
    return Trace(prompt=list(ids), config=replayable, seed=config.seed, chain=chain, steps=steps,
                 changes=[(s, dict(c)) for s, c in plan.changes], functions=functions,
                 text=None if tok is None else new_text(tok, ids, new, config.stop),
                 model=(str(model.config.arch), int(model.config.vocab_size)))


def replay(model: Any, trace: Trace | list | str, config: dict | None = None, *,
           tokenizer: Any = None) -> Trace:
    """Run a trace's generation again and return the new trace (equal tokens when nothing changed:
    `trace_diff(trace, replay(model, trace))` is None). `config` may give function-valued keys
    (`logits_processor`, `stop_when`, `callback`); `on_step` is not used: the recorded changes are
    applied instead."""
    trace = Trace.loads(trace) if isinstance(trace, str) else Trace.from_sexp(trace)
    vocab = int(model.config.vocab_size)
    if trace.model[1] and trace.model[1] != vocab:
        raise GenerationError(f"this trace was recorded on a model with a vocabulary of {trace.model[1]}, "
                              f"not {vocab}")
    extra: dict[str, Any] = {}
    for k, v in (dict(config) if config is not None else {}).items():
        if k not in FUNCTION_KEYS or k == "on_step":
            raise GenerationError(f"replay takes only the function-valued keys logits_processor, "
                                  f"stop_when and callback (the rest comes from the trace); got {k!r}")
        extra[k] = v
    missing = [f for f in trace.functions if f not in ("on_step", "callback") and extra.get(f) is None]
    if missing:
        raise GenerationError(f"this trace used {', '.join(missing)}, which a trace cannot hold: "
                              f"give {'it' if len(missing) == 1 else 'them'} again in replay's config")
    try:
        cfg = GenerationConfig.from_dict({**trace.config, **extra, "seed": trace.seed})
    except GenerationError as exc:
        raise GenerationError(f"trace: {exc}") from None
    schedule: dict[int, dict] = {}
    for step, change in trace.changes:
        schedule.setdefault(step, {}).update(change)
    return generate_trace(model, trace.prompt, cfg, tokenizer=tokenizer, schedule=schedule or None)


def trace_diff(a: Trace | list | str, b: Trace | list | str) -> dict[str, Any] | None:
    """The first step where two traces differ, or None when they chose the same tokens.

    Returns {"step": n, "reason": "prompt" | "token" | "length", "first": (token logprob kept) or None,
    "second": ...}: "prompt" when the prompts differ (step 0), "length" when one trace stops earlier.
    """
    ta = Trace.loads(a) if isinstance(a, str) else Trace.from_sexp(a)
    tb = Trace.loads(b) if isinstance(b, str) else Trace.from_sexp(b)
    if ta.prompt != tb.prompt:
        return {"step": 0, "reason": "prompt", "first": None, "second": None}
    for i, (sa, sb) in enumerate(zip(ta.steps, tb.steps)):
        if sa[0] != sb[0]:
            return {"step": i, "reason": "token", "first": sa, "second": sb}
    if len(ta.steps) != len(tb.steps):
        i = min(len(ta.steps), len(tb.steps))
        return {"step": i, "reason": "length", "first": ta.steps[i] if i < len(ta.steps) else None,
                "second": tb.steps[i] if i < len(tb.steps) else None}
    return None


__all__ = ["Trace", "generate_trace", "replay", "trace_diff"]
