"""Remote engines: generation on an OpenAI-compatible server (vLLM, TGI, llama.cpp's server, `lispe serve`).

`RemoteEngine(urls, config)` is the second implementation of `Engine` (base.py): the same calls as the
local engine, sent as `/v1/completions` requests through the official `openai` client (SSE streaming
included), with the server's tokenizer endpoints through httpx. What the server cannot do is refused
before any request is sent, with an error naming the key and the engine (`check_config`).

Replicas: `urls` may list several servers of one model; requests go round-robin, a replica that fails
(connection refused, timeout, 5xx, 429) is marked down for a while and the request moves on to the
next one; when every replica of a round has failed the round is retried after a backoff, up to
`retries` times, then the error names each URL, its status and the server's message.

The API key is read from the environment variable named by `api_key_env` when the engine is made; it
is kept only inside the HTTP clients and never appears in `info()`, printed forms or errors.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit

import httpx

from ..generation import GenerationConfig, GenerationError
from .base import BatchError, Engine, EngineError

KINDS = ("lispe", "vllm", "llamacpp", "llama-cpp-python", "tgi")

# What each kind of server does (docs/scale-out.md has the same table in words).
#   prompt_ids: takes a prompt as a list of token ids;  token_ids: returns the new ids
#   structured: the guided keys it maps (choices/regex/json_schema/grammar)
_COMMON = dict(logits_processor=False, on_step=False, beam_search=False, embeddings=False,
               no_repeat_ngram_size=False, logprobs=True, n=True)
CAPABILITIES: dict[str, dict[str, Any]] = {
    "lispe": dict(_COMMON, prompt_ids=True, token_ids=True, top_k=True, min_p=True, typical_p=False,
                  repetition_penalty=True, min_new_tokens=True, eos_token_id=False, allowed_tokens=False,
                  bad_words=False, structured=("choices", "regex", "json_schema", "grammar")),
    "vllm": dict(_COMMON, prompt_ids=True, token_ids=True, top_k=True, min_p=True, typical_p=False,
                 repetition_penalty=True, min_new_tokens=True, eos_token_id=True, allowed_tokens=True,
                 bad_words=True, structured=("choices", "regex", "json_schema")),
    "llamacpp": dict(_COMMON, prompt_ids=True, token_ids=True, top_k=True, min_p=True, typical_p=True,
                     repetition_penalty=True, min_new_tokens=False, eos_token_id=False, n=False,
                     allowed_tokens=False, bad_words=False, structured=("choices", "json_schema")),
    # python -m llama_cpp.server: text prompts only, no ids back, `n` ignored, GBNF grammars only
    "llama-cpp-python": dict(_COMMON, prompt_ids=False, token_ids=False, top_k=True, min_p=True,
                             typical_p=True, repetition_penalty=True, min_new_tokens=True,
                             eos_token_id=False, n=False, allowed_tokens=False, bad_words=False,
                             structured=("choices",)),
    "tgi": dict(_COMMON, prompt_ids=False, token_ids=False, top_k=False, min_p=False, typical_p=False,
                repetition_penalty=False, min_new_tokens=False, eos_token_id=False, allowed_tokens=False,
                bad_words=False, structured=()),
}

CONFIG_KEYS = ("model", "api_key_env", "timeout", "retries", "max_concurrency", "engine", "tokenizer",
               "keep_partial", "backoff")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Failure(Exception):
    """One failed attempt on one replica: retryable (connection, timeout, 5xx, 429) or not (4xx)."""

    def __init__(self, url: str, status: int | None, message: str, retry: bool):
        super().__init__(message)
        self.url, self.status, self.message, self.retry = url, status, message, retry

    def describe(self) -> str:
        what = f"status {self.status}" if self.status is not None else "no answer"
        return f"{self.url} ({what}): {self.message}"


class _Replica:
    """One server: its /v1 base URL, an openai client and an httpx client for the root endpoints."""

    def __init__(self, url: str, api_key: str | None, timeout: float):
        import openai

        self.url = url.rstrip("/")
        self.root = self.url[:-3] if self.url.endswith("/v1") else self.url
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = openai.OpenAI(base_url=self.url, api_key=api_key or "none", timeout=timeout,
                                    max_retries=0)
        self.http = httpx.Client(base_url=self.root, headers=headers, timeout=timeout)
        self.down_until = 0.0
        self.requests = 0          # attempts sent to this replica (torch_model_info's "requests")

    def close(self) -> None:
        self.http.close()
        self.client.close()


def parse_urls(urls: Any) -> list[str]:
    """The base URLs (a string or a list of strings, http/https), each ending in /v1."""
    items = [urls] if isinstance(urls, str) else list(urls) if isinstance(urls, (list, tuple)) else None
    if not items or not all(isinstance(u, str) for u in items):
        raise EngineError(f"a remote model's URL is a string like \"http://127.0.0.1:8000/v1\" or a list "
                          f"of them, got {_show(urls)}")
    out = []
    for u in items:
        parts = urlsplit(u.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineError(f"bad server URL \"{u}\": expected http://HOST:PORT/v1")
        base = u.strip().rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        out.append(base)
    return out


def url_host(url: str) -> str:
    """"host:port" of a URL (the port filled from the scheme), for the sandbox's --allow-net check."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RemoteEngine(Engine):
    """A model served by an OpenAI-compatible server; see the module docstring and docs/scale-out.md.

    config keys: model (served name; default the only one /v1/models lists), api_key_env (the NAME of
    an environment variable holding the key), timeout (seconds per request, 60), retries (rounds
    retried after every replica failed, 2), max_concurrency (requests in flight for a batch, 8),
    engine ("lispe", "vllm", "llamacpp", "llama-cpp-python", "tgi"; default: detected), tokenizer (a local Tokenizer
    used instead of the server's /tokenize and /detokenize), keep_partial (a batch with failed
    prompts returns the finished rows and None for the failed ones, with a warning), backoff (first
    retry delay in seconds, 0.5; doubled each round).
    """

    def __init__(self, urls: Any, config: dict[str, Any] | None = None,
                 check_host: Callable[[str], Any] | None = None):
        self.urls = parse_urls(urls)
        cfg = dict(config or {})
        bad = [k for k in cfg if k not in CONFIG_KEYS]
        if bad:
            from ..hints import did_you_mean

            raise EngineError(f"unknown remote model config key \"{bad[0]}\"{did_you_mean(bad[0], CONFIG_KEYS)}; "
                              "valid keys: " + ", ".join(f'"{k}"' for k in CONFIG_KEYS))
        self.timeout = self._number(cfg, "timeout", 60.0, positive=True)
        self.backoff = self._number(cfg, "backoff", 0.5)
        self.retries = self._integer(cfg, "retries", 2, 0)
        self.max_concurrency = self._integer(cfg, "max_concurrency", 8, 1)
        self.keep_partial = cfg.get("keep_partial") is True
        if cfg.get("keep_partial") not in (None, True, False):
            raise EngineError(f"remote model config \"keep_partial\" must be true or nil, got "
                              f"{_show(cfg['keep_partial'])}")
        self.api_key_env = cfg.get("api_key_env")
        api_key = None
        if self.api_key_env is not None:
            if not isinstance(self.api_key_env, str) or not self.api_key_env:
                raise EngineError("remote model config \"api_key_env\" is the NAME of an environment "
                                  "variable (a string)")
            api_key = os.environ.get(self.api_key_env)
            if not api_key:
                raise EngineError(f"remote model config \"api_key_env\": the environment variable "
                                  f"{self.api_key_env} is not set")
        kind = cfg.get("engine")
        if kind is not None and kind not in KINDS:
            raise EngineError(f"remote model config \"engine\": unknown engine {_show(kind)}; valid: "
                              + ", ".join(f'"{k}"' for k in KINDS))
        self._local_tokenizer = cfg.get("tokenizer")
        model = cfg.get("model")
        if model is not None and not isinstance(model, str):
            raise EngineError(f"remote model config \"model\" must be a string, got {_show(model)}")
        if check_host is not None:
            for u in self.urls:
                check_host(url_host(u))
        self._replicas = [_Replica(u, api_key, self.timeout) for u in self.urls]
        self._next = 0
        self._lock = threading.Lock()
        self._tokenize_path: str | None = None
        self.context_length: int | None = None
        self.model, detected = self._discover(model, probe=kind is None)
        self.kind = kind or detected
        self.caps = CAPABILITIES[self.kind]
        self._tokenizer = self._local_tokenizer or RemoteTokenizer(self)

    # ------------------------------------------------------------------ config helpers
    @staticmethod
    def _number(cfg: dict, key: str, default: float, positive: bool = False) -> float:
        v = cfg.get(key, default)
        if v is None:
            return default
        if not _is_real(v) or v < 0 or (positive and v == 0):
            raise EngineError(f"remote model config \"{key}\" must be a {'positive' if positive else 'non-negative'} "
                              f"number of seconds, got {_show(v)}")
        return float(v)

    @staticmethod
    def _integer(cfg: dict, key: str, default: int, lo: int) -> int:
        v = cfg.get(key, default)
        if v is None:
            return default
        if not _is_int(v) or v < lo:
            raise EngineError(f"remote model config \"{key}\" must be an integer >= {lo}, got {_show(v)}")
        return v

    # ------------------------------------------------------------------ requests with retries
    def _pick(self, tried: set[int]) -> int:
        """The next replica to try: round-robin over the ones not tried in this round, preferring
        those not marked down."""
        with self._lock:
            n = len(self._replicas)
            order = [(self._next + i) % n for i in range(n)]
            self._next = (self._next + 1) % n
        now = time.monotonic()
        fresh = [i for i in order if i not in tried]
        up = [i for i in fresh if self._replicas[i].down_until <= now]
        return (up or fresh)[0]

    def _call(self, fn: Callable[[_Replica], Any]) -> Any:
        """fn(replica) on one replica after another until one answers; see the module docstring."""
        failures: list[_Failure] = []
        delay = self.backoff
        for round_ in range(self.retries + 1):
            tried: set[int] = set()
            while len(tried) < len(self._replicas):
                i = self._pick(tried)
                tried.add(i)
                rep = self._replicas[i]
                rep.requests += 1
                try:
                    return fn(rep)
                except _Failure as f:
                    if not f.retry:
                        raise EngineError(f"the server refused the request: {f.describe()}") from None
                    rep.down_until = time.monotonic() + max(delay, 1.0)
                    failures.append(f)
            if round_ < self.retries:
                time.sleep(delay)
                delay *= 2
        last = {}
        for f in failures:
            last[f.url] = f
        tries = (f"{self.retries + 1} attempt(s)" if len(self._replicas) == 1 else
                 f"{self.retries + 1} round(s) over {len(self._replicas)} replicas")
        raise EngineError(f"no server answered after {tries}: " + "; ".join(f.describe() for f in last.values()))

    @staticmethod
    def _failure(rep: _Replica, exc: Exception) -> _Failure:
        """An openai/httpx exception as a _Failure (status, the server's message, retryable or not)."""
        import openai

        if isinstance(exc, openai.APIStatusError):
            return _Failure(rep.url, exc.status_code, _server_message(exc.response, str(exc)),
                            exc.status_code >= 500 or exc.status_code in (408, 429))
        if isinstance(exc, httpx.HTTPStatusError):
            code = exc.response.status_code
            return _Failure(rep.url, code, _server_message(exc.response, str(exc)), code >= 500 or code in (408, 429))
        if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
            return _Failure(rep.url, None, f"timed out after {rep_timeout(rep)} s", True)
        if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
            cause = exc.__cause__ or exc
            return _Failure(rep.url, None, f"cannot connect ({_short(cause)})", True)
        if isinstance(exc, openai.APIError):          # an error event inside an SSE stream
            return _Failure(rep.url, None, f"the server reported an error: {_short(exc)}", False)
        if isinstance(exc, httpx.HTTPError):          # redirects, undecodable bodies, ...
            return _Failure(rep.url, None, _short(exc), False)
        raise exc

    def _http(self, method: str, path: str, body: Any = None, root: bool = True) -> Any:
        """A JSON request to a root endpoint (/tokenize...) or a /v1 one (root=False), with retries."""
        def call(rep: _Replica) -> Any:
            url = path if root else "/v1" + path          # rep.http's base is the server's root
            try:
                r = rep.http.request(method, url, json=body)
                r.raise_for_status()
                return r.json()
            except (httpx.HTTPError,) as exc:
                raise self._failure(rep, exc) from None
            except ValueError:
                raise _Failure(rep.url, None, f"{path} did not answer JSON", False) from None
        return self._call(call)

    # ------------------------------------------------------------------ discovery
    def _discover(self, model: str | None, probe: bool = True) -> tuple[str, str]:
        """The served model's name and the engine kind, from /v1/models (and /info for TGI)."""
        data = self._http("GET", "/models", root=False)
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise EngineError(f"{self.urls[0]}/models lists no model")
        names = [e.get("id") for e in entries if isinstance(e, dict)]
        if model is None:
            if len(names) != 1:
                raise EngineError(f"{self.urls[0]} serves {len(names)} models ({', '.join(map(str, names))}): "
                                  f"choose one with the config key \"model\"")
            model = names[0]
        elif model not in names:
            raise EngineError(f"{self.urls[0]} does not serve the model \"{model}\"; it serves "
                              + ", ".join(f'"{n}"' for n in names))
        entry = entries[names.index(model)]
        owner = str(entry.get("owned_by", "")).lower()
        ctx = entry.get("max_model_len") or entry.get("context_length")
        self.context_length = ctx if _is_int(ctx) else None
        if "lispe" in owner:
            return model, "lispe"
        if "vllm" in owner:
            return model, "vllm"
        if owner == "me":                            # python -m llama_cpp.server
            return model, "llama-cpp-python"
        if "llama" in owner:                         # llama.cpp's llama-server: "llamacpp"
            return model, "llamacpp"
        if owner == "tgi" or "text-generation" in owner or "huggingface" in owner:
            return model, "tgi"
        return model, self._probe_tgi() if probe else "vllm"

    def _probe_tgi(self) -> str:
        """An unknown `owned_by`: TGI answers GET /info with its model_id and router; anything else is
        taken as vLLM-compatible (the most common OpenAI field set)."""
        try:
            info = self._http("GET", "/info")
        except EngineError:
            return "vllm"
        return "tgi" if isinstance(info, dict) and "model_id" in info and "router" in info else "vllm"

    # ------------------------------------------------------------------ Engine: description
    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def describe(self) -> str:
        where = self.urls[0] if len(self.urls) == 1 else f"{self.urls[0]} +{len(self.urls) - 1}"
        return f"remote {self.kind} \"{self.model}\" at {where}"

    def info(self) -> dict[str, Any]:
        """torch_model_info's dictionary (true/None flags, as Lisp shows them); never the API key."""
        def flag(v: Any) -> Any:
            return True if v is True else None if v is False else v
        return {"engine": self.kind, "remote": True, "model": self.model, "urls": list(self.urls),
                "context_length": self.context_length, "timeout": self.timeout, "retries": self.retries,
                "max_concurrency": self.max_concurrency, "keep_partial": flag(self.keep_partial),
                "api_key_env": self.api_key_env, "local_tokenizer": flag(self._local_tokenizer is not None),
                "requests": {r.url: r.requests for r in self._replicas},
                "capabilities": {k: flag(v) for k, v in self.capabilities().items()}}

    def capabilities(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.caps.items()}

    def close(self) -> None:
        for rep in self._replicas:
            rep.close()

    # ------------------------------------------------------------------ configs -> requests
    def _refuse(self, key: str, why: str = "") -> EngineError:
        return EngineError(f"\"{key}\" cannot run on the remote engine {self.kind} ({self.urls[0]})"
                           + (f": {why}" if why else ""))

    def check_config(self, config: GenerationConfig) -> None:
        """Refuse what the server cannot do, before any request is sent."""
        caps = self.caps
        if config.logits_processor:
            raise self._refuse("logits_processor", "Lisp functions run only with a local model")
        if config.on_step:
            raise self._refuse("on_step", "parameter changes between steps run only with a local model")
        if config.strategy == "beam_search":
            raise self._refuse("beam_search", "the server has no beam search; use a local model")
        if config.no_repeat_ngram_size:
            raise self._refuse("no_repeat_ngram_size")
        sampling = not config.is_greedy
        if sampling and config.typical_p < 1.0 and config.strategy == "sample" and not caps["typical_p"]:
            raise self._refuse("typical_p")
        if sampling and config.min_p > 0.0 and config.strategy == "sample" and not caps["min_p"]:
            raise self._refuse("min_p")
        if sampling and config.strategy in ("top_k", "sample") and config.top_k > 0 and not caps["top_k"]:
            raise self._refuse("top_k", "use strategy \"top_p\"")
        if config.repetition_penalty != 1.0 and not caps["repetition_penalty"]:
            raise self._refuse("repetition_penalty")
        if config.num_return_sequences > 1 and not caps["n"]:
            raise self._refuse("num_return_sequences", "the server returns one sequence per request")
        if config.min_new_tokens and not caps["min_new_tokens"]:
            raise self._refuse("min_new_tokens")
        if config.eos_token_id is not None and not caps["eos_token_id"]:
            raise self._refuse("eos_token_id", "the server stops at its model's own end token")
        if config.bad_words is not None:
            if not caps["bad_words"]:
                raise self._refuse("bad_words")
            if not all(isinstance(w, str) for w in config.bad_words):
                raise self._refuse("bad_words", "give the words as strings")
        if config.allowed_tokens is not None:
            if not caps["allowed_tokens"]:
                raise self._refuse("allowed_tokens")
            if not all(_is_int(t) for t in config.allowed_tokens):
                raise self._refuse("allowed_tokens", "give token ids")
        for key in ("choices", "regex", "json_schema", "grammar"):
            if getattr(config, key) is not None and key not in caps["structured"]:
                why = ("our s-expression grammars run locally and on lispe serve; this server has its own "
                       "grammar syntax") if key == "grammar" else "the server has no structured output of this kind"
                raise self._refuse(key, why)
        tok = self._local_tokenizer
        if tok is not None and config.eos_token_id is not None:
            ids = config.eos_token_id if isinstance(config.eos_token_id, tuple) else (config.eos_token_id,)
            bad = [i for i in ids if not 0 <= i < tok.vocab_size]
            if bad:
                raise GenerationError(f"eos_token_id {bad[0]} is outside the vocabulary (0..{tok.vocab_size - 1})")

    def _body(self, prompt: Any, config: GenerationConfig, *, stream: bool = False,
              logprobs: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The completions request for a prompt (text or ids) and a config: (openai kwargs, extra body)."""
        self.check_config(config)
        kind, caps = self.kind, self.caps
        kw: dict[str, Any] = {"model": self.model, "prompt": prompt, "max_tokens": config.max_length,
                              "stream": stream}
        extra: dict[str, Any] = {}
        # Every sampling value is sent, defaults included: servers have other defaults (vLLM takes the
        # model's generation_config.json; llama-cpp-python top_k 40, top_p 0.95, min_p 0.05, repeat 1.1).
        s = config.strategy
        sampling = not config.is_greedy
        kw["temperature"] = config.temperature if sampling else 0.0
        kw["top_p"] = config.top_p if sampling and s in ("top_p", "sample") else 1.0
        if caps["top_k"]:
            top_k = config.top_k if sampling and s in ("top_k", "sample") and config.top_k > 0 else 0
            extra["top_k"] = top_k if top_k or kind != "vllm" else -1
        if caps["min_p"]:
            extra["min_p"] = config.min_p if sampling and s == "sample" else 0.0
        if caps["typical_p"]:
            extra["typical_p"] = config.typical_p if sampling and s == "sample" else 1.0
        if config.num_return_sequences > 1:
            kw["n"] = config.num_return_sequences
        if config.seed is not None:
            kw["seed"] = config.seed
        if config.stop:
            kw["stop"] = list(config.stop)
            if kind in ("vllm", "lispe"):
                extra["include_stop_str_in_output"] = True  # as the local engine: text up to and with it
        if config.presence_penalty:
            kw["presence_penalty"] = config.presence_penalty
        if config.frequency_penalty:
            kw["frequency_penalty"] = config.frequency_penalty
        if caps["repetition_penalty"]:
            extra["repeat_penalty" if kind.startswith("llama") else "repetition_penalty"] = config.repetition_penalty
        if config.min_new_tokens:
            extra["min_tokens"] = config.min_new_tokens
        if config.eos_token_id is not None:
            ids = config.eos_token_id if isinstance(config.eos_token_id, tuple) else (config.eos_token_id,)
            extra["stop_token_ids"] = list(ids)
            extra["ignore_eos"] = True          # the given ids replace the model's end token
        if config.bad_words:
            extra["bad_words"] = list(config.bad_words)
        if config.allowed_tokens:
            extra["allowed_token_ids"] = list(config.allowed_tokens)
        if logprobs is not None:
            kw["logprobs"] = logprobs
        if caps["token_ids"]:
            extra["return_tokens" if kind == "llamacpp" else "return_token_ids"] = True
        self._structured(config, extra)
        return kw, extra

    def _structured(self, config: GenerationConfig, extra: dict[str, Any]) -> None:
        """The guided keys as the server's structured-output fields."""
        if self.kind in ("vllm", "lispe"):
            for key, field in (("choices", "choice"), ("regex", "regex"), ("json_schema", "json"),
                               ("grammar", "grammar")):
                v = getattr(config, key)
                if v is not None:
                    extra["structured_outputs"] = {field: _plain(v)}
        elif self.kind in ("llamacpp", "llama-cpp-python"):
            if config.json_schema is not None:
                extra["json_schema"] = _plain(config.json_schema)
            elif config.choices is not None:           # a GBNF alternation of the literal strings
                extra["grammar"] = "root ::= " + " | ".join(json.dumps(c) for c in config.choices)

    def _prompt(self, prompt: Any, tokenizer: Any) -> Any:
        """What to send: ids as ids where the server takes them, else their text."""
        if isinstance(prompt, str) or self.caps["prompt_ids"]:
            return prompt
        tok = tokenizer or self._tokenizer
        return tok.decode(list(prompt))

    # ------------------------------------------------------------------ one completion request
    def _complete(self, prompt: Any, config: GenerationConfig, logprobs: int | None = None) -> Any:
        kw, extra = self._body(prompt, config, logprobs=logprobs)

        def call(rep: _Replica) -> Any:
            try:
                return rep.client.completions.create(**kw, extra_body=extra or None)
            except Exception as exc:  # openai's errors -> _Failure; anything else propagates
                raise self._failure(rep, exc) from None
        return self._call(call)

    def _new_ids(self, choice: Any, text: str, tokenizer: Any) -> list[int]:
        ids = getattr(choice, "token_ids", None)
        if ids is None and isinstance(getattr(choice, "model_extra", None), dict):
            ids = choice.model_extra.get("token_ids") or choice.model_extra.get("tokens")
        if isinstance(ids, list) and all(_is_int(i) for i in ids):
            return list(ids)
        tok = tokenizer or self._tokenizer
        return list(tok.encode(text, add_special_tokens=False)) if text else []

    # ------------------------------------------------------------------ Engine: generation
    def generate(self, input_ids: Any, config: GenerationConfig, *, tokenizer: Any = None,
                 inputs_embeds: Any = None) -> Any:
        import torch

        if inputs_embeds is not None:
            raise self._refuse("inputs_embeds", "prompt embeddings run only with a local model")
        if config.callback is not None or config.stop_when:
            one = isinstance(input_ids, torch.Tensor) and (input_ids.dim() == 1 or input_ids.shape[0] == 1)
            if not one:
                raise GenerationError("callback and stop_when need a single prompt")
            ids = input_ids.view(-1).tolist()
            text, events = self._streamed(ids, config, tokenizer)
            new = [t for t, _ in events]
            if any(t is None for t in new):        # the server streams no ids: the text's own
                new = list((tokenizer or self._tokenizer).encode(text, add_special_tokens=False)) if text else []
            out = torch.tensor(ids + new, dtype=torch.long)
            return out if input_ids.dim() == 1 else out.view(1, -1)
        rows = input_ids.tolist() if isinstance(input_ids, torch.Tensor) else input_ids
        one_d = isinstance(input_ids, torch.Tensor) and input_ids.dim() == 1
        if one_d:
            rows = [rows]
        results = self._map(rows, lambda p: self._ids_row(p, config, tokenizer))
        n = config.num_return_sequences
        flat = [(rows[i], new) for i, seqs in enumerate(results) for new in seqs]
        pad = config.pad_token_id
        if pad is None:
            eos = config.eos_token_id
            pad = (eos[0] if isinstance(eos, tuple) else eos) if eos is not None else 0
        width_p = max(len(p) for p, _ in flat)
        width_n = max(len(new) for _, new in flat)
        out = torch.tensor([[pad] * (width_p - len(p)) + p + new + [pad] * (width_n - len(new))
                            for p, new in flat], dtype=torch.long)
        return out[0] if one_d and n == 1 else out

    def _ids_row(self, prompt: list[int], config: GenerationConfig, tokenizer: Any) -> list[list[int]]:
        resp = self._complete(self._prompt(prompt, tokenizer), config)
        return [self._new_ids(c, c.text or "", tokenizer) for c in sorted(resp.choices, key=lambda c: c.index)]

    def _texts(self, prompt: Any, config: GenerationConfig, tokenizer: Any) -> list[str]:
        resp = self._complete(self._prompt(prompt, tokenizer), config)
        return [c.text or "" for c in sorted(resp.choices, key=lambda c: c.index)]

    def _map(self, prompts: list, fn: Callable[[Any], Any]) -> list:
        """fn over the prompts with up to max_concurrency requests in flight; one failure does not lose
        the others (BatchError holds them)."""
        results: list[Any] = [None] * len(prompts)
        failed: list[tuple[int, str]] = []

        def run(i: int) -> None:
            try:
                results[i] = fn(prompts[i])
            except GenerationError as exc:
                failed.append((i, str(exc)))
        if len(prompts) == 1:
            run(0)
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts))) as pool:
                list(pool.map(run, range(len(prompts))))
        if failed:
            failed.sort()
            i, msg = failed[0]
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            if len(prompts) == 1:
                raise EngineError(msg)
            raise BatchError(f"prompt {i} failed{more}: {msg}", results, failed)
        return results

    def _streamed(self, prompt: Any, config: GenerationConfig, tokenizer: Any) -> tuple[str, list]:
        """Run one prompt as an SSE stream: call the callback per piece, check stop_when on the text so
        far (true: cancel the request). (text, [(id, piece)...])."""
        if config.num_return_sequences != 1:
            raise GenerationError("callback and stop_when need num_return_sequences 1")
        text, events = "", []
        it = self.stream(prompt, config, tokenizer=tokenizer)
        try:
            for tok_id, piece in it:
                text += piece
                events.append((tok_id, piece))
                if config.callback is not None:
                    config.callback(tok_id, piece)
                if config.stop_when and any(p(text) for p in config.stop_when):
                    break
        finally:
            it.close()                       # closes the HTTP response: the server cancels the request
        return text, events

    def stream(self, prompt: str | Sequence[int], config: GenerationConfig, *,
               tokenizer: Any = None) -> Iterator[tuple[int | None, str]]:
        kw, extra = self._body(self._prompt(prompt, tokenizer), config, stream=True)
        if config.num_return_sequences != 1:
            raise GenerationError("stream needs num_return_sequences 1")

        def open_stream(rep: _Replica) -> Any:
            try:
                s = rep.client.completions.create(**kw, extra_body=extra or None)
                it = iter(s)
                first = next(it, None)     # the first event: errors before it are retried
                return rep, s, it, first
            except Exception as exc:
                raise self._failure(rep, exc) from None
        return self._events(open_stream)

    def _events(self, open_stream: Callable[[_Replica], Any]) -> Iterator[tuple[int | None, str]]:
        rep, s, it, first = self._call(open_stream)
        try:
            chunk = first
            while chunk is not None:
                for c in chunk.choices:
                    piece = c.text or ""
                    ids = getattr(c, "token_ids", None)
                    if isinstance(ids, list) and ids:
                        yield ids[0], piece
                        for t in ids[1:]:
                            yield t, ""
                    elif piece:
                        yield None, piece
                try:
                    chunk = next(it, None)
                except Exception as exc:
                    f = self._failure(rep, exc)
                    raise EngineError(f"the stream broke: {f.describe()}") from None
        finally:
            s.close()

    def generate_text(self, prompt: str | Sequence[int], config: GenerationConfig, *,
                      tokenizer: Any = None) -> str | list[str]:
        if config.callback is not None or config.stop_when:
            return self._streamed(prompt, config, tokenizer)[0]
        texts = self._texts(prompt, config, tokenizer)
        return texts[0] if len(texts) == 1 else texts

    def generate_batch(self, prompts: Sequence[str | Sequence[int]], config: GenerationConfig, *,
                       tokenizer: Any = None) -> list[str]:
        if config.callback is not None or config.stop_when:
            raise GenerationError("callback and stop_when need a single prompt (use torch_generate_text)")
        self.check_config(config)
        n = config.num_return_sequences
        try:
            results = self._map(list(prompts), lambda p: self._texts(p, config, tokenizer))
        except BatchError as exc:
            if not self.keep_partial:
                raise
            warnings.warn(f"keep_partial: the failed prompts give nil: {exc}")
            results = [r if r is not None else [None] * n for r in exc.results]
        return [t for r in results for t in r]

    def generate_scored(self, prompt: str | Sequence[int], config: GenerationConfig, *, top_n: int = 5,
                        tokenizer: Any = None) -> dict[str, Any]:
        if config.num_return_sequences != 1:
            raise GenerationError("generate_scored scores one sequence (num_return_sequences 1)")
        resp = self._complete(self._prompt(prompt, tokenizer), config, logprobs=max(top_n, 1))
        c = resp.choices[0]
        text = c.text or ""
        ids = self._new_ids(c, text, tokenizer)
        lp = c.logprobs
        pieces = list(getattr(lp, "tokens", None) or [])
        values = list(getattr(lp, "token_logprobs", None) or [])
        tops = list(getattr(lp, "top_logprobs", None) or [])
        tokens = []
        for i, v in enumerate(values):
            entry: dict[str, Any] = {"id": ids[i] if i < len(ids) else None,
                                     "text": pieces[i] if i < len(pieces) else None,
                                     "logprob": float(v), "raw_logprob": float(v)}
            if top_n:
                alts = sorted((tops[i] or {}).items(), key=lambda kv: -kv[1]) if i < len(tops) else []
                entry["top"] = [(None, t, float(x)) for t, x in alts[:top_n]]
                entry["raw_top"] = list(entry["top"])
            tokens.append(entry)
        total = sum(e["logprob"] for e in tokens)
        return {"ids": ids, "text": text, "tokens": tokens, "sequence_logprob": total,
                "raw_sequence_logprob": total,
                "perplexity": math.exp(-total / len(tokens)) if tokens else None}


class RemoteTokenizer:
    """The server's tokenizer through its /tokenize and /detokenize endpoints (vLLM and `lispe serve`:
    {model, prompt|messages} -> {tokens}, {model, tokens} -> {prompt}; llama.cpp's server: {content} ->
    {tokens}, {tokens} -> {content}; llama-cpp-python: /extras/tokenize and /extras/detokenize)."""

    def __init__(self, engine: RemoteEngine):
        self.engine = engine
        self.chat_template = None
        self.eos_token_id = None

    @property
    def vocab_size(self) -> int | None:
        """Not reported by OpenAI-compatible servers: None (ids are checked by the server)."""
        return None

    def _post(self, path: str, body: dict) -> Any:
        return self.engine._http("POST", path, body)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        e = self.engine
        if e.kind in ("llamacpp", "llama-cpp-python"):
            data = self._llamacpp("tokenize", {"content": text, "add_special": add_special_tokens},
                                  {"input": text})
        elif e.kind == "tgi":
            data = self._post("/tokenize", {"inputs": text})
            return [int(t["id"]) for t in data]
        else:
            data = self._post("/tokenize", {"model": e.model, "prompt": text,
                                            "add_special_tokens": add_special_tokens})
        return [int(t) for t in data["tokens"]]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        e = self.engine
        if e.kind == "tgi":
            raise EngineError(f"the remote engine tgi ({e.urls[0]}) has no /detokenize: give the remote "
                              f"model a local \"tokenizer\"")
        if e.kind in ("llamacpp", "llama-cpp-python"):
            data = self._llamacpp("detokenize", {"tokens": list(ids)}, {"tokens": list(ids)})
            return data.get("content", data.get("text", ""))
        # lispe serve and vLLM take skip_special_tokens here; llama.cpp's /detokenize keeps them all
        return self._post("/detokenize", {"model": e.model, "tokens": list(ids),
                                          "skip_special_tokens": bool(skip_special_tokens)})["prompt"]

    def _llamacpp(self, what: str, body: dict, extras_body: dict) -> Any:
        """llama.cpp's server (/tokenize) or llama-cpp-python's (/extras/tokenize), found on first use."""
        e = self.engine
        if e._tokenize_path is None:
            try:
                out = self._post(f"/{what}", body)
                e._tokenize_path = ""
                return out
            except EngineError as exc:
                if "404" not in str(exc):
                    raise
                e._tokenize_path = "/extras"
        if e._tokenize_path == "/extras":
            return self._post(f"/extras/{what}", extras_body)
        return self._post(f"/{what}", body)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        e = self.engine
        if e.kind not in ("vllm", "lispe"):
            raise EngineError(f"the remote engine {e.kind} ({e.urls[0]}) cannot render a chat template "
                              f"into ids: give the remote model a local \"tokenizer\"")
        data = self._post("/tokenize", {"model": e.model, "messages": messages,
                                        "add_generation_prompt": add_generation_prompt})
        return [int(t) for t in data["tokens"]]


# ---------------------------------------------------------------------------- helpers
def _plain(v: Any) -> Any:
    """JSON data: tuples as lists, Lisp symbols (a grammar's operators and rule names) as their names."""
    if not isinstance(v, (str, int, float, bool, type(None), list, tuple, dict)) and isinstance(
            getattr(v, "name", None), str):
        return v.name
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _show(v: Any) -> str:
    """A value in an error message: strings in double quotes, as Lisp writes them."""
    return json.dumps(v) if isinstance(v, str) else "nil" if v is None else str(v)


def _short(exc: BaseException) -> str:
    s = str(exc) or type(exc).__name__
    return s if len(s) < 160 else s[:157] + "..."


def rep_timeout(rep: _Replica) -> float:
    t = rep.http.timeout
    return t.read if t.read is not None else 0.0


def _server_message(response: Any, default: str) -> str:
    """The error message of an OpenAI-style error body ({"error": {"message": ...}}), else the text."""
    try:
        data = response.json()
    except Exception:
        text = getattr(response, "text", "") or default
        return _short(Exception(text.strip()))
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
        if isinstance(data.get("detail"), str):
            return data["detail"]
    return _short(Exception(json.dumps(data)))
