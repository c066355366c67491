"""`(torch_model_quantize model "int8"|"int4" [group_size])` from Lisp, on tiny random models: the
quantized model still generates, its logits stay close to the float model's, and wrong arguments are
LispE errors naming the function and the argument (never a Python traceback)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lispe_py import Interpreter, LispEError  # noqa: E402
from lispe_py.libs import torch_quant  # noqa: E402,F401  (registers torch_model_quantize)
from lispe_py.libs.torch_quant import load_options  # noqa: E402
from lispe_py.builtins.registry import REGISTRY  # noqa: E402
from lispe_py.models.quantize import Int4Linear, Int8Linear, default_int8_groups  # noqa: E402

INT8_DEFAULT_GROUP = 32 if default_int8_groups("cpu") else None  # groups where the native kernel runs

# hidden 128 / ffn 256: every layer's in_features is a multiple of 32, 64 and 128; tied head (as SmolLM2).
TIED = ('{"vocab_size":96 "hidden_size":128 "num_layers":2 "num_heads":4 "num_kv_heads":2 '
        '"intermediate_size":256 "max_seq_length":128 "seed":7 "tie_word_embeddings":true}')
UNTIED = '{"vocab_size":64 "hidden_size":64 "num_layers":2 "num_heads":4 "max_seq_length":128 "seed":3}'
PROMPT = "(integers 5 9 13 40 2)"


def make(config: str = TIED) -> Interpreter:
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval(f'(setq model (torch_model_create "transformer" {config}))')
    interp.eval('(setq generator (torch_generator_create model "cpu"))')
    interp.eval('(torch_generator_config generator {"max_length":12 "strategy":"greedy"})')
    return interp


def logits(interp: Interpreter) -> torch.Tensor:
    return interp.eval(f"(torch_hf_forward model (tensor_unsqueeze (torch_tensor {PROMPT}) 0))")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def greedy_matches_own_forward(interp: Interpreter) -> list[int]:
    """Generate 12 greedy tokens from Lisp; check each is the argmax of the model's full forward."""
    out = interp.eval(f"(torch_generate generator {PROMPT})").tolist()
    assert len(out) == 5 + 12 and out[:5] == [5, 9, 13, 40, 2]
    with torch.inference_mode():
        full = interp.eval("model").forward_full(torch.tensor([out[:-1]]))[0]
    assert out[5:] == full[4:].argmax(-1).tolist()
    return out


def test_builtin_is_registered_in_lispe_torch_with_a_usage_line():
    entry = REGISTRY["torch_model_quantize"]
    assert entry.library == "lispe_torch" and entry.usage == '(torch_model_quantize model "int8")'
    assert (entry.min_args, entry.max_args) == (2, 3)
    with pytest.raises(LispEError, match="torch_model_quantize"):
        Interpreter().eval('(torch_model_quantize 1 "int8")')  # not visible before (use 'lispe_torch)


def test_int8_returns_the_model_quantized_in_place_close_to_float_and_generating():
    lisp = make()
    ref = logits(lisp)
    float_out = lisp.eval(f"(torch_generate generator {PROMPT})").tolist()
    model = lisp.eval("model")
    assert lisp.eval('(torch_model_quantize model "int8")') is model
    q = model.quantization
    assert (q.mode, q.group_size, q.lm_head, q.layers) == ("int8", INT8_DEFAULT_GROUP, "int8", 2 * 4 + 1)
    assert type(model.layers[0].attn.wqkv) is Int8Linear and type(model.lm_head) is Int8Linear
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    out = logits(lisp)
    assert out.shape == ref.shape == (1, 5, 96) and out.dtype == torch.float32
    assert rel(out, ref) < 0.03, rel(out, ref)
    mine = greedy_matches_own_forward(lisp)  # the generator follows its (now quantized) model
    assert sum(a == b for a, b in zip(mine[5:], float_out[5:])) >= 6  # mostly the float path's tokens
    info = lisp.eval("(torch_model_info model)")
    assert info["dtype"] == "float32" and info["vocab_size"] == 96


@pytest.mark.parametrize("group", [-1, 32, 64, 128])
def test_int8_groups_or_per_channel_close_to_float_and_generating(group):
    lisp = make()
    ref = logits(lisp)
    lisp.eval(f'(torch_model_quantize model "int8" {group})')
    model = lisp.eval("model")
    expected = None if group == -1 else group
    assert model.quantization.group_size == expected
    assert all(layer.group_size == expected for layer in (model.layers[1].mlp.w_down, model.lm_head))
    assert rel(logits(lisp), ref) < (0.03 if group == -1 else 0.01)  # groups: much closer
    greedy_matches_own_forward(lisp)


@pytest.mark.parametrize("group", [None, 32, 64, 128])
def test_int4_groups_close_to_float_and_generating(group):
    lisp = make()
    ref = logits(lisp)
    call = '(torch_model_quantize model "int4")' if group is None else f'(torch_model_quantize model "int4" {group})'
    lisp.eval(call)
    model = lisp.eval("model")
    assert model.quantization.mode == "int4" and model.quantization.group_size == (group or 32)
    assert type(model.layers[1].mlp.w_down) is Int4Linear and model.layers[1].mlp.w_down.group_size == (group or 32)
    assert type(model.lm_head) is Int8Linear  # the tied head is int8 in every mode
    assert rel(logits(lisp), ref) < 0.2
    greedy_matches_own_forward(lisp)


def test_a_generator_stands_for_its_model():
    lisp = make()
    gen = lisp.eval("generator")
    assert lisp.eval('(torch_model_quantize generator "int8")') is gen
    assert lisp.eval("model").quantization.mode == "int8"
    greedy_matches_own_forward(lisp)


def test_untied_head_is_quantized_too():
    lisp = make(UNTIED)
    ref = logits(lisp)
    lisp.eval('(torch_model_quantize model "int8")')
    model = lisp.eval("model")
    assert not isinstance(model.lm_head, torch.nn.Linear) and model.quantization.lm_head == "int8"
    assert model.quantization.layers == 2 * 4 + 1
    assert rel(logits(lisp), ref) < 0.03
    greedy_matches_own_forward(lisp)


def test_bfloat16_model_quantizes_and_generates():
    lisp = make()
    lisp.eval('(torch_model_to_dtype model "bfloat16")')
    lisp.eval('(torch_model_quantize model "int4" 64)')
    out = logits(lisp)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    assert len(lisp.eval(f"(torch_generate generator {PROMPT})")) == 17


BAD = [
    ('(torch_model_quantize "model" "int8")', "argument 'model': expected a model"),
    ("(torch_model_quantize model \"int3\")", "argument 'mode': unknown quantization .*\"int3\"; valid: \"int8\", \"int4\""),
    ("(torch_model_quantize model 'int8)", "argument 'mode': unknown quantization"),
    ("(torch_model_quantize model 8)", "argument 'mode': unknown quantization"),
    ('(torch_model_quantize model "int4" 48)', "argument 'group_size': expected one of 32, 64, 128, got .*48"),
    ('(torch_model_quantize model "int4" "32")', "argument 'group_size': expected one of 32, 64, 128"),
    ('(torch_model_quantize model "int4" 32.0)', "argument 'group_size': expected one of 32, 64, 128"),
    ('(torch_model_quantize model "int8" 48)', "argument 'group_size': expected one of 32, 64, 128 or -1 "
                                               r"\(one scale per output channel\), got .*48"),
    ('(torch_model_quantize model "int4" -1)', "argument 'group_size': expected one of 32, 64, 128, got .*-1"),
    ("(torch_model_quantize model)", "Wrong number of arguments in call to: 'torch_model_quantize'"),
    ('(torch_model_quantize model "int4" 32 1)', "Wrong number of arguments in call to: 'torch_model_quantize'"),
]


@pytest.mark.parametrize("src,message", BAD)
def test_wrong_arguments_are_lispe_errors_and_leave_the_model_alone(src, message):
    lisp = make()
    with pytest.raises(LispEError, match=message) as info:
        lisp.eval(src)
    assert "torch_model_quantize" in info.value.message
    model = lisp.eval("model")
    assert getattr(model, "quantization", None) is None and isinstance(model.lm_head, torch.nn.Linear)


def test_quantizing_twice_is_an_error():
    lisp = make()
    lisp.eval('(torch_model_quantize model "int4")')
    with pytest.raises(LispEError, match=r"torch_model_quantize: argument 'model': the model is already quantized \(int4\)"):
        lisp.eval('(torch_model_quantize model "int8")')


def test_a_layer_no_group_divides_is_refused_before_anything_changes():
    lisp = make('{"vocab_size":64 "hidden_size":48 "num_layers":1 "num_heads":4 "seed":1}')
    with pytest.raises(LispEError, match="torch_model_quantize: int4: layer .* in_features 48, .*; use int8"):
        lisp.eval('(torch_model_quantize model "int4")')
    model = lisp.eval("model")
    assert getattr(model, "quantization", None) is None
    assert not any(isinstance(m, (Int4Linear, Int8Linear)) for m in model.modules())
    lisp.eval('(torch_model_quantize model "int8")')  # int8 keeps one scale per channel there: fine
    assert all(layer.group_size is None for layer in (lisp.eval("model").layers[0].attn.wqkv, lisp.eval("model").lm_head))
    greedy_matches_own_forward(lisp)


# ----- the "quantize" / "group_size" keys of a load config (torch_hf_load_model calls load_options) -----

def test_load_options_checks_the_config_keys():
    assert load_options("f", None, None) == (None, None)
    assert load_options("f", "int8", None) == ("int8", None)  # the models layer's default
    assert load_options("f", "int4", 64) == ("int4", 64)
    assert load_options("f", "int8", 64) == ("int8", 64) and load_options("f", "int8", -1) == ("int8", -1)
    with pytest.raises(LispEError, match='f: config "quantize": unknown quantization'):
        load_options("f", "int2", None)
    with pytest.raises(LispEError, match='f: config "group_size": expected one of 32, 64, 128'):
        load_options("f", "int4", 100)
    with pytest.raises(LispEError, match='f: config "group_size": expected one of 32, 64, 128 or -1'):
        load_options("f", "int8", 16)
    with pytest.raises(LispEError, match='f: config "group_size" needs "quantize"'):
        load_options("f", None, 64)


# ----- torch_quant as part of lispe_torch: the import at its end and the load-config keys -----

from lispe_py.libs import lispe_torch  # noqa: E402


def test_lispe_torch_wires_torch_quant():
    assert hasattr(lispe_torch, "torch_quant") and "quantize" in lispe_torch._LOAD_KEYS


def test_use_lispe_torch_alone_provides_torch_model_quantize():
    import subprocess
    import sys

    code = ("from lispe_py import Interpreter\n"
            "i = Interpreter()\n"
            "i.eval(\"(use 'lispe_torch)\")\n"
            "i.eval('(setq m (torch_model_create \"transformer\" {\"vocab_size\":64 \"hidden_size\":64 \"seed\":1}))')\n"
            "i.eval('(torch_model_quantize m \"int4\" 64)')\n"
            "print(i.eval('m').quantization.mode, i.eval('m').quantization.group_size)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["int4", "64"]


def test_load_config_quantize_key_errors():
    lisp = make()
    for config, message in [('{"quantize":"int2"}', 'config "quantize": unknown quantization'),
                            ('{"quantize":"int8" "group_size":0}', 'config "group_size": expected one of 32, 64, 128 or -1'),
                            ('{"group_size":64}', 'config "group_size" needs "quantize"'),
                            ('{"quantize":"int4" "group_size":16}', 'config "group_size": expected one of')]:
        with pytest.raises(LispEError, match="torch_hf_load_model: " + message):
            lisp.eval(f'(torch_hf_load_model "SmolLM2-135M-Instruct" {config})')


@pytest.mark.smollm2
def test_load_config_quantize_int4_keeps_the_gguf_blocks(smollm2_gguf):
    lisp = Interpreter()
    lisp.eval("(use 'lispe_torch)")
    lisp.eval('(setq model (torch_hf_load_model "SmolLM2-135M-Instruct" {"quantize":"int4"}))')
    q = lisp.eval("model").quantization
    assert (q.mode, q.group_size, q.source, q.lm_head) == ("int4", 32, "gguf", "int8")
    # every block layer from its Q4_1 blocks; the head int8 groups from its Q8_0 blocks where those are
    # the default (else re-quantized per channel)
    assert q.exact_from_gguf == (q.layers if INT8_DEFAULT_GROUP else q.layers - 1)
    lisp.eval('(setq generator (torch_generator_create model "cpu"))')
    text = lisp.eval('(torch_generate_text generator (tokenizer_chat \'(("user" "What is the capital of France?"))) '
                     '{"max_length":12 "strategy":"greedy"})')
    assert "Paris" in text
