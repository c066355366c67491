"""The native AVX2 int8/int4 CPU kernels (lispe_py/models/kernels.cpp, built by lispe_py/models/native.py):
their numbers against the float formulas, their torch-operator behaviour, the layers and models that use
them, and the fallbacks when they cannot be built."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lispe_py.models import create_model, native
from lispe_py.models.quantize import (
    Int4Linear,
    Int8Linear,
    _pack_int4,
    _unpack_int4,
    layer_kernel,
    model_kernels,
    quantize_int4,
    quantize_model,
)
from test_quantize import TINY  # noqa: E402  (tests/ is on the path, as for test_cuda)


needs_native = pytest.mark.skipif(not native.available(), reason=f"no native kernels: {native.reason()}")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _int4_reference(x, v, sz, group):
    """x @ w.T for w = (v - 8) * scale + zero per group, in float64."""
    n, k = v.shape
    s = sz.double()
    w = (v.double().view(n, k // group, group) - 8) * s[..., 0:1] + s[..., 1:2]
    return x.double() @ w.view(n, k).t()


def _block_planes(sz, group):
    """[N, K/G, 2] (scale, zero) per group -> the kernel's [N, 2, K/32] per block of 32."""
    return sz.permute(0, 2, 1).repeat_interleave(group // 32, 2).contiguous()


def test_native_kernels_build_wherever_a_compiler_and_avx2_are_there():
    # A broken build must fail here rather than quietly leave torch's kernels in place.
    if native._cpu_fits() or native.compiler() is None or not native.enabled_by_env():
        pytest.skip("this machine cannot build them (no AVX2, no compiler, or switched off)")
    assert native.available(), native.reason()
    assert native.reason() is None
    assert native.library_path(native.compiler()).exists()


@needs_native
@pytest.mark.parametrize("rows", [1, 2, 3, 7, 8, 9, 17, 64])
@pytest.mark.parametrize("k", [96, 100, 576])  # 100: an 8-column tail and a 4-column tail
@pytest.mark.parametrize("scale_dtype", [torch.float32, torch.bfloat16])
def test_int8_op_is_the_float_matmul(rows, k, scale_dtype):
    g = _gen(rows * k)
    x = torch.randn(rows, k, generator=g)
    q = torch.randint(-128, 128, (40, k), dtype=torch.int8, generator=g)
    scale = (torch.rand(40, generator=g) * 0.01).to(scale_dtype)
    y = torch.ops.lispe.int8_linear(x, q, scale)
    ref = (x.double() @ q.double().t()) * scale.double()
    assert y.dtype == torch.float32 and y.shape == (rows, 40)
    assert ((y.double() - ref).abs().max() / ref.abs().max()).item() < 1e-6


@needs_native
@pytest.mark.parametrize("rows", [1, 2, 5, 8, 9, 33])
@pytest.mark.parametrize("k, group", [(576, 32), (416, 32), (448, 64), (384, 128), (576, 192), (96, 96),
                                      (576, 16), (416, 16), (96, 16)])  # 16: Q6_K sub-blocks; runs of 4 blocks + tails
@pytest.mark.parametrize("so_dtype", [torch.float32, torch.float16])
def test_int8_block_op_is_the_float_matmul(rows, k, group, so_dtype):
    # 576 / 416 columns: 18 / 13 blocks of 32, runs of 8 offsets and a tail; 192 and 96: groups of 6
    # and 3 blocks
    g = _gen(rows * k + group)
    x = torch.randn(rows, k, generator=g)
    x[0, :32] *= 1000  # float32 activations: a large block costs the others nothing
    q = torch.randint(-128, 128, (40, k), dtype=torch.int8, generator=g)
    so = torch.stack((torch.rand(40, k // group, generator=g) * 0.01, torch.randn(40, k // group, generator=g) * 0.1), 1)
    so = so.to(so_dtype).contiguous()
    y = torch.ops.lispe.int8_block_linear(x, q, so)
    w = q.double().view(40, k // group, group) * so.double()[:, 0, :, None] + so.double()[:, 1, :, None]
    ref = x.double() @ w.view(40, k).t()
    assert y.dtype == torch.float32 and y.shape == (rows, 40)
    scale = (x.double().abs() @ w.view(40, k).abs().t()).max()
    assert ((y.double() - ref).abs().max() / scale).item() < 1e-6


@needs_native
@pytest.mark.parametrize("group, bits", [(16, 32), (32, 32), (64, 32), (32, 8), (32, 16)])  # 8, 16 bits: groups of 32
def test_int8_block_op_rows_equal_rows_alone(group, bits):
    """A row gets the same bits alone as in a batch of any size (a server's request the same as a lone
    generate): the float32 path scales the weights before the rows' FMAs whatever the row count."""
    g = _gen(group + bits)
    k = 576 if group != 64 else 448
    x = torch.randn(11, k, generator=g)
    q = torch.randint(-128, 128, (72, k), dtype=torch.int8, generator=g)
    so = torch.randn(72, 2, k // group, generator=g).half().contiguous()
    alone = torch.cat([torch.ops.lispe.int8_block_linear(x[i:i + 1], q, so, bits) for i in range(11)])
    assert torch.equal(torch.ops.lispe.int8_block_linear(x, q, so, bits), alone)
    for rows in (2, 3, 5, 8):
        assert torch.equal(torch.ops.lispe.int8_block_linear(x[:rows], q, so, bits), alone[:rows])


def _int8_block_case(rows: int, k: int, so_dtype: torch.dtype, seed: int):
    """x [rows, k] (one block 1000x the others), int8 weights [40, k] with rows at the extremes -128 and
    127 (the 8-bit path's +128 offset), scales and offsets [40, 2, k / 32] in so_dtype."""
    g = _gen(seed)
    n = 40
    x = torch.randn(rows, k, generator=g)
    x[0, :32] *= 1000
    q = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=g)
    q[0] = -128  # the offset's extremes
    q[1] = 127
    so = torch.stack((torch.rand(n, k // 32, generator=g) * 0.01, torch.randn(n, k // 32, generator=g) * 0.1), 1)
    return x, q, so.to(so_dtype).contiguous()


def _int8_block_product(x, q, so, code: int | None):
    """(the float64 product of the weights with x rounded per block of 32 to round(x * code / top) * top
    / code (code None: x as it is), plus the offsets times the exact block sums of x; the magnitude of
    the products, for relative errors)."""
    rows, k = x.shape
    n = q.shape[0]
    xb = x.view(rows, k // 32, 32)
    xq = x.double()
    if code is not None:
        top = xb.abs().amax(-1, keepdim=True)
        xq = (torch.round(xb * (code / top)).double() * (top.double() / code)).view(rows, k)
    s = so.double()
    ref = xq @ (q.double().view(n, k // 32, 32) * s[:, 0, :, None]).view(n, k).t() + xb.double().sum(-1) @ s[:, 1].t()
    scale = x.double().abs() @ (q.double().abs().view(n, k // 32, 32) * s[:, 0, :, None] + s[:, 1, :, None].abs()).view(n, k).t()
    return ref, scale


@needs_native
@pytest.mark.parametrize("rows", [1, 3, 8, 9, 17])
@pytest.mark.parametrize("k", [576, 416, 256, 96])  # runs of 8 blocks and tails of 2, 5, 0, 3 blocks
@pytest.mark.parametrize("so_dtype", [torch.float32, torch.float16])
def test_int8_block_op_with_8_bit_activations_is_exact_on_the_rounded_activations(rows, k, so_dtype):
    """bits 8: x rounded per block of 32 to round(x * 127 / top) * top / 127, the integer products
    exact (the weights offset by 128 for vpdpbusd and the offset taken off again), the offsets times
    the exact block sums of x: the float result up to float32 rounding; rows alone as in a batch."""
    x, q, so = _int8_block_case(rows, k, so_dtype, rows * k + 7)
    y = torch.ops.lispe.int8_block_linear(x, q, so, 8)
    ref, scale = _int8_block_product(x, q, so, 127)
    assert ((y.double() - ref).abs() / scale).max().item() < 1e-6
    float_y = torch.ops.lispe.int8_block_linear(x, q, so)  # the default: float32 activations
    assert not torch.allclose(y, float_y, rtol=0, atol=1e-4)  # really rounded
    alone = torch.cat([torch.ops.lispe.int8_block_linear(x[i:i + 1], q, so, 8) for i in range(rows)])
    assert torch.equal(alone, y)


@needs_native
@pytest.mark.parametrize("rows", [1, 2, 8, 9])
@pytest.mark.parametrize("k", [576, 512, 480, 32])  # runs of 8 blocks and tails of 2, 0, 7 and 1 blocks
@pytest.mark.parametrize("so_dtype", [torch.float32, torch.float16])
def test_int8_block_op_with_16_bit_activations_is_the_product_of_the_rounded_activations(rows, k, so_dtype):
    """bits 16 (int8 groups of 32, the default width of the int8 layers that hold GGUF Q8_0/Q4_0/Q4_1
    blocks): x rounded per block of 32 to round(x * 32767 / top) * top / 32767, the integer products
    exact (the weights at their extremes -128 and 127), the offsets times the exact block sums of x:
    the float result up to float32 rounding; much closer to float32 activations than 8 bits; rows
    alone as in a batch."""
    x, q, so = _int8_block_case(rows, k, so_dtype, rows * k + 16)
    y = torch.ops.lispe.int8_block_linear(x, q, so, 16)
    ref, scale = _int8_block_product(x, q, so, 32767)
    assert ((y.double() - ref).abs() / scale).max().item() < 1e-6
    exact, _ = _int8_block_product(x, q, so, None)
    err16 = ((y.double() - exact).abs() / scale).max().item()
    err8 = ((torch.ops.lispe.int8_block_linear(x, q, so, 8).double() - exact).abs() / scale).max().item()
    assert 0 < err16 < 1e-4 and err16 < err8 / 50  # rounded, and ~256x finer than 8 bits
    alone = torch.cat([torch.ops.lispe.int8_block_linear(x[i:i + 1], q, so, 16) for i in range(rows)])
    assert torch.equal(alone, y)


@needs_native
@pytest.mark.parametrize("rows", [1, 2, 5, 8, 9, 33])
@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("sz_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bits", [16, 8])
def test_int4_op_is_the_float_matmul_up_to_the_activation_rounding(rows, group, sz_dtype, bits):
    g = _gen(rows + group)
    n, k = 48, {32: 416, 64: 448, 128: 384}[group]  # 13, 14, 12 blocks of 32: runs of 8 blocks and a tail
    x = torch.randn(rows, k, generator=g)
    x[0, :32] *= 1000  # a block with an outlier: the other blocks keep their own scale
    v = torch.randint(0, 16, (n, k), dtype=torch.uint8, generator=g)
    sz = (torch.randn(n, k // group, 2, generator=g) * 0.05).to(sz_dtype)
    y = torch.ops.lispe.int4_linear(x, _pack_int4(v, "native"), _block_planes(sz, group), bits)
    ref = _int4_reference(x, v, sz, group)
    # each x is rounded to 1/65534 (8 bits: 1/254) of its block's largest |x|: the error is bounded per block
    w = ((v.double().view(n, k // group, group) - 8) * sz.double()[..., 0:1] + sz.double()[..., 1:2]).view(n, k)
    block_max = x.double().abs().view(rows, k // 32, 32).amax(-1).repeat_interleave(32, 1)

    def bound(b):
        return (block_max / (65534 if b == 16 else 254)) @ w.abs().t() + 1e-4 * ref.abs()

    assert bool(((y.double() - ref).abs() <= bound(bits)).all())
    if bits == 8:  # really coarser than 16 bits (not a 16-bit product under another name)
        assert not bool(((y.double() - ref).abs() <= bound(16)).all())
    if bits == 16:  # the default width
        assert torch.equal(torch.ops.lispe.int4_linear(x, _pack_int4(v, "native"), _block_planes(sz, group)), y)


@needs_native
@pytest.mark.parametrize("rows", [1, 3, 8, 9])
@pytest.mark.parametrize("k", [352, 576, 480, 288])  # tails of 3, 2 (SmolLM2's 576), 7 and 1 blocks
def test_int4_op_with_8_bit_activations_is_exact_on_the_rounded_activations(rows, k):
    """The integers are exact: the result is the float product of the weights with x rounded per block
    of 32 to round(x * 127 / top) * top / 127 (top: the block's largest |x|), plus the constant part on
    the exact block sums of x, up to float32 rounding of the scaled block sums. The last K / 32 % 8
    blocks run in pairs (and an odd one alone), their activations stored in another order."""
    g = _gen(50 + rows + k)
    n = 40
    x = torch.randn(rows, k, generator=g)
    v = torch.randint(0, 16, (n, k), dtype=torch.uint8, generator=g)
    sz = torch.randn(n, k // 32, 2, generator=g) * 0.05
    y = torch.ops.lispe.int4_linear(x, _pack_int4(v, "native"), _block_planes(sz, 32), 8)
    xb = x.view(rows, k // 32, 32)
    top = xb.abs().amax(-1, keepdim=True)
    xq = torch.round(xb * (127.0 / top)).double() * (top.double() / 127.0)  # float32 product, rounded half to even
    s = sz.double()
    ref = torch.einsum("mbj,nbj->mn", xq, v.double().view(n, k // 32, 32) * s[..., 0:1]) \
        + torch.einsum("mb,nb->mn", xb.double().sum(-1), s[..., 1] - 8 * s[..., 0])
    scale = (x.double().abs() @ ((v.double() - 8).abs().view(n, k // 32, 32) * s[..., 0:1].abs() + s[..., 1:2].abs()).view(n, k).t())
    assert ((y.double() - ref).abs() / scale).max().item() < 1e-6


@needs_native
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_int4_op_with_8_bit_activations_at_the_extremes(sign):
    """Every nibble 15 times activations at +-127 (alternating signs too): vpmaddubsw's int16 pair sums
    must not saturate (2 * 15 * 127), whichever instruction the build uses."""
    n, k = 16, 256
    q = torch.full((n, k // 2), 0xFF, dtype=torch.uint8)
    sz = torch.ones(n, 2, k // 32)
    x = torch.full((2, k), sign)
    x[1, ::2] = -sign
    y = torch.ops.lispe.int4_linear(x, q, sz, 8)
    ref = x.double() @ torch.full((n, k), 7.0 + 1.0, dtype=torch.float64).t()  # (15 - 8) * 1 + 1
    assert torch.allclose(y.double(), ref, atol=1e-3)


@needs_native
@pytest.mark.parametrize("bits", [16, 8])
@pytest.mark.parametrize("k", [416, 576, 480, 288, 512])  # tails of 5, 2, 7, 1 and 0 blocks
def test_int4_batch_rows_equal_rows_alone(bits, k):
    g = _gen(77 + k)
    x = torch.randn(11, k, generator=g)
    q = torch.randint(0, 255, (56, k // 2), dtype=torch.uint8, generator=g)
    sz = torch.randn(56, 2, k // 32, generator=g)
    alone = torch.cat([torch.ops.lispe.int4_linear(x[i:i + 1], q, sz, bits) for i in range(11)])
    assert torch.equal(torch.ops.lispe.int4_linear(x, q, sz, bits), alone)
    for rows in (2, 3, 5, 8):
        assert torch.equal(torch.ops.lispe.int4_linear(x[:rows], q, sz, bits), alone[:rows])


@needs_native
@pytest.mark.parametrize("shape", [(1, 1, 576), (2, 46, 576), (3, 100), (4, 7), (64,)])
def test_rms_norm_op_is_the_float_norm(shape):
    g = _gen(sum(shape))
    x, w = torch.randn(*shape, generator=g) * 3, torch.randn(shape[-1], generator=g)
    y = torch.ops.lispe.rms_norm(x, w, 1e-5)
    ref = x.double() * torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-5) * w.double()
    assert y.shape == x.shape and y.dtype == torch.float32
    assert ((y.double() - ref).abs().max() / ref.abs().max()).item() < 1e-6
    assert torch.allclose(y, F.rms_norm(x, (shape[-1],), w, 1e-5), rtol=1e-5, atol=1e-6)


@needs_native
@pytest.mark.parametrize("b, kv, r, s, d", [(1, 3, 3, 174, 64), (2, 2, 1, 5, 128), (1, 4, 2, 1, 64), (3, 1, 8, 33, 64)])
def test_decode_attention_op_is_softmax_attention(b, kv, r, s, d):
    g = _gen(b * s + d)
    q = torch.randn(b, kv, r, d, generator=g) * 2
    cache_k, cache_v = torch.randn(b + 1, kv, s + 7, d, generator=g) * 2, torch.randn(b + 1, kv, s + 7, d, generator=g)
    k, v = cache_k[:b, :, :s], cache_v[:b, :, :s]  # views of a larger cache, as in a decode step
    y = torch.ops.lispe.decode_attention(q, k, v, d ** -0.5)
    ref = torch.softmax(q.double() @ k.double().transpose(-1, -2) * d ** -0.5, -1) @ v.double()
    assert y.shape == (b, kv, r, d) and (y.double() - ref).abs().max().item() < 1e-5


@needs_native
@pytest.mark.parametrize("kv, r, s, d, starts", [(3, 3, 40, 64, [0, 5, 39]), (2, 1, 9, 128, [8, 0]),
                                                 (1, 8, 33, 64, [3, 32, 0, 17]), (4, 2, 1, 128, [0])])
def test_decode_attention_from_is_sdpa_with_a_left_padding_mask(kv, r, s, d, starts):
    b = len(starts)
    g = _gen(b * s + d)
    q = torch.randn(b, kv, r, d, generator=g) * 2
    cache_k, cache_v = torch.randn(b + 1, kv, s + 7, d, generator=g) * 2, torch.randn(b + 1, kv, s + 7, d, generator=g)
    k, v = cache_k[:b, :, :s], cache_v[:b, :, :s]
    first = torch.tensor(starts)
    y = torch.ops.lispe.decode_attention_from(q, k, v, d ** -0.5, first)
    mask = (torch.arange(s)[None, :] >= first[:, None])[:, None, None, :]  # row i sees slots starts[i]..
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask, scale=d ** -0.5)
    assert y.shape == (b, kv, r, d) and (y.double() - ref).abs().max().item() < 1e-5
    y0 = torch.ops.lispe.decode_attention_from(q, k, v, d ** -0.5, torch.zeros(b, dtype=torch.long))
    assert torch.equal(y0, torch.ops.lispe.decode_attention(q, k, v, d ** -0.5))


@needs_native
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_rope_attention_is_the_ops_it_fuses_bit_for_bit(d, per_row, padded):
    """lispe::rope_attention = apply_rope on q and k, the cache write at the last slot, then
    decode_attention(_from): the same bits, and the same cache afterwards."""
    from lispe_py.models.layers import apply_rope

    b, heads, kv, s, cap = 3, 8, 2, 11, 16
    g = _gen(5)
    qkv = torch.randn(b, (heads + 2 * kv) * d, generator=g)
    angles = torch.randn(b if per_row else 1, d // 2, generator=g)
    cos = torch.cat([angles.cos(), angles.cos()], -1)
    sin = torch.cat([-angles.sin(), angles.sin()], -1)
    cache = torch.randn(2, 4, kv, cap, d, generator=g)  # rows beyond b and slots beyond s stay untouched
    mine = cache.clone()
    starts = torch.tensor([0, 4, 10]) if padded else None
    scale = d ** -0.5
    # the op-by-op path, as Attention.forward runs it
    q = apply_rope(qkv[:, :heads * d].view(b, heads, d), cos.view(-1, 1, d), sin.view(-1, 1, d))
    k = apply_rope(qkv[:, heads * d:(heads + kv) * d].view(b, kv, d), cos.view(-1, 1, d), sin.view(-1, 1, d))
    cache[0, :b, :, s - 1] = k
    cache[1, :b, :, s - 1] = qkv[:, (heads + kv) * d:].view(b, kv, d)
    q = q.view(b, kv, heads // kv, d).contiguous()
    ks, vs = cache[0, :b, :, :s], cache[1, :b, :, :s]
    want = (torch.ops.lispe.decode_attention_from(q, ks, vs, scale, starts) if padded
            else torch.ops.lispe.decode_attention(q, ks, vs, scale)).reshape(b, heads * d)
    got = torch.ops.lispe.rope_attention(qkv, cos, sin, mine[0, :b, :, :s], mine[1, :b, :, :s], heads, scale, starts)
    assert torch.equal(got, want) and torch.equal(mine, cache)
    with pytest.raises(RuntimeError, match="rope_attention: qkv must be"):
        torch.ops.lispe.rope_attention(qkv[:, :-1].contiguous(), cos, sin, mine[0, :b, :, :s], mine[1, :b, :, :s],
                                       heads, scale, None)
    with pytest.raises(RuntimeError, match="starts"):
        torch.ops.lispe.rope_attention(qkv, cos, sin, mine[0, :b, :, :s], mine[1, :b, :, :s], heads, scale,
                                       torch.tensor([0, 0, s]))


@needs_native
def test_a_padded_batch_decode_step_attends_natively_and_agrees_with_sdpa():
    from lispe_py.models.layers import Attention

    model = quantize_model(create_model(dict(TINY, hidden_size=256, intermediate_size=512)), "int4")
    attns = [m for m in model.modules() if isinstance(m, Attention)]
    pads, slot = torch.tensor([0, 3, 7, 12]), 12
    model.setup_cache(4, 32)
    g = _gen(11)
    with torch.inference_mode():
        for a in attns:
            a.kv_cache.k.copy_(torch.randn(a.kv_cache.k.shape, generator=g))
            a.kv_cache.v.copy_(torch.randn(a.kv_cache.v.shape, generator=g))
        kv_mask = torch.arange(32)[None, :] >= pads[:, None]
        tokens, position_ids = torch.tensor([5, 9, 2, 40]), (slot - pads)[:, None]
        masks = model._masks(slot, slot + 1, kv_mask, model._slots)
        assert torch.equal(masks[("starts", None)], pads.clamp(max=slot))
        eager_logits = model._eager_step(tokens, slot, position_ids, kv_mask)
        model.decode(tokens, slot, position_ids, kv_mask)  # the first step traces the padded step
        assert any(key[0] == "rows" for key in model._graphs)
        with torch.profiler.profile() as prof:
            native_logits = model.decode(tokens, slot, position_ids, kv_mask)
        calls = [e.name for e in prof.events()]
        assert calls.count("lispe::rope_attention") == len(attns)  # RoPE, cache write and attention fused
        assert torch.equal(native_logits, eager_logits)  # the trace runs the op-by-op step's ops
        for a in attns:
            a.native = False
        sdpa_logits = model.decode(tokens, slot, position_ids, kv_mask)
    assert torch.allclose(native_logits, sdpa_logits, rtol=1e-4, atol=1e-4)
    not_suffix = torch.ones(2, 8, dtype=torch.bool)
    not_suffix[1, 4] = False  # a hole, not left padding: the masked SDPA
    assert model._suffix_starts(8, not_suffix) is None
    assert model._suffix_starts(8, torch.ones(2, 8, dtype=torch.bool)).tolist() == [0, 0]

@needs_native
def test_quantized_models_norm_and_attend_natively_and_float_models_as_transformers():
    from lispe_py.models.layers import RMSNorm

    from lispe_py.models.layers import Attention

    norms = lambda model: {m.native for m in model.modules() if isinstance(m, (RMSNorm, Attention))}  # noqa: E731
    config = dict(TINY, hidden_size=256, intermediate_size=512)  # head size 64: the attention kernel's
    float_model = create_model(config)
    assert norms(float_model) == {False}  # bit-identical to transformers' norm and attention
    model = quantize_model(create_model(config), "int4")
    assert norms(model) == {True}
    x = torch.randn(1, 3, 256)
    norm = model.layers[0].attn_norm
    with torch.no_grad():
        assert torch.allclose(norm(x), F.rms_norm(x, (256,), norm.weight, norm.eps), rtol=1e-5, atol=1e-6)
        assert torch.equal(norm(x.bfloat16()), float_model.layers[0].attn_norm(x.bfloat16()))  # bf16: the usual path
        strided = torch.randn(3, 256, 2)[..., 0]  # not contiguous: F.rms_norm
        assert torch.equal(norm(strided), F.rms_norm(strided, (256,), norm.weight, norm.eps))
    y = norm(x)  # autograd recording (the weight is a parameter): F.rms_norm, which has a gradient
    y.sum().backward()
    assert norm.weight.grad is not None and torch.equal(y, F.rms_norm(x, (256,), norm.weight, norm.eps))
    from lispe_py.generation import generate

    from lispe_py.models.layers import TRACE_MIN_STEPS

    n = TRACE_MIN_STEPS + 2  # enough steps left to trace the decode step
    out = generate(model, [3, 17, 29], {"strategy": "greedy", "max_length": n, "min_new_tokens": n})
    with torch.inference_mode():  # the decode steps (native attention) agree with the full forward (SDPA)
        full = model.forward_full(out[None, :-1])[0]
    assert out[3:].tolist() == full[2:].argmax(-1).tolist()
    traces = [str(step.fn.graph) for step in model._graphs.values()]
    assert traces and all(f"lispe::{op}" in t for t in traces for op in ("rms_norm", "int4_linear", "rope_attention"))
    with native.switched_off():
        assert norms(quantize_model(create_model(TINY), "int4")) == {False}


@needs_native
def test_ops_do_not_depend_on_the_thread_count():
    g = _gen(5)
    x = torch.randn(3, 576, generator=g)
    q8 = torch.randint(-128, 128, (3072, 576), dtype=torch.int8, generator=g)
    s8 = torch.rand(3072, generator=g)
    q4 = torch.randint(0, 255, (3072, 288), dtype=torch.uint8, generator=g)
    s4 = torch.randn(3072, 2, 18, generator=g)
    so = torch.randn(3072, 2, 18, generator=g).half()

    def ops():
        return (torch.ops.lispe.int8_linear(x, q8, s8), torch.ops.lispe.int4_linear(x, q4, s4),
                torch.ops.lispe.int4_linear(x, q4, s4, 8), torch.ops.lispe.int8_block_linear(x, q8, so),
                torch.ops.lispe.int8_block_linear(x, q8, so, 8))

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops()
        torch.set_num_threads(2)
        two = ops()
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(one, two))


@needs_native
def test_nan_and_inf_inputs_give_nan_not_garbage():
    x = torch.randn(2, 64)
    x[0, 3] = float("nan")
    x[1, 40] = float("inf")
    q4 = torch.randint(0, 255, (16, 32), dtype=torch.uint8)
    for bits in (16, 8):
        y = torch.ops.lispe.int4_linear(x, q4, torch.rand(16, 2, 2) + 0.1, bits)
        assert bool(y.isnan().all())
    y8 = torch.ops.lispe.int8_linear(x, torch.ones(16, 64, dtype=torch.int8), torch.ones(16))
    assert bool(y8[0].isnan().all()) and not bool(y8[1].isfinite().any())
    yb = torch.ops.lispe.int8_block_linear(x, torch.ones(16, 64, dtype=torch.int8), torch.ones(16, 2, 2))
    assert bool(yb[0].isnan().all()) and not bool(yb[1].isfinite().any())
    for bits in (8, 16):
        y8 = torch.ops.lispe.int8_block_linear(x, torch.ones(16, 64, dtype=torch.int8), torch.ones(16, 2, 2), bits)
        assert bool(y8.isnan().all())  # 8 and 16 bits: a non-finite block has no scale


@needs_native
@pytest.mark.parametrize("call, message", [
    (lambda: torch.ops.lispe.int8_linear(torch.randn(2, 64, dtype=torch.float64), torch.zeros(4, 64, dtype=torch.int8),
                                         torch.ones(4)), "x must be a contiguous float32"),
    (lambda: torch.ops.lispe.int8_linear(torch.randn(2, 64), torch.zeros(4, 64), torch.ones(4)), "q must be contiguous int8"),
    (lambda: torch.ops.lispe.int8_linear(torch.randn(2, 64), torch.zeros(4, 64, dtype=torch.int8), torch.ones(3)),
     "scale must be float32 or bfloat16"),
    (lambda: torch.ops.lispe.int4_linear(torch.randn(2, 48), torch.zeros(4, 24, dtype=torch.uint8), torch.ones(4, 1, 2)),
     "K must be a multiple of 32"),
    (lambda: torch.ops.lispe.int4_linear(torch.randn(2, 64), torch.zeros(4, 32, dtype=torch.uint8), torch.ones(4, 2, 2), 4),
     r"bits \(the activations' width\) must be 16 or 8, got 4"),
    (lambda: torch.ops.lispe.int8_block_linear(torch.randn(2, 64), torch.zeros(4, 64, dtype=torch.int8), torch.ones(4, 2, 4), 8),
     r"bits \(the activations' width\) must be 32 \(float32\), or 8 or 16 with groups of 32, got 8 with groups of 16"),
    (lambda: torch.ops.lispe.int8_block_linear(torch.randn(2, 64), torch.zeros(4, 64, dtype=torch.int8),
                                               torch.ones(4, 2, 2).bfloat16()), "so must be contiguous float32 or float16"),
    (lambda: torch.ops.lispe.int8_block_linear(torch.randn(2, 64), torch.zeros(4, 64, dtype=torch.int8), torch.ones(4, 2, 8)),
     "the group size K / groups must be 16 or a multiple of 32, got K = 64 and 8 groups"),
    (lambda: torch.ops.lispe.int8_block_linear(torch.randn(2, 64), torch.zeros(4, 64, dtype=torch.int8), torch.ones(3, 2, 2)),
     r"so must be contiguous float32 or float16 \[N, 2, groups\]"),
    (lambda: torch.ops.lispe.int8_block_linear(torch.randn(2, 32), torch.zeros(4, 64, dtype=torch.int8), torch.ones(4, 2, 2)),
     "int8_block_linear: x must be a contiguous float32"),
    (lambda: torch.ops.lispe.rms_norm(torch.randn(4, 6).t(), torch.ones(4), 1e-5), "rms_norm: x must be a contiguous float32"),
    (lambda: torch.ops.lispe.rms_norm(torch.randn(2, 6), torch.ones(5), 1e-5), r"rms_norm: weight must be a contiguous float32 \[6\]"),
    (lambda: torch.ops.lispe.rms_norm(torch.randn(2, 6).half(), torch.ones(6), 1e-5), "rms_norm: x must be a contiguous float32"),
    (lambda: torch.ops.lispe.decode_attention(torch.randn(1, 2, 1, 32), torch.randn(1, 2, 4, 32), torch.randn(1, 2, 4, 32), 1.0),
     "decode_attention: head size must be 64 or 128, got 32"),
    (lambda: torch.ops.lispe.decode_attention(torch.randn(1, 2, 1, 64), torch.randn(1, 2, 4, 64),
                                              torch.randn(1, 2, 64, 4).transpose(2, 3), 1.0),
     "decode_attention: k and v must be float32 .* with contiguous rows"),
    (lambda: torch.ops.lispe.decode_attention(torch.randn(1, 2, 1, 64), torch.randn(1, 3, 4, 64), torch.randn(1, 3, 4, 64), 1.0),
     "decode_attention: k and v must be float32 \\[1, 2, S, 64\\]"),
    (lambda: torch.ops.lispe.decode_attention_from(torch.randn(2, 2, 1, 64), torch.randn(2, 2, 4, 64),
                                                   torch.randn(2, 2, 4, 64), 1.0, torch.tensor([0, 4])),
     r"decode_attention_from: starts\[1\] = 4 is not in 0..3"),
    (lambda: torch.ops.lispe.decode_attention_from(torch.randn(2, 2, 1, 64), torch.randn(2, 2, 4, 64),
                                                   torch.randn(2, 2, 4, 64), 1.0, torch.tensor([0, 1, 2])),
     r"decode_attention_from: starts must be a contiguous int64 \[B\] tensor"),
    (lambda: torch.ops.lispe.int4_linear(torch.randn(2, 64), torch.zeros(4, 32, dtype=torch.uint8), torch.ones(4, 2, 2).half()),
     "sz must be contiguous float32 or bfloat16"),
    (lambda: torch.ops.lispe.int4_linear(torch.randn(2, 64), torch.zeros(4, 32, dtype=torch.uint8), torch.ones(4, 1, 2)),
     r"sz must be contiguous float32 or bfloat16 \[N, 2, K / 32\]"),
])
def test_bad_arguments_are_refused_with_a_message(call, message):
    with pytest.raises(RuntimeError, match=message):
        call()


@needs_native
def test_a_trace_records_the_native_ops():
    layer8 = Int8Linear.from_linear(nn.Linear(64, 32), torch.bfloat16)
    layer4 = Int4Linear.from_linear(nn.Linear(64, 32), 32, torch.bfloat16)
    block8 = Int8Linear.from_linear(nn.Linear(32, 64), torch.bfloat16, group_size=32)

    def chain(t):
        return block8(layer4(layer8(t).repeat(1, 2)))

    x = torch.randn(1, 64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice, and the row count traced as a constant
        traced = torch.jit.trace(chain, (x,), check_trace=False)
        graph = str(traced.graph)
        assert all(f"lispe::{op}" in graph for op in ("int8_linear", "int4_linear", "int8_block_linear"))
        assert torch.equal(traced(x), chain(x))


@needs_native
@pytest.mark.parametrize("n, k", [(16, 64), (24, 96), (576, 1536)])
def test_native_int4_layout_unpacks_exactly(n, k):
    q = torch.randint(0, 16, (n, k), dtype=torch.uint8, generator=_gen(n))
    packed = _pack_int4(q, "native")
    assert packed.shape == (n, k // 2)
    assert torch.equal(_unpack_int4(packed, "native", n, k), q[:, 0::2] | (q[:, 1::2] << 4))


@needs_native
def test_native_int4_layer_moves_and_changes_dtype_exactly():
    lin = nn.Linear(128, 48, bias=False)  # 48 rows: torch's CPU kernel would need a multiple of 16 too
    layer = Int4Linear.from_linear(lin, 64, torch.float32)
    assert layer.layout == "native" and layer_kernel(layer) == "native"
    weight, x = layer.dequantized_weight(), torch.randn(2, 128)
    before = layer(x)
    layer.to("meta")
    assert layer.layout is None and layer._native_scales is None
    back = Int4Linear.from_linear(lin, 64, torch.float32)
    back._apply(lambda t: t)
    assert back.layout == "native" and torch.equal(back.dequantized_weight(), weight) and torch.equal(back(x), before)
    assert back._native_scales.dtype == torch.float32
    back.to(torch.bfloat16)  # scales become bfloat16, and the kernel's block scales with them
    assert back.layout == "native" and back._native_scales.dtype == torch.bfloat16
    q, scale, zero = quantize_int4(lin.weight.detach(), 64)
    w = (q.float().view(48, 2, 64) - 8) * scale.bfloat16().float()[..., None] + zero.bfloat16().float()[..., None]
    assert torch.allclose(back.dequantized_weight(), w.view(48, 128))
    assert back(x.bfloat16()).dtype == torch.bfloat16


@needs_native
def test_int8_group_layer_moves_and_casts_without_touching_its_scales():
    lin = nn.Linear(128, 48, bias=True)
    layer = Int8Linear.from_linear(lin, torch.bfloat16, group_size=64)
    planes = layer.scales_and_offsets.clone()
    assert planes.dtype == torch.float16 and planes.shape == (48, 2, 2) and layer_kernel(layer) == "native"
    x = torch.randn(3, 128)
    before, weight = layer(x), layer.dequantized_weight()
    assert torch.allclose(before, F.linear(x, weight, lin.bias), atol=1e-5)
    layer.to(torch.bfloat16)  # a cast changes the reference matmul's dtype, not the stored groups
    assert layer.compute_dtype == torch.bfloat16 and torch.equal(layer.scales_and_offsets, planes)
    assert torch.equal(layer.dequantized_weight(), weight)
    assert torch.allclose(layer(x), before, atol=4e-3)  # only the bias became bfloat16
    assert layer(x.bfloat16()).dtype == torch.bfloat16
    layer.to("meta")
    assert layer.scales_and_offsets.dtype == torch.float16 and not layer.native_kernel
    with native.switched_off():  # no native kernel: the reference matmul in compute_dtype
        off = Int8Linear.from_linear(lin, torch.float32, group_size=64)
        assert layer_kernel(off) == "reference" and "int8 group=64" in repr(off)
        assert torch.allclose(off(x), before, atol=1e-5)


@needs_native
@pytest.mark.parametrize("mode, group", [("int8", None), ("int8", -1), ("int4", None)])
def test_native_model_matches_its_dequantized_float_model(mode, group):
    # The quantized model's logits equal those of the float model holding the dequantized weights,
    # to float32 rounding for int8 (groups of 32 by default here, or per channel) and to the 16-bit
    # activation rounding for int4.
    from lispe_py.generation import generate

    model = quantize_model(create_model(TINY), mode, group_size=group)
    assert model.quantization.group_size == (None if group == -1 else 32)
    assert model_kernels(model) == "native"
    ref = create_model(TINY)
    with torch.no_grad():
        for layer_ref, layer in zip(ref.layers, model.layers):
            layer_ref.attn.wqkv.weight.copy_(layer.attn.wqkv.dequantized_weight())
            layer_ref.attn.wo.weight.copy_(layer.attn.wo.dequantized_weight())
            layer_ref.mlp.w_gate_up.weight.copy_(layer.mlp.w_gate_up.dequantized_weight())
            layer_ref.mlp.w_down.weight.copy_(layer.mlp.w_down.dequantized_weight())
        ref.lm_head = model.lm_head  # the same int8 head (tied models share the float embedding)
    ids = torch.tensor([[5, 17, 33, 2, 90, 41, 7]])
    with torch.inference_mode():
        logits, float_logits = model.forward_full(ids), ref.forward_full(ids)
    tolerance = 1e-4 if mode == "int8" else 2e-3
    assert ((logits - float_logits).abs().max() / float_logits.abs().max()).item() < tolerance
    # and decoding with the cache (one row per step through the kernel) agrees with the full forward
    out = generate(model, ids[0].tolist(), {"strategy": "greedy", "max_length": 6, "min_new_tokens": 6})
    with torch.inference_mode():
        full = model.forward_full(out[None, :-1])[0]
    assert out[7:].tolist() == full[6:].argmax(-1).tolist()


def _child(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


_REPORT = """
    import warnings
    warnings.simplefilter("always")
    import torch
    from torch import nn
    from lispe_py.models import native
    from lispe_py.models.quantize import Int4Linear, Int8Linear, layer_kernel
    layers = Int8Linear.from_linear(nn.Linear(64, 32), torch.float32), Int4Linear.from_linear(nn.Linear(64, 32), 32)
    x = torch.randn(2, 64)
    print(native.available(), native.reason(), [layer_kernel(l) for l in layers], [tuple(l(x).shape) for l in layers])
"""


def test_switched_off_by_the_environment_variable():
    done = _child(_REPORT, LISPE_NATIVE_KERNELS="0")
    assert done.returncode == 0, done.stderr
    assert "False LISPE_NATIVE_KERNELS=0" in done.stdout
    assert "'native'" not in done.stdout and "(2, 32), (2, 32)" in done.stdout


def test_a_failed_build_warns_once_and_keeps_torch_kernels(tmp_path):
    if native._cpu_fits():
        pytest.skip(native._cpu_fits())
    done = _child(_REPORT, CXX="false", LISPE_KERNEL_CACHE=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert re.match(r"False \S*false failed \(1\)", done.stdout), done.stdout
    assert done.stderr.count("the native int8/int4 CPU kernels are not used") == 1
    assert "'native'" not in done.stdout and "(2, 32), (2, 32)" in done.stdout
    assert not list(tmp_path.rglob("*.so"))  # no half-written library is left to be loaded next time


def test_model_info_names_the_kernels():
    from lispe_py import Interpreter

    lisp = Interpreter()
    lisp.eval('(use \'lispe_torch)')
    lisp.eval('(setq model (torch_model_create "transformer" {"arch":"llama" "vocab_size":64 "hidden_size":64 '
              '"num_layers":1 "num_heads":2 "num_kv_heads":1 "intermediate_size":128}))')
    assert lisp.eval('(@ (torch_model_info model) "quantized_kernels")') is None
    assert lisp.eval('(@ (torch_model_info model) "quantization_group_size")') is None
    lisp.eval('(torch_model_quantize model "int4")')
    expected = "native" if native.available() else "torch"
    assert lisp.eval('(@ (torch_model_info model) "quantized_kernels")') == expected
    assert lisp.eval('(@ (torch_model_info model) "quantization_group_size")') == 32
    lisp.eval('(setq model (torch_model_create "transformer" {"vocab_size":64 "hidden_size":64 "num_layers":1}))')
    lisp.eval('(torch_model_quantize model "int8" -1)')
    info = lisp.eval("(torch_model_info model)")
    assert info["quantization"] == "int8" and info["quantization_group_size"] is None


@needs_native
def test_lisp_sets_the_activation_width_of_a_quantized_model():
    """(torch_model_set_activations model "int8"): the int4 layers round their inputs to 8 bits (the
    model's logits move, generation still runs and the traced steps follow); errors name the argument,
    and a model without native 4-bit layers is refused."""
    from lispe_py import Interpreter
    from lispe_py.errors import LispEError

    lisp = Interpreter()
    lisp.eval("(use 'lispe_torch)")
    lisp.eval('(setq model (torch_model_create "llama" {"vocab_size":96 "hidden_size":128 "num_layers":2 '
              '"num_heads":4 "intermediate_size":256}))')
    with pytest.raises(LispEError, match="this model has none"):
        lisp.eval('(torch_model_set_activations model "int8")')
    lisp.eval('(torch_model_quantize model "int4")')
    assert lisp.eval('(@ (torch_model_info model) "activations")') == "int16"
    with pytest.raises(LispEError, match="argument 'activations': expected \"int16\" or \"int8\", got"):
        lisp.eval('(torch_model_set_activations model "int4")')
    model = lisp.eval("model")
    ids = torch.tensor([[5, 17, 33, 2, 90, 41, 7]])
    with torch.inference_mode():
        before = model.forward_full(ids)
    lisp.eval('(setq g (torch_generator_create model))')
    lisp.eval('(torch_generator_config g {"strategy":"greedy" "max_length":8 "min_new_tokens":5})')
    lisp.eval('(torch_generate g (integers 5 17 33))')  # traces a 16-bit step
    lisp.eval('(torch_model_set_activations model "int8")')
    assert lisp.eval('(@ (torch_model_info model) "activations")') == "int8"
    assert {m.activation_bits for m in model.modules() if isinstance(m, Int4Linear)} == {8}
    with torch.inference_mode():
        after = model.forward_full(ids)
    assert 0 < (after - before).abs().max().item() < 0.1 * before.abs().max().item()
    ids8 = lisp.eval('(torch_generate g (integers 5 17 33))')
    with torch.inference_mode():
        full = model.forward_full(torch.tensor([list(ids8)[:-1]]))[0]
    assert list(ids8)[3:] == full[2:].argmax(-1).tolist()  # the 8-bit cached steps agree with the 8-bit forward
