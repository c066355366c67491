"""K-quant GGUF files (Q4_K, Q5_K, Q6_K, with Q8_0): blocks written to llama.cpp's layout by the test,
dequantized bit for bit as `gguf.quants.dequantize` does, and taken by the quantized engines as they
are (int4 groups of 32 for Q4_K; int8 groups of 32 for Q5_K, 16 for Q6_K): every quantized layer
multiplies by exactly the float model's weights, and the logits follow within the kernels' tolerance."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")

from gguf import GGMLQuantizationType  # noqa: E402
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402

from lispe_py.models import create_model, kquants, load_model  # noqa: E402
from lispe_py.models.gguf_embedding import GGUFEmbedding  # noqa: E402
from lispe_py.models.gguf_loader import GGUFFile, dequantize  # noqa: E402
from lispe_py.models.gguf_writer import mix_type, write_llama_gguf  # noqa: E402
from lispe_py.models.kquant_linear import KQuantLinear  # noqa: E402
from lispe_py.models.quantize import (Int4Linear, Int8Linear, gguf_parts, int8_from_gguf,  # noqa: E402
                                      load_gguf_quantized)

torch.set_flush_denormal(True)
CONFIG = {"arch": "llama", "vocab_size": 160, "hidden_size": 256, "num_layers": 8, "num_heads": 4,
          "num_kv_heads": 2, "intermediate_size": 512, "max_position_embeddings": 64, "seed": 5,
          "init_std": 0.05}
IDS = torch.tensor([[3, 17, 40, 99, 7, 150, 21]])


@pytest.mark.parametrize("kind", kquants.KINDS)
def test_blocks_dequantize_like_gguf(kind):
    torch.manual_seed(1)
    w = torch.randn(6, 768) * 0.1
    raw = kquants.quantize(kind, w)
    ref = gguf_dequantize(raw.numpy(), GGMLQuantizationType[kind]).reshape(6, 768)
    ours = kquants.dequantize(kind, raw.reshape(-1, kquants.BLOCK_BYTES[kind])).reshape(6, 768)
    assert np.array_equal(ours.numpy(), ref)
    bits = {"Q4_K": 4, "Q5_K": 5, "Q6_K": 6}[kind]
    assert (torch.from_numpy(ref) - w).abs().max() < w.abs().max() / 2 ** (bits - 2)  # a real quantization
    # every bit pattern: random bytes, with finite float16 super-block scales
    rnd = torch.randint(0, 256, (40, kquants.BLOCK_BYTES[kind]), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    for at, value in ((208, 0.02),) if kind == "Q6_K" else ((0, 0.02), (2, -0.007)):
        rnd[:, at:at + 2] = torch.tensor([value]).half().view(torch.uint8)
    ref = gguf_dequantize(rnd.numpy(), GGMLQuantizationType[kind]).reshape(-1)
    assert np.array_equal(kquants.dequantize(kind, rnd).numpy(), ref)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kq")
    model = create_model(CONFIG)
    out = {}
    for file_type in ("Q4_K_M", "Q5_K_M", "Q6_K", "Q4_K"):
        out[file_type] = write_llama_gguf(folder / f"tiny-{file_type}.gguf", model, file_type)
    return out


def test_files_hold_the_types_they_claim(files):
    g = GGUFFile(files["Q4_K_M"])
    types = {name: t.type_name for name, t in g.tensors.items()}
    assert types["token_embd.weight"] == "Q6_K" and types["blk.0.attn_q.weight"] == "Q4_K"
    assert types["blk.0.ffn_down.weight"] == "Q6_K" and types["blk.2.ffn_down.weight"] == "Q4_K"
    assert {types[n] for n in types if n.endswith("norm.weight")} == {"F32"}
    assert all(types[n] == mix_type("Q4_K_M", n, CONFIG["num_layers"]) for n in types if not n.endswith("norm.weight"))
    assert {t.type_name for t in GGUFFile(files["Q5_K_M"]).tensors.values()} == {"Q5_K", "Q6_K", "F32"}


@pytest.mark.parametrize("file_type", ["Q4_K_M", "Q5_K_M", "Q6_K"])
def test_every_tensor_loads_exactly(files, file_type):
    g = GGUFFile(files[file_type])
    for name, t in g.tensors.items():
        ref = gguf_dequantize(t.data, GGMLQuantizationType(t.ggml_type)).reshape(t.shape)
        assert np.array_equal(dequantize(t).numpy(), ref), name
        parts = gguf_parts(t)
        if parts is not None:
            w = parts.q.float().reshape(*parts.scale.shape, -1) * parts.scale[..., None] + parts.offset[..., None]
            assert np.array_equal(w.reshape(t.shape).numpy(), ref), name


def _float_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.state_dict().items() if n.endswith(".weight")}


@pytest.mark.parametrize("mode", ["int4", "int8"])
@pytest.mark.parametrize("file_type", ["Q4_K_M", "Q5_K_M"])
def test_quantized_engines_take_the_blocks_as_they_are(files, file_type, mode, kernels):
    ref = load_model(files[file_type], model_cache=False)
    model = load_gguf_quantized(files[file_type], mode, group_size=32)
    q = model.quantization
    # without the native kernel an int8 head of an int4 model is per channel (torch's kernel): re-rounded
    per_channel_head = mode == "int4" and kernels != "native"
    assert q.layers == 4 * CONFIG["num_layers"] + 1 and q.exact_from_gguf == q.layers - per_channel_head
    float_w = _float_weights(ref)
    kinds = set()
    for name, layer in model.named_modules():
        if isinstance(layer, (Int4Linear, Int8Linear, KQuantLinear)) and not (per_channel_head and name == "lm_head"):
            kinds.add((type(layer).__name__, layer.group_size))
            assert torch.equal(layer.dequantized_weight(), float_w[name + ".weight"]), name
    if mode == "int4" and file_type == "Q4_K_M" and kernels == "native":  # the file's blocks, mapped
        assert kinds == {("KQuantLinear", 256)}
    elif mode == "int4" and file_type == "Q4_K_M":  # Q4_K layers int4; layers with a Q6_K part int8 groups of 16
        assert kinds == {("Int4Linear", 32), ("Int8Linear", 16)}
    elif mode == "int4":  # Q5_K_M: Q5_K parts have no K-quant kernel: int8 groups, as Q6_K ones without it
        assert ("Int8Linear", 16) in kinds
    elif mode == "int8":
        assert kinds <= {("Int8Linear", 32), ("Int8Linear", 16)} and ("Int8Linear", 16) in kinds
    assert isinstance(model.embed, GGUFEmbedding)  # no float table
    with torch.inference_mode():
        assert torch.equal(model.embed(IDS), ref.embed(IDS))
        ours, theirs = model.forward_full(IDS), ref.forward_full(IDS)
    scale = theirs.abs().max().item()
    # native: activations rounded to 16 bits per block of 32 (int4, int8 groups of 32) or super-block of
    # 256 (K-quants), float32 for int8 groups of 16 (kernels.cpp); without the native kernels: bfloat16 compute
    tol = 3e-2 if kernels != "native" else (1e-3 if mode == "int8" else 2e-3)
    assert (ours - theirs).abs().max().item() < tol * scale
    assert ours[0, -1].argmax() == theirs[0, -1].argmax()


def test_q4_k_scales_are_kept_in_float32(files):
    from lispe_py.models import native

    with native.switched_off():  # without the K-quant kernels: int4 groups of 32
        model = load_gguf_quantized(files["Q4_K"], "int4")
    layer = model.layers[0].attn.wqkv
    assert isinstance(layer, Int4Linear) and layer.scales_and_zeros.dtype == torch.float32
    t = GGUFFile(files["Q4_K"]).tensors["blk.0.attn_output.weight"]
    ref = gguf_dequantize(t.data, GGMLQuantizationType.Q4_K).reshape(t.shape)
    got = model.layers[0].attn.wo.dequantized_weight()
    assert np.allclose(got.numpy(), ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_q6_k_is_int8_groups_of_16(files):
    t = GGUFFile(files["Q6_K"]).tensors["blk.0.ffn_down.weight"]
    q, scale, offset, exact = int8_from_gguf(t, 32)
    assert exact and scale.shape == (t.shape[0], t.shape[1] // 16) and int(q.min()) >= -32 and int(q.max()) <= 31
    layer = Int8Linear(q, scale, None, torch.float32, offset, 16)
    x = torch.randn(3, t.shape[1])
    w = torch.from_numpy(gguf_dequantize(t.data, GGMLQuantizationType.Q6_K).reshape(t.shape))
    assert torch.allclose(layer(x), x @ w.t(), atol=1e-4)


def test_generation_from_a_q4_k_m_file_follows_the_float_model(files):
    from lispe_py.generation import generate

    ref = load_model(files["Q4_K_M"], model_cache=False)
    model = load_model(files["Q4_K_M"], quantize="int4")
    prompt = [3, 17, 40, 99]
    opts = {"strategy": "greedy", "max_length": 8, "min_new_tokens": 8}
    assert generate(model, prompt, opts).tolist()[:6] == generate(ref, prompt, opts).tolist()[:6]


def test_native_k_quant_layers_read_the_mapped_file(files, kernels):
    if kernels != "native":
        pytest.skip("the K-quant kernels are native only")
    from lispe_py.models.memory import memory_report

    model = load_gguf_quantized(files["Q4_K_M"], "int4")
    layers = [m for m in model.modules() if isinstance(m, KQuantLinear)]
    assert len(layers) == 4 * CONFIG["num_layers"] + 1 and model.quantization.exact_from_gguf == len(layers)
    assert model.lm_head.kinds == ["Q6_K"] and model.layers[0].attn.wqkv.kinds == ["Q4_K", "Q4_K", "Q6_K"]
    report = memory_report(model)
    assert report["mapped_bytes"] > 0.9 * files["Q4_K_M"].stat().st_size
    assert report["weights_bytes"] < 0.1 * files["Q4_K_M"].stat().st_size  # norms only: no copy of the blocks
    # long prompts multiply by the dequantized weight: the same logits as the kernel within its tolerance
    ref = load_model(files["Q4_K_M"], model_cache=False)
    long = torch.arange(70)[None] % CONFIG["vocab_size"]
    with torch.inference_mode():
        diff = (model.forward_full(long) - ref.forward_full(long)).abs().max().item()
    assert diff < 1e-3


def test_k_quant_layers_call_the_kernel_on_their_current_buffers(files, kernels):
    """The kernel's argument lists are built once per layer and built again when the module's buffers
    are replaced (`_apply`: `.to()`, `.cpu()`, ...), so a call never reads blocks the layer dropped."""
    if kernels != "native":
        pytest.skip("the K-quant kernels are native only")
    model = load_gguf_quantized(files["Q4_K_M"], "int4")
    layer = model.layers[0].attn.wqkv
    x = torch.randn(3, layer.in_features)
    before = layer(x)
    raws, _, _ = layer._kernel_args()
    assert raws[0] is layer.raw0 and layer._kernel_args() is layer._kernel_args()
    layer._apply(lambda t: t.clone())  # new buffers with the same values
    raws, _, indexes = layer._kernel_args()
    assert raws[0] is layer.raw0 and indexes[0] is layer.index0 and torch.equal(layer(x), before)
    with torch.no_grad():
        layer.raw0.zero_()  # the current buffer is what the kernel reads
    assert not torch.equal(layer(x), before)


def test_lisp_loads_a_k_quant_file_and_reports_memory(files):
    from lispe_py import Interpreter

    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval(f'(setq m (torch_hf_load_model "{files["Q4_K_M"]}" {{"quantize":"int4"}}))')
    info = interp.eval("(torch_model_info m)")
    assert info["quantization"] == "int4" and info["peak_resident_mb"] >= info["resident_mb"] > 0
    assert 0 < info["anonymous_mb"] < info["resident_mb"]
    assert info["weights_mb"] + info["mapped_mb"] > 0


def test_bench_models_measures_our_engine_on_a_file(files):
    # bench/models.py's per-engine run (a fresh process, JSON back) on a small K-quant file
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.models import child

    r = child("ours", str(files["Q4_K_M"]), [3, 17, 40, 99], 4, 1, sys.executable)
    assert len(r["tokens"]) == 4 and r["decode_tok_s"] > 0 and r["ttft_s"] > 0 and r["load_s"] > 0
    assert r["peak_mb"] >= r["start_mb"] > 0
    ref = load_model(files["Q4_K_M"], model_cache=False)
    from lispe_py.generation import generate

    want = generate(ref, [3, 17, 40, 99], {"strategy": "greedy", "max_length": 4, "min_new_tokens": 4}).tolist()[4:]
    assert r["tokens"][:2] == want[:2]


def test_bench_serve_f32_copy_holds_the_files_weights_and_tokenizer(tmp_path, monkeypatch):
    # bench/serve.py --f32 runs both servers on this copy: it must be the same model, in float32
    import os
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.serve import f32_copy

    src = write_llama_gguf(tmp_path / "v-Q4_K_M.gguf", create_model({**CONFIG, "num_layers": 2, "vocab_size": 320}),
                           "Q4_K_M", vocab=True)  # (a vocabulary: at least the 256 byte tokens)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    copy = f32_copy(src)
    assert copy.parent == tmp_path / "tmp" / "lispe-bench-models" and f32_copy(src) == copy  # written once
    stamp = copy.stat().st_mtime_ns
    assert f32_copy(src).stat().st_mtime_ns == stamp  # and reused
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))  # the source rewritten
    assert f32_copy(src) != copy
    a, b = GGUFFile(src), GGUFFile(copy)
    assert {t.type_name for t in b.tensors.values()} == {"F32"} and set(a.tensors) == set(b.tensors)
    assert {t.type_name for t in a.tensors.values()} >= {"Q4_K", "Q6_K"}
    assert b.metadata["general.file_type"] == 0
    for key, value in a.metadata.items():
        if key != "general.file_type":
            assert np.array_equal(value, b.metadata[key]) if isinstance(value, np.ndarray) else value == b.metadata[key], key
    ours, theirs = load_model(src, model_cache=False), load_model(copy, model_cache=False)
    assert all(torch.equal(x, y) for x, y in zip(ours.state_dict().values(), theirs.state_dict().values()))
    assert ours.tokenizer.encode("a b c ab") == theirs.tokenizer.encode("a b c ab")


@pytest.mark.parametrize("file_type", ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "F16", "F32"])
def test_embedding_rows_equal_the_float_table_and_trace(tmp_path, file_type):
    # GGUFEmbedding reads rows from the file's blocks with no dtype view, so a decode step traces
    path = write_llama_gguf(tmp_path / "e.gguf", create_model({**CONFIG, "num_layers": 1}), file_type)
    g = GGUFFile(path)
    emb = GGUFEmbedding(g.tensors["token_embd.weight"])
    ids = torch.tensor([[5, 0, 159, 77]])
    ref = g.dequantize("token_embd.weight")[ids]
    assert torch.equal(emb(ids), ref)
    traced = torch.jit.trace(lambda t: emb(t), (torch.tensor([[1]]),), check_trace=False)
    assert torch.equal(traced(ids), ref)
    # nothing of the table beside the mapping: the only tensor with storage is a view of the file's bytes
    stored = [b for b in emb.buffers() if b.numel()]
    assert len(stored) == 1 and stored[0].untyped_storage().data_ptr() == g.tensors["token_embd.weight"].data.ctypes.data


def test_float16_bytes_decode_by_arithmetic_exactly_and_trace():
    # kquants.f16_of: the scales of the rows a traced decode step looks up, every bit pattern exact
    from lispe_py.models.kquants import f16_of

    bits = torch.arange(65536, dtype=torch.int32)
    raw = torch.stack((bits & 0xFF, bits >> 8), dim=1).to(torch.uint8)
    want = raw.view(torch.float16).float()
    got = f16_of(raw)
    assert got.shape == want.shape == (65536, 1)
    nan = want.isnan()
    assert torch.equal(got.isnan(), nan) and int(nan.sum()) == 2 * 1023
    assert torch.equal(got[~nan], want[~nan]) and torch.equal(got[~nan].signbit(), want[~nan].signbit())
    traced = torch.jit.trace(f16_of, (raw[:3],))
    assert torch.equal(traced(raw[30000:31000]), want[30000:31000])


def test_a_k_quant_model_decodes_with_a_traced_step(files):
    import warnings

    from lispe_py.generation import generate

    opts = {"strategy": "greedy", "max_length": 40, "min_new_tokens": 40}
    traced = load_model(files["Q4_K_M"], quantize="int4")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a failed trace warns
        ids = generate(traced, [3, 17, 40], opts).tolist()
    assert len(traced._graphs) == 1
    plain = load_model(files["Q4_K_M"], quantize="int4")
    plain.traced_decode = False
    assert generate(plain, [3, 17, 40], opts).tolist() == ids


@pytest.fixture(scope="module")
def q41_file(tmp_path_factory):
    return write_llama_gguf(tmp_path_factory.mktemp("q41") / "tiny-Q4_1.gguf", create_model(CONFIG), "Q4_1")


@pytest.mark.parametrize("file_type, mode", [("Q4_K_M", "int4"), ("Q4_1", "int4"), ("Q4_K_M", "int8")])
def test_int8_activations_run_llama_cpp_arithmetic(files, q41_file, file_type, mode):
    """activations "int8": the int4 layers (Q4_1 blocks), the K-quant layers (Q4_K/Q6_K blocks) and the
    int8 layers in groups of 32 round their inputs to 8 bits per block of 32 / super-block of 256 (as
    llama.cpp does), really coarser than the default (16 bits; float32 for int8), next-token
    distributions still close; switching a loaded model drops its traced steps, which held the old
    width."""
    from lispe_py.generation import generate
    from lispe_py.models import native
    from lispe_py.models.quantize import set_activations

    if not native.available():
        pytest.skip(f"the 8-bit activations are the native kernels': {native.reason()}")
    path = files[file_type] if file_type in files else q41_file
    ref = load_model(path, model_cache=False)
    exact = load_model(path, quantize=mode)
    fast = load_model(path, quantize=mode, activations="int8")
    assert exact.quantization.activations == "int16" and fast.quantization.activations == "int8"
    kind = Int8Linear if mode == "int8" else KQuantLinear if file_type == "Q4_K_M" else Int4Linear
    layers = [m for m in fast.modules() if isinstance(m, kind) and (kind is not Int8Linear or m.group_size == 32)]
    assert len(layers) >= CONFIG["num_layers"] and {m.activation_bits for m in layers} == {8}
    assert "8-bit activations" in repr(layers[0])
    with torch.inference_mode():
        r, e, f = (m.forward_full(IDS) for m in (ref, exact, fast))
    # really 8 bits, not the 16-bit op under another name: ~0.2 off the 16-bit logits on this 8-layer
    # random model (which are within ~1e-3 of the dequantized model's for K-quants; ~0.03 for Q4_1,
    # whose scales are held in bfloat16)
    assert (f - e).abs().max().item() > 10 * (3e-3 if file_type == "Q4_1" else 1e-3)
    p, q = torch.log_softmax(r, -1), torch.log_softmax(f, -1)
    assert (p.exp() * (p - q)).sum(-1).max().item() < 0.01  # next-token distributions stay close (~0.003)
    opts = {"strategy": "greedy", "max_length": 40, "min_new_tokens": 40}
    generate(exact, [3, 17, 40], opts)  # traces its step with 16-bit activations
    assert exact._graphs
    set_activations(exact, "int8")
    assert not exact._graphs and exact.quantization.activations == "int8"
    assert generate(exact, [3, 17, 40], opts).tolist() == generate(fast, [3, 17, 40], opts).tolist()
    batch = generate(fast, [[3, 17, 40], [9, 8, 7]], opts)  # batch rows equal rows alone at 8 bits too
    assert batch[1].tolist() == generate(fast, [9, 8, 7], opts).tolist()


def test_int8_activations_are_refused_where_they_do_not_apply(files):
    from lispe_py.models import ModelError, native
    from lispe_py.models.quantize import quantize_model, set_activations

    with pytest.raises(ModelError, match="applies to quantized loads .*, and this load has no quantize"):
        load_model(files["Q4_K_M"], activations="int8")
    int8_model = quantize_model(create_model(CONFIG), "int8", group_size=-1)  # one scale per channel
    assert int8_model.quantization.activations is None
    with pytest.raises(ModelError, match="this model has none"):
        set_activations(int8_model, "int8")
    if not native.available():
        pytest.skip(f"the 8-bit activations are the native kernels': {native.reason()}")
    with pytest.raises(ModelError, match="must be one of 'int16', 'int8', got 'int4'"):
        load_model(files["Q4_K_M"], quantize="int4", activations="int4")


def test_lisp_loads_a_quantized_file_with_8_bit_activations(files, q41_file):
    from lispe_py import Interpreter
    from lispe_py.errors import LispEError
    from lispe_py.models import native

    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    with pytest.raises(LispEError, match='activations.*expected "int16" or "int8", got'):
        interp.eval(f'(torch_hf_load_model "{files["Q4_K_M"]}" {{"quantize":"int4" "activations":8}})')
    with pytest.raises(LispEError, match="applies to quantized loads"):
        interp.eval(f'(torch_hf_load_model "{q41_file}" {{"activations":"int8"}})')
    if not native.available():
        pytest.skip(f"the 8-bit activations are the native kernels': {native.reason()}")
    for path in (files["Q4_K_M"], q41_file):
        interp.eval(f'(setq m (torch_hf_load_model "{path}" {{"quantize":"int4" "activations":"int8"}}))')
        assert interp.eval("(torch_model_info m)")["activations"] == "int8"
        interp.eval(f'(setq e (torch_hf_load_model "{path}" {{"quantize":"int4"}}))')
        assert interp.eval("(torch_model_info e)")["activations"] == "int16"
