"""Every Lisp-level feature of `torch_remote_model` against real servers (conftest.py).

Against `lispe serve` greedy results must be the same tokens as local generation with the same model;
against llama.cpp's server (other kernels, Q4_1 arithmetic) results are checked for consistency, and
what it cannot do must be refused with an error naming the key and the engine.
"""
from __future__ import annotations

import json
import re
import urllib.request

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("openai")

from lispe_py import Interpreter, LispEError  # noqa: E402

pytestmark = [pytest.mark.smollm2, pytest.mark.slow]

PROMPT = "The capital of France is"
N = 5   # new tokens per call: the machine is shared


@pytest.fixture(scope="module")
def local() -> Interpreter:
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval('(setq lm (torch_hf_load_model "SmolLM2-135M-Instruct"))')
    interp.eval(f'(setq lg (torch_generator_create lm))')
    interp.eval(f'(torch_generator_config lg {{"max_length":{N}}})')
    return interp


@pytest.fixture(scope="module")
def lisp(server) -> Interpreter:
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval(f'(setq rm (torch_remote_model "{server.url}" {{"timeout":600 "retries":1}}))')
    interp.eval("(setq rg (torch_generator_create rm))")
    interp.eval(f'(torch_generator_config rg {{"max_length":{N}}})')
    return interp


def _requests(lisp: Interpreter) -> int:
    return sum(lisp.eval("(torch_model_info rm)")["requests"].values())


def test_model_value_info_and_printed_form(lisp: Interpreter, server) -> None:
    info = lisp.eval("(torch_model_info rm)")
    assert info["engine"] == server.kind and info["remote"] is True
    assert info["urls"] == [server.url]
    assert info["capabilities"]["logits_processor"] is None
    assert str(lisp.eval("(type rm)")) == "torch_model_"
    assert server.url in lisp.eval("(string rm)")
    assert lisp.eval("(string rg)").startswith(f"#<generator model=remote {server.kind}")
    assert lisp.eval("(torch_generator_info rg)")["device"] == "remote"


def test_greedy_ids(lisp: Interpreter, local: Interpreter, server) -> None:
    prompt = list(lisp.eval(f'(tokenizer_encode rm "{PROMPT}")'))
    out = lisp.eval(f'(torch_generate rg (tokenizer_encode rm "{PROMPT}"))')
    assert isinstance(out, torch.Tensor) and out.dim() == 1
    assert out[:len(prompt)].tolist() == prompt and len(out) > len(prompt)
    if server.kind == "lispe":
        want = local.eval(f'(torch_generate lg (tokenizer_encode lm "{PROMPT}"))')
        assert out.tolist() == want.tolist()
        # a 2-D batch of ids: one row per prompt, each the local result
        two = lisp.eval(f'(torch_generate rg (list (tokenizer_encode rm "{PROMPT}") (tokenizer_encode rm "{PROMPT}")))')
        assert two.tolist() == [want.tolist(), want.tolist()]


def test_eos_ends_generation_as_locally(lisp: Interpreter, local: Interpreter, server) -> None:
    chat = "(tokenizer_chat {} '((\"user\" \"What is 2+2? Answer with one number.\")))"
    if server.kind != "lispe":      # no chat template through its tokenizer endpoints: a local tokenizer
        lisp.eval(f'(setq rmt (torch_remote_model "{server.url}" {{"tokenizer":"SmolLM2-135M-Instruct"}}))')
        assert lisp.eval("(torch_model_info rmt)")["local_tokenizer"] is True
        assert list(lisp.eval(chat.format("rmt"))) == list(local.eval(chat.format("lm")))
        text = lisp.eval(f'(torch_generate_text (torch_generator_create rmt) {chat.format("rmt")} {{"max_length":20}})')
        assert text and "<|im_end|>" not in text
        return
    text = lisp.eval(f'(torch_generate_text rg {chat.format("rm")} {{"max_length":20}})')
    assert "4" in text and "<|im_end|>" not in text
    if server.kind == "lispe":
        assert text == local.eval(f'(torch_generate_text lg {chat.format("lm")} {{"max_length":20}})')
        lisp.eval('(setq g20 (torch_generator_create rm))')
        lisp.eval('(torch_generator_config g20 {"max_length":20})')
        local.eval('(setq g20 (torch_generator_create lm))')
        local.eval('(torch_generator_config g20 {"max_length":20})')
        out = lisp.eval(f'(torch_generate g20 {chat.format("rm")})').tolist()
        assert out == local.eval(f'(torch_generate g20 {chat.format("lm")})').tolist()
        prompt = len(lisp.eval(chat.format("rm")))
        assert out[-1] == 2 and len(out) - prompt < 20     # <|im_end|> (id 2) ends it, kept as locally


def test_penalties_and_min_new_tokens(lisp: Interpreter, local: Interpreter, server) -> None:
    chat = "(tokenizer_chat {} '((\"user\" \"What is 2+2? Answer with one number.\")))"
    cfg = '{"max_length":14 "min_new_tokens":12 "repetition_penalty":1.3 "presence_penalty":0.5 "frequency_penalty":0.3}'
    if server.kind == "lispe":
        out = lisp.eval(f"(torch_generate_text rg {chat.format('rm')} {cfg})")
        assert out == local.eval(f"(torch_generate_text lg {chat.format('lm')} {cfg})")
        ids = lisp.eval(f"(torch_generate_scored rg {chat.format('rm')} {cfg})")["ids"]
        assert len(ids) >= 12 and 2 not in ids[:12]        # no end token before min_new_tokens
    else:
        out = lisp.eval(f'(torch_generate_text rg "{PROMPT}" {cfg})')
        assert isinstance(out, str) and out


def test_generate_text(lisp: Interpreter, local: Interpreter, server) -> None:
    text = lisp.eval(f'(torch_generate_text rg "{PROMPT}")')
    assert isinstance(text, str) and text
    if server.kind == "lispe":
        assert text == local.eval(f'(torch_generate_text lg "{PROMPT}")')
    # ids as the prompt give the same text
    assert lisp.eval(f'(torch_generate_text rg (tokenizer_encode rm "{PROMPT}"))') == text


def test_stop_strings(lisp: Interpreter, local: Interpreter, server) -> None:
    call = '(torch_generate_text {} "One, two, three, four, five," {{"stop": (list " seven") "max_length":8}})'
    out = lisp.eval(call.format("rg"))
    if server.kind == "lispe":           # as locally: the text ends with the stop string
        assert out == local.eval(call.format("lg")) and out.endswith(" seven")
    else:                                # llama.cpp's servers leave it out
        full = lisp.eval('(torch_generate_text rg "One, two, three, four, five," {"max_length":8})')
        assert " seven" in full and out == full[:full.index(" seven")]


def test_streaming_callback_pieces_join_to_the_text(lisp: Interpreter, server) -> None:
    lisp.eval("(setq pieces ())")
    lisp.eval("(setq ids ())")
    text = lisp.eval(f'(torch_generate_text rg "{PROMPT}" {{"callback": (lambda (i p) (push pieces p) (push ids i))}})')
    pieces = list(lisp.eval("pieces"))
    assert len(pieces) >= 2 and "".join(pieces) == text == lisp.eval(f'(torch_generate_text rg "{PROMPT}")')
    if server.kind == "lispe":
        new = lisp.eval(f'(torch_generate rg (tokenizer_encode rm "{PROMPT}"))').tolist()[-len(pieces):]
        assert list(lisp.eval("ids")) == new


def test_torch_generate_streams_with_a_callback(lisp: Interpreter) -> None:
    lisp.eval("(setq seen ())")
    lisp.eval("(setq g3 (torch_generator_create rm))")
    lisp.eval(f'(torch_generator_config g3 {{"max_length":{N} "callback": (lambda (i p) (push seen p))}})')
    ids = f'(tokenizer_encode rm "{PROMPT}")'
    out = lisp.eval(f"(torch_generate g3 {ids})")
    assert out.tolist() == lisp.eval(f"(torch_generate rg {ids})").tolist()
    assert "".join(lisp.eval("seen")) == lisp.eval(f'(torch_generate_text rg "{PROMPT}")')
    with pytest.raises(LispEError, match="callback and stop_when need a single prompt"):
        lisp.eval(f"(torch_generate_batch g3 (list \"A\" \"B\"))")


def test_stop_when_cancels_the_stream(lisp: Interpreter, local: Interpreter, server) -> None:
    full = lisp.eval(f'(torch_generate_text rg "{PROMPT}" {{"max_length":12}})')
    cut = lisp.eval(f'(torch_generate_text rg "{PROMPT}" {{"max_length":12 "stop_when": (lambda (t) (> (size t) 6))}})')
    assert len(cut) > 6 and full.startswith(cut) and len(cut) < len(full)
    if server.kind == "lispe":
        assert cut == local.eval(f'(torch_generate_text lg "{PROMPT}" {{"max_length":12 "stop_when": (lambda (t) (> (size t) 6))}})')
        metrics = urllib.request.urlopen(server.url[:-3] + "/metrics", timeout=60).read().decode()
        aborted = re.search(r'finished_reason="abort"\} (\d+)', metrics)
        assert aborted and int(aborted.group(1)) >= 1      # the server cancelled the request


def test_batch(lisp: Interpreter, local: Interpreter, server) -> None:
    prompts = '(list "The sky is" "One, two," "The capital of France is")'
    texts = lisp.eval(f"(torch_generate_batch rg {prompts})")
    assert len(texts) == 3 and all(isinstance(t, str) and t for t in texts)
    assert texts[2] == lisp.eval(f'(torch_generate_text rg "{PROMPT}")')
    if server.kind == "lispe":
        assert list(texts) == list(local.eval(f"(torch_generate_batch lg {prompts})"))


def test_scored(lisp: Interpreter, local: Interpreter, server) -> None:
    r = lisp.eval(f'(torch_generate_scored rg "{PROMPT}" nil 3)')
    toks = r["tokens"]
    assert len(toks) == N and r["text"] == lisp.eval(f'(torch_generate_text rg "{PROMPT}")')
    for t in toks:
        top = t["top"]
        assert 1 <= len(top) <= 3 and [x[2] for x in top] == sorted((x[2] for x in top), reverse=True)
        assert abs(top[0][2] - t["logprob"]) < 1e-4    # greedy: the chosen token is the most likely
    assert abs(r["sequence_logprob"] - sum(t["logprob"] for t in toks)) < 1e-9
    if server.kind == "lispe":
        want = local.eval(f'(torch_generate_scored lg "{PROMPT}" nil 3)')
        assert list(r["ids"]) == list(want["ids"])
        for a, b in zip(toks, want["tokens"]):
            assert abs(a["logprob"] - b["raw_logprob"]) < 1e-3


def test_seeded_sampling_is_reproducible(lisp: Interpreter, local: Interpreter, server) -> None:
    cfg = '{"strategy":"sample" "temperature":1.5 "top_k":0 "seed":11}'
    a = lisp.eval(f'(torch_generate_text rg "{PROMPT}" {cfg})')
    b = lisp.eval(f'(torch_generate_text rg "{PROMPT}" {cfg})')
    assert a == b and isinstance(a, str)
    if server.kind == "lispe":
        for c in (cfg, '{"strategy":"top_k" "top_k":5 "temperature":0.8 "seed":3}',
                  '{"strategy":"top_p" "top_p":0.7 "seed":4}', '{"strategy":"sample" "min_p":0.1 "seed":5}'):
            assert lisp.eval(f'(torch_generate_text rg "{PROMPT}" {c})') == \
                local.eval(f'(torch_generate_text lg "{PROMPT}" {c})'), c


def test_num_return_sequences(lisp: Interpreter, server) -> None:
    cfg = '{"strategy":"sample" "seed":3 "num_return_sequences":2}'
    if server.kind == "lispe":
        out = lisp.eval(f'(torch_generate_text rg "{PROMPT}" {cfg})')
        assert len(out) == 2 and all(isinstance(t, str) for t in out)
        batch = lisp.eval(f'(torch_generate_batch rg (list "A" "B") {cfg})')
        assert len(batch) == 4
    else:
        before = _requests(lisp)
        with pytest.raises(LispEError, match=r'"num_return_sequences" cannot run on the remote engine llama-cpp-python'):
            lisp.eval(f'(torch_generate_text rg "{PROMPT}" {cfg})')
        assert _requests(lisp) == before


def test_guided_choices(lisp: Interpreter) -> None:
    out = lisp.eval('(torch_generate_text rg "My favourite colour is" {"choices": (list "red" "green" "blue") "max_length":8})')
    assert out in ("red", "green", "blue")


def test_guided_regex_and_json_schema(lisp: Interpreter, server) -> None:
    regex = '(torch_generate_text rg "The year is" {"regex":"[0-9]{4}" "max_length":8})'
    schema = ('(torch_generate_text rg "A person:" {"json_schema": {"type":"object" "properties": '
              '{"age": {"type":"integer"}} "required": (list "age")} "max_length":20})')
    if server.kind == "lispe":
        assert re.fullmatch(r"[0-9]{4}", lisp.eval(regex))
        assert isinstance(json.loads(lisp.eval(schema))["age"], int)
    else:
        before = _requests(lisp)
        with pytest.raises(LispEError, match=r'"regex" cannot run on the remote engine llama-cpp-python'):
            lisp.eval(regex)
        with pytest.raises(LispEError, match=r'"json_schema" cannot run on the remote engine llama-cpp-python'):
            lisp.eval(schema)
        assert _requests(lisp) == before


def test_guided_grammar(lisp: Interpreter, server) -> None:
    call = ("(torch_generate_text rg \"Answer yes or no:\" {\"grammar\": "
            "'(grammar (root (alt \"yes\" \"no\" (seq \"maybe \" (regex \"[0-9]\"))))) \"max_length\":6})")
    if server.kind == "lispe":
        assert re.fullmatch(r"yes|no|maybe [0-9]", lisp.eval(call))
    else:
        with pytest.raises(LispEError, match=r'"grammar" cannot run on the remote engine llama-cpp-python .*: '
                                             r"our s-expression grammars run locally and on lispe serve"):
            lisp.eval(call)


def test_tokenizer_functions(lisp: Interpreter, local: Interpreter, server) -> None:
    ids = lisp.eval('(tokenizer_encode rm "Hello world, how are you?")')
    assert list(ids) == list(local.eval('(tokenizer_encode lm "Hello world, how are you?")'))
    assert lisp.eval(f"(tokenizer_decode rm (integers {' '.join(map(str, ids))}))") == "Hello world, how are you?"
    assert list(lisp.eval('(tokenizer_encode "Hello")')) == list(local.eval('(tokenizer_encode lm "Hello")'))
    chat = "(tokenizer_chat rm '((\"user\" \"Hi!\")))"
    if server.kind == "lispe":
        assert list(lisp.eval(chat)) == list(local.eval("(tokenizer_chat lm '((\"user\" \"Hi!\")))"))
        ids = " ".join(map(str, lisp.eval(chat)))   # a chat prompt holds special tokens
        for keep in ("", " false"):
            clean = lisp.eval(f"(tokenizer_decode rm (integers {ids}){keep})")
            assert clean == local.eval(f"(tokenizer_decode lm (integers {ids}){keep})")
            assert ("<|" in clean) == bool(keep)
    else:
        with pytest.raises(LispEError, match="cannot render a chat template"):
            lisp.eval(chat)


def test_unsupported_keys_are_refused_before_any_request(lisp: Interpreter, server) -> None:
    before = _requests(lisp)
    for cfg, key in (('{"logits_processor": (lambda (ids scores) scores)}', "logits_processor"),
                     ('{"on_step": (lambda (step params) nil)}', "on_step"),
                     ('{"strategy":"beam_search"}', "beam_search")):
        with pytest.raises(LispEError, match=rf'"{key}" cannot run on the remote engine {re.escape(server.kind)}'):
            lisp.eval(f'(torch_generate_text rg "{PROMPT}" {cfg})')
        with pytest.raises(LispEError, match=rf'torch_generator_config: "{key}" cannot run'):
            lisp.eval(f"(torch_generator_config rg {cfg})")
    with pytest.raises(LispEError, match="prompt embeddings need a local model|needs a local model"):
        lisp.eval("(torch_generate rg (tensor_zeros (integers 1 3 576)))")
    assert _requests(lisp) == before
    assert lisp.eval("(torch_generator_info rg)")["max_length"] == N     # the generator is unchanged


def test_set_generation_params(lisp: Interpreter, local: Interpreter, server) -> None:
    lisp.eval("(setq g2 (torch_generator_create rm))")
    lisp.eval("(torch_set_generation_params g2 3)")
    assert lisp.eval("(torch_generator_info g2)")["max_length"] == 3
    out = lisp.eval(f'(torch_generate_scored g2 "{PROMPT}")')
    assert len(out["ids"]) == 3
    if server.kind == "lispe":
        assert out["text"] == local.eval(f'(torch_generate_text lg "{PROMPT}" {{"max_length":3}})')


def test_local_only_functions_name_the_remote_model(lisp: Interpreter) -> None:
    with pytest.raises(LispEError, match=r"torch_perplexity: .*runs only generation and tokenizer calls; "
                                         r"torch_perplexity needs a local model"):
        lisp.eval('(torch_perplexity rm "Hello")')
    with pytest.raises(LispEError, match="torch_generator_chain: .*needs a local model"):
        lisp.eval("(torch_generator_chain rg)")
    with pytest.raises(LispEError, match="torch_generator_create: argument 'device'"):
        lisp.eval('(torch_generator_create rm "cpu")')


def test_sampling_parameters_on_a_greedy_remote_generator_warn_once(lisp: Interpreter, capfd) -> None:
    # the same config, so the same advice as a local generator: greedy, the sampling values ignored
    lisp.eval("(setq advised (torch_generator_create rm))")
    lisp.eval(f"(torch_set_generation_params advised {N} 1.5 40 0.9)")
    info = lisp.eval("(torch_generator_info advised)")
    assert info["effective_strategy"] == "greedy"
    assert list(info["ignored_parameters"]) == ["temperature", "top_k", "top_p"]
    assert "strategy=greedy (ignores temperature top_k top_p)" in lisp.eval("(string advised)")
    capfd.readouterr()
    first = lisp.eval(f'(torch_generate_text advised "{PROMPT}")')
    second = lisp.eval(f'(torch_generate_text advised "{PROMPT}")')
    err = capfd.readouterr().err
    assert err.count("Warning: torch_generate_text: sampling parameters temperature=1.5 top_k=40 "
                     "top_p=0.9 are ignored") == 1
    assert first == second                                   # greedy: temperature 0 sent to the server
