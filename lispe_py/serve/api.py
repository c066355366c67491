"""The OpenAI-compatible HTTP API of `lispe serve` (Starlette): request checking, the engine's events
turned into OpenAI responses and server-sent-event streams, /tokenize, /detokenize, /health, /metrics.

Every bad request gets an OpenAI-style error body `{"error": {"message", "type", "param", "code"}}`
with a 4xx status; the handlers never let a Python traceback reach the client.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from typing import Any, AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..generation.config import GenerationConfig, GenerationError
from ..generation.processors import LogitsProcessor
from .engine import Engine, EngineMetrics, Output, Request, build_request_plan

MAX_TOP_LOGPROBS = 20


class APIError(Exception):
    """A request the server refuses: HTTP status, message, the offending parameter."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             405: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
             500: "internal_error", 503: "service_unavailable"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.param, self.code)


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    kind = APIError.TYPES.get(status, "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": code if code is not None else kind}}, status_code=status)


# ---------------------------------------------------------------------------- field checks
def _int_field(body: dict, name: str, default: Any, lo: int | None = None, hi: int | None = None) -> Any:
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise APIError(400, f"{name} must be an integer, got {json.dumps(v)}", name)
    if lo is not None and v < lo:
        raise APIError(400, f"{name} must be >= {lo}, got {v}", name)
    if hi is not None and v > hi:
        raise APIError(400, f"{name} must be <= {hi}, got {v}", name)
    return v


def _num_field(body: dict, name: str, default: Any, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False) -> Any:
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise APIError(400, f"{name} must be a number, got {json.dumps(v)}", name)
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise APIError(400, f"{name} must be {'>' if lo_open else '>='} {lo:g}, got {v:g}", name)
    if hi is not None and v > hi:
        raise APIError(400, f"{name} must be <= {hi:g}, got {v:g}", name)
    return float(v)


def _bool_field(body: dict, name: str, default: bool = False) -> bool:
    v = body.get(name, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise APIError(400, f"{name} must be true or false, got {json.dumps(v)}", name)
    return v


def _stop_field(body: dict) -> list[str] | None:
    v = body.get("stop")
    if v is None:
        return None
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise APIError(400, "stop must be a string or a list of strings", "stop")
    items = [s for s in items if s]
    return items or None


class LogitBias(LogitsProcessor):
    """OpenAI's `logit_bias`: a fixed value added to chosen tokens' logits."""

    name = "logit_bias"

    def __init__(self, bias: dict[int, float]):
        self.ids = list(bias)
        self.values = [bias[i] for i in self.ids]

    def params(self) -> list[Any]:
        return [dict(zip(self.ids, self.values))]

    def __call__(self, input_ids, scores):
        import torch

        ids = torch.tensor(self.ids, dtype=torch.long, device=scores.device)
        vals = torch.tensor(self.values, dtype=scores.dtype, device=scores.device)
        out = scores.clone()
        out[:, ids] += vals
        return out


def _constraint(body: dict) -> tuple[str, Any] | None:
    """The structured-output request as (our config key, spec), from vLLM's fields or response_format."""
    found: list[tuple[str, Any, str]] = []
    so = body.get("structured_outputs")
    if so is not None:
        if not isinstance(so, dict):
            raise APIError(400, "structured_outputs must be an object with one of choice, regex, json, grammar",
                           "structured_outputs")
        for field, key in (("choice", "choices"), ("regex", "regex"), ("json", "json_schema"),
                           ("grammar", "grammar")):
            if so.get(field) is not None:
                found.append((key, so[field], f"structured_outputs.{field}"))
        if so.get("json_object"):
            found.append(("json_schema", {"type": "object"}, "structured_outputs.json_object"))
    for field, key in (("guided_choice", "choices"), ("guided_regex", "regex"), ("guided_json", "json_schema"),
                       ("guided_grammar", "grammar")):
        if body.get(field) is not None:
            found.append((key, body[field], field))
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
            raise APIError(400, "response_format.type must be \"text\", \"json_object\" or \"json_schema\"",
                           "response_format")
        if rf["type"] == "json_object":
            found.append(("json_schema", {"type": "object"}, "response_format"))
        elif rf["type"] == "json_schema":
            js = rf.get("json_schema")
            if not isinstance(js, dict) or not isinstance(js.get("schema"), (dict, bool)):
                raise APIError(400, "response_format json_schema needs {\"json_schema\": {\"name\": ..., "
                                    "\"schema\": {...}}}", "response_format")
            found.append(("json_schema", js["schema"], "response_format"))
    if not found:
        return None
    if len(found) > 1:
        raise APIError(400, f"only one structured output per request, got {', '.join(f[2] for f in found)}",
                       found[1][2])
    key, spec, field = found[0]
    if key == "choices" and (not isinstance(spec, list) or not spec or not all(isinstance(c, str) for c in spec)):
        raise APIError(400, f"{field} must be a non-empty list of strings", field)
    if key == "regex" and not isinstance(spec, str):
        raise APIError(400, f"{field} must be a string (a regular expression)", field)
    return key, spec


# ---------------------------------------------------------------------------- the server state
class Server:
    """Everything the handlers share: the engine, the served name, the API key."""

    def __init__(self, engine: Engine, served_name: str, model_path: str, api_key: str | None = None):
        self.engine = engine
        self.model = engine.model
        self.tokenizer = engine.tokenizer
        self.served_name = served_name
        self.model_path = model_path
        self.api_key = api_key
        self.created = int(time.time())
        self.vocab = int(self.model.config.vocab_size)
        self._token_text: dict[int, str] = {}

    # ------------------------------------------------------------------ helpers
    def check_auth(self, request: HTTPRequest) -> None:
        if self.api_key is None:
            return
        header = request.headers.get("authorization", "")
        if header != f"Bearer {self.api_key}":
            raise APIError(401, "missing or wrong API key: send the header \"Authorization: Bearer KEY\"",
                           code="invalid_api_key")

    def check_model(self, body: dict) -> None:
        name = body.get("model")
        if name is None:
            return
        if name != self.served_name:
            raise APIError(404, f"the model `{name}` does not exist; this server serves `{self.served_name}`",
                           "model", "model_not_found")

    def token_text(self, t: int) -> str:
        s = self._token_text.get(t)
        if s is None:
            s = self._token_text[t] = self.tokenizer.decode([t]) if self.tokenizer is not None else ""
        return s

    def need_tokenizer(self, what: str) -> Any:
        if self.tokenizer is None:
            raise APIError(400, f"{what} needs the model's tokenizer, and this model has none: send token ids")
        return self.tokenizer

    def encode_prompt(self, prompt: Any, param: str = "prompt") -> list[int]:
        if isinstance(prompt, str):
            return list(self.need_tokenizer("a text prompt").encode(prompt))
        if isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            bad = [t for t in prompt if not 0 <= t < self.vocab]
            if bad:
                raise APIError(400, f"token id {bad[0]} is outside the vocabulary (0..{self.vocab - 1})", param)
            return list(prompt)
        raise APIError(400, f"{param} must be a string, a list of token ids, or a list of those", param)

    def chat_ids(self, messages: Any, body: dict) -> list[int]:
        if not isinstance(messages, list) or not messages:
            raise APIError(400, "messages must be a non-empty list of {\"role\", \"content\"} objects", "messages")
        clean = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise APIError(400, f"messages[{i}] must be an object with a string \"role\"", "messages")
            content = m.get("content")
            if isinstance(content, list):
                parts = []
                for part in content:
                    if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                        raise APIError(400, f"messages[{i}].content: only text parts ({{\"type\": \"text\", "
                                            f"\"text\": ...}}) are supported", "messages")
                    parts.append(part["text"])
                content = "".join(parts)
            elif content is None:
                content = ""
            elif not isinstance(content, str):
                raise APIError(400, f"messages[{i}].content must be a string or a list of text parts", "messages")
            clean.append({**m, "content": content})
        tok = self.need_tokenizer("a chat")
        if not tok.chat_template:
            raise APIError(400, "this model has no chat template: use /v1/completions", "messages")
        add = _bool_field(body, "add_generation_prompt", True)
        kwargs = body.get("chat_template_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise APIError(400, "chat_template_kwargs must be an object", "chat_template_kwargs")
        try:
            return list(tok.apply_chat_template(clean, add_generation_prompt=add, **kwargs))
        except Exception as exc:  # noqa: BLE001 - a template error is the request's fault
            raise APIError(400, f"the chat template failed on these messages: {exc}", "messages") from None

    # ------------------------------------------------------------------ sampling parameters
    def sampling(self, body: dict, prompt_len_max: int, chat: bool) -> tuple[GenerationConfig, dict]:
        """The generation config of a request and the serving options (n, logprobs, ...)."""
        ctx = self.engine.max_model_len
        max_tokens = body.get("max_completion_tokens") if chat and body.get("max_completion_tokens") is not None \
            else body.get("max_tokens")
        param = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
        room = ctx - prompt_len_max
        if room < 1:
            raise APIError(400, f"the prompt has {prompt_len_max} tokens and this model's context is {ctx}: "
                                "no room for a completion", "prompt" if not chat else "messages")
        if max_tokens is None:
            max_tokens = room if chat else min(16, room)
        else:
            max_tokens = _int_field({param: max_tokens}, param, None, lo=1)
            if prompt_len_max + max_tokens > ctx:
                raise APIError(400, f"this model's maximum context length is {ctx} tokens; the prompt has "
                                    f"{prompt_len_max} tokens and {param} asks for {max_tokens} more", param)
        n = _int_field(body, "n", 1, lo=1, hi=self.engine.max_batch)
        temperature = _num_field(body, "temperature", 1.0, lo=0.0, hi=2.0 ** 16)
        top_p = _num_field(body, "top_p", 1.0, lo=0.0, hi=1.0, lo_open=True)
        top_k = _int_field(body, "top_k", 0, lo=-1)
        min_p = _num_field(body, "min_p", 0.0, lo=0.0, hi=1.0)
        presence = _num_field(body, "presence_penalty", 0.0, lo=-2.0, hi=2.0)
        frequency = _num_field(body, "frequency_penalty", 0.0, lo=-2.0, hi=2.0)
        repetition = _num_field(body, "repetition_penalty", 1.0, lo=0.0, lo_open=True)
        seed = _int_field(body, "seed", None, lo=0, hi=2 ** 63 - 1)
        min_tokens = _int_field(body, "min_tokens", 0, lo=0, hi=max_tokens)
        cfg: dict[str, Any] = {
            "max_length": max_tokens, "min_new_tokens": min_tokens,
            "strategy": "greedy" if temperature == 0.0 else "sample",
            "temperature": temperature if temperature > 0 else 1.0,
            "top_k": max(0, top_k), "top_p": top_p, "min_p": min_p,
            "presence_penalty": presence, "frequency_penalty": frequency, "repetition_penalty": repetition,
            "seed": seed, "stop": _stop_field(body),
        }
        constraint = _constraint(body)
        if constraint is not None:
            cfg[constraint[0]] = constraint[1]
        try:
            config = GenerationConfig.from_dict(cfg)
        except GenerationError as exc:
            raise APIError(400, str(exc), constraint[0] if constraint and constraint[0] in str(exc) else None) from None
        # logprobs
        if chat:
            want = _bool_field(body, "logprobs", False)
            top = _int_field(body, "top_logprobs", None, lo=0, hi=MAX_TOP_LOGPROBS)
            if top is not None and not want:
                raise APIError(400, "top_logprobs needs \"logprobs\": true", "top_logprobs")
            logprobs = (top or 0) if want else None
        else:
            if isinstance(body.get("logprobs"), bool):
                raise APIError(400, "logprobs must be an integer (0..20) for /v1/completions", "logprobs")
            logprobs = _int_field(body, "logprobs", None, lo=0, hi=MAX_TOP_LOGPROBS)
        bias = body.get("logit_bias")
        extra: list[Any] = []
        if bias:
            if not isinstance(bias, dict):
                raise APIError(400, "logit_bias must be an object {token_id: bias}", "logit_bias")
            parsed = {}
            for k, v in bias.items():
                try:
                    t = int(k)
                except (TypeError, ValueError):
                    raise APIError(400, f"logit_bias key {k!r} is not a token id", "logit_bias") from None
                if not 0 <= t < self.vocab:
                    raise APIError(400, f"logit_bias token id {t} is outside the vocabulary", "logit_bias")
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not -100 <= v <= 100:
                    raise APIError(400, f"logit_bias values are numbers in [-100, 100], got {v!r}", "logit_bias")
                parsed[t] = float(v)
            extra.append(LogitBias(parsed))
        if _bool_field(body, "echo", False):
            raise APIError(400, "echo is not supported by lispe serve", "echo")
        if body.get("use_beam_search") or (body.get("best_of") not in (None, 1, n)):
            raise APIError(400, "beam search / best_of are not supported by lispe serve", "best_of")
        so = body.get("stream_options")
        if so is not None and not isinstance(so, dict):
            raise APIError(400, "stream_options must be an object", "stream_options")
        opts = {
            "n": n, "logprobs": logprobs, "extra": extra,
            "stream": _bool_field(body, "stream", False),
            "include_usage": bool((so or {}).get("include_usage", False)),
            "return_token_ids": _bool_field(body, "return_token_ids", False),
            "include_stop": _bool_field(body, "include_stop_str_in_output", False),
            "ignore_eos": _bool_field(body, "ignore_eos", False),
        }
        return config, opts

    def make_requests(self, prompts: list[list[int]], config: GenerationConfig, opts: dict,
                      emit_for) -> list[Request]:
        out = []
        for i, ids in enumerate(prompts):
            if not ids:
                raise APIError(400, "the prompt is empty", "prompt")
            try:
                plan = build_request_plan(self.model, ids, config, opts["extra"])
            except GenerationError as exc:
                raise APIError(400, str(exc)) from None
            out.append(Request(ids, config, plan, opts["n"], emit_for(i), logprobs=opts["logprobs"],
                               include_stop=opts["include_stop"], ignore_eos=opts["ignore_eos"]))
        return out


# ---------------------------------------------------------------------------- running requests
class Run:
    """The requests of one HTTP call (one per prompt), their events in one asyncio queue."""

    def __init__(self, server: Server):
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.requests: list[Request] = []

    def emitter(self, i: int):
        loop, q = self.loop, self.queue

        def emit(event: tuple) -> None:
            try:
                loop.call_soon_threadsafe(q.put_nowait, (i, event))
            except RuntimeError:  # the event loop is closed: nobody listens any more
                pass
        return emit

    def submit(self) -> None:
        for r in self.requests:
            self.server.engine.submit(r)

    def cancel(self) -> None:
        for r in self.requests:
            r.cancel()
        self.server.engine.wake()

    async def events(self) -> AsyncIterator[tuple[int, tuple]]:
        left = len(self.requests)
        while left:
            i, ev = await self.queue.get()
            if ev[0] == "error":
                raise APIError(500, ev[1])
            if ev[0] == "done":
                left -= 1
                continue
            yield i, ev


async def _json_body(request: HTTPRequest) -> dict:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        raise APIError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body


def _legacy_logprobs(server: Server, o: Output, entries: list, tokens: list[int], offset: int) -> dict:
    toks, lps, tops, offsets = [], [], [], []
    pos = offset
    for t, (lp, top) in zip(tokens, entries):
        s = server.token_text(t)
        toks.append(s)
        lps.append(lp)
        best: dict[str, float] = {}
        for i, v in top:                 # best first; tokens of the same text keep the best value
            best.setdefault(server.token_text(i), v)
        tops.append(best if top else None)
        offsets.append(pos)
        pos += len(s)
    return {"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def _chat_logprobs(server: Server, entries: list, tokens: list[int]) -> dict:
    content = []
    for t, (lp, top) in zip(tokens, entries):
        s = server.token_text(t)
        content.append({"token": s, "logprob": lp, "bytes": list(s.encode("utf-8")),
                        "top_logprobs": [{"token": server.token_text(i), "logprob": v,
                                          "bytes": list(server.token_text(i).encode("utf-8"))} for i, v in top]})
    return {"content": content}


def _usage(reqs: Sequence[Request]) -> dict:
    prompt = sum(len(r.prompt) for r in reqs)
    completion = sum(len(o.tokens) for r in reqs for o in r.outputs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _wait_or_disconnect(run: Run, request: HTTPRequest) -> None:
    """Consume every event of a non-streaming run; cancel it if the client goes away."""
    async def consume():
        async for _ in run.events():
            pass

    consumer = asyncio.ensure_future(consume())

    async def watch():
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({consumer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if consumer in done:
            consumer.result()
        else:
            run.cancel()
            raise APIError(499, "client disconnected")
    finally:
        watcher.cancel()
        if not consumer.done():
            consumer.cancel()


# ---------------------------------------------------------------------------- handlers
def build_app(server: Server) -> Starlette:
    engine = server.engine

    def guarded(handler):
        async def wrapped(request: HTTPRequest) -> Response:
            try:
                return await handler(request)
            except APIError as exc:
                return exc.response()
            except Exception as exc:  # noqa: BLE001 - never a traceback to the client
                return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
        return wrapped

    async def health(request: HTTPRequest) -> Response:
        if engine.error is not None and engine._thread is not None and not engine._thread.is_alive():
            return error_response(503, "the engine stopped")
        return Response(status_code=200)

    async def models(request: HTTPRequest) -> Response:
        server.check_auth(request)
        return JSONResponse({"object": "list", "data": [{
            "id": server.served_name, "object": "model", "created": server.created, "owned_by": "lispe",
            "root": server.model_path, "parent": None, "max_model_len": engine.max_model_len}]})

    async def tokenize(request: HTTPRequest) -> Response:
        server.check_auth(request)
        body = await _json_body(request)
        server.check_model(body)
        if "messages" in body:
            ids = server.chat_ids(body["messages"], body)
        elif "prompt" in body:
            if not isinstance(body["prompt"], str):
                raise APIError(400, "prompt must be a string", "prompt")
            tok = server.need_tokenizer("/tokenize")
            ids = list(tok.encode(body["prompt"], add_special_tokens=_bool_field(body, "add_special_tokens", True)))
        else:
            raise APIError(400, "give \"prompt\" (a string) or \"messages\" (a chat)", "prompt")
        out = {"tokens": ids, "count": len(ids), "max_model_len": engine.max_model_len}
        if _bool_field(body, "return_token_strs", False):
            out["token_strs"] = [server.tokenizer.id_to_token(t) for t in ids]
        return JSONResponse(out)

    async def detokenize(request: HTTPRequest) -> Response:
        server.check_auth(request)
        body = await _json_body(request)
        server.check_model(body)
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise APIError(400, "tokens must be a list of token ids", "tokens")
        bad = [t for t in tokens if not 0 <= t < server.vocab]
        if bad:
            raise APIError(400, f"token id {bad[0]} is outside the vocabulary (0..{server.vocab - 1})", "tokens")
        skip = body.get("skip_special_tokens", False)
        if not isinstance(skip, bool):
            raise APIError(400, "skip_special_tokens must be true or false", "skip_special_tokens")
        tok = server.need_tokenizer("/detokenize")
        return JSONResponse({"prompt": tok.decode(tokens, skip_special_tokens=skip)})

    async def metrics(request: HTTPRequest) -> Response:
        return PlainTextResponse(prometheus_text(engine.metrics, server.served_name),
                                 media_type="text/plain; version=0.0.4")

    async def completions(request: HTTPRequest) -> Response:
        server.check_auth(request)
        body = await _json_body(request)
        server.check_model(body)
        if "prompt" not in body:
            raise APIError(400, "prompt is required", "prompt")
        raw = body["prompt"]
        if isinstance(raw, list) and raw and all(isinstance(p, (str, list)) for p in raw):
            prompts = [server.encode_prompt(p) for p in raw]
        else:
            prompts = [server.encode_prompt(raw)]
        config, opts = server.sampling(body, max(len(p) for p in prompts), chat=False)
        return await _respond(server, request, prompts, config, opts, chat=False)

    async def chat(request: HTTPRequest) -> Response:
        server.check_auth(request)
        body = await _json_body(request)
        server.check_model(body)
        ids = server.chat_ids(body.get("messages"), body)
        config, opts = server.sampling(body, len(ids), chat=True)
        return await _respond(server, request, [ids], config, opts, chat=True)

    async def not_found(request: HTTPRequest, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        what = "not found" if status == 404 else "method not allowed"
        return error_response(status, f"{request.method} {request.url.path}: {what}")

    routes = [
        Route("/health", guarded(health), methods=["GET"]),
        Route("/metrics", guarded(metrics), methods=["GET"]),
        Route("/v1/models", guarded(models), methods=["GET"]),
        Route("/v1/completions", guarded(completions), methods=["POST"]),
        Route("/v1/chat/completions", guarded(chat), methods=["POST"]),
        Route("/tokenize", guarded(tokenize), methods=["POST"]),
        Route("/detokenize", guarded(detokenize), methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found})


async def _respond(server: Server, request: HTTPRequest, prompts: list[list[int]], config: GenerationConfig,
                   opts: dict, chat: bool) -> Response:
    run = Run(server)
    loop = asyncio.get_running_loop()
    # building plans compiles constraints (regexes, schemas against the vocabulary): off the event loop
    run.requests = await loop.run_in_executor(
        None, lambda: server.make_requests(prompts, config, opts, run.emitter))
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    created = int(time.time())
    n = opts["n"]
    if opts["stream"]:
        run.submit()
        return StreamingResponse(_stream(server, run, rid, created, chat, opts),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    run.submit()
    try:
        await _wait_or_disconnect(run, request)
    except asyncio.CancelledError:
        run.cancel()
        raise
    choices = []
    for i, req in enumerate(run.requests):
        for o in req.outputs:
            index = i * n + o.index
            if chat:
                choice: dict[str, Any] = {"index": index, "message": {"role": "assistant", "content": o.text},
                                          "logprobs": None, "finish_reason": o.finish_reason}
                if req.top is not None:
                    choice["logprobs"] = _chat_logprobs(server, o.logprobs, o.tokens)
            else:
                choice = {"index": index, "text": o.text, "logprobs": None, "finish_reason": o.finish_reason}
                if req.top is not None:
                    choice["logprobs"] = _legacy_logprobs(server, o, o.logprobs, o.tokens, 0)
            if opts["return_token_ids"]:
                choice["token_ids"] = list(o.tokens)
                if not chat:
                    choice["prompt_token_ids"] = list(req.prompt)
            choices.append(choice)
    body: dict[str, Any] = {"id": rid, "object": "chat.completion" if chat else "text_completion",
                            "created": created, "model": server.served_name, "choices": choices,
                            "usage": _usage(run.requests)}
    if opts["return_token_ids"] and len(run.requests) == 1:
        body["prompt_token_ids"] = list(run.requests[0].prompt)
    return JSONResponse(body)


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _stream(server: Server, run: Run, rid: str, created: int, chat: bool, opts: dict) -> AsyncIterator[str]:
    n = opts["n"]
    kind = "chat.completion.chunk" if chat else "text_completion"
    base = {"id": rid, "object": kind, "created": created, "model": server.served_name}
    offsets: dict[int, int] = {}
    try:
        if chat:
            for i, req in enumerate(run.requests):
                for j in range(n):
                    first: dict[str, Any] = {**base, "choices": [{"index": i * n + j, "delta": {
                        "role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]}
                    if opts["return_token_ids"] and i == 0 and j == 0:
                        first["prompt_token_ids"] = list(req.prompt)
                    yield _sse(first)
        elif opts["return_token_ids"]:
            for i, req in enumerate(run.requests):
                for j in range(n):
                    yield _sse({**base, "choices": [{"index": i * n + j, "text": "", "logprobs": None,
                                                     "finish_reason": None, "prompt_token_ids": list(req.prompt),
                                                     "token_ids": []}]})
        try:
            async for i, ev in run.events():
                req = run.requests[i]
                o: Output = ev[1]
                index = i * n + o.index
                if ev[0] == "delta":
                    _, o, text, toks, lps = ev
                    if not text and req.top is None and not opts["return_token_ids"]:
                        continue
                    if chat:
                        choice: dict[str, Any] = {"index": index, "delta": {"content": text},
                                                  "logprobs": _chat_logprobs(server, lps, toks) if lps else None,
                                                  "finish_reason": None}
                    else:
                        off = offsets.get(index, 0)
                        choice = {"index": index, "text": text, "finish_reason": None,
                                  "logprobs": _legacy_logprobs(server, o, lps, toks, off) if lps else None}
                        offsets[index] = off + sum(len(server.token_text(t)) for t in toks)
                    if opts["return_token_ids"]:
                        choice["token_ids"] = list(toks)
                    yield _sse({**base, "choices": [choice]})
                elif ev[0] == "finish":
                    if chat:
                        choice = {"index": index, "delta": {}, "logprobs": None, "finish_reason": o.finish_reason}
                    else:
                        choice = {"index": index, "text": "", "logprobs": None, "finish_reason": o.finish_reason}
                    yield _sse({**base, "choices": [choice]})
        except APIError as exc:
            yield _sse({"error": {"message": exc.message, "type": APIError.TYPES.get(exc.status, "error"),
                                  "param": None, "code": exc.status}})
            return
        if opts["include_usage"]:
            yield _sse({**base, "choices": [], "usage": _usage(run.requests)})
        yield "data: [DONE]\n\n"
    finally:
        if not all(r.finished for r in run.requests):
            run.cancel()


# ---------------------------------------------------------------------------- metrics
def prometheus_text(m: EngineMetrics, model_name: str) -> str:
    label = f'model_name="{_escape(model_name)}"'
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, str, Any]]) -> None:
        lines.append(f"# HELP lispe:{name} {help_text}")
        lines.append(f"# TYPE lispe:{name} {kind}")
        for suffix, labels, value in samples:
            lines.append(f"lispe:{name}{suffix}{{{labels}}} {value}")

    def histogram(name: str, help_text: str, counts: list[int], total: float) -> None:
        samples = []
        acc = 0
        for b, c in zip(EngineMetrics.TTFT_BUCKETS, counts):
            acc += c
            samples.append(("_bucket", f'{label},le="{b}"', acc))
        acc += counts[-1]
        samples.append(("_bucket", f'{label},le="+Inf"', acc))
        samples.append(("_sum", label, total))
        samples.append(("_count", label, acc))
        metric(name, "histogram", help_text, samples)

    with m.lock:
        metric("num_requests_running", "gauge", "Number of requests in the running batch.",
               [("", label, m.running)])
        metric("num_requests_waiting", "gauge", "Number of requests waiting to be admitted.",
               [("", label, m.waiting)])
        metric("prompt_tokens_total", "counter", "Number of prefill tokens processed.",
               [("", label, m.prompt_tokens)])
        metric("generation_tokens_total", "counter", "Number of generation tokens processed.",
               [("", label, m.generation_tokens)])
        reasons = sorted(set(m.finished) | {"stop", "length", "abort"})
        metric("request_success_total", "counter", "Count of finished sequences by finish reason.",
               [("", f'{label},finished_reason="{r}"', m.finished.get(r, 0)) for r in reasons])
        histogram("time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                  m.ttft_counts, m.ttft_sum)
        histogram("e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.",
                  m.e2e_counts, m.e2e_sum)
    return "\n".join(lines) + "\n"


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
