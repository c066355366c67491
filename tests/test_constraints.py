"""Constrained generation (issue 7, part 1): every constraint kind, 200 samples from a random tiny model
with SmolLM2's real tokenizer, all checked against the constraint by an independent checker
(re.fullmatch, json.loads + a schema check, a recursive-descent parser), plus unit tests of the
automata, the vocabulary trie, masks vs transitions, row tracking under beam reorders, and errors.
"""
from __future__ import annotations

import json
import re
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("interegular")

from lispe_py.generation import GenerationError, generate  # noqa: E402
from lispe_py.generation.constraints import (  # noqa: E402
    DEAD, ByteDFA, Grammar, GrammarAutomaton, VocabIndex, build_constraint,
    schema_to_grammar, validate_spec, vocab_index)
from lispe_py.models import ModelConfig, create_model  # noqa: E402

N_SAMPLES = 200


@pytest.fixture(scope="module")
def tok():
    from lispe_py.models.loading import embedded_model_path
    from lispe_py.models.tokenizer import Tokenizer
    try:
        path = embedded_model_path("SmolLM2-135M-Instruct")
    except Exception as e:  # the model package is not installed
        pytest.skip(f"SmolLM2 tokenizer unavailable: {e}")
    return Tokenizer.from_gguf(str(path))


@pytest.fixture(scope="module")
def tiny(tok):
    cfg = ModelConfig(vocab_size=tok.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                      intermediate_size=32, max_position_embeddings=512, seed=7,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    return create_model(cfg)


def favour_eos(eos: int, bonus: float):
    """A user processor that raises the EOS score: the random model then ends soon after the
    constraint allows it (keeps the 200-sample tests short; the constraint still decides)."""
    def fn(ids, scores):
        scores[:, eos] += bonus
        return scores
    return fn


def sample(model, tok, kind, spec, n=N_SAMPLES, max_length=160, seed=0, chunk=50, **cfg):
    """n sampled outputs under the constraint: list of (text, ended). A row has ended when it
    produced an EOS or was stopped by the constraint (complete, nothing can follow): it is then
    padded with the EOS id, or it is the longest row and the output stops before max_length.
    The text is everything before the first EOS."""
    eos = tok.eos_token_id
    prompt = tok.encode("Answer:", add_special_tokens=False)
    results = []
    for start in range(0, n, chunk):             # chunks: one long row does not hold up 200
        c = build_constraint(kind, spec, tok, [eos])
        config = {"strategy": "sample", "top_k": 0, "max_length": max_length, "seed": seed + start,
                  "num_return_sequences": min(chunk, n - start), "eos_token_id": eos,
                  "pad_token_id": eos, **cfg}
        out = generate(model, [prompt], config, processors=[c], stopping=[c.stop_criterion],
                       tokenizer=tok)
        for row in out.tolist():
            new = row[len(prompt):]
            ended = eos in new or len(new) < max_length
            new = new[:new.index(eos)] if eos in new else new
            results.append((tok.decode(new), ended))
    return results


def assert_all(results, check):
    bad = [(t, e) for t, e in results if not (e and check(t))]
    assert not bad, f"{len(bad)} invalid samples, e.g. {bad[:5]}"


# ---------------------------------------------------------------------------- vocabulary index
def test_vocab_index_is_cached_and_fast(tok):
    from lispe_py.generation.constraints.vocab import token_byte_strings
    t0 = time.process_time()
    idx = VocabIndex(token_byte_strings(tok))
    cpu = time.process_time() - t0
    print(f"\nvocab index for {tok.vocab_size} tokens: {idx.n_nodes} trie nodes, {cpu:.2f} s CPU")
    assert cpu < 5.0
    assert vocab_index(tok) is vocab_index(tok)
    eos = tok.eos_token_id
    assert idx.token_node[eos] == idx.n_nodes          # special tokens are not text
    hello = tok.encode("hello", add_special_tokens=False)[0]
    node = int(idx.token_node[hello])
    assert hello in idx.tokens_at(node)


def test_trie_matches_brute_force():
    import random
    rng = random.Random(1)
    for _ in range(100):
        toks = [bytes(rng.choice(b"ab\xc3\xa9") for _ in range(rng.randint(0, 5))) or None
                for _ in range(rng.randint(1, 25))]
        v = VocabIndex(toks)
        strs = {0: b""}
        for n in range(1, v.n_nodes):
            assert v.parent[n] < n
            strs[n] = strs[int(v.parent[n])] + bytes([int(v.byte[n])])
        assert len(set(strs.values())) == v.n_nodes
        for i, t in enumerate(toks):
            if t:
                assert strs[int(v.token_node[i])] == t
            else:
                assert v.token_node[i] == v.n_nodes
        for n in range(v.n_nodes):
            below = [m for m in range(v.n_nodes) if strs[m].startswith(strs[n])]
            assert below == list(range(n, int(v.end[n])))


# ---------------------------------------------------------------------------- byte DFAs
REGEXES = [r"[0-9]+(\.[0-9]+)?", r"caf[éè] ?[a-zé日]*", r'"([^"\\]|\\.)*"', r".{0,3}",
           r"(yes|no|peut-être)", r"[^a]{2}"]


@pytest.mark.parametrize("pattern", REGEXES)
def test_byte_dfa_equals_python_re(pattern):
    from hypothesis import given, settings, strategies as st
    dfa = ByteDFA.from_regex(pattern)

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet="0123456789.abcé日è\"\\ -yesnopuêtr\n😀", max_size=8))
    def check(text):
        assert dfa.matches(text.encode("utf-8")) == bool(re.fullmatch(pattern, text))
    check()
    assert not dfa.matches(b"\xe0\x80\x80")     # overlong: never valid UTF-8
    assert not dfa.matches(b"\xc3")             # a character cut in half is not text


@pytest.mark.parametrize("lo,hi", [(0, 3), (1, 4), (2, 2), (0, 0)])
def test_json_string_fast_path_equals_regex(lo, hi):
    import random
    from lispe_py.generation.constraints.json_schema import STRING_CHAR
    pattern = '"' + STRING_CHAR + "{%d,%d}" % (lo, hi) + '"'
    fast = ByteDFA.from_regex(pattern)               # direct construction (quoted_repeat)
    slow = ByteDFA._build_regex(pattern)             # through interegular
    assert fast.n_states != slow.n_states
    rng = random.Random(lo * 10 + hi)
    alphabet = ['"', "a", "\\", "n", "u", "0", "f", "é", "日", "\x01", "x", "😀"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
        data = text.encode("utf-8")
        assert fast.matches(data) == slow.matches(data) == bool(re.fullmatch(pattern, text)), text


def test_dfa_states_are_trimmed():
    dfa = ByteDFA.from_regex(r"ab|ac")
    s = dfa.step(dfa.start, b"a")
    assert s and dfa.step(s, b"d") == 0
    assert ByteDFA.from_regex(r"a").without_empty().matches(b"a")
    e = ByteDFA.from_regex(r"a*").without_empty()
    assert not e.matches(b"") and e.matches(b"aaa")


# ---------------------------------------------------------------------------- masks
def _check_mask_vs_advance(auto, state, vocab_size):
    mask = auto.mask(state).numpy()
    for t in range(vocab_size):
        assert mask[t] == (auto.advance(state, t) != DEAD), t


def test_choices_allow_every_tokenization(tok):
    c = build_constraint("choices", ["hello world", "help"], tok, [tok.eos_token_id])
    auto = c.automaton
    s0 = auto.initial()
    m = auto.mask(s0)
    for piece in ("h", "he", "hel", "hello", "help"):
        ids = tok.encode(piece, add_special_tokens=False)
        assert len(ids) == 1 and bool(m[ids[0]]), piece
    for piece in ("hi", " hello", "world"):
        ids = tok.encode(piece, add_special_tokens=False)
        assert not bool(m[ids[0]]), piece
    # non-canonical path "h" + "ello" + " world" stays allowed and completes
    s = s0
    for piece in ("h", "ello", " world"):
        s = auto.advance(s, tok.encode(piece, add_special_tokens=False)[0])
        assert s != DEAD
    assert auto.is_complete(s) and not auto.can_continue(s)


def test_mask_equals_transitions_on_full_vocab(tok):
    g = ["grammar", ["root", ["seq", "(", ["star", ["ref", "item"]], ")"]],
         ["item", ["alt", ["regex", "[0-9]+"], "nil"]]]
    c = build_constraint("grammar", g, tok, [tok.eos_token_id])
    auto = c.automaton
    s = auto.initial()
    _check_mask_vs_advance(auto, s, tok.vocab_size)
    s = auto.advance(s, tok.encode("(", add_special_tokens=False)[0])
    _check_mask_vs_advance(auto, s, tok.vocab_size)
    s = auto.advance(s, tok.encode("1", add_special_tokens=False)[0])
    _check_mask_vs_advance(auto, s, tok.vocab_size)
    r = build_constraint("regex", r'"[a-z ]{0,6}"', tok, [tok.eos_token_id]).automaton
    s = r.advance(r.initial(), tok.encode('"', add_special_tokens=False)[0])
    _check_mask_vs_advance(r, s, tok.vocab_size)


# ---------------------------------------------------------------------------- grammar recognizer
def _accepts(auto: GrammarAutomaton, text: str) -> bool:
    x = auto.initial()
    for b in text.encode("utf-8"):
        x = auto.step(x, b)
        if x < 0:
            return False
    return auto.is_complete(x)


ARITH = ["grammar",
         ["expr", ["alt", ["seq", ["ref", "expr"], "+", ["ref", "term"]], ["ref", "term"]]],
         ["term", ["alt", ["seq", "(", ["ref", "expr"], ")"], ["regex", "[0-9]"]]]]


def _arith_ok(text: str) -> bool:
    """Recursive descent for expr := term ('+' term)* ; term := '(' expr ')' | digit."""
    pos = 0

    def term() -> bool:
        nonlocal pos
        if pos < len(text) and text[pos].isdigit() and text[pos].isascii():
            pos += 1
            return True
        if pos < len(text) and text[pos] == "(":
            pos += 1
            if not expr() or pos >= len(text) or text[pos] != ")":
                return False
            pos += 1
            return True
        return False

    def expr() -> bool:
        nonlocal pos
        if not term():
            return False
        while pos < len(text) and text[pos] == "+":
            pos += 1
            if not term():
                return False
        return True

    return expr() and pos == len(text)


def test_grammar_recognizer_exhaustive():
    import itertools
    v = VocabIndex([b"("])
    lists = GrammarAutomaton(v, Grammar(["grammar", ["root", ["seq", "(", ["star", ["ref", "item"]], ")"]],
                                         ["item", ["alt", ["regex", "[0-9]+"], "nil"]]]))
    arith = GrammarAutomaton(v, Grammar(ARITH))     # left recursive, start = first rule
    for n in range(7):
        for chars in itertools.product("()1nil+", repeat=n):
            t = "".join(chars)
            assert _accepts(lists, t) == bool(re.fullmatch(r"\((?:[0-9]+|nil)*\)", t)), t
            assert _accepts(arith, t) == _arith_ok(t), t


def test_grammar_nullable_and_repeat():
    v = VocabIndex([b"a"])
    g = GrammarAutomaton(v, Grammar({"root": ["seq", ["opt", "x"], ["repeat", ["alt", "a", ["regex", "b*"]], 1, 3], "!"]}))
    for t, ok in [("a!", True), ("!", True), ("xbbb!", True), ("aaa!", True), ("aaaa!", False),
                  ("abab!", False), ("abba!", True), ("x!", True), ("xx!", False), ("", False)]:
        assert _accepts(g, t) == ok, t
    assert _accepts(GrammarAutomaton(v, Grammar(["grammar", ["root", ""]])), "")


def test_grammar_errors():
    for bad, msg in [([["root", ["foo", "x"]]], "unknown operator"),
                     ([["root", ["ref", "nope"]]], "names no rule"),
                     ([["root", ["seq", "a", ["ref", "root"]]]], "derives no finite text"),
                     ("root", "list of rules"),
                     ([["root", ["regex", "[a"]]], "regex"),
                     ([["root", ["repeat", "a", 3, 1]]], "repeat bounds")]:
        with pytest.raises(GenerationError, match=msg):
            Grammar(bad)


def test_describe():
    class Sym:                       # a Lisp symbol as the bindings would pass it
        def __init__(self, name):
            self.name = name
    g = [Sym("grammar"), [Sym("root"), [Sym("seq"), "(", [Sym("star"), [Sym("ref"), Sym("item")]], ")"]],
         [Sym("item"), [Sym("alt"), [Sym("regex"), "[0-9]+"], "nil"]]]
    assert Grammar(g).describe() == \
        '(grammar (root (seq "(" (star (ref item)) ")")) (item (alt (regex "[0-9]+") "nil")))'


# ---------------------------------------------------------------------------- processor
def test_rows_tracked_by_content_under_reorder(tok):
    c = build_constraint("choices", ["yes", "no"], tok, [tok.eos_token_id])
    y = tok.encode("y", add_special_tokens=False)[0]
    n = tok.encode("no", add_special_tokens=False)[0]
    es = tok.encode("es", add_special_tokens=False)[0]
    scores = torch.zeros(2, tok.vocab_size)
    ids = torch.tensor([[5, 6], [5, 6]])
    c(ids, scores)
    ids = torch.tensor([[5, 6, y], [5, 6, n]])
    out = c(ids, scores)
    assert out[0, es] == 0 and out[0, tok.eos_token_id] == -torch.inf
    assert out[1, tok.eos_token_id] == 0 and out[1, es] == -torch.inf     # "no" complete: only EOS
    assert c.is_complete(1) and not c.can_continue(1) and not c.is_complete(0)
    assert c.finished_rows().tolist() == [False, True]
    c.reorder([1, 0])                       # what beam search does with its rows
    assert c.finished_rows().tolist() == [True, False]
    ids = torch.tensor([[5, 6, n, tok.eos_token_id], [5, 6, y, es]])   # swapped rows, one token more
    out = c(ids, scores)
    assert torch.equal(out[0], scores[0])    # ended row: untouched
    assert out[1, tok.eos_token_id] == 0 and int((out[1] == 0).sum()) == 1
    assert c.describe() == '(choices ("yes" "no"))'


def test_automata_are_cached_per_tokenizer(tok):
    spec = r"[0-9]{2}-[a-z]{2}"
    a = build_constraint("regex", spec, tok, [tok.eos_token_id])
    b = build_constraint("regex", spec, tok, [tok.eos_token_id])
    assert a is not b and a.automaton is b.automaton      # per-call rows, shared automaton
    s = a.automaton.advance(a.automaton.initial(), tok.encode("4", add_special_tokens=False)[0])
    a.automaton.mask(s)
    indexed = a.automaton.n_states_indexed()
    b.automaton.mask(s)
    assert b.automaton.n_states_indexed() == indexed      # the second call reuses the masks


def test_allowed_tokens_and_errors(tok):
    c = build_constraint("allowed_tokens", ["yes", " no", 33], tok, [tok.eos_token_id])
    ids = sorted({tok.encode("yes", add_special_tokens=False)[0],
                  tok.encode(" no", add_special_tokens=False)[0], 33})
    assert c.describe() == "(allowed_tokens (" + " ".join(map(str, ids)) + "))"
    out = c(torch.tensor([[1]]), torch.zeros(1, tok.vocab_size))
    assert sorted(torch.nonzero(out[0] == 0)[:, 0].tolist()) == sorted(ids + [tok.eos_token_id])
    with pytest.raises(GenerationError, match="not a single token"):
        build_constraint("allowed_tokens", ["hello world"], tok, [])
    with pytest.raises(GenerationError, match="outside the vocabulary"):
        build_constraint("allowed_tokens", [10 ** 6], tok, [])
    with pytest.raises(GenerationError, match="unknown constraint kind"):
        build_constraint("regexp", "a", tok, [])
    with pytest.raises(GenerationError, match="non-empty list of strings"):
        validate_spec("choices", "yes")
    with pytest.raises(GenerationError, match="matches nothing"):
        validate_spec("regex", "a&&b" if False else r"[^\s\S]")
    with pytest.raises(GenerationError, match="unsupported keywords"):
        validate_spec("json_schema", {"type": "integer", "minimum": 3})


# ---------------------------------------------------------------------------- 200 samples per kind
def test_samples_choices(tiny, tok):
    choices = ["yes", "no", "maybe", "not sure", "peut-être"]
    res = sample(tiny, tok, "choices", choices, max_length=12)
    assert_all(res, lambda t: t in choices)
    assert len({t for t, _ in res}) == len(choices)          # the model does explore


def test_samples_regex(tiny, tok):
    pattern = r"[0-9]{1,3}(\.[0-9]{1,2})? (km|mi|é)"
    res = sample(tiny, tok, "regex", pattern, max_length=24, seed=3)
    assert_all(res, lambda t: re.fullmatch(pattern, t) is not None)


def test_stop_criterion_ends_rows_without_eos(tiny, tok):
    choices = ["yes", "no", "maybe"]
    c = build_constraint("choices", choices, tok, [])
    prompt = tok.encode("Answer:", add_special_tokens=False)
    with pytest.warns(UserWarning, match="outside the model's vocabulary"):
        out = generate(tiny, [prompt], {"strategy": "sample", "top_k": 0, "max_length": 12, "seed": 2,
                                        "num_return_sequences": 20, "eos_token_id": 10 ** 6,
                                        "pad_token_id": 0},
                       processors=[c], stopping=[c.stop_criterion], tokenizer=tok)
    for row in out.tolist():
        new = row[len(prompt):]
        while new and new[-1] == 0:
            new.pop()
        assert tok.decode(new) in choices


def test_samples_allowed_tokens(tiny, tok):
    allowed = ["yes", " no", "1", "é"]
    ids = {tok.encode(a, add_special_tokens=False)[0] for a in allowed}
    eos = tok.eos_token_id
    c = build_constraint("allowed_tokens", allowed, tok, [eos])
    out = generate(tiny, [tok.encode("Q", add_special_tokens=False)] * N_SAMPLES,
                   {"strategy": "sample", "top_k": 0, "max_length": 8, "seed": 1, "eos_token_id": eos,
                    "pad_token_id": eos}, processors=[c], tokenizer=tok)
    for row in out[:, 1:].tolist():
        new = row[:row.index(eos)] if eos in row else row
        assert set(new) <= ids


def test_samples_grammar(tiny, tok):
    res = sample(tiny, tok, "grammar", ARITH, max_length=200, seed=5,
                 logits_processor=[favour_eos(tok.eos_token_id, 4.0)])
    assert_all(res, _arith_ok)
    assert any("(" in t for t, _ in res) and any("+" in t for t, _ in res)


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "age": {"type": "integer"},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"enum": ["a", "b", None]}, "maxItems": 3},
        "ok": {"type": "boolean"},
        "pet": {"type": ["null", "object"], "properties": {"kind": {"const": "cat"}},
                "required": ["kind"]},
    },
    "required": ["name", "age"],
}


def _valid(value, schema) -> bool:
    """A checker for the subset used in these tests (independent of the grammar compiler)."""
    if "const" in schema:
        return value == schema["const"]
    if "enum" in schema:
        return value in schema["enum"]
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    for t in types:
        if t == "object" and isinstance(value, dict):
            props = schema.get("properties", {})
            if set(value) <= set(props) and all(r in value for r in schema.get("required", [])) \
                    and all(_valid(v, props[k]) for k, v in value.items()):
                return True
        if t == "array" and isinstance(value, list) and len(value) <= schema.get("maxItems", 10 ** 9):
            if all(_valid(v, schema["items"]) for v in value):
                return True
        if t == "string" and isinstance(value, str) and len(value) <= schema.get("maxLength", 10 ** 9):
            return True
        if t == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t == "boolean" and isinstance(value, bool):
            return True
        if t == "null" and value is None:
            return True
    return False


def _json_ok(text: str, schema=SCHEMA) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return _valid(value, schema)


def test_samples_json_schema(tiny, tok):
    res = sample(tiny, tok, "json_schema", SCHEMA, max_length=220, seed=11)
    assert_all(res, _json_ok)
    keys = set()
    for t, _ in res:
        keys |= set(json.loads(t))
    assert keys == set(SCHEMA["properties"])          # optional members do get generated


SMALL_SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 4}, "ok": {"type": "boolean"}, "n": {"enum": [1, 2, 3]}},
    "required": ["name", "ok", "n"]}


def test_constraints_compose_with_greedy_and_beam(tiny, tok):
    # bounded constraints: an unbounded integer lets argmax/beam search write digits forever
    eos = tok.eos_token_id
    prompt = tok.encode("Pick:", add_special_tokens=False)
    for cfg in ({"strategy": "greedy"},
                {"strategy": "beam_search", "num_beams": 4, "num_return_sequences": 4}):
        for kind, spec, check in [("choices", ["alpha", "beta", "gamma delta"],
                                   lambda t: t in ("alpha", "beta", "gamma delta")),
                                  ("json_schema", SMALL_SCHEMA, lambda t: _json_ok(t, SMALL_SCHEMA)),
                                  ("regex", r"[a-c]{2,4}", lambda t: re.fullmatch(r"[a-c]{2,4}", t))]:
            c = build_constraint(kind, spec, tok, [eos])
            out = generate(tiny, [prompt], {"max_length": 100, "eos_token_id": eos, "pad_token_id": eos,
                                            **cfg}, processors=[c], tokenizer=tok)
            for row in out.tolist():
                new = row[len(prompt):]
                assert eos in new, (kind, cfg, tok.decode(new))
                text = tok.decode(new[:new.index(eos)])
                assert check(text), (kind, cfg, text)


def test_json_schema_grammar_accepts_json():
    from hypothesis import given, settings, strategies as st
    v = VocabIndex([b"{"])
    any_json = GrammarAutomaton(v, Grammar(schema_to_grammar({})))
    leaves = st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 6) | \
        st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False) | st.text(max_size=5)
    values = st.recursive(leaves, lambda ch: st.lists(ch, max_size=3) |
                          st.dictionaries(st.text(max_size=3), ch, max_size=3), max_leaves=8)

    @settings(max_examples=60, deadline=None)
    @given(values, st.booleans())
    def check(value, ascii_only):
        text = json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))
        assert _accepts(any_json, text), text
        assert not _accepts(any_json, text + "}")
        assert not _accepts(any_json, text[:-1]) or _json_prefix_is_value(text[:-1])
    check()


def _json_prefix_is_value(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def test_json_schema_errors():
    with pytest.raises(GenerationError, match="required"):
        schema_to_grammar({"type": "object", "properties": {"a": {}}, "required": ["b"]})
    with pytest.raises(GenerationError, match="points nowhere"):
        schema_to_grammar({"$ref": "#/$defs/x"})
    with pytest.raises(GenerationError, match="not valid JSON"):
        schema_to_grammar("{nope")
    tree = {"$defs": {"node": {"type": "object", "properties": {
        "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["v"]}}, "$ref": "#/$defs/node"}
    auto = GrammarAutomaton(VocabIndex([b"{"]), Grammar(schema_to_grammar(tree)))
    assert _accepts(auto, '{"v":1,"kids":[{"v":2},{"v":3,"kids":[]}]}')
    assert not _accepts(auto, '{"kids":[]}')


# ---------------------------------------------------------------------------- SmolLM2
@pytest.fixture(scope="module")
def smol():
    from lispe_py.models import load_model
    try:
        return load_model("SmolLM2-135M-Instruct")
    except Exception as e:
        pytest.skip(f"SmolLM2 unavailable: {e}")


def _chat(model, question):
    return model.tokenizer.apply_chat_template([{"role": "user", "content": question}])


@pytest.mark.smollm2
def test_smollm2_choices(smol):
    tok = smol.tokenizer
    choices = ["Paris", "London", "Berlin", "Madrid"]
    eos = smol.special_tokens["eos_token_id"]
    c = build_constraint("choices", choices, tok, [eos] if isinstance(eos, int) else eos)
    prompt = _chat(smol, "What is the capital of France? Answer with one word.")
    out = generate(smol, prompt, {"max_length": 10}, processors=[c])
    text = tok.decode(out[len(prompt):].tolist(), skip_special_tokens=True)
    assert text in choices
    assert text == "Paris"


@pytest.mark.smollm2
def test_smollm2_json_schema(smol):
    tok = smol.tokenizer
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"]}
    eos = smol.special_tokens["eos_token_id"]
    c = build_constraint("json_schema", schema, tok, [eos] if isinstance(eos, int) else eos)
    prompt = _chat(smol, "Give a JSON object with the name and age of a fictional person.")
    out = generate(smol, prompt, {"max_length": 60}, processors=[c])
    text = tok.decode(out[len(prompt):].tolist(), skip_special_tokens=True)
    value = json.loads(text)
    assert isinstance(value["name"], str) and isinstance(value["age"], int)


# ---------------------------------------------------------------------------- config keys
def test_config_keys_drive_generate(tiny, tok):
    from lispe_py.generation import GenerationConfig
    from lispe_py.generation.generate import make_plan
    eos = tok.eos_token_id
    prompt = tok.encode("Answer:", add_special_tokens=False)
    base = {"strategy": "sample", "top_k": 0, "seed": 4, "num_return_sequences": 30,
            "eos_token_id": eos, "pad_token_id": eos}
    cases = [("choices", ["red", "green", "blue"], lambda t: t in ("red", "green", "blue")),
             ("regex", r"#[0-9a-f]{6}", lambda t: re.fullmatch(r"#[0-9a-f]{6}", t)),
             ("json_schema", SMALL_SCHEMA, lambda t: _json_ok(t, SMALL_SCHEMA)),
             ("grammar", ARITH, _arith_ok)]
    for kind, spec, check in cases:
        cfg = GenerationConfig.from_dict({**base, kind: spec, "max_length": 120})
        out = generate(tiny, [prompt], cfg, tokenizer=tok,
                       logits_processor=[favour_eos(eos, 2.0)] if kind == "grammar" else None)
        for row in out.tolist():
            new = row[len(prompt):]
            text = tok.decode(new[:new.index(eos)] if eos in new else new)
            assert (eos in new or len(new) < 120) and check(text), (kind, text)
        plan = make_plan(tiny, prompt, cfg, tokenizer=tok)
        assert f"({kind} " in plan.chain.describe()
        assert len(plan.stopping) == 1
    ids = [tok.encode(w, add_special_tokens=False)[0] for w in ("yes", " no")]
    out = generate(tiny, prompt, {"allowed_tokens": ids, "max_length": 6, "min_new_tokens": 6,
                                  "eos_token_id": eos}, tokenizer=tok)
    assert set(out[len(prompt):].tolist()) <= set(ids)


def test_config_constraint_errors():
    from lispe_py.generation import GenerationConfig
    with pytest.raises(GenerationError, match="choices must be a non-empty list"):
        GenerationConfig.from_dict({"choices": "yes"})
    with pytest.raises(GenerationError, match="only one constraint"):
        GenerationConfig.from_dict({"choices": ["a"], "regex": "a"})
    with pytest.raises(GenerationError, match="unknown operator"):
        GenerationConfig.from_dict({"grammar": [["root", ["bogus", "x"]]]})
    cfg = GenerationConfig.from_dict({"regex": "[ab]+"})
    assert cfg.update({"regex": None}).regex is None
    assert GenerationConfig.from_dict(cfg.to_dict()).regex == "[ab]+"


def test_active_chain_prints_the_constraint(tok):
    from lispe_py.generation.generate import active_chain
    from lispe_py.models.loading import attach_tokenizer
    model = create_model(ModelConfig(vocab_size=tok.vocab_size, hidden_size=8, num_layers=1,
                                     num_heads=2, intermediate_size=16, seed=1))
    attach_tokenizer(model, tok)
    chain = active_chain(model, {"strategy": "sample", "top_k": 5, "choices": ["a", "b"]})
    assert chain.describe() == '(chain (choices ("a" "b")) (top_k 5))'


# ----- hostile constraints: a clear error (naming the constraint) or success, within 2 s -----

def _bounded(kind, spec, match, tokenizer=None):
    """The spec fails config validation, and compilation against a tokenizer, with `match`, fast."""
    from lispe_py.generation import GenerationConfig
    from lispe_py.generation.constraints import TooLarge

    start = time.perf_counter()
    with pytest.raises(TooLarge, match=match):
        GenerationConfig.from_dict({kind: spec})
    assert time.perf_counter() - start < 2, kind
    if tokenizer is not None:
        start = time.perf_counter()
        with pytest.raises(TooLarge, match=match):
            build_constraint(kind, spec, tokenizer, [0])
        assert time.perf_counter() - start < 2, kind


@pytest.mark.parametrize("pattern, match", [
    ("a{100000}", r"regex 'a\{100000\}' is too large: with its repetitions unrolled it has over 50000 positions, "
                  r"the limit is 5000"),
    ("(abc|abd|abe){3000}", r"regex .* is too large: .* 27000 positions, the limit is 5000"),
    ("(a|b)*a(a|b){18}", r"regex '\(a\|b\)\*a\(a\|b\)\{18\}' is too large: building its automaton (needs more than "
                         r"30000 states|follows more than|takes more than)"),
    ("(x|y|z)*x(x|y|z){30}", r"regex .* is too large: building its automaton"),
    ("x" * 200_000, r"regex 'xxxx.*\.\.\. \(200000 characters\) is too long: 200000 characters, the limit is 100000"),
    ("(" * 3000 + "a" + ")" * 3000, r"regex .* (nests too deeply|is too large)"),
])
def test_hostile_regexes_end_in_a_clear_error(tok, pattern, match):
    _bounded("regex", pattern, match, tok)


def test_a_megabyte_choice_ends_in_a_clear_error(tok):
    match = r"choices: the choices would need more than 50000 automaton states"
    _bounded("choices", ["x" * 2**20], match, tok)
    _bounded("choices", [f"{i:06d}" for i in range(200_000)], match, tok)  # 1.2 MB of short choices
    with pytest.raises(GenerationError, match=r"choices must be a non-empty list of strings, got \[.*\.\.\. \("):
        validate_spec("choices", ["a"] * 100_000 + [3])  # the message stays short


def test_the_largest_accepted_regexes_and_choices_build_in_time(tok):
    for kind, spec in [("regex", "a{4000}"), ("regex", "[0-9]{1,300}"), ("choices", ["y" * 40_000, "n"])]:
        start = time.perf_counter()
        c = build_constraint(kind, spec, tok, [tok.eos_token_id])
        assert time.perf_counter() - start < 4, spec
        assert c is not None


@pytest.mark.parametrize("grammar, match", [
    (["grammar", ["root", ["repeat", "ab", 0, 10**9]]], r"grammar rule 'root': \(repeat \"ab\" 0 1000000000\) "
                                                         r"unrolls to 2000000000 symbols; a grammar may have 50000"),
    (["grammar", ["root", ["repeat", ["repeat", "ab", 300, 300], 300, 300]]], r"grammar rule 'root': .* unrolls to"),
    (["grammar", ["root", ["regex", "a{100000}"]]], r"regex 'a\{100000\}' is too large"),
    (["grammar", ["root", ["regex", "(a|b)*a(a|b){18}"]]], r"regex .* is too large: building its automaton"),
])
def test_hostile_grammars_end_in_a_clear_error(grammar, match):
    _bounded("grammar", grammar, match)


def test_a_deeply_nested_grammar_ends_in_a_clear_error():
    from lispe_py.generation import GenerationConfig
    from lispe_py.generation.constraints import TooLarge

    expr: list = ["seq", "a"]
    for _ in range(5000):
        expr = ["seq", expr]
    with pytest.raises(TooLarge, match="grammar: the grammar nests too deeply"):
        GenerationConfig.from_dict({"grammar": ["grammar", ["root", expr]]})


def test_the_parser_state_limit_is_a_clear_error(tok, monkeypatch):
    from lispe_py.generation.constraints import TooLarge, grammar

    monkeypatch.setattr(grammar, "MAX_PARSER_STATES", 5)
    with pytest.raises(TooLarge, match=r"grammar constraint: the parser needs more than 5 (charts|states)"):
        c = build_constraint("grammar", ["grammar", ["root", ["star", ["alt", "ab", "a", "b", "ba"]]]], tok, [0])
        state = c.automaton.initial()
        for token in tok.encode("abababbaab", add_special_tokens=False):
            state = c.automaton.advance(state, token)
            c.automaton.mask(state)


def test_hostile_constraints_from_lisp_are_lispe_errors(tok):
    from lispe_py import Interpreter
    from lispe_py.errors import LispEError

    lisp = Interpreter()
    lisp.eval("(use 'lispe_torch)")
    lisp.eval('(setq model (torch_model_create "llama" {"vocab_size":64 "hidden_size":16 "num_layers":1 '
              '"num_heads":2}))')
    lisp.eval('(setq generator (torch_generator_create model "cpu"))')
    start = time.perf_counter()
    with pytest.raises(LispEError, match=r"torch_generator_config: regex '\(a\|b\)\*a\(a\|b\)\{18\}' is too large"):
        lisp.eval('(torch_generator_config generator {"regex":"(a|b)*a(a|b){18}"})')
    with pytest.raises(LispEError, match=r"regex 'a\{100000\}' is too large"):
        lisp.eval('(torch_generator_config generator {"regex":"a{100000}"})')
    assert time.perf_counter() - start < 4
