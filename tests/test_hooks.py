"""Decoding control (issue 7, part 2): `stop_when` predicates, `on_step` hooks and `logits_processor`
functions, from Python and from Lisp, on a tiny random Llama with a real byte-level BPE tokenizer."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from lispe_py import Interpreter, LispEError  # noqa: E402
from lispe_py.generation import GenerationError, generate, generate_batch, generate_text  # noqa: E402
from lispe_py.models import model_from_hf  # noqa: E402
from test_generation import ByteBPE, _tiny_llama  # noqa: E402

PROMPTS = ["the cat sat", "a dog ate the bone"]


@pytest.fixture(scope="module")
def model():
    m = model_from_hf(_tiny_llama(0))
    m.tokenizer = ByteBPE()
    return m


@pytest.fixture
def lisp(model) -> Interpreter:
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.globals["model"] = model
    interp.eval('(setq generator (torch_generator_create model "cpu"))')
    return interp


def _greedy_ids(model, prompt: str, n: int) -> list[int]:
    ids = model.tokenizer.encode(prompt)
    return generate(model, ids, max_length=n, eos_token_id=299)[len(ids):].tolist()


# ------------------------------------------------------------------------------------ stop_when
def test_stop_when_ends_the_row_at_the_first_text_that_satisfies_it(model):
    free = generate_text(model, PROMPTS[0], max_length=20, eos_token_id=299)
    assert len(free) > 8
    seen: list[str] = []

    def long_enough(text: str) -> bool:
        seen.append(text)
        return len(text) >= 6

    out = generate_text(model, PROMPTS[0], max_length=20, eos_token_id=299, stop_when=long_enough)
    assert len(out) >= 6 and free.startswith(out)
    assert len(seen[-2]) < 6 if len(seen) > 1 else True     # the text one step earlier did not satisfy it
    assert seen[-1] == out
    # called only when the text grew: at most once per new token, and with growing texts
    assert len(seen) <= len(model.tokenizer.encode(out)) + 1
    assert all(a != b for a, b in zip(seen, seen[1:]))


def test_stop_when_works_per_row_in_a_batch(model):
    free = generate_batch(model, PROMPTS, max_length=16, eos_token_id=299)
    target = free[0][:5]
    assert not free[1].startswith(target)

    out = generate_batch(model, PROMPTS, max_length=16, eos_token_id=299,
                         stop_when=lambda text: text.startswith(target))
    assert out[0].startswith(target) and len(out[0]) < len(free[0])
    assert out[1] == free[1]                 # the other row is untouched


def test_stop_when_list_and_beam_search(model):
    out = generate_text(model, PROMPTS[1], max_length=20, eos_token_id=299,
                        stop_when=[lambda t: False, lambda t: len(t) >= 4])
    assert 4 <= len(out) < len(generate_text(model, PROMPTS[1], max_length=20, eos_token_id=299))
    beam = generate_text(model, PROMPTS[1], max_length=20, eos_token_id=299, strategy="beam_search",
                         num_beams=3, stop_when=lambda t: len(t) >= 4)
    free = generate_text(model, PROMPTS[1], max_length=20, eos_token_id=299, strategy="beam_search",
                         num_beams=3)
    assert len(beam) >= 4 and len(beam) < len(free)


def test_stop_when_needs_a_function_and_a_tokenizer(model):
    with pytest.raises(GenerationError, match="stop_when must be a function"):
        generate_text(model, "the", stop_when="END")
    bare = model_from_hf(_tiny_llama(0))
    with pytest.raises(GenerationError, match="stop_when needs the model's tokenizer"):
        generate(bare, [5, 6], stop_when=lambda t: True)


# ------------------------------------------------------------------------------------ on_step
def test_on_step_sees_every_step_and_its_parameters(model):
    calls = []

    def hook(step, params):
        calls.append((step, params))

    ids = model.tokenizer.encode(PROMPTS[0])
    out = generate(model, ids, max_length=6, eos_token_id=299, strategy="top_k", top_k=7,
                   temperature=0.9, seed=1, on_step=hook)[len(ids):].tolist()
    assert [c[0] for c in calls] == list(range(6))
    p = calls[3][1]
    assert (p["temperature"], p["top_k"], p["top_p"], p["strategy"]) == (0.9, 7, 1.0, "top_k")
    assert p["chain"] == "(chain (temperature 0.9) (top_k 7))"
    assert p["tokens"] == [out[:4]]
    full = generate_text(model, PROMPTS[0], max_length=6, eos_token_id=299, strategy="top_k", top_k=7,
                         temperature=0.9, seed=1)
    assert full.startswith(p["text"][0]) and len(p["text"]) == 1
    assert p["finished"] == [False]


def test_on_step_changes_apply_from_the_next_step_and_show_in_the_chain(model):
    """Sampling at a high temperature, then top_k 1 from step 3: every later token is the argmax."""
    chains = {}

    def hook(step, params):
        chains[step] = params["chain"]
        return {"top_k": 1} if step == 2 else None

    ids = model.tokenizer.encode(PROMPTS[1])
    out = generate(model, ids, max_length=10, eos_token_id=299, strategy="top_k", top_k=50,
                   temperature=3.0, seed=4, on_step=hook)
    assert chains[2] == "(chain (temperature 3.0) (top_k 50))"
    assert chains[3] == "(chain (temperature 3.0) (top_k 1))"
    with torch.no_grad():
        logits = model.forward_full(out[None, :-1])[0]
    p = len(ids)
    argmax = logits.argmax(-1)
    picked = out[1:]
    assert all(int(picked[i - 1]) == int(argmax[i - 1]) for i in range(p + 3, len(out)))
    # before the change, sampling at temperature 3 left the argmax at least once
    unchanged = generate(model, ids, max_length=10, eos_token_id=299, strategy="top_k", top_k=50,
                         temperature=3.0, seed=4)
    assert out[:p + 3].tolist() == unchanged[:p + 3].tolist()
    assert out.tolist() != unchanged.tolist()


def test_on_step_can_switch_greedy_to_sampling_via_temperature(model):
    ids = model.tokenizer.encode(PROMPTS[0])
    greedy = generate(model, ids, max_length=8, eos_token_id=299, strategy="sample", temperature=0)
    hooked = generate(model, ids, max_length=8, eos_token_id=299, strategy="sample", temperature=0,
                      seed=2, top_k=0, on_step=lambda s, p: {"temperature": 5.0} if s == 1 else None)
    assert hooked[:len(ids) + 2].tolist() == greedy[:len(ids) + 2].tolist()
    assert hooked.tolist() != greedy.tolist()


@pytest.mark.parametrize("ret, message", [
    (3, r"on_step must return nil or a dictionary of parameter changes"),
    ({"strategy": "greedy"}, r"on_step returned 'strategy', which cannot change during generation"),
    ({"temperature": -1}, r"on_step: temperature must be >= 0"),
    ({"top_p": 2.0}, r"on_step: top_p must be in \(0, 1\]"),
])
def test_on_step_return_values_are_validated(model, ret, message):
    with pytest.raises(GenerationError, match=message):
        generate_text(model, "the", max_length=4, strategy="sample", on_step=lambda s, p: ret)


def test_on_step_is_refused_with_beam_search(model):
    with pytest.raises(GenerationError, match="on_step hooks work with the greedy and sampling"):
        generate_text(model, "the", max_length=4, strategy="beam_search", on_step=lambda s, p: None)


def test_no_hook_means_no_per_step_control(model):
    from lispe_py.generation.generate import _DecodeLoop, make_plan
    from lispe_py.generation.config import GenerationConfig

    plan = make_plan(model, [5, 6, 7], GenerationConfig.from_dict({"max_length": 3}))
    loop = _DecodeLoop(model, plan)
    assert loop.hooks == () and loop.schedule == {} and loop.texts is None and loop.stop_when is None
    assert loop.recorder is None


# ------------------------------------------------------------------------------------ from Lisp
def test_lisp_stop_when_lambda(lisp, model):
    free = generate_text(model, PROMPTS[0], max_length=20, eos_token_id=299)
    out = lisp.eval('(torch_generate_text generator "the cat sat" '
                    '{"max_length":20 "eos_token_id":299 "stop_when":(lambda (text) (>= (size text) 6))})')
    assert len(out) >= 6 and free.startswith(out) and len(out) < len(free)
    outs = lisp.eval('(torch_generate_batch generator (strings "the cat sat" "a dog ate the bone") '
                     '{"max_length":12 "eos_token_id":299 "stop_when":(list (lambda (text) nil))})')
    assert list(outs) == generate_batch(model, PROMPTS, max_length=12, eos_token_id=299)


def test_lisp_on_step_hook_changes_parameters(lisp):
    lisp.eval("(setq chains (list))")
    lisp.eval("(setq seen (list))")
    lisp.eval('(defun cool (step params) '
              '  (push chains (@ params "chain")) '
              '  (push seen (size (@ (@ params "tokens") 0))) '
              '  (if (= step 1) {"temperature":0.5 "top_k":3}))')
    lisp.eval('(torch_generate_text generator "the cat" {"max_length":5 "strategy":"top_k" '
              '"temperature":1.5 "seed":3 "eos_token_id":299 "on_step":cool})')
    chains = lisp.eval("chains")
    assert chains[0] == chains[1] == "(chain (temperature 1.5) (top_k 50))"
    assert chains[2] == "(chain (temperature 0.5) (top_k 3))"
    assert list(lisp.eval("seen")) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("body, message", [
    ('"fast"', "torch_generate_text: on_step must return nil or a dictionary"),
    ('{"max_length":3}', "torch_generate_text: on_step returned 'max_length', which cannot change"),
    ('{"top_k":-2}', "torch_generate_text: on_step: top_k must be >= 0"),
])
def test_lisp_on_step_bad_return_is_a_lisp_error(lisp, body, message):
    with pytest.raises(LispEError) as err:
        lisp.eval(f'(torch_generate_text generator "the" {{"max_length":3 "strategy":"sample" '
                  f'"on_step":(lambda (step params) {body})}})')
    assert message in err.value.message


def test_lisp_hook_keys_show_in_info_and_print(lisp):
    lisp.eval('(torch_generator_config generator {"stop_when":(lambda (t) nil) "on_step":(lambda (s p) nil)})')
    info = lisp.eval("(torch_generator_info generator)")
    assert info["stop_when"] is True and info["on_step"] is True
    assert "stop_when=1 on_step=1" in lisp.eval("(string generator)")
    with pytest.raises(LispEError, match="on_step must be a function"):
        lisp.eval('(torch_generator_config generator {"on_step":42})')


# ------------------------------------------------------------------------------------ logits_processor
def test_lisp_processor_sees_ids_and_scores_shapes_in_a_batch(lisp, model):
    lisp.eval("(setq shapes (list))")
    lisp.eval('(torch_generate_batch generator (strings "the cat sat" "a dog ate the bone") '
              '{"max_length":4 "eos_token_id":299 "logits_processor":(lambda (ids scores) '
              '(push shapes (list (tensor_shape ids) (tensor_shape scores))) scores)})')
    widths = max(len(model.tokenizer.encode(p)) for p in PROMPTS)
    shapes = [[list(a), list(b)] for a, b in lisp.eval("shapes")]
    assert shapes == [[[2, widths + i], [2, 300]] for i in range(4)]


def test_lisp_processor_banning_a_token_by_id(lisp, model):
    free = _greedy_ids(model, PROMPTS[0], 10)
    banned = free[0]
    lisp.eval(f"(setq banned {banned})")
    out = lisp.eval('(tensor_to_list (torch_generate (torch_generator_config generator '
                    '{"max_length":10 "eos_token_id":299 "logits_processor":(lambda (ids scores) '
                    '(torch_ban_tokens scores (integers banned)))}) (tokenizer_encode generator "the cat sat")))')
    new = list(out)[len(model.tokenizer.encode(PROMPTS[0])):]
    assert banned not in new and new != free
    # the same through the Python API with a plain function
    ids = model.tokenizer.encode(PROMPTS[0])
    py = generate(model, ids, max_length=10, eos_token_id=299,
                  logits_processor=lambda i, s: s.index_fill(-1, torch.tensor([banned]), float("-inf")))
    assert py[len(ids):].tolist() == new


def test_lisp_bias_tokens_forces_a_token(lisp, model):
    lisp.eval('(torch_generator_config generator {"max_length":3 "eos_token_id":299 '
              '"logits_processor":(lambda (ids scores) (torch_bias_tokens scores (integers 42) 1000.0))})')
    out = lisp.eval('(tensor_to_list (torch_generate generator (integers 5 6 7)))')
    assert list(out)[3:] == [42, 42, 42]


@pytest.mark.parametrize("code, message", [
    ("(torch_ban_tokens (integers 1 2) (integers 1))", "torch_ban_tokens: argument 'scores': expected a tensor"),
    ("(torch_ban_tokens (torch_tensor (integers 1 2)) (integers 1))", "torch_ban_tokens: argument 'scores': expected float scores"),
    ("(torch_ban_tokens (tensor_zeros (integers 2 5)) (integers 7))", "torch_ban_tokens: argument 'ids': token ids [7] are outside"),
    ('(torch_ban_tokens (tensor_zeros (integers 2 5)) "a")', "torch_ban_tokens: argument 'ids': expected token ids"),
    ('(torch_bias_tokens (tensor_zeros (integers 5)) (integers 1) "x")', "torch_bias_tokens: argument 'bias': expected a number"),
])
def test_ban_and_bias_bad_arguments(lisp, code, message):
    with pytest.raises(LispEError) as err:
        lisp.eval(code)
    assert message in err.value.message


def test_ban_and_bias_values(lisp):
    out = lisp.eval("(tensor_to_list (torch_ban_tokens (tensor_zeros (integers 2 4)) (integers 1 3)))")
    assert [list(r) for r in out] == [[0.0, float("-inf"), 0.0, float("-inf")]] * 2
    out = lisp.eval("(tensor_to_list (torch_bias_tokens (tensor_zeros (integers 4)) (integers 2) -1.5))")
    assert list(out) == [0.0, 0.0, -1.5, 0.0]
