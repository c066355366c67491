"""Sampling parameters without a sampling strategy (issue 20, item 2): the decoding stays as it was
(greedy, as transformers with do_sample=False), a warning says so once per generator, and
torch_generator_info and the printed generator name the strategy a call uses and what it ignores."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lispe_py import Interpreter  # noqa: E402
from lispe_py.generation import GenerationConfig  # noqa: E402
from lispe_py.generation.advice import (effective_strategy, ignored_sampling,  # noqa: E402
                                        sampling_warning)

torch.set_flush_denormal(True)
TINY = '{"vocab_size":64 "hidden_size":32 "num_layers":2 "num_heads":4 "max_seq_length":256 "seed":3}'
WARNING = "sampling parameters temperature=1.5 top_k=40 top_p=0.9 are ignored"


@pytest.fixture
def lisp() -> Interpreter:
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval(f'(setq model (torch_model_create "transformer" {TINY}))')
    interp.eval('(setq generator (torch_generator_create model "cpu"))')
    interp.eval("(setq ids (integers 5 9 13))")
    return interp


@pytest.mark.parametrize("changes, strategy, ignored", [
    ({}, "greedy", ()),
    ({"temperature": 1.5, "top_k": 40, "top_p": 0.9}, "greedy", ("temperature", "top_k", "top_p")),
    ({"temperature": 0.0}, "greedy", ()),                                 # 0 means greedy: not ignored
    ({"strategy": "sample", "temperature": 0.7, "min_p": 0.1}, "sample", ()),
    ({"strategy": "top_k", "top_k": 40, "top_p": 0.9, "typical_p": 0.5}, "top_k", ("top_p", "typical_p")),
    ({"strategy": "top_p", "top_k": 40, "top_p": 0.9}, "top_p", ("top_k",)),
    ({"strategy": "sample", "do_sample": False, "temperature": 0.7}, "greedy", ("temperature",)),
    ({"strategy": "top_p", "temperature": 0.0, "top_p": 0.9}, "greedy", ("top_p",)),
    # do_sample false keeps the filters before the argmax: typical_p can drop the best token
    ({"strategy": "sample", "do_sample": False, "typical_p": 0.5, "top_k": 5}, "greedy", ("top_k",)),
    ({"strategy": "top_k", "do_sample": False, "typical_p": 0.5}, "greedy", ("typical_p",)),
    ({"strategy": "beam_search", "top_p": 0.5}, "beam_search", ("top_p",)),
])
def test_effective_strategy_and_ignored_parameters(changes, strategy, ignored):
    cfg = GenerationConfig.from_dict(changes)
    assert effective_strategy(cfg) == strategy
    assert ignored_sampling(cfg) == ignored
    warns = strategy in ("greedy", "beam_search") and bool(ignored)
    assert (sampling_warning(cfg) is not None) == warns


def test_warning_texts_say_why():
    assert sampling_warning(GenerationConfig.from_dict({"strategy": "sample", "do_sample": False,
                                                        "top_k": 3})).startswith(
        "sampling parameter top_k=3 is ignored: do_sample is false, so strategy \"sample\" decodes greedily")
    assert "beam search" in sampling_warning(GenerationConfig.from_dict({"strategy": "beam_search",
                                                                         "temperature": 0.5}))


def test_greedy_generator_with_sampling_parameters_warns_once(lisp, capfd):
    lisp.eval("(torch_set_generation_params generator 8 1.5 40 0.9)")
    first = lisp.eval("(torch_generate generator ids)")
    err = capfd.readouterr().err
    assert err.count("Warning: torch_generate: " + WARNING) == 1
    assert 'the strategy is "greedy"; give a sampling strategy ("sample", "top_k" or "top_p")' in err
    # the decoding is unchanged: greedy, as without the sampling parameters
    again = lisp.eval("(torch_generate generator ids)")
    lisp.eval('(setq plain (torch_generator_create model "cpu"))')
    lisp.eval('(torch_generator_config plain {"max_length":8})')
    assert first.tolist() == again.tolist() == lisp.eval("(torch_generate plain ids)").tolist()
    lisp.eval("(torch_generate generator (list (integers 1 2) (integers 3 4)))")
    assert "Warning" not in capfd.readouterr().err                    # once per generator
    # another generator with the same settings warns again (its own once)
    lisp.eval('(setq other (torch_generator_create model "cpu"))')
    lisp.eval("(torch_set_generation_params other 8 1.5 40 0.9)")
    lisp.eval("(torch_generate other ids)")
    assert capfd.readouterr().err.count(WARNING) == 1


def test_no_warning_with_a_sampling_strategy(lisp, capfd):
    lisp.eval("(torch_set_generation_params generator 8 1.5 40 0.9)")
    lisp.eval('(torch_generate generator ids "sample")')
    lisp.eval('(torch_generate generator ids "top_k")')            # leaves top_p aside: described, not warned
    lisp.eval('(torch_generator_config generator {"strategy":"top_p" "seed":1})')
    lisp.eval("(torch_generate generator ids)")
    assert "Warning" not in capfd.readouterr().err
    # the default generator (nothing set) never warns
    lisp.eval('(setq plain (torch_generator_create model "cpu"))')
    lisp.eval('(torch_generator_config plain {"max_length":4})')
    lisp.eval("(torch_generate plain ids)")
    assert "Warning" not in capfd.readouterr().err


def test_per_call_configs_are_checked(lisp, capfd):
    # the generator samples; a call's config that turns sampling off warns (torch_generate_trace)
    lisp.eval('(torch_generator_config generator {"strategy":"sample" "temperature":0.7 "max_length":4})')
    lisp.eval('(torch_generate_trace generator ids {"do_sample":nil})')
    err = capfd.readouterr().err
    assert 'Warning: torch_generate_trace: sampling parameter temperature=0.7 is ignored: do_sample is false' in err
    lisp.eval('(torch_generate_trace generator ids {"do_sample":nil})')
    assert "Warning" not in capfd.readouterr().err
    # a call's strategy argument: greedy for this call
    lisp.eval('(setq g2 (torch_generator_create model "cpu"))')
    lisp.eval('(torch_generator_config g2 {"strategy":"sample" "top_p":0.8 "max_length":4})')
    lisp.eval('(torch_generate g2 ids "greedy")')
    assert "Warning: torch_generate: sampling parameter top_p=0.8 is ignored" in capfd.readouterr().err


def test_info_and_printed_generator_name_the_strategy_a_call_uses(lisp):
    info = lisp.eval("(torch_generator_info generator)")
    assert info["strategy"] == "greedy" and info["effective_strategy"] == "greedy"
    assert info["ignored_parameters"] is None
    assert "strategy=greedy max_length=50" in lisp.eval("(string generator)")

    lisp.eval("(torch_set_generation_params generator 8 1.5 40 0.9)")
    info = lisp.eval("(torch_generator_info generator)")
    assert info["effective_strategy"] == "greedy"
    assert list(info["ignored_parameters"]) == ["temperature", "top_k", "top_p"]
    assert "strategy=greedy (ignores temperature top_k top_p) max_length=8 temperature=1.5" in \
        lisp.eval("(string generator)")

    lisp.eval('(torch_generator_config generator {"strategy":"sample" "do_sample":nil})')
    info = lisp.eval("(torch_generator_info generator)")
    assert info["strategy"] == "sample" and info["effective_strategy"] == "greedy"
    assert "strategy=greedy (sample with do_sample=false; ignores temperature top_k top_p)" in \
        lisp.eval("(string generator)")

    lisp.eval('(torch_generator_config generator {"strategy":"top_k" "do_sample":true})')
    info = lisp.eval("(torch_generator_info generator)")
    assert info["effective_strategy"] == "top_k" and list(info["ignored_parameters"]) == ["top_p"]
    assert "strategy=top_k (ignores top_p)" in lisp.eval("(string generator)")
