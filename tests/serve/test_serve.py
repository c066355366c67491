"""`lispe serve` end to end: a real server subprocess on a free port with a tiny random model, driven by
the official `openai` client (and httpx where the client has no call): results equal local generation."""
from __future__ import annotations

import concurrent.futures as cf
import json
import re
import signal
import threading

import pytest

torch = pytest.importorskip("torch")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from lispe_py.generation import generate, sequence_logprobs  # noqa: E402
from lispe_py.generation.generate import new_text  # noqa: E402

PROMPTS = ["Hello world", "The quick brown", "def f(x):", "café 東京", '{"name": "Ada"', "yes no"]


def _eos(model):
    e = model.special_tokens["eos_token_id"]
    return set(e if isinstance(e, (list, tuple)) else [e])


def local(model, ids, cfg):
    """(new token ids up to and including the first EOS, their text) of a lone `generate`."""
    out = generate(model, ids, cfg)
    rows = out.view(-1, out.shape[-1])[:, len(ids):].tolist()
    res = []
    eos = _eos(model)
    for row in rows:
        for i, t in enumerate(row):
            if t in eos:
                row = row[:i + 1]
                break
        res.append((row, new_text(model.tokenizer, ids, row, None)))
    return res if len(res) > 1 else res[0]


def post(srv, path, body, headers=None):
    return httpx.post(srv.root + path, json=body, headers=headers or {}, timeout=120)


# ---------------------------------------------------------------------------- completions
def test_greedy_completions_equal_local_generate(server, tiny_model):
    client = server.client()
    tok = tiny_model.tokenizer
    for prompt in PROMPTS:
        ids = tok.encode(prompt)
        want_ids, want_text = local(tiny_model, ids, {"max_length": 20})
        r = client.completions.create(model="tiny", prompt=prompt, max_tokens=20, temperature=0,
                                      extra_body={"return_token_ids": True})
        c = r.choices[0]
        assert c.text == want_text
        assert c.token_ids == want_ids
        assert c.prompt_token_ids == ids
        assert c.finish_reason == ("length" if len(want_ids) == 20 and want_ids[-1] not in _eos(tiny_model)
                                   else "stop")
        assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == len(want_ids)
        assert r.model == "tiny" and r.object == "text_completion"


def test_token_id_prompts_and_prompt_lists(server, tiny_model):
    client = server.client()
    tok = tiny_model.tokenizer
    ids = [tok.encode(p) for p in PROMPTS[:3]]
    r = client.completions.create(model="tiny", prompt=ids[0], max_tokens=8, temperature=0)
    assert r.choices[0].text == local(tiny_model, ids[0], {"max_length": 8})[1]
    r = client.completions.create(model="tiny", prompt=PROMPTS[:3], max_tokens=8, temperature=0)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert [c.text for c in r.choices] == [local(tiny_model, i, {"max_length": 8})[1] for i in ids]
    assert r.usage.prompt_tokens == sum(len(i) for i in ids)


def test_chat_uses_the_chat_template(server, tiny_model):
    client = server.client()
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello world"}]
    ids = tiny_model.tokenizer.apply_chat_template(messages)
    want_ids, want_text = local(tiny_model, ids, {"max_length": 15})
    r = client.chat.completions.create(model="tiny", messages=messages, max_tokens=15, temperature=0,
                                       extra_body={"return_token_ids": True})
    assert r.choices[0].message.content == want_text
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].token_ids == want_ids
    assert r.prompt_token_ids == ids
    tokens = post(server, "/tokenize", {"model": "tiny", "messages": messages}).json()
    assert tokens["tokens"] == ids and tokens["count"] == len(ids) and tokens["max_model_len"] == 256


def test_streaming_pieces_join_to_the_full_text(server, tiny_model):
    client = server.client()
    for prompt in PROMPTS[:4]:
        full = client.completions.create(model="tiny", prompt=prompt, max_tokens=25, temperature=0).choices[0]
        pieces, reasons = [], []
        for chunk in client.completions.create(model="tiny", prompt=prompt, max_tokens=25, temperature=0,
                                               stream=True):
            pieces.append(chunk.choices[0].text)
            reasons.append(chunk.choices[0].finish_reason)
        assert "".join(pieces) == full.text
        assert reasons[-1] == full.finish_reason and all(r is None for r in reasons[:-1])
    messages = [{"role": "user", "content": "The quick brown"}]
    full = client.chat.completions.create(model="tiny", messages=messages, max_tokens=20, temperature=0)
    stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=20, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_stream_sends_done(server):
    with httpx.stream("POST", server.base + "/completions", timeout=60,
                      json={"prompt": "Hello", "max_tokens": 3, "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_n_and_seeded_sampling_are_reproducible(server, tiny_model):
    client = server.client()
    prompt = "Hello world"
    kw = dict(model="tiny", prompt=prompt, max_tokens=12, temperature=1.0, n=3, seed=1234,
              extra_body={"return_token_ids": True})
    a = client.completions.create(**kw)
    b = client.completions.create(**kw)
    assert len(a.choices) == 3 and [c.index for c in a.choices] == [0, 1, 2]
    assert [c.token_ids for c in a.choices] == [c.token_ids for c in b.choices]
    assert len({tuple(c.token_ids) for c in a.choices}) > 1
    # the same draws as local generate: copy j samples with seed + j, no top-k by default
    ids = tiny_model.tokenizer.encode(prompt)
    want = local(tiny_model, ids, {"strategy": "sample", "temperature": 1.0, "top_k": 0, "seed": 1234,
                                   "num_return_sequences": 3, "max_length": 12})
    assert [c.token_ids for c in a.choices] == [w[0] for w in want]
    assert [c.text for c in a.choices] == [w[1] for w in want]
    other = client.completions.create(**{**kw, "seed": 99})
    assert [c.token_ids for c in other.choices] != [c.token_ids for c in a.choices]


def test_stop_strings(server, tiny_model):
    client = server.client()
    full = client.completions.create(model="tiny", prompt="Hello world", max_tokens=30, temperature=0).choices[0].text
    assert len(full) > 6, "the model must say something to cut"
    stop = full[4:6]
    cut = full[:full.find(stop)]
    r = client.completions.create(model="tiny", prompt="Hello world", max_tokens=30, temperature=0, stop=[stop])
    assert r.choices[0].text == cut and r.choices[0].finish_reason == "stop"
    pieces = [c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="Hello world", max_tokens=30, temperature=0, stop=stop, stream=True)]
    assert "".join(pieces) == cut


def test_logprobs_completions_and_chat(server, tiny_model):
    client = server.client()
    prompt = "The quick brown"
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, temperature=0, logprobs=3,
                                  extra_body={"return_token_ids": True})
    c = r.choices[0]
    ids = tiny_model.tokenizer.encode(prompt)
    want = sequence_logprobs(tiny_model, ids + c.token_ids)[len(ids) - 1:].tolist()
    assert c.logprobs.token_logprobs == pytest.approx(want, abs=1e-3)
    assert len(c.logprobs.tokens) == len(c.token_ids)
    assert all(1 <= len(t) <= 3 for t in c.logprobs.top_logprobs)   # a dict by token text: texts may repeat
    # greedy: the chosen token is the best one
    assert all(max(t.values()) == pytest.approx(lp, abs=1e-6)
               for t, lp in zip(c.logprobs.top_logprobs, c.logprobs.token_logprobs))
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompt}], max_tokens=4,
                                       temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert all(len(e.top_logprobs) == 2 and e.logprob <= 0 for e in content)


# ---------------------------------------------------------------------------- structured outputs
def test_structured_outputs_choice_regex_json(server):
    client = server.client()
    r = client.completions.create(model="tiny", prompt="Answer:", max_tokens=10, temperature=0,
                                  extra_body={"structured_outputs": {"choice": ["yes", "no", "maybe"]}})
    assert r.choices[0].text in ("yes", "no", "maybe")
    r = client.completions.create(model="tiny", prompt="Code:", max_tokens=12, temperature=0.8, seed=3,
                                  extra_body={"guided_regex": "[0-9]{3}-[a-z]{2}"})
    assert re.fullmatch("[0-9]{3}-[a-z]{2}", r.choices[0].text)
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Who?"}], max_tokens=60, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    if r.choices[0].finish_reason == "stop":
        data = json.loads(r.choices[0].message.content)
        assert set(data) == {"name", "age"} and isinstance(data["age"], int)
    else:  # cut by max_tokens: still a prefix the schema allows
        assert r.choices[0].message.content.startswith('{')
    r = client.completions.create(model="tiny", prompt="Pick:", max_tokens=10, temperature=0,
                                  extra_body={"structured_outputs": {"json": {"enum": ["red", "green"]}}})
    assert json.loads(r.choices[0].text) in ("red", "green")


# ---------------------------------------------------------------------------- concurrency
def test_sixteen_concurrent_clients(server, tiny_model):
    client = server.client()
    tok = tiny_model.tokenizer
    prompts = [PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)) for i in range(16)]
    lengths = [5 + (3 * i) % 17 for i in range(16)]

    def one(i):
        r = client.completions.create(model="tiny", prompt=prompts[i], max_tokens=lengths[i], temperature=0,
                                      extra_body={"return_token_ids": True})
        return r.choices[0].token_ids, r.choices[0].text

    with cf.ThreadPoolExecutor(16) as ex:
        got = list(ex.map(one, range(16)))
    for i, (ids, text) in enumerate(got):
        assert (ids, text) == local(tiny_model, tok.encode(prompts[i]), {"max_length": lengths[i]})


def _metric(srv, name, labels=""):
    text = httpx.get(srv.root + "/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith(f"lispe:{name}{{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric lispe:{name} {labels}")


def test_disconnect_mid_stream_frees_the_row(server, wait):
    aborted = _metric(server, "request_success_total", 'finished_reason="abort"')
    with httpx.stream("POST", server.base + "/completions", timeout=60,
                      json={"prompt": "Hello", "max_tokens": 200, "stream": True, "ignore_eos": True}) as r:
        it = r.iter_lines()
        got = [next(it) for _ in range(6)]
    assert any(line.startswith("data: {") for line in got)
    assert wait(lambda: _metric(server, "request_success_total", 'finished_reason="abort"') == aborted + 1)
    assert wait(lambda: _metric(server, "num_requests_running") == 0)
    r = server.client().completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length")


def test_metrics_count_tokens_and_requests(server):
    before = {k: _metric(server, k) for k in ("prompt_tokens_total", "generation_tokens_total",
                                              "time_to_first_token_seconds_count")}
    r = server.client().completions.create(model="tiny", prompt=["Hello", "yes no"], max_tokens=4, temperature=0)
    assert _metric(server, "prompt_tokens_total") == before["prompt_tokens_total"] + r.usage.prompt_tokens
    assert _metric(server, "generation_tokens_total") == \
        before["generation_tokens_total"] + r.usage.completion_tokens
    assert _metric(server, "time_to_first_token_seconds_count") == before["time_to_first_token_seconds_count"] + 2
    text = httpx.get(server.root + "/metrics").text
    for name in ("num_requests_running", "num_requests_waiting", "e2e_request_latency_seconds_bucket"):
        assert f"lispe:{name}{{" in text
    assert '# TYPE lispe:time_to_first_token_seconds histogram' in text


# ---------------------------------------------------------------------------- other endpoints
def test_models_health_tokenize_detokenize(server, tiny_model):
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert httpx.get(server.root + "/health").status_code == 200
    ids = tiny_model.tokenizer.encode("café 東京")
    r = post(server, "/tokenize", {"model": "tiny", "prompt": "café 東京"}).json()
    assert r == {"tokens": ids, "count": len(ids), "max_model_len": 256}
    r = post(server, "/detokenize", {"model": "tiny", "tokens": ids}).json()
    assert r == {"prompt": tiny_model.tokenizer.decode(ids)}
    tok = tiny_model.tokenizer
    marked = [tok.bos_token_id] + ids + [tok.eos_token_id]
    r = post(server, "/detokenize", {"model": "tiny", "tokens": marked}).json()
    assert r == {"prompt": tok.decode(marked)} and r["prompt"] != "café 東京"
    r = post(server, "/detokenize", {"model": "tiny", "tokens": marked, "skip_special_tokens": True}).json()
    assert r == {"prompt": "café 東京"}


# ---------------------------------------------------------------------------- errors
def _error(r, status):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert "Traceback" not in r.text
    return err


@pytest.mark.parametrize("body,status,param", [
    ({"model": "nope", "prompt": "x"}, 404, "model"),
    ({"prompt": "x", "max_tokens": -1}, 400, "max_tokens"),
    ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": "x", "max_tokens": 10_000}, 400, "max_tokens"),
    ({"prompt": "x", "temperature": "hot"}, 400, "temperature"),
    ({"prompt": "x", "n": 0}, 400, "n"),
    ({"prompt": "x", "top_p": 0}, 400, "top_p"),
    ({"prompt": [1, 2, 99999]}, 400, "prompt"),
    ({"prompt": {"a": 1}}, 400, "prompt"),
    ({}, 400, "prompt"),
    ({"prompt": "x", "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
        "type": "object", "properties": {"a": {"type": "frobnicate"}}}}}}, 400, None),
    ({"prompt": "x", "guided_regex": "(unclosed"}, 400, None),
    ({"prompt": "x", "structured_outputs": {"choice": []}}, 400, "structured_outputs.choice"),
    ({"prompt": "x", "guided_choice": ["a"], "guided_regex": "b"}, 400, "guided_regex"),
    ({"prompt": "x", "logprobs": 50}, 400, "logprobs"),
    ({"prompt": "x", "stop": 5}, 400, "stop"),
])
def test_bad_completion_requests_get_4xx_json(server, body, status, param):
    err = _error(post(server, "/v1/completions", body), status)
    if param is not None:
        assert err["param"] == param


def test_bad_requests_through_the_client_and_other_routes(server):
    client = server.client()
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt="x", max_tokens=-1)
    assert "max_tokens" in str(info.value)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[], max_tokens=2)
    _error(httpx.post(server.base + "/completions", content=b"{not json",
                      headers={"content-type": "application/json"}), 400)
    _error(httpx.get(server.base + "/nowhere"), 404)
    _error(httpx.get(server.base + "/completions"), 405)
    _error(post(server, "/detokenize", {"tokens": [1, -3]}), 400)
    _error(post(server, "/detokenize", {"tokens": [1], "skip_special_tokens": "yes"}), 400)
    _error(post(server, "/tokenize", {"prompt": 3}), 400)
    _error(post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}), 400)


# ---------------------------------------------------------------------------- auth, shutdown
def test_api_key_required(tiny_folder, start_server):
    srv = start_server(str(tiny_folder), "--api-key-env", "SERVE_TEST_KEY", "--threads", "1",
                       env={"SERVE_TEST_KEY": "s3cret"})
    with pytest.raises(openai.AuthenticationError):
        srv.client().completions.create(model=str(tiny_folder), prompt="x", max_tokens=2)
    with pytest.raises(openai.AuthenticationError):
        srv.client(api_key="wrong").models.list()
    _error(post(srv, "/tokenize", {"prompt": "x"}), 401)
    r = srv.client(api_key="s3cret").completions.create(model=str(tiny_folder), prompt="x", max_tokens=2)
    assert r.choices[0].text is not None
    assert httpx.get(srv.root + "/health").status_code == 200   # health stays open (load balancers)
    assert "s3cret" not in srv.line


def test_int4_with_8_bit_activations_serves_what_local_generate_gives(tiny_folder, start_server):
    """`--quantize int4 --activations int8`: the served model is the one `load_model` gives with the same
    options (8-bit activations in its int4 layers and int8 head), greedy ids equal to a lone local
    `generate`, for requests one at a time and for concurrent ones sharing decode steps."""
    from lispe_py.models import load_model, native

    if not native.available():
        pytest.skip(f"8-bit activations are the native kernels': {native.reason()}")
    srv = start_server(str(tiny_folder), "--quantize", "int4", "--activations", "int8", "--threads", "1",
                       "--served-model-name", "tiny8")
    model = load_model(tiny_folder, quantize="int4", activations="int8")
    assert model.quantization.activations == "int8"
    want = {p: local(model, model.tokenizer.encode(p), {"max_length": 16}) for p in PROMPTS}
    wide = load_model(tiny_folder, quantize="int4")  # 16 bits: these prompts tell the two widths apart
    assert any(local(wide, wide.tokenizer.encode(p), {"max_length": 16}) != want[p] for p in PROMPTS)
    client = srv.client()

    def ask(prompt):
        r = client.completions.create(model="tiny8", prompt=prompt, max_tokens=16, temperature=0,
                                      extra_body={"return_token_ids": True})
        return r.choices[0].token_ids, r.choices[0].text

    for p in PROMPTS[:2]:
        assert ask(p) == tuple(want[p])
    with cf.ThreadPoolExecutor(len(PROMPTS)) as ex:
        got = dict(zip(PROMPTS, ex.map(ask, PROMPTS)))
    assert got == {p: tuple(w) for p, w in want.items()}


def test_sigint_drains_in_flight_requests_and_exits_0(tiny_folder, start_server):
    srv = start_server(str(tiny_folder), "--threads", "1")
    result = {}
    started = threading.Event()

    def run():
        chunks = []
        stream = srv.client().completions.create(model=str(tiny_folder), prompt="Hello", max_tokens=150,
                                                 temperature=0, stream=True, extra_body={"ignore_eos": True})
        for chunk in stream:
            chunks.append(chunk)
            started.set()
        result["chunks"] = chunks

    t = threading.Thread(target=run)
    t.start()
    assert started.wait(60)
    srv.proc.send_signal(signal.SIGINT)
    t.join(120)
    assert srv.proc.wait(60) == 0
    chunks = result["chunks"]
    assert chunks[-1].choices[0].finish_reason == "length"
    err = srv.proc.stderr.read()
    assert "Traceback" not in err


def test_usage_errors(tiny_folder):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]

    def run(*args, env=None):
        return subprocess.run([sys.executable, "-m", "lispe_py", "serve", *args], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(root), **(env or {})}, timeout=120)
    r = run()
    assert r.returncode == 2 and "usage: lispe serve MODEL" in r.stderr
    r = run(str(tiny_folder), "--api-key-env", "SERVE_TEST_UNSET_KEY")
    assert r.returncode == 2 and "SERVE_TEST_UNSET_KEY" in r.stderr
    r = run("/no/such/model")
    assert r.returncode == 1 and "cannot load" in r.stderr and "Traceback" not in r.stderr
    # 8-bit activations need a quantized load: said before serving, no traceback
    r = run(str(tiny_folder), "--activations", "int8")
    assert r.returncode == 1 and "applies to quantized loads" in r.stderr and "Traceback" not in r.stderr
    r = run(str(tiny_folder), "--activations", "int4")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_a_port_in_use_is_a_clear_error(tiny_folder):
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "lispe_py", "serve", str(tiny_folder), "--port", str(port)],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 1
    assert str(port) in r.stderr and "Traceback" not in r.stderr
    assert "lispe serve:" not in r.stdout
