"""GenerationConfig: defaults, aliases, validation (one error type, clear messages), immutability."""
from __future__ import annotations

import warnings

import pytest

from lispe_py.generation.config import (GenerationConfig, GenerationError, resolve_special_tokens,
                                        valid_keys)


def test_defaults_follow_generation_md():
    c = GenerationConfig()
    assert (c.max_length, c.min_new_tokens, c.temperature, c.top_k, c.top_p) == (50, 0, 1.0, 50, 1.0)
    assert (c.min_p, c.typical_p, c.repetition_penalty) == (0.0, 1.0, 1.0)
    assert (c.presence_penalty, c.frequency_penalty, c.no_repeat_ngram_size) == (0.0, 0.0, 0)
    assert (c.strategy, c.do_sample, c.length_penalty, c.early_stopping) == ("greedy", True, 1.0, False)
    assert c.num_return_sequences == 1 and c.eos_token_id is None and c.pad_token_id is None
    assert c.beams == 1
    assert c.update(strategy="beam_search").beams == 4
    assert c.update(strategy="beam_search", num_beams=2).beams == 2


def test_max_new_tokens_is_an_alias_of_max_length():
    assert GenerationConfig.from_dict({"max_new_tokens": 7}).max_length == 7
    assert "max_new_tokens" not in GenerationConfig().to_dict()


def test_round_trip_and_pairs():
    c = GenerationConfig.from_dict([("top_k", 5), ("top_k", 9), ("stop", ["\n"]), ("eos_token_id", [1, 2])])
    assert c.top_k == 9                                   # later pairs win
    d = c.to_dict()
    assert d["stop"] == ["\n"] and d["eos_token_id"] == [1, 2]
    assert GenerationConfig.from_dict(d) == c


def test_update_returns_a_new_config_and_keeps_the_old_one_on_error():
    c = GenerationConfig.from_dict({"top_k": 10})
    c2 = c.update({"top_p": 0.5})
    assert c.top_p == 1.0 and c2.top_p == 0.5 and c2.top_k == 10
    with pytest.raises(GenerationError):
        c.update({"top_k": 3, "top_p": 2.0})
    assert c.top_k == 10 and c.top_p == 1.0


def test_none_restores_the_default():
    c = GenerationConfig.from_dict({"top_k": 3, "eos_token_id": 5})
    c2 = c.update({"top_k": None, "eos_token_id": None})
    assert c2.top_k == 50 and c2.eos_token_id is None


def test_integral_floats_and_int_temperatures_are_accepted():
    c = GenerationConfig.from_dict({"max_length": 20.0, "temperature": 1, "top_p": 1})
    assert c.max_length == 20 and isinstance(c.temperature, float) and c.top_p == 1.0


@pytest.mark.parametrize("values, message", [
    ({"top_p": 0}, r"top_p must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"top_p": -0.1}, "top_p"),
    ({"temperature": -0.5}, "temperature must be >= 0"),
    ({"top_k": -1}, "top_k must be >= 0"),
    ({"top_k": 2.5}, "top_k must be an integer"),
    ({"top_k": True}, "top_k must be an integer"),
    ({"max_length": 0}, "max_length must be >= 1"),
    ({"max_length": "10"}, "max_length must be an integer"),
    ({"min_p": 1.5}, "min_p"),
    ({"typical_p": 0.0}, "typical_p"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"repetition_penalty": float("nan")}, "finite"),
    ({"no_repeat_ngram_size": -2}, "no_repeat_ngram_size"),
    ({"strategy": "beam"}, "unknown strategy 'beam'; valid strategies: 'greedy'"),
    ({"do_sample": 1}, "do_sample must be true or false"),
    ({"num_beams": 0}, "num_beams"),
    ({"early_stopping": "sometimes"}, "early_stopping"),
    ({"num_return_sequences": 0}, "num_return_sequences"),
    ({"eos_token_id": -1}, "eos_token_id"),
    ({"eos_token_id": []}, "eos_token_id"),
    ({"pad_token_id": "x"}, "pad_token_id"),
    ({"stop": ""}, "stop"),
    ({"stop": ["a", 3]}, "stop"),
    ({"seed": 1.5}, "seed"),
    ({"seed": -1}, "seed"),
    ({"callback": 3}, "callback must be a function"),
    ({"logits_processor": [len, 4]}, "logits_processor"),
    ({"bad_words": []}, "bad_words"),
    ({"bad_words": [[1, "a"]]}, "bad_words"),
    ({"strategy": "beam_search", "num_beams": 2, "num_return_sequences": 3}, "num_return_sequences"),
    ({"num_return_sequences": 2}, "identical"),
    ({"strategy": "sample", "do_sample": False, "num_return_sequences": 2}, "identical"),
    ({"min_new_tokens": 60}, "min_new_tokens"),
])
def test_bad_values_raise_generation_error(values, message):
    with pytest.raises(GenerationError, match=message):
        GenerationConfig.from_dict(values)


def test_unknown_key_is_named_with_the_valid_keys():
    with pytest.raises(GenerationError) as info:
        GenerationConfig.from_dict({"top_q": 0.5})
    msg = str(info.value)
    assert "'top_q'" in msg and "top_p" in msg and "max_new_tokens" in msg
    assert isinstance(info.value, ValueError)
    assert "top_k" in valid_keys() and "max_new_tokens" in valid_keys()


def test_bad_config_shape():
    with pytest.raises(GenerationError):
        GenerationConfig.from_dict([("top_k",)])


def test_sampling_with_several_sequences_is_fine():
    c = GenerationConfig.from_dict({"strategy": "sample", "num_return_sequences": 3})
    assert c.num_return_sequences == 3 and not c.is_greedy


def test_special_tokens_from_model_and_out_of_vocabulary_warnings():
    model_special = {"eos_token_id": 2, "pad_token_id": None, "bos_token_id": 1}
    st = resolve_special_tokens(GenerationConfig(), model_special, vocab_size=100)
    assert st.eos == (2,) and st.pad == 2 and st.input_pad == 2 and st.bos == 1
    cfg = GenerationConfig.from_dict({"eos_token_id": 50256, "pad_token_id": 50257})
    with pytest.warns(UserWarning) as rec:
        st = resolve_special_tokens(cfg, model_special, vocab_size=100)
    assert st.eos == () and st.pad == 50257 and 0 <= st.input_pad < 100
    assert any("50256" in str(w.message) for w in rec) and any("50257" in str(w.message) for w in rec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        st = resolve_special_tokens(GenerationConfig.from_dict({"eos_token_id": [2, 5]}), {}, 100)
    assert st.eos == (2, 5) and st.pad == 2


# ----- bounds: hostile sizes end at config time with a clear error -----

@pytest.mark.parametrize("values, message", [
    ({"max_length": 10 ** 9}, r"max_length must be <= 16777216 \(longer than any model's context\), got 1000000000"),
    ({"max_new_tokens": 10 ** 9}, r"max_length must be <= 16777216"),
    ({"min_new_tokens": 10 ** 9}, r"min_new_tokens must be <= 16777216"),
    ({"eos_token_id": 10 ** 9}, r"eos_token_id 1000000000 is larger than any vocabulary \(token ids are below 16777216\)"),
    ({"eos_token_id": [2, 10 ** 9]}, r"eos_token_id 1000000000 is larger than any vocabulary"),
    ({"pad_token_id": 10 ** 9}, r"pad_token_id 1000000000 is larger than any vocabulary"),
    ({"bos_token_id": 10 ** 9}, r"bos_token_id 1000000000 is larger than any vocabulary"),
    ({"bad_words": [[3, 10 ** 9]]}, r"bad_words 1000000000 is larger than any vocabulary"),
])
def test_sizes_beyond_any_model_are_rejected_at_once(values, message):
    with pytest.raises(GenerationError, match=message):
        GenerationConfig.from_dict(values)


def test_the_largest_plausible_values_are_accepted():
    c = GenerationConfig.from_dict({"max_length": 2 ** 24, "eos_token_id": 2 ** 24 - 1, "pad_token_id": 50257})
    assert c.max_length == 2 ** 24 and c.eos_token_id == 2 ** 24 - 1


@pytest.mark.parametrize("values, message", [
    ({"max_length": 65}, r"max_length 65 new tokens exceeds the model's context of 64 tokens"),
    ({"max_new_tokens": 1000}, r"max_length 1000 new tokens exceeds the model's context of 64 tokens"),
    ({"bad_words": [5, [7, 300]]}, r"bad_words: token ids \[300\] are outside the model's vocabulary \(0..99\)"),
    ({"allowed_tokens": [1, 100, 2]}, r"allowed_tokens: token ids \[100\] are outside the model's vocabulary"),
    ({"bos_token_id": 100}, r"bos_token_id 100 is outside the model's vocabulary \(0..99\)"),
])
def test_model_bounds(values, message):
    from lispe_py.generation.config import check_model_bounds

    with pytest.raises(GenerationError, match=message):
        check_model_bounds(GenerationConfig.from_dict(values), 100, 64)
    check_model_bounds(GenerationConfig.from_dict({"max_length": 64, "bad_words": [99], "eos_token_id": 500,
                                                   "pad_token_id": 500}), 100, 64)  # EOS/pad: warnings only


def test_a_generator_checks_its_config_against_its_model():
    pytest.importorskip("torch")
    from lispe_py import Interpreter
    from lispe_py.errors import LispEError

    lisp = Interpreter()
    lisp.eval("(use 'lispe_torch)")
    lisp.eval('(setq model (torch_model_create "llama" {"vocab_size":64 "hidden_size":16 "num_layers":1 '
              '"num_heads":2 "max_position_embeddings":32}))')
    lisp.eval('(setq generator (torch_generator_create model "cpu"))')
    lisp.eval('(torch_generator_config generator {"max_length":7})')
    for config, message in [('{"max_length":1000000000}', "max_length must be <= 16777216"),
                            ('{"max_length":33}', "max_length 33 new tokens exceeds the model's context of 32"),
                            ('{"bos_token_id":1000000000}', "bos_token_id 1000000000 is larger than any vocabulary"),
                            ('{"bos_token_id":64}', "bos_token_id 64 is outside the model's vocabulary"),
                            ('{"eos_token_id":1000000000}', "eos_token_id 1000000000 is larger than any vocabulary"),
                            ('{"bad_words":(integers 64)}', r"bad_words: token ids \[64\]")]:
        with pytest.raises(LispEError, match=message):
            lisp.eval(f"(torch_generator_config generator {config})")
        with pytest.raises(LispEError, match=message.split(" ")[0]):
            lisp.eval(f"(torch_generator_config generator {config})")
    assert lisp.eval("(key (torch_generator_info generator) \"max_length\")") == 7  # unchanged on error
