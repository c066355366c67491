"""Scores, perplexity, evaluation, traces and logit helpers."""
from __future__ import annotations

from typing import Any

import torch

from ...builtins.registry import builtin
from ...errors import LispEError
from ...generation import evaluate, generate_trace, perplexity, replay
from ...generation import trace_diff
from ...generation.trace import Trace
from ...models import DecoderModel
from ...models.tokenizer import Tokenizer
from ...values import Integers
from ..torch_values import (arg_error, config_pairs, core_errors, expect_int, expect_real, expect_tensor,
                            ids_to_list)

from ._common import _engine, _model, _generator, _model_tokenizer, _call_config, LIB, G_GEN


def _one_prompt(fname: str, prompt: Any) -> Any:
    """A single prompt: a string, or token ids (integers, a list, a 1-D tensor)."""
    if isinstance(prompt, str):
        return prompt
    p = ids_to_list(fname, "prompt", prompt)
    if not p or isinstance(p[0], list):
        raise LispEError(f"{fname}: argument 'prompt': one prompt: a string or a non-empty list of token ids")
    return p


def _tokenizer_or_none(ctx: Any, model: DecoderModel) -> Tokenizer | None:
    return _model_tokenizer(ctx, model)


def _top_to_lisp(top: list) -> list:
    return [[i, t, lp] for i, t, lp in top]


@builtin("torch_generate_scored", group=G_GEN, library=LIB, min_args=2, max_args=4, ctx=True)
def torch_generate_scored(ctx: Any, generator: Any, prompt: Any, config: Any = None, top_n: Any = 5) -> dict:
    """(torch_generate_scored generator "Once upon a time" {"max_length":10} 5)

    Generates from one prompt (greedy or sampling) and scores every new token. A dictionary: "ids",
    "text", "tokens" (one dictionary per token: "id", "text", "logprob" (after the processor chain,
    the distribution the token was chosen from), "raw_logprob" (the model's log_softmax), "top" and
    "raw_top" (the top_n alternatives as (id text logprob))), "sequence_logprob" (sum of logprob),
    "raw_sequence_logprob" and "perplexity" (exp of minus the mean raw_logprob).
    """
    fname = "torch_generate_scored"
    gen = _generator(fname, generator)
    p = _one_prompt(fname, prompt)
    n = expect_int(fname, "top_n", top_n, 0)
    cfg = _call_config(fname, gen, config, ctx)
    with core_errors(fname):
        r = _engine(fname, gen).generate_scored(p, cfg, top_n=n, tokenizer=_tokenizer_or_none(ctx, gen.model))
    tokens = []
    for t in r["tokens"]:
        d = {"id": t["id"], "text": t["text"], "logprob": t["logprob"], "raw_logprob": t["raw_logprob"]}
        if "top" in t:
            d["top"] = _top_to_lisp(t["top"])
            d["raw_top"] = _top_to_lisp(t["raw_top"])
        tokens.append(d)
    return {"ids": Integers(r["ids"]), "text": r["text"], "tokens": tokens,
            "sequence_logprob": r["sequence_logprob"], "raw_sequence_logprob": r["raw_sequence_logprob"],
            "perplexity": r["perplexity"]}


def _text_arg(fname: str, arg: str, value: Any) -> Any:
    if isinstance(value, str):
        return value
    ids = ids_to_list(fname, arg, value)
    if ids and isinstance(ids[0], list):
        raise LispEError(f"{fname}: argument '{arg}': one text: a string or a list of token ids")
    return ids


@builtin("torch_perplexity", group=G_GEN, library=LIB, ctx=True)
def torch_perplexity(ctx: Any, model: Any, text: Any) -> float:
    """(torch_perplexity model "The cat sat on the mat.")

    The perplexity of a text (a string, encoded with the model's tokenizer, or token ids) under the
    model: exp of minus the mean log-probability of each token given the previous ones.
    """
    fname = "torch_perplexity"
    m = _model(fname, model)
    t = _text_arg(fname, "text", text)
    with core_errors(fname):
        return perplexity(m, t, tokenizer=_tokenizer_or_none(ctx, m))


@builtin("torch_evaluate", group=G_GEN, library=LIB, ctx=True)
def torch_evaluate(ctx: Any, model: Any, texts: Any) -> dict:
    """(torch_evaluate model (strings "The cat sat." "Paris is in France."))

    Perplexity over a list of texts (strings or token-id lists): a dictionary with "perplexity" (over
    all tokens, token-weighted), "mean_logprob", "tokens" (scored tokens) and "texts" (one dictionary
    per text: "index", "tokens", "logprob", "perplexity").
    """
    fname = "torch_evaluate"
    m = _model(fname, model)
    if not isinstance(texts, list) or not texts:
        raise arg_error(fname, "texts", "a non-empty list of texts (strings or lists of token ids)", texts)
    items = [_text_arg(fname, "texts", t) for t in texts]
    with core_errors(fname):
        return evaluate(m, items, tokenizer=_tokenizer_or_none(ctx, m))


@builtin("torch_generate_trace", group=G_GEN, library=LIB, min_args=2, max_args=3, ctx=True)
def torch_generate_trace(ctx: Any, generator: Any, prompt: Any, config: Any = None) -> list:
    """(torch_generate_trace generator "Once upon a time" {"strategy":"top_p" "max_length":20})

    Generates from one prompt and returns a replayable transcript, an s-expression:
    (trace (format 1) (model ...) (prompt ids...) (seed n) (config ("key" value)...) (chain ...)
    (steps (step token logprob kept)...) (changes ...) (functions ...) (text "...")). A sampling
    config without a seed gets one (recorded), so the trace always replays.
    """
    fname = "torch_generate_trace"
    gen = _generator(fname, generator)
    p = _one_prompt(fname, prompt)
    cfg = _call_config(fname, gen, config, ctx)
    with core_errors(fname):
        return generate_trace(_model(fname, gen), p, cfg, tokenizer=_tokenizer_or_none(ctx, gen.model)).to_sexp()


def _trace_arg(fname: str, arg: str, value: Any) -> Trace:
    if not isinstance(value, (list, str)):
        raise arg_error(fname, arg, "a trace (from torch_generate_trace) or its printed form", value)
    with core_errors(fname):
        return Trace.loads(value) if isinstance(value, str) else Trace.from_sexp(value)


@builtin("torch_replay", group=G_GEN, library=LIB, min_args=2, max_args=3, ctx=True)
def torch_replay(ctx: Any, generator: Any, trace: Any, config: Any = None) -> list:
    """(torch_replay generator trace)

    Runs a trace's generation again (its prompt, config, seed and recorded on_step changes; the
    generator's own settings are not used) and returns the new trace: the same tokens, so
    (torch_trace_diff trace (torch_replay generator trace)) is nil. The trace may be its printed
    string. config may only give the function keys a trace cannot hold: "logits_processor",
    "stop_when", "callback".
    """
    fname = "torch_replay"
    gen = _generator(fname, generator)
    t = _trace_arg(fname, "trace", trace)
    pairs = dict(config_pairs(fname, "config", config, ctx))
    with core_errors(fname):
        return replay(_model(fname, gen), t, pairs, tokenizer=_tokenizer_or_none(ctx, gen.model)).to_sexp()


@builtin("torch_trace_diff", group=G_GEN, library=LIB)
def torch_trace_diff(first: Any, second: Any) -> Any:
    """(torch_trace_diff trace1 trace2)

    nil when the two traces chose the same tokens, else a dictionary: "step" (the first divergent
    step), "reason" ("token", "length" when one stopped earlier, or "prompt"), "first" and "second"
    (that step of each trace as (token logprob kept), nil where a trace has ended).
    """
    fname = "torch_trace_diff"
    a, b = _trace_arg(fname, "first", first), _trace_arg(fname, "second", second)
    d = trace_diff(a, b)
    if d is None:
        return None
    return {"step": d["step"], "reason": d["reason"],
            "first": None if d["first"] is None else list(d["first"]),
            "second": None if d["second"] is None else list(d["second"])}


def _token_ids_arg(fname: str, scores: torch.Tensor, ids: Any) -> torch.Tensor:
    lst = ids_to_list(fname, "ids", ids)
    if lst and isinstance(lst[0], list):
        raise LispEError(f"{fname}: argument 'ids': a list of token ids")
    vocab = scores.shape[-1]
    bad = [i for i in lst if not 0 <= i < vocab]
    if bad:
        raise LispEError(f"{fname}: argument 'ids': token ids {bad[:5]} are outside the scores' "
                         f"vocabulary (0..{vocab - 1})")
    return torch.tensor(lst, dtype=torch.long, device=scores.device)


def _scores_arg(fname: str, scores: Any) -> torch.Tensor:
    t = expect_tensor(fname, "scores", scores)
    if not t.is_floating_point() or t.dim() == 0:
        raise LispEError(f"{fname}: argument 'scores': expected float scores [..., vocab], got "
                         f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}")
    return t


@builtin("torch_ban_tokens", group=G_GEN, library=LIB)
def torch_ban_tokens(scores: Any, ids: Any) -> torch.Tensor:
    """(torch_ban_tokens scores (integers 13 42))

    The scores with the given token ids set to -inf (never chosen): for logits_processor lambdas,
    (lambda (ids scores) (torch_ban_tokens scores (integers 13))).
    """
    fname = "torch_ban_tokens"
    t = _scores_arg(fname, scores)
    return t.index_fill(-1, _token_ids_arg(fname, t, ids), float("-inf"))


@builtin("torch_bias_tokens", group=G_GEN, library=LIB)
def torch_bias_tokens(scores: Any, ids: Any, bias: Any) -> torch.Tensor:
    """(torch_bias_tokens scores (integers 13 42) 2.5)

    The scores with bias added to the given token ids (negative: less likely): for logits_processor
    lambdas, (lambda (ids scores) (torch_bias_tokens scores (integers 13) 5.0)).
    """
    fname = "torch_bias_tokens"
    t = _scores_arg(fname, scores)
    b = expect_real(fname, "bias", bias)
    idx = _token_ids_arg(fname, t, ids)
    out = t.clone()
    out[..., idx] += b
    return out
