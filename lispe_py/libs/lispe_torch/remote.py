"""Remote models: `torch_remote_model`, a model served by an OpenAI-compatible server (docs/scale-out.md).

The value it returns is a `lispe_py.engines.RemoteEngine`; the generator and tokenizer functions reach
it through its engine like a local model's (no remote branches in them). The engine module (and the
`openai` client) is imported at the first call, not at `(use 'lispe_torch)`.
"""
from __future__ import annotations

from typing import Any

from ...builtins.registry import builtin
from ...errors import LispEError
from ...models.tokenizer import Tokenizer
from ...values import register_type
from ..torch_values import arg_error, config_pairs, core_errors

from ._common import LIB, G_MODEL, _set_default_tokenizer


def _remote_repr(engine: Any) -> str:
    return f"#<torch_model {engine.describe()}>"


@builtin("torch_remote_model", group=G_MODEL, library=LIB, min_args=1, max_args=2, ctx=True)
def torch_remote_model(ctx: Any, url: Any, config: Any = None) -> Any:
    """(torch_remote_model "http://127.0.0.1:8000/v1" {"timeout":30 "retries":2})

    A model served by an OpenAI-compatible server (vLLM, TGI, llama.cpp's server, `lispe serve`),
    usable wherever a model is for generation: torch_generator_create, torch_generate,
    torch_generate_text (streaming callback, stop_when), torch_generate_batch, torch_generate_scored,
    torch_model_info and the tokenizer functions (the server's /tokenize and /detokenize). url: a base
    URL, or a list of them (replicas of one model: requests are spread, a failed one is skipped).
    Config keys: "model" (served name; default: the only one the server lists), "api_key_env" (the
    NAME of an environment variable holding the key), "timeout" (seconds, 60), "retries" (2),
    "max_concurrency" (batch requests in flight, 8), "engine" ("lispe" "vllm" "llamacpp" "tgi";
    default: detected), "tokenizer" (a local tokenizer: path, model name or tokenizer value),
    "keep_partial" (true: a batch with failed prompts gives nil for them instead of an error),
    "backoff" (seconds before the first retry, 0.5). Sandboxed, the host must be an --allow-net one.
    """
    from ...engines.remote import RemoteEngine

    fname = "torch_remote_model"
    register_type(RemoteEngine, "torch_model_", _remote_repr)
    if not (isinstance(url, str) or (isinstance(url, list) and url and all(isinstance(u, str) for u in url))):
        raise arg_error(fname, "url", 'a server URL like "http://127.0.0.1:8000/v1" or a list of them', url)
    cfg = dict(config_pairs(fname, "config", config, ctx))
    tok = cfg.get("tokenizer")
    if isinstance(tok, str):
        from .tokenizers import tokenizer_load

        cfg["tokenizer"] = tokenizer_load(ctx, tok)
    elif tok is not None and not isinstance(tok, Tokenizer):
        raise arg_error(fname, "config", '"tokenizer": a path, a model name or a tokenizer', tok)

    def check_host(host: str) -> None:
        try:
            ctx.interp.check_net_access(host)
        except LispEError as exc:
            raise LispEError(f"{fname}: {exc.message}") from None

    with core_errors(fname):
        engine = RemoteEngine(list(url) if isinstance(url, list) else url, cfg, check_host=check_host)
    _set_default_tokenizer(ctx, engine.tokenizer)
    return engine
