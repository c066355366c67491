"""Fixtures for the `lispe serve` tests: a tiny random Llama saved as a Hugging Face folder (with a
byte-level BPE tokenizer trained here and a chat template), and real `python -m lispe_py serve`
subprocesses on free ports, driven over HTTP."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (
    "{% for m in messages %}{{ bos_token }}{{ m['role'] }}: {{ m['content'] | trim }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}{{ bos_token }}assistant:{% endif %}"
)
CORPUS = ["Hello world, hello there!", "The quick brown fox jumps over the lazy dog.", "café 東京 🤗 123 4567",
          "def f(x):\n    return x  # ok", '{"name": "Ada", "age": 36}', "yes no maybe 0123456789"] * 5
STARTUP_TIMEOUT = 120


def _tokenizer():
    from tokenizers import Tokenizer as Backend, decoders, models, pre_tokenizers, trainers

    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS, trainer)
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos_token=True)
    tok.chat_template = TEMPLATE
    return tok


def make_tiny_folder(folder: Path, context: int = 256) -> Path:
    tok = _tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=context, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    return make_tiny_folder(tmp_path_factory.mktemp("serve-tiny"))


@pytest.fixture(scope="session")
def tiny_model(tiny_folder):
    from lispe_py.models import load_model

    torch.set_flush_denormal(True)
    return load_model(tiny_folder)


class ServerProcess:
    """A `python -m lispe_py serve` subprocess; `.base` is its /v1 URL once it printed its line."""

    def __init__(self, model: str, *args: str, env: dict | None = None):
        cmd = [sys.executable, "-m", "lispe_py", "serve", model, "--port", "0", *args]
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=full_env, cwd=str(ROOT))
        self.line = self.proc.stdout.readline()
        if not self.line.startswith("lispe serve: "):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.proc.kill()
            raise RuntimeError(f"lispe serve did not start: {self.line!r} {err}")
        self.base = self.line.rsplit(" at ", 1)[1].strip()
        self.root = self.base[:-len("/v1")]

    def client(self, **kwargs):
        import openai

        kwargs.setdefault("api_key", "none")
        return openai.OpenAI(base_url=self.base, max_retries=0, timeout=120, **kwargs)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tiny_folder):
    srv = ServerProcess(str(tiny_folder), "--served-model-name", "tiny", "--threads", "1")
    yield srv
    srv.stop()


def wait_until(predicate, timeout: float = 30.0, every: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


@pytest.fixture(scope="session")
def start_server():
    """start_server(model, *args, env=None) -> ServerProcess (stopped at the end of the session)."""
    started: list[ServerProcess] = []

    def start(model: str, *args: str, env: dict | None = None) -> ServerProcess:
        srv = ServerProcess(model, *args, env=env)
        started.append(srv)
        return srv
    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def wait():
    return wait_until
