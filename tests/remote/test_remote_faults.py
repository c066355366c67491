"""Faults, replicas, keys and the sandbox for remote models, against real `lispe serve` processes."""
from __future__ import annotations

import re
import threading
import time
import urllib.request

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("openai")

from lispe_py import Interpreter, LispEError  # noqa: E402

from servers import free_port, start_lispe  # noqa: E402

pytestmark = [pytest.mark.smollm2, pytest.mark.slow]

PROMPT = "The capital of France is"


def _lisp(**kw) -> Interpreter:
    interp = Interpreter(**kw)
    interp.eval("(use 'lispe_torch)")
    return interp


def test_server_down_names_the_url_after_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    lisp = _lisp()
    start = time.monotonic()
    with pytest.raises(LispEError) as err:
        lisp.eval(f'(torch_remote_model "{url}" {{"retries":2 "backoff":0.2}})')
    msg = str(err.value)
    assert "torch_remote_model: no server answered after 3 attempt(s)" in msg
    assert url in msg and "cannot connect" in msg
    assert time.monotonic() - start >= 0.2 + 0.4          # backoff 0.2 then 0.4 between the rounds
    other = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LispEError, match=r"no server answered after 1 round\(s\) over 2 replicas: ") as err:
        lisp.eval(f'(torch_remote_model (list "{url}" "{other}") {{"retries":0}})')
    assert url in str(err.value) and other in str(err.value)


def test_unknown_served_model_and_4xx_are_not_retried(lispe_server) -> None:
    lisp = _lisp()
    with pytest.raises(LispEError, match=r'does not serve the model "nope"; it serves "SmolLM2-135M-Instruct"'):
        lisp.eval(f'(torch_remote_model "{lispe_server.url}" {{"model":"nope"}})')
    lisp.eval(f'(setq rm (torch_remote_model "{lispe_server.url}" {{"model":"SmolLM2-135M-Instruct"}}))')
    lisp.eval("(setq rg (torch_generator_create rm))")
    before = sum(lisp.eval("(torch_model_info rm)")["requests"].values())
    with pytest.raises(LispEError, match=rf"torch_generate_text: the server refused the request: "
                                         rf"{lispe_server.url} \(status 400\): .*context"):
        lisp.eval(f'(torch_generate_text rg "{PROMPT}" {{"max_length":100000}})')
    assert sum(lisp.eval("(torch_model_info rm)")["requests"].values()) == before + 1


def test_slow_server_past_the_timeout(lispe_server) -> None:
    lisp = _lisp()
    lisp.eval(f'(setq rm (torch_remote_model "{lispe_server.url}" {{"timeout":600}}))')
    lisp.eval('(setq slow (torch_remote_model (list "{0}") {{"timeout":1.5 "retries":0}}))'.format(lispe_server.url))
    lisp.eval("(setq rg (torch_generator_create slow))")
    with pytest.raises(LispEError, match=rf"torch_generate_text: no server answered after 1 attempt\(s\): "
                                         rf"{lispe_server.url} \(no answer\): timed out after 1.5 s"):
        # min_new_tokens: an early end token must not let a fast server answer inside the timeout
        lisp.eval(f'(torch_generate_text rg "{PROMPT}" {{"max_length":600 "min_new_tokens":600}})')


def test_one_of_two_replicas_down(lispe_server) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    lisp = _lisp()
    lisp.eval(f'(setq rm (torch_remote_model (list "{dead}" "{lispe_server.url}") {{"backoff":0.1}}))')
    lisp.eval("(setq rg (torch_generator_create rm))")
    texts = [lisp.eval(f'(torch_generate_text rg "{PROMPT}" {{"max_length":3}})') for _ in range(3)]
    assert texts[0] and texts.count(texts[0]) == 3
    assert len(lisp.eval('(torch_generate_batch rg (list "A" "B" "C") {"max_length":2})')) == 3
    requests = lisp.eval("(torch_model_info rm)")["requests"]
    assert requests[lispe_server.url] >= 1 + 3 + 3
    assert requests[dead] >= 1          # tried once, then skipped while marked down


def test_requests_are_spread_over_replicas(lispe_server) -> None:
    other = lispe_server.url.replace("127.0.0.1", "localhost")
    lisp = _lisp()
    lisp.eval(f'(setq rm (torch_remote_model (list "{lispe_server.url}" "{other}") {{"max_concurrency":2}}))')
    lisp.eval("(setq rg (torch_generator_create rm))")
    texts = lisp.eval('(torch_generate_batch rg (list "A" "B" "C" "D") {"max_length":2})')
    assert len(texts) == 4
    requests = lisp.eval("(torch_model_info rm)")["requests"]
    assert requests[lispe_server.url] >= 2 and requests[other] >= 2


def _finished(url: str) -> int:
    """Sequences lispe serve has finished (its Prometheus /metrics)."""
    text = urllib.request.urlopen(url[:-3] + "/metrics", timeout=60).read().decode()
    return sum(int(float(m)) for m in re.findall(r'request_success_total\{[^}]*\} (\S+)', text))


def test_server_killed_mid_batch() -> None:
    server = start_lispe()
    try:
        lisp = _lisp()
        lisp.eval(f'(setq rm (torch_remote_model "{server.url}" {{"retries":0 "max_concurrency":1 "timeout":600 '
                  f'"keep_partial":true}}))')
        lisp.eval("(setq rg (torch_generator_create rm))")
        lisp.eval(f'(setq g2 (torch_generator_create (torch_remote_model "{server.url}" {{"retries":0}})))')
        done = _finished(server.url)

        def kill_after_the_first_row() -> None:      # max_concurrency 1: prompts go one after another
            deadline = time.monotonic() + 600
            while _finished(server.url) < done + 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)                           # its answer reaches the client; prompt 1 runs
            server.stop()
        killer = threading.Thread(target=kill_after_the_first_row)
        killer.start()
        out = lisp.eval(f'(torch_generate_batch rg (list "{PROMPT}" "The sky is" "One, two," "Hello") '
                        f'{{"max_length":12}})')
        killer.join()
        assert isinstance(out[0], str) and out[0]         # finished before the kill: kept
        assert out[-1] is None                             # after it: nil
        # without keep_partial the error says which prompt failed
        with pytest.raises(LispEError, match=r"torch_generate_batch: prompt 0 failed \(and 1 more\): no server "
                                             rf"answered after 1 attempt\(s\): {server.url} \(no answer\): cannot connect"):
            lisp.eval('(torch_generate_batch g2 (list "A" "B"))')
    finally:
        server.stop()


def test_api_key_from_an_environment_variable(monkeypatch) -> None:
    secret = "sk-test-8f2d1c"
    server = start_lispe("--api-key-env", "LISPE_TEST_KEY", env_extra={"LISPE_TEST_KEY": secret})
    try:
        lisp = _lisp()
        monkeypatch.delenv("LISPE_TEST_KEY", raising=False)
        with pytest.raises(LispEError, match=r'"api_key_env": the environment variable LISPE_TEST_KEY is not set'):
            lisp.eval(f'(torch_remote_model "{server.url}" {{"api_key_env":"LISPE_TEST_KEY"}})')
        with pytest.raises(LispEError, match=rf"the server refused the request: {server.url} \(status 401\)"):
            lisp.eval(f'(torch_remote_model "{server.url}")')
        monkeypatch.setenv("LISPE_TEST_KEY", secret)
        lisp.eval(f'(setq rm (torch_remote_model "{server.url}" {{"api_key_env":"LISPE_TEST_KEY"}}))')
        assert lisp.eval(f'(torch_generate_text (torch_generator_create rm) "{PROMPT}" {{"max_length":2}})')
        shown = str(lisp.eval("(torch_model_info rm)")) + lisp.eval("(string rm)") + repr(lisp.eval("rm").info())
        assert secret not in shown and "LISPE_TEST_KEY" in shown
    finally:
        server.stop()


def test_sandbox_refuses_hosts_not_allowed(lispe_server) -> None:
    port = lispe_server.url.split(":")[2].split("/")[0]
    with pytest.raises(LispEError, match=r"torch_remote_model: sandbox: network access to '127.0.0.1:\d+' is not allowed"):
        _lisp(sandbox=True).eval(f'(torch_remote_model "{lispe_server.url}")')
    with pytest.raises(LispEError, match="is not allowed"):
        _lisp(allow_net=["127.0.0.1:1"]).eval(f'(torch_remote_model "{lispe_server.url}")')
    ok = _lisp(allow_net=[f"127.0.0.1:{port}"])
    ok.eval(f'(setq rm (torch_remote_model "{lispe_server.url}"))')
    assert ok.eval(f'(torch_generate_text (torch_generator_create rm) "{PROMPT}" {{"max_length":2}})')


def test_bad_arguments_are_lispe_errors() -> None:
    lisp = _lisp()
    with pytest.raises(LispEError, match="torch_remote_model: argument 'url'"):
        lisp.eval("(torch_remote_model 12)")
    with pytest.raises(LispEError, match='bad server URL "ftp://x"'):
        lisp.eval('(torch_remote_model "ftp://x")')
    with pytest.raises(LispEError, match=r'unknown remote model config key "timout" \(did you mean \'timeout\'\?\); valid keys: "model"'):
        lisp.eval('(torch_remote_model "http://127.0.0.1:1/v1" {"timout":3})')
    with pytest.raises(LispEError, match='"retries" must be an integer >= 0'):
        lisp.eval('(torch_remote_model "http://127.0.0.1:1/v1" {"retries":-1})')
    with pytest.raises(LispEError, match='"engine": unknown engine'):
        lisp.eval('(torch_remote_model "http://127.0.0.1:1/v1" {"engine":"sglangx"})')


def test_python_api(lispe_server) -> None:
    from lispe_py.engines import RemoteEngine, engine_for
    from lispe_py.generation import GenerationConfig
    from lispe_py.models import load_model

    remote = RemoteEngine(lispe_server.url, {"timeout": 600})
    assert engine_for(remote) is remote and remote.kind == "lispe"
    cfg = GenerationConfig.from_dict({"max_length": 4})
    local = engine_for(load_model("SmolLM2-135M-Instruct"))
    assert remote.generate_text(PROMPT, cfg) == local.generate_text(PROMPT, cfg)
    assert "".join(p for _, p in remote.stream(PROMPT, cfg)) == local.generate_text(PROMPT, cfg)
    assert remote.generate_batch(["A", PROMPT], cfg) == local.generate_batch(["A", PROMPT], cfg)


def test_request_mapping_for_vllm_and_tgi(lispe_server) -> None:
    """The fields sent to vLLM and TGI (no such server here: the engine kind is forced on lispe serve's
    discovery, and the request bodies are checked before they would be sent)."""
    from lispe_py.engines import RemoteEngine
    from lispe_py.generation import GenerationConfig

    vllm = RemoteEngine(lispe_server.url, {"engine": "vllm"})
    cfg = GenerationConfig.from_dict({"max_length": 7, "strategy": "top_p", "temperature": 0.7, "top_p": 0.9,
                                      "seed": 5, "stop": ["\n"], "repetition_penalty": 1.2, "min_new_tokens": 2,
                                      "eos_token_id": 2, "num_return_sequences": 2, "regex": "[a-z]+"})
    kw, extra = vllm._body([1, 2, 3], cfg)
    assert kw == {"model": "SmolLM2-135M-Instruct", "prompt": [1, 2, 3], "max_tokens": 7, "stream": False,
                  "temperature": 0.7, "top_p": 0.9, "n": 2, "seed": 5, "stop": ["\n"]}
    assert extra == {"top_k": -1, "min_p": 0.0, "include_stop_str_in_output": True, "repetition_penalty": 1.2,
                     "min_tokens": 2, "stop_token_ids": [2], "ignore_eos": True, "return_token_ids": True,
                     "structured_outputs": {"regex": "[a-z]+"}}
    greedy = GenerationConfig.from_dict({"max_length": 3, "json_schema": {"type": "object"}})
    kw, extra = vllm._body("Hi", greedy, logprobs=4)
    assert kw["temperature"] == 0.0 and kw["top_p"] == 1.0 and kw["logprobs"] == 4
    assert extra["top_k"] == -1 and extra["structured_outputs"] == {"json": {"type": "object"}}

    tgi = RemoteEngine(lispe_server.url, {"engine": "tgi"})
    for key, value in (("top_k", {"strategy": "top_k"}), ("min_new_tokens", {"min_new_tokens": 1}),
                       ("choices", {"choices": ["a", "b"]}), ("eos_token_id", {"eos_token_id": 2})):
        with pytest.raises(Exception, match=rf'"{key}" cannot run on the remote engine tgi'):
            tgi.check_config(GenerationConfig.from_dict(value))
    kw, extra = tgi._body("Hi", GenerationConfig.from_dict({"strategy": "top_p", "top_p": 0.8}))
    assert "top_k" not in extra and kw["top_p"] == 0.8


def test_cli_sandbox_allow_net(lispe_server, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from servers import ROOT

    script = tmp_path / "remote.lisp"
    script.write_text(f'(use \'lispe_torch)\n(setq m (torch_remote_model "{lispe_server.url}"))\n'
                      f'(println (torch_model_info m))\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "lispe_py", "--sandbox", str(script)]
    refused = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode != 0
    assert "torch_remote_model: sandbox: network access to '127.0.0.1:" in refused.stderr + refused.stdout
    allowed = subprocess.run(cmd[:4] + ["--allow-net", "127.0.0.1"] + cmd[4:], capture_output=True, text=True,
                             env=env, timeout=300)
    assert allowed.returncode == 0, allowed.stderr
    assert "SmolLM2-135M-Instruct" in allowed.stdout and "lispe" in allowed.stdout
