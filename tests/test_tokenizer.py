"""Tokenizer behaviour that needs no model file: a byte-level BPE trained here, its chat templates
(rendered as transformers renders them), streaming pieces, and errors."""
from __future__ import annotations

import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("jinja2")

from tokenizers import Tokenizer as Backend  # noqa: E402
from tokenizers import decoders, models, pre_tokenizers, trainers  # noqa: E402

from lispe_py.models import ModelError  # noqa: E402
from lispe_py.models.tokenizer import Tokenizer, bytes_to_unicode  # noqa: E402

CORPUS = ["Hello world, hello there!", "The quick brown fox jumps over the lazy dog.", "café 東京 🤗 123 4567",
          "<|user|> and <|end|> tags"] * 5
SPECIALS = ["<unk>", "<|bos|>", "<|end|>", "<|user|>"]


@pytest.fixture(scope="module")
def backend_json() -> str:
    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS, trainer)
    return backend.to_str()


def make(backend_json: str, **kwargs) -> Tokenizer:
    kwargs.setdefault("bos_token", "<|bos|>")
    kwargs.setdefault("eos_token", "<|end|>")
    kwargs.setdefault("unk_token", "<unk>")
    return Tokenizer(Backend.from_str(backend_json), **kwargs)


def test_bytes_to_unicode_is_gpt2_table():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"


def test_encode_decode_round_trip_and_bos_flag(backend_json):
    plain = make(backend_json)
    with_bos = make(backend_json, add_bos_token=True, add_eos_token=True)
    text = "Hello café 東京 🤗!"
    ids = plain.encode(text)
    assert plain.decode(ids) == text
    assert with_bos.encode(text) == [with_bos.bos_token_id, *ids, with_bos.eos_token_id]
    assert with_bos.encode(text, add_special_tokens=False) == ids
    assert with_bos.decode(with_bos.encode(text), skip_special_tokens=True) == text
    assert plain.encode_batch([text, "x"]) == [ids, plain.encode("x")]
    assert plain.vocab_size == len(plain) == 330
    assert set(plain.all_special_ids) == {plain.token_to_id(t) for t in SPECIALS}
    assert plain.id_to_token(plain.bos_token_id) == "<|bos|>"
    with pytest.raises(ModelError, match="expects a string"):
        plain.encode(42)


def test_special_tokens_missing_from_vocab_are_added(backend_json):
    tok = make(backend_json, pad_token="<pad>")
    assert tok.pad_token_id == 330 and tok.vocab_size == 331
    assert tok.encode("a<pad>b") == [*tok.encode("a"), 330, *tok.encode("b")]


def test_chat_template_matches_transformers_rendering(backend_json):
    transformers = pytest.importorskip("transformers")
    template = (
        "{%- set ns = namespace(n=0) -%}"
        "{% for m in messages %}{% set ns.n = ns.n + 1 %}{{ bos_token }}{{ m.role }}\n"
        "{{ m.content | trim }}{% if m.tool_calls is defined %}{{ m.tool_calls | tojson }}{% endif %}"
        "{{ eos_token }}\n{% endfor %}"
        "{% if add_generation_prompt %}{{ bos_token }}assistant ({{ ns.n }}){% endif %}"
        "{% if custom is defined %}[{{ custom }}]{% endif %}"
    )
    ours = make(backend_json, chat_template=template)
    theirs = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Backend.from_str(backend_json), bos_token="<|bos|>", eos_token="<|end|>", unk_token="<unk>"
    )
    theirs.chat_template = template
    chat = [
        {"role": "system", "content": "  Be nice.  "},
        {"role": "user", "content": "Héllo <|user|> 🤗", "name": None},
        {"role": "assistant", "content": "ok", "tool_calls": [{"name": "f", "arguments": {"x": "é"}}]},
    ]
    for gen in (True, False):
        want = theirs.apply_chat_template(chat, add_generation_prompt=gen, tokenize=False)
        assert ours.render_chat(chat, add_generation_prompt=gen) == want
        assert ours.apply_chat_template(chat, add_generation_prompt=gen) == \
            theirs.apply_chat_template(chat, add_generation_prompt=gen)["input_ids"]
    want = theirs.apply_chat_template(chat, tokenize=False, custom="v")
    assert ours.render_chat(chat, add_generation_prompt=False, custom="v") == want
    assert Tokenizer.from_hf(theirs).render_chat(chat) == ours.render_chat(chat)


def test_chat_template_errors(backend_json):
    with pytest.raises(ModelError, match="no chat template"):
        make(backend_json).render_chat([{"role": "user", "content": "x"}])
    tok = make(backend_json, chat_template="{{ raise_exception('only user turns') }}")
    with pytest.raises(ModelError, match="only user turns"):
        tok.render_chat([{"role": "user", "content": "x"}])
    with pytest.raises(ModelError, match="does not compile"):
        make(backend_json, chat_template="{% for %}").render_chat([{"role": "user", "content": "x"}])
    with pytest.raises(ModelError, match="non-empty list"):
        make(backend_json, chat_template="x").render_chat([])
    # The sandbox refuses attribute tricks, as in transformers.
    evil = make(backend_json, chat_template="{{ messages.__class__.__mro__ }}")
    with pytest.raises(ModelError, match="chat template error"):
        evil.render_chat([{"role": "user", "content": "x"}])


@pytest.mark.parametrize("text", ["plain ascii text", "café 東京 🤗🚀 e\u0301 done", "🤗" * 5, "a\nb\t\u00a0c"])
def test_stream_decoder_pieces_rebuild_text(backend_json, text):
    tok = make(backend_json, add_bos_token=True, add_eos_token=True)
    ids = tok.encode(text)
    stream = tok.stream_decoder()
    pieces = [stream.push(i) for i in ids]
    pieces.append(stream.flush())
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    keep = tok.stream_decoder(skip_special_tokens=False)
    assert "".join([keep.push(i) for i in ids] + [keep.flush()]) == tok.decode(ids)


def test_stream_decoder_drops_an_incomplete_character_at_the_end(backend_json):
    tok = make(backend_json)
    byte_token = tok.token_to_id(bytes_to_unicode()[0xF0])  # first byte of a 4-byte character
    stream = tok.stream_decoder()
    assert stream.push(tok.encode("Hello")[0]) == "Hello"
    assert stream.push(byte_token) == ""
    assert stream.flush() == ""


def test_incremental_decoder_holds_back_a_cut_character(backend_json):
    """generate_text's decoder: a generation cut inside a character (max_length between two bytes of
    🤗) ends with the text before it, never with U+FFFD; a completed character comes out whole."""
    from lispe_py.generation.detok import IncrementalDecoder
    from lispe_py.generation.generate import new_text

    tok = make(backend_json)
    prompt = tok.encode("Hello")
    bytes_of = [tok.token_to_id(bytes_to_unicode()[b]) for b in "🤗".encode("utf-8")]
    dec = IncrementalDecoder(tok, prompt)
    assert [dec.push(t) for t in tok.encode(" world") + bytes_of[:2]][-2:] == ["", ""]
    assert dec.flush() == "" and dec.text == " world"
    assert new_text(tok, prompt, tok.encode(" world") + bytes_of[:3], None) == " world"
    assert new_text(tok, prompt, tok.encode(" world") + bytes_of, None) == " world🤗"


def test_from_file_reads_tokenizer_config(tmp_path, backend_json):
    path = tmp_path / "tokenizer.json"
    path.write_text(backend_json, encoding="utf-8")
    tok = Tokenizer.from_file(path, {"bos_token": {"content": "<|bos|>"}, "eos_token": "<|end|>",
                                     "add_bos_token": True, "chat_template": "{{ messages[0].content }}"})
    assert tok.encode("hi")[0] == tok.bos_token_id
    assert tok.render_chat([{"role": "user", "content": "yo"}]) == "yo"
    with pytest.raises(ModelError, match="cannot read tokenizer"):
        Tokenizer.from_file(tmp_path / "missing.json")


# ----- GGUF vocabularies (written with gguf.GGUFWriter), against transformers reading the same file -----

SP_TEXTS = ["Hello world", "Ωmega ß (bytes)", "  two  spaces", "café 東京 🤗", "new\nline", "The quick brown fox.", "<s> inside", ""]


def _sentencepiece_gguf(path, with_merges: bool):
    """A llama.cpp-style sentencepiece vocabulary: <unk>, <s>, </s>, 256 byte tokens, learned pieces."""
    gguf = pytest.importorskip("gguf")
    from tokenizers import SentencePieceBPETokenizer

    sp = SentencePieceBPETokenizer()
    sp.train_from_iterator(CORPUS, vocab_size=120, min_frequency=1, show_progress=False)
    learned = [t for t, _ in sorted(sp.get_vocab().items(), key=lambda kv: kv[1])]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + learned
    types = [2, 3, 3] + [6] * 256 + [1] * len(learned)
    scores = [0.0] * 259 + [-float(i) for i in range(len(learned))]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_scores(scores)
    if with_merges:
        merges = __import__("json").loads(sp._tokenizer.to_str())["model"]["merges"]
        w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("with_merges", [True, False])
def test_sentencepiece_gguf_matches_transformers(tmp_path, with_merges):
    transformers = pytest.importorskip("transformers")
    _sentencepiece_gguf(tmp_path / "sp.gguf", with_merges)
    ours = Tokenizer.from_gguf(tmp_path / "sp.gguf")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="sp.gguf")
    for text in SP_TEXTS:
        ids = ours.encode(text)
        assert ids == theirs(text)["input_ids"], text
        assert ours.decode(ids) == theirs.decode(ids), text
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True), text
    assert ours.encode("x")[0] == ours.bos_token_id == 1  # BOS added by default for sentencepiece files
