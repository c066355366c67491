"""Weight-only int8/int4 quantization: kernels vs float matmul, whole tiny models, GGUF blocks, SmolLM2 quality."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lispe_py.models import ModelError, create_model
from lispe_py.models.gguf_loader import GGUFTensor
from lispe_py.models import native
from lispe_py.models.quantize import (
    HAS_INT4_CPU_KERNEL,
    HAS_INT8_KERNEL,
    Int4Linear,
    Int8Linear,
    dequantize_int4,
    dequantize_int8_groups,
    default_int8_groups,
    gptq_int8,
    int4_from_gguf,
    int8_from_gguf,
    int8_group_params,
    layer_kernel,
    quantize_int4,
    quantize_int8,
    quantize_int8_groups,
    quantize_model,
    quantized_layers,
)

TINY = {"arch": "llama", "vocab_size": 256, "hidden_size": 128, "num_layers": 2, "num_heads": 4,
        "num_kv_heads": 2, "intermediate_size": 256, "max_position_embeddings": 128, "seed": 3,
        "tie_word_embeddings": True}


def _weights(n: int, k: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 0.05


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# ----- per-layer numerics -----

def test_int8_quantization_error_is_within_half_a_step():
    w = _weights(64, 96)
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and scale.shape == (64,)
    err = (q.float() * scale[:, None] - w).abs()
    assert bool((err <= scale[:, None] / 2 + 1e-7).all())


@pytest.mark.parametrize("group", [32, 64, 128])
def test_int8_group_quantization_error_is_within_half_a_step(group):
    w = _weights(48, 256, seed=group) + torch.linspace(-0.2, 0.3, 256)  # groups off centre
    q, scale, offset = quantize_int8_groups(w, group)
    assert q.dtype == torch.int8 and scale.shape == offset.shape == (48, 256 // group)
    assert torch.equal(scale.half().float(), scale) and torch.equal(offset.half().float(), offset)  # float16 fits
    err = (dequantize_int8_groups(q, scale, offset) - w).abs().reshape(48, 256 // group, group)
    assert bool((err <= scale[..., None] * 0.55 + 1e-7).all())  # half a step, plus the float16 offset
    # finer than one scale per row: a group spans less than the whole row
    q8, s8 = quantize_int8(w)
    assert (dequantize_int8_groups(q, scale, offset) - w).abs().mean() < 0.7 * (q8.float() * s8[:, None] - w).abs().mean()


def test_int8_group_params_keep_float32_where_float16_would_lose_precision():
    tiny = _weights(8, 64) * 1e-4  # scales below float16's normal range
    s, o = int8_group_params(tiny, 32)
    assert not torch.equal(s.half().float(), s)
    far = _weights(8, 64) * 1e-2 + 1.0  # |offset| of ~10^4 scales: float16 would move it by several
    s, o = int8_group_params(far, 32)
    assert not torch.equal(o.half().float(), o)
    for w in (tiny, far):
        q, s, o = quantize_int8_groups(w, 32)
        bound = s.repeat_interleave(32, 1) / 2 + 2e-7 * w.abs()  # half a step + float32 rounding
        assert bool(((dequantize_int8_groups(q, s, o) - w).abs() <= bound).all())
    zero = torch.zeros(4, 64)  # constant groups: exact
    assert torch.equal(dequantize_int8_groups(*quantize_int8_groups(zero, 32)), zero)


@pytest.mark.parametrize("group", [32, 64, 128])
def test_int4_quantization_error_is_within_half_a_step(group):
    w = _weights(48, 256, seed=group)
    q, scale, zero = quantize_int4(w, group)
    assert int(q.max()) <= 15 and int(q.min()) >= 0 and scale.shape == (48, 256 // group)
    err = (dequantize_int4(q, scale, zero) - w).abs().reshape(48, 256 // group, group)
    assert bool((err <= scale[..., None] / 2 + 1e-6).all())


@pytest.mark.parametrize("compute", [torch.float32, torch.bfloat16])
def test_int8_layer_matches_float_matmul(compute):
    lin = nn.Linear(96, 64, bias=True)
    layer = Int8Linear.from_linear(lin, compute)
    x = torch.randn(3, 5, 96)
    ref = x @ layer.dequantized_weight().t() + lin.bias
    y = layer(x)
    assert y.shape == (3, 5, 64) and y.dtype == torch.float32
    assert _rel(y, ref) < (1e-5 if compute == torch.float32 else 1e-2)
    assert _rel(y, lin(x).detach()) < 2e-2  # and close to the unquantized layer


def test_int8_kernel_and_reference_path_agree(kernels):
    if kernels == "torch" and not HAS_INT8_KERNEL:
        pytest.skip("torch has no _weight_int8pack_mm")
    layer = Int8Linear.from_linear(nn.Linear(96, 64, bias=False), torch.float32)
    assert layer_kernel(layer) == kernels
    x = torch.randn(4, 96)
    kernel = layer(x)
    layer.use_kernel = False
    assert layer_kernel(layer) == "reference"
    assert torch.allclose(kernel, layer(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("compute", [torch.float32, torch.bfloat16])
def test_int4_layer_matches_float_matmul(group, compute, kernels):
    lin = nn.Linear(256, 64, bias=True)
    layer = Int4Linear.from_linear(lin, group, compute)
    assert layer.use_kernel == (kernels == "native" or HAS_INT4_CPU_KERNEL)
    q, scale, zero = quantize_int4(lin.weight.detach(), group)
    w = dequantize_int4(q, scale.to(compute).float(), zero.to(compute).float())
    x = torch.randn(2, 3, 256)
    y = layer(x)
    assert y.shape == (2, 3, 64)
    # the native kernel rounds x to 16 bits per block of 32 (relative error ~1e-5), torch's to bfloat16
    # where compute is bfloat16
    tolerance = 1e-4 if kernels == "native" else (1e-5 if compute == torch.float32 else 1e-2)
    assert _rel(y, x @ w.t() + lin.bias) < tolerance
    assert _rel(y, lin(x).detach()) < 0.15  # 4 bits: close to the float layer, not equal


@pytest.mark.skipif(not HAS_INT4_CPU_KERNEL, reason="torch has no CPU int4 kernel")
def test_int4_kernel_uses_the_gguf_zero_point_convention(torch_kernels):
    # w = (q - 8) * scale + zero: the weight seen through the kernel equals our dequantization exactly.
    q = torch.randint(0, 16, (32, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    scale, zero = torch.rand(32, 2) * 0.1 + 0.01, torch.randn(32, 2) * 0.1
    layer = Int4Linear(q, scale, zero, None, 32, torch.float32)
    assert layer.use_kernel
    assert torch.allclose(layer.dequantized_weight(), dequantize_int4(q, scale, zero), atol=1e-6)


@pytest.mark.skipif(not HAS_INT4_CPU_KERNEL, reason="torch has no CPU int4 kernel")
@pytest.mark.parametrize("n, k", [(16, 64), (48, 32), (576, 1536), (1024, 96)])
def test_int4_kernel_layout_unpacks_exactly(n, k):
    from lispe_py.models.quantize import _int4_sources, _int4_sources_probe, _pack_int4, _unpack_int4

    cpu = torch.device("cpu")
    q = torch.randint(0, 16, (n, k), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)
    assert torch.equal(_pack_int4(q, "cpu"), packed)
    assert torch.equal(_unpack_int4(packed, "cpu", n, k), q[:, 0::2] | (q[:, 1::2] << 4))
    full_lo, full_hi = _int4_sources_probe("cpu", n, k, cpu)  # tiled sources = those of packing every index
    lo, hi = _int4_sources("cpu", n, k, cpu)
    assert torch.equal(lo, full_lo) and torch.equal(hi, full_hi)


@pytest.mark.skipif(not HAS_INT4_CPU_KERNEL, reason="torch has no CPU int4 kernel")
def test_int4_layer_leaving_the_cpu_drops_the_kernel_layout(torch_kernels):
    lin = nn.Linear(64, 32, bias=False)
    layer = Int4Linear.from_linear(lin, 32, torch.float32)
    assert layer.use_kernel
    x = torch.randn(3, 64)
    before, weight = layer(x), layer.dequantized_weight()
    layer.to("cpu")  # stays on the CPU: keeps the kernel and its layout
    assert layer.use_kernel and torch.equal(layer(x), before)
    layer.to("meta")  # another device: two values per byte, which every device's reference path reads
    assert not layer.use_kernel and layer.qweight.shape == (32, 32) and layer.qweight.device.type == "meta"
    ref = Int4Linear.from_linear(lin, 32, torch.float32)
    ref._apply(lambda t: t)  # a no-op move keeps everything
    assert ref.use_kernel and torch.equal(ref.dequantized_weight(), weight)


def test_int8_kernel_only_where_torch_has_one():
    from lispe_py.models.quantize import int8_kernel_on

    assert int8_kernel_on("cpu") == HAS_INT8_KERNEL
    assert not int8_kernel_on("meta")


def test_int4_reference_path_for_shapes_the_kernel_refuses(torch_kernels):
    lin = nn.Linear(64, 24, bias=False)  # out_features % 16 != 0: the CPU kernel cannot pack it
    layer = Int4Linear.from_linear(lin, 32, torch.float32)
    assert not layer.use_kernel
    q, scale, zero = quantize_int4(lin.weight.detach(), 32)
    x = torch.randn(3, 64)
    assert torch.allclose(layer(x), x @ dequantize_int4(q, scale, zero).t(), atol=1e-5)


def _correlated_inputs(n: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 16, generator=g) @ torch.randn(16, k, generator=g) + 0.05 * torch.randn(n, k, generator=g)


def test_gptq_int8_lowers_the_output_error_on_its_inputs_with_the_same_scales():
    w = _weights(64, 96, seed=4)
    x = _correlated_inputs(500, 96)
    q, scale, offset = gptq_int8(w, x.t() @ x)
    q0, scale0 = quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == (64, 96) and torch.equal(scale, scale0) and offset is None
    ref = x @ w.t()
    gptq_err = _rel(x @ (q.float() * scale[:, None]).t(), ref)
    rtn_err = _rel(x @ (q0.float() * scale0[:, None]).t(), ref)
    assert gptq_err < 0.5 * rtn_err, (gptq_err, rtn_err)
    # a blind spot (an input column that is always zero) gets weight 0, the rest stays finite
    x[:, 5] = 0
    q, _, _ = gptq_int8(w, x.t() @ x)
    assert int(q[:, 5].abs().max()) == 0


def test_gptq_int8_groups_keep_their_scales_and_offsets_and_lower_the_output_error():
    w = _weights(64, 96, seed=6)
    x = _correlated_inputs(500, 96)
    q, scale, offset = gptq_int8(w, x.t() @ x, group_size=32)
    q0, scale0, offset0 = quantize_int8_groups(w, 32)
    assert q.dtype == torch.int8 and torch.equal(scale, scale0) and torch.equal(offset, offset0)
    ref = x @ w.t()
    gptq_err = _rel(x @ dequantize_int8_groups(q, scale, offset).t(), ref)
    rtn_err = _rel(x @ dequantize_int8_groups(q0, scale0, offset0).t(), ref)
    assert gptq_err < 0.7 * rtn_err, (gptq_err, rtn_err)


def test_quantize_model_with_calibration_fits_every_int8_layer():
    from lispe_py.generation import generate

    model = create_model(TINY)
    ids = [[(5 * i + 3 + j) % 256 for i in range(60 + j)] for j in range(3)]  # a batch cut to 60 tokens
    quantize_model(model, "int8", calibration=ids)
    q = model.quantization
    assert (q.method, q.calibration_tokens, q.layers, q.lm_head) == ("gptq", 180, 9, "int8")
    assert all(type(m) is Int8Linear for _, m in quantized_layers(model))
    out = generate(model, [3, 17, 29], {"strategy": "greedy", "max_length": 6, "min_new_tokens": 6})
    with torch.inference_mode():
        full = model.forward_full(out[None, :-1])[0]
    assert out[3:].tolist() == full[2:].argmax(-1).tolist()


def test_self_calibration_fits_within_the_context():
    model = create_model(dict(TINY, max_position_embeddings=24, num_layers=1))
    quantize_model(model, "int8", calibration="self")
    assert model.quantization.method == "gptq" and 0 < model.quantization.calibration_tokens <= 4 * 24
    model = quantize_model(create_model(TINY), "int8", calibration=list(range(40)))  # one flat sequence
    assert model.quantization.calibration_tokens == 40


def test_bad_calibration_requests():
    with pytest.raises(ModelError, match="int8 only"):
        quantize_model(create_model(TINY), "int4", calibration=[1, 2, 3])
    for bad in ("yes", [], [1, "a"], [[1, 2], []], [True]):
        with pytest.raises(ModelError, match="calibration must be"):
            quantize_model(create_model(TINY), "int8", calibration=bad)


# ----- whole models -----

def test_quantize_model_replaces_every_linear_and_records_it():
    model = create_model(TINY)
    ref_logits = model.forward_full(torch.tensor([[1, 5, 9, 33, 70, 2]]))
    quantize_model(model, "int4", group_size=64)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert type(model.layers[0].attn.wqkv) is Int4Linear and type(model.layers[0].mlp.w_gate_up) is Int4Linear
    assert len(list(quantized_layers(model))) == 2 * 4 + 1
    assert model.quantization.mode == "int4" and model.quantization.group_size == 64
    assert model.quantization.lm_head == "int8" and model.quantization.layers == 9  # int8 head by default
    assert type(model.lm_head) is Int8Linear
    assert model.dtype == torch.float32  # the tied embedding still answers for the model's dtype
    logits = model.forward_full(torch.tensor([[1, 5, 9, 33, 70, 2]]))
    assert logits.dtype == torch.float32 and _rel(logits, ref_logits) < 0.2
    with pytest.raises(ModelError, match="already quantized"):
        quantize_model(model, "int8")


def test_quantized_model_decodes_with_the_cache_like_its_full_forward():
    from lispe_py.generation import generate

    model = quantize_model(create_model(TINY), "int8", lm_head=False)
    assert isinstance(model.lm_head, nn.Linear) and model.quantization.lm_head is None
    ids = [3, 17, 29, 41]
    out = generate(model, ids, {"strategy": "greedy", "max_length": 8, "min_new_tokens": 8})
    with torch.inference_mode():
        full = model.forward_full(out[None, :-1])[0]
    assert out[len(ids):].tolist() == full[len(ids) - 1:].argmax(-1).tolist()


def test_int8_quantized_model_stays_close_to_float():
    model = create_model(TINY)
    x = torch.tensor([[4, 8, 15, 16, 23, 42]])
    ref = model.forward_full(x)
    quantize_model(model, "int8", compute_dtype=torch.float32)
    assert _rel(model.forward_full(x), ref) < 0.02


@pytest.mark.parametrize("lm_head", [True, "auto", "int4"])
def test_untied_head_is_quantized(lm_head):
    model = create_model(dict(TINY, tie_word_embeddings=False))
    x = torch.tensor([[4, 8, 15, 16, 23, 42]])
    ref = model.forward_full(x)
    quantize_model(model, "int8", lm_head=lm_head)
    assert type(model.lm_head) is (Int4Linear if lm_head == "int4" else Int8Linear)
    assert model.dtype == torch.float32 and model.device.type == "cpu"  # read from the embedding table
    assert model.quantization.lm_head == ("int4" if lm_head == "int4" else "int8")
    assert _rel(model.forward_full(x), ref) < (0.15 if lm_head == "int4" else 0.05)  # 4 bits: close, not equal
    model.to(torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.forward_full(x).shape == ref.shape


def test_bad_quantization_requests():
    with pytest.raises(ModelError, match="unknown quantization"):
        quantize_model(create_model(TINY), "int3")
    with pytest.raises(ModelError, match="group_size"):
        quantize_model(create_model(TINY), "int4", group_size=48)
    with pytest.raises(ModelError, match="lm_head"):
        quantize_model(create_model(TINY), "int8", lm_head="fp8")


def test_int4_group_falls_back_to_one_that_divides_the_layer():
    model = quantize_model(create_model(dict(TINY, hidden_size=96, intermediate_size=256)), "int4", group_size=128)
    assert model.layers[0].attn.wqkv.group_size == 32  # 96 = 3 * 32
    assert model.layers[0].mlp.w_down.group_size == 128


# ----- GGUF blocks -----

def _gguf_blocks(kind: str, n: int, k: int, seed: int) -> tuple[GGUFTensor, np.ndarray]:
    """Random Q8_0 / Q4_0 / Q4_1 blocks of an [n, k] matrix (d, then m for Q4_1, then the values)."""
    type_id, size, header = {"Q8_0": (8, 34, 2), "Q4_0": (2, 18, 2), "Q4_1": (3, 20, 4)}[kind]
    rng = np.random.default_rng(seed)
    blocks = np.zeros((n * k // 32, size), dtype=np.uint8)
    blocks[:, 0:2] = (rng.random(len(blocks)) * 0.05 + 0.001).astype(np.float16).view(np.uint8).reshape(-1, 2)
    if kind == "Q4_1":
        blocks[:, 2:4] = (rng.standard_normal(len(blocks)) * 0.3).astype(np.float16).view(np.uint8).reshape(-1, 2)
    blocks[:, header:] = rng.integers(0, 256, (len(blocks), size - header), dtype=np.uint8)
    return GGUFTensor("w", (n, k), type_id, blocks.reshape(-1)), blocks


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1"])
def test_q4_blocks_become_int4_exactly(kind):
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    t, blocks = _gguf_blocks(kind, 48, 96, seed=len(kind))
    q, scale, zero, exact = int4_from_gguf(t, 32)
    assert exact and q.dtype == torch.uint8 and scale.shape == (48, 3)
    ref = torch.from_numpy(dequantize(blocks.reshape(-1), GGMLQuantizationType[kind]).reshape(48, 96)).float()
    assert torch.equal(dequantize_int4(q, scale, zero), ref)


def test_other_group_sizes_requantize_gguf_blocks():
    t, blocks = _gguf_blocks("Q4_1", 16, 128, seed=2)
    q, scale, zero, exact = int4_from_gguf(t, 64)
    assert not exact and scale.shape == (16, 2)
    exact_q = dequantize_int4(*int4_from_gguf(t, 32)[:3])
    assert (dequantize_int4(q, scale, zero) - exact_q).abs().max() <= scale.max() / 2 + 1e-6


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q4_1"])
def test_gguf_blocks_become_int8_groups_exactly(kind):
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    t, blocks = _gguf_blocks(kind, 24, 128, seed=len(kind))
    q, scale, offset, exact = int8_from_gguf(t, 32)
    assert exact and q.dtype == torch.int8 and scale.shape == offset.shape == (24, 4)
    ref = torch.from_numpy(dequantize(blocks.reshape(-1), GGMLQuantizationType[kind]).reshape(24, 128)).float()
    assert torch.equal(dequantize_int8_groups(q, scale, offset), ref)
    layer = Int8Linear(q, scale, None, torch.float32, offset, 32)
    assert layer.scales_and_offsets.dtype == torch.float16  # the file's float16 numbers, 4 bytes per group
    assert torch.equal(layer.dequantized_weight(), ref)
    # groups of 64 re-quantize (not exact), within half a step of the exact weights
    q64, s64, o64, exact64 = int8_from_gguf(t, 64)
    assert not exact64 and s64.shape == (24, 2)
    assert (dequantize_int8_groups(q64, s64, o64) - ref).abs().max() <= s64.max() * 0.55 + 1e-6


# ----- SmolLM2: direct GGUF load, quality -----

TEXT_TOKENS = 256
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Explain photosynthesis to a ten-year-old.",
    "List three tips for learning a new language.",
    "Why is the sky blue?",
]


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    """(path, float32 model, its perplexity on the fixed text, its greedy continuations, the text ids)."""
    from pathlib import Path

    from lispe_py.models import load_model

    path = smollm2_gguf
    ref = load_model(path)
    text = (Path(__file__).resolve().parent.parent / "bench" / "data" / "perplexity.txt").read_text()
    ids = ref.tokenizer.encode(text)[:TEXT_TOKENS]
    return path, ref, _ppl(ref, ids), [_greedy(ref, p) for p in PROMPTS], ids


def _ppl(model, ids) -> float:
    from lispe_py.generation import sequence_logprobs

    return math.exp(-sequence_logprobs(model, ids).mean().item())


def _greedy(model, prompt: str, n: int = 20) -> list[int]:
    from lispe_py.generation import generate

    ids = model.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    out = generate(model, ids, {"strategy": "greedy", "max_length": n, "min_new_tokens": n})
    return out[len(ids):].tolist()


@pytest.mark.smollm2
@pytest.mark.parametrize("group", [None, -1, 64])
def test_smollm2_int8_perplexity(smollm2, group):
    from lispe_py.models import load_model

    path, ref, ppl_ref, _, ids = smollm2
    model = load_model(path, quantize="int8", group_size=group)
    if group is not None:
        assert model.quantization.group_size == (None if group == -1 else group)
        assert model.quantization.exact_from_gguf == 0  # per channel / groups of 64 re-quantize the blocks
    ppl = _ppl(model, ids)
    assert ppl < ppl_ref * 1.03, f"int8 perplexity {ppl:.3f} vs float32 {ppl_ref:.3f}"


@pytest.mark.smollm2
def test_gguf_int4_load_holds_the_files_weights_exactly(smollm2, kernels):
    # float32 compute: the int4 layers built from Q4_1 blocks multiply by exactly the file's weights, so
    # with torch's kernel (float32 activations) the logits equal the float model's (q/k row permutation
    # and q/k/v, gate/up fusion included); the native kernel rounds activations to 16 bits per block
    # of 32, which moves logits of ~10-20 by ~0.02.
    from lispe_py.models.quantize import load_gguf_quantized

    path, ref = smollm2[:2]
    model = load_gguf_quantized(path, "int4", lm_head=False, compute_dtype=torch.float32)
    q = model.quantization
    assert q.source == "gguf" and q.exact_from_gguf == q.layers == 4 * ref.config.num_layers
    assert model.tokenizer is not None and model.special_tokens == ref.special_tokens
    x = torch.tensor([ref.tokenizer.encode("The lighthouse keeper wrote")])
    with torch.inference_mode():
        diff = (model.forward_full(x) - ref.forward_full(x)).abs().max().item()
    assert diff < (0.05 if kernels == "native" else 1e-3)


NEEDS_INT8_GROUPS = pytest.mark.skipif(not default_int8_groups("cpu"), reason=f"int8 groups of 32 are the default "
                                       f"only where the native kernel runs ({native.reason()})")


@pytest.mark.smollm2
@pytest.mark.parametrize("mode", [pytest.param("int8", marks=NEEDS_INT8_GROUPS), "int4"])
def test_smollm2_quality_perplexity_and_greedy_agreement(smollm2, mode):
    # int8 groups of 32 hold the file's Q4_1 (layers) and Q8_0 (tied head) blocks exactly, as int4
    # holds the Q4_1 ones: both multiply by the float model's weights, so greedy text follows it.
    # (int8 per channel, re-rounding those weights, kept perplexity but matched 3 of 8 prompts.)
    from lispe_py.models import load_model

    path, ref, ppl_ref, greedy_ref, ids = smollm2
    model = load_model(path, quantize=mode)
    q = model.quantization
    assert q.source == "gguf" and q.lm_head == "int8" and q.group_size == 32
    assert q.exact_from_gguf == q.layers  # head included: its Q8_0 blocks are int8 groups of 32
    ppl = _ppl(model, ids)
    assert ppl < ppl_ref * 1.03, f"{mode} perplexity {ppl:.3f} vs float32 {ppl_ref:.3f}"
    same = sum(_greedy(model, p) == g for p, g in zip(PROMPTS, greedy_ref))
    assert same >= len(PROMPTS) // 2 + 1, f"{mode}: {same}/{len(PROMPTS)} prompts agree with float32 for 20 tokens"


@pytest.mark.smollm2
@pytest.mark.slow
def test_smollm2_int8_gptq_keeps_perplexity(smollm2):
    # GPTQ rounding, per channel (groups of 32 already hold this file's blocks exactly, leaving it
    # nothing to fit), on the model's own sampled answers (calibration="self", ~660 tokens; minutes of
    # CPU) keeps perplexity within the 3% bound. Its greedy agreement with float32 is not reliably
    # "most prompts" (5/8 in a bench run, 2/5 here in one CI run), so it is not asserted.
    from lispe_py.models.quantize import load_gguf_quantized

    path, ref, ppl_ref, greedy_ref, ids = smollm2
    model = load_gguf_quantized(path, "int8", group_size=-1, calibration="self")
    q = model.quantization
    assert (q.mode, q.method, q.lm_head, q.group_size) == ("int8", "gptq", "int8", None) and q.calibration_tokens > 500
    ppl = _ppl(model, ids)
    assert ppl < ppl_ref * 1.03, f"int8 gptq perplexity {ppl:.3f} vs float32 {ppl_ref:.3f}"
