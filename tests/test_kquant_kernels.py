"""The native Q4_K / Q6_K kernels (`lispe::q4k_linear`, `lispe::q6k_linear` in kernels.cpp) against the
float64 product with gguf's dequantized weights, within the documented rounding of the activations
(16 bits per super-block of 256), at the formats' extremes (no int16 saturation, no int32 overflow),
and batch rows equal to rows alone."""
from __future__ import annotations

import pytest
import torch

from lispe_py.models import kquants, native

pytestmark = pytest.mark.skipif(not native.available(), reason=f"no native kernels: {native.reason()}")

OPS = {"Q4_K": "q4k_linear", "Q6_K": "q6k_linear"}


def _op(kind):
    return getattr(torch.ops.lispe, OPS[kind])


def _weights(kind: str, raw: torch.Tensor) -> torch.Tensor:
    n = raw.shape[0]
    return kquants.dequantize(kind, raw.reshape(-1, kquants.BLOCK_BYTES[kind])).reshape(n, -1).double()


def _bound(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """|x16 * d - x| <= d / 2 per column, d = the super-block's largest |x| / 32767: the product's error
    bound [M, N] (plus float32 rounding of the sums)."""
    m, k = x.shape
    d = x.double().abs().reshape(m, k // 256, 256).amax(-1) / 32767           # [M, S]
    wabs = w.abs().reshape(w.shape[0], k // 256, 256).sum(-1)                  # [N, S]
    ref = x.double() @ w.t()
    return 0.5 * d @ wabs.t() + 1e-6 * (x.double().abs() @ w.abs().t()) + 1e-30, ref


def _random_raw(kind: str, n: int, k: int, seed: int) -> torch.Tensor:
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 0.05
    return kquants.quantize(kind, w).reshape(n, -1)


@pytest.mark.parametrize("kind", OPS)
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8, 11])
def test_k_quant_ops_are_the_float_product_within_the_activation_rounding(kind, rows):
    raw = _random_raw(kind, 48, 768, seed=rows)
    g = torch.Generator().manual_seed(100 + rows)
    x = torch.randn(rows, 768, generator=g)
    x[:, 300] *= 50.0  # one super-block with an outlier: its other columns round more coarsely
    y = _op(kind)(x, raw)
    bound, ref = _bound(x, _weights(kind, raw))
    assert y.shape == (rows, 48) and y.dtype == torch.float32
    assert bool(((y.double() - ref).abs() <= bound).all())


@pytest.mark.parametrize("kind", OPS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_k_quant_ops_at_the_formats_extremes(kind, sign):
    """The largest scales and values the formats hold, times activations at +-32767: the int16 pair sums
    and the int32 super-block sums must neither saturate nor wrap."""
    n, k = 8, 512
    raw = torch.full((n, k // 256 * kquants.BLOCK_BYTES[kind]), 0xFF, dtype=torch.uint8)
    blocks = raw.view(n, k // 256, kquants.BLOCK_BYTES[kind])
    one = torch.tensor([0x00, 0x3C], dtype=torch.uint8)  # float16 1.0
    if kind == "Q4_K":
        blocks[:, :, 0:2] = one      # d
        blocks[:, :, 2:4] = one      # dmin; scales/mins 63, all nibbles 15
    else:
        blocks[:, :, 192:208] = 0x80  # scales -128; all 6-bit values 63
        blocks[:, :, 208:210] = one
        blocks[1::2, :, 192:208] = 0x7F
    x = torch.full((3, k), sign)
    x[1, ::2] = -sign                # alternating signs
    x[2] = torch.linspace(-1, 1, k)  # and every size
    y = _op(kind)(x, raw)
    bound, ref = _bound(x, _weights(kind, raw))
    assert bool(((y.double() - ref).abs() <= bound).all()), (y, ref)


@pytest.mark.parametrize("kind", OPS)
def test_batch_rows_equal_rows_alone_and_threads_do_not_matter(kind):
    raw = _random_raw(kind, 40, 512, seed=7)
    x = torch.randn(11, 512, generator=torch.Generator().manual_seed(8))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = torch.cat([_op(kind)(x[i:i + 1], raw) for i in range(11)])
        torch.set_num_threads(2)
        batch = _op(kind)(x, raw)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(alone, batch)
    for rows in (2, 3, 4, 8):
        assert torch.equal(_op(kind)(x[:rows], raw), alone[:rows])


@pytest.mark.parametrize("kind", OPS)
def test_non_finite_activations_give_nan_rows(kind):
    raw = _random_raw(kind, 16, 512, seed=3)
    x = torch.randn(3, 512)
    x[0, 5] = float("nan")
    x[2, 400] = float("inf")
    y = _op(kind)(x, raw)
    assert bool(y[0].isnan().all()) and bool(y[2].isnan().all()) and bool(y[1].isfinite().all())


def test_optional_instruction_sets_follow_the_cpu(monkeypatch):
    monkeypatch.setattr(native, "_cpu_flags", lambda: {"avx2", "fma", "f16c"})
    assert native.flags() == native.FLAGS
    monkeypatch.setattr(native, "_cpu_flags", lambda: {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"})
    assert native.flags()[-4:] == ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"]
    monkeypatch.setattr(native, "_cpu_flags", lambda: {"avx512f", "avx512_vnni"})  # VNNI without VL: not used
    assert "-mavx512vnni" not in native.flags()
    monkeypatch.setattr(native, "_cpu_flags", lambda: {"avx_vnni"})
    assert native.flags()[-1] == "-mavxvnni"
