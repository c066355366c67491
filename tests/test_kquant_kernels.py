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
IN_ORDER = torch.empty(0, dtype=torch.long)  # lispe::kquant_linear's "no index" for a part


def _op(kind, bits=16):
    """The single-matrix op (16-bit activations), or kquant_linear with one part and `bits`."""
    if bits == 16:
        return getattr(torch.ops.lispe, OPS[kind])
    return lambda x, raw: torch.ops.lispe.kquant_linear(x, [raw], [list(OPS).index(kind)], [IN_ORDER], bits)


def _weights(kind: str, raw: torch.Tensor) -> torch.Tensor:
    n = raw.shape[0]
    return kquants.dequantize(kind, raw.reshape(-1, kquants.BLOCK_BYTES[kind])).reshape(n, -1).double()


def _bound(x: torch.Tensor, w: torch.Tensor, bits: int = 16) -> torch.Tensor:
    """|x16 * d - x| <= d / 2 per column, d = the super-block's largest |x| / 32767 (8 bits: / 127): the
    product's error bound [M, N] (plus float32 rounding of the sums)."""
    m, k = x.shape
    d = x.double().abs().reshape(m, k // 256, 256).amax(-1) / (32767 if bits == 16 else 127)  # [M, S]
    wabs = w.abs().reshape(w.shape[0], k // 256, 256).sum(-1)                  # [N, S]
    ref = x.double() @ w.t()
    return 0.5 * d @ wabs.t() + 1e-6 * (x.double().abs() @ w.abs().t()) + 1e-30, ref


def _random_raw(kind: str, n: int, k: int, seed: int) -> torch.Tensor:
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 0.05
    return kquants.quantize(kind, w).reshape(n, -1)


@pytest.mark.parametrize("kind", OPS)
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8, 11])
@pytest.mark.parametrize("bits", [16, 8])
def test_k_quant_ops_are_the_float_product_within_the_activation_rounding(kind, rows, bits):
    raw = _random_raw(kind, 48, 768, seed=rows)
    g = torch.Generator().manual_seed(100 + rows)
    x = torch.randn(rows, 768, generator=g)
    x[:, 300] *= 50.0  # one super-block with an outlier: its other columns round more coarsely
    y = _op(kind, bits)(x, raw)
    bound, ref = _bound(x, _weights(kind, raw), bits)
    assert y.shape == (rows, 48) and y.dtype == torch.float32
    assert bool(((y.double() - ref).abs() <= bound).all())
    if bits == 8:  # the rounding is really coarser than 16 bits' (not a 16-bit product under another name)
        assert not bool(((y.double() - ref).abs() <= _bound(x, _weights(kind, raw), 16)[0]).all())


@pytest.mark.parametrize("kind", OPS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("bits", [16, 8])
def test_k_quant_ops_at_the_formats_extremes(kind, sign, bits):
    """The largest scales and values the formats hold, times activations at +-32767 (8 bits: +-127): the
    int16 pair sums and the int32 super-block sums must neither saturate nor wrap."""
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
    y = _op(kind, bits)(x, raw)
    bound, ref = _bound(x, _weights(kind, raw), bits)
    assert bool(((y.double() - ref).abs() <= bound).all()), (y, ref)


@pytest.mark.parametrize("kind", OPS)
@pytest.mark.parametrize("bits", [16, 8])
def test_batch_rows_equal_rows_alone_and_threads_do_not_matter(kind, bits):
    raw = _random_raw(kind, 40, 512, seed=7)
    x = torch.randn(11, 512, generator=torch.Generator().manual_seed(8))
    op = _op(kind, bits)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = torch.cat([op(x[i:i + 1], raw) for i in range(11)])
        torch.set_num_threads(2)
        batch = op(x, raw)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(alone, batch)
    for rows in (2, 3, 4, 8):
        assert torch.equal(op(x[:rows], raw), alone[:rows])


@pytest.mark.parametrize("kind", OPS)
@pytest.mark.parametrize("bits", [16, 8])
def test_non_finite_activations_give_nan_rows(kind, bits):
    raw = _random_raw(kind, 16, 512, seed=3)
    x = torch.randn(3, 512)
    x[0, 5] = float("nan")
    x[2, 400] = float("inf")
    y = _op(kind, bits)(x, raw)
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


@pytest.mark.parametrize("rows", [1, 3, 9])
@pytest.mark.parametrize("bits", [16, 8])
def test_one_call_for_stacked_parts_equals_the_parts_one_by_one(rows, bits):
    """lispe::kquant_linear: Q4_K and Q6_K parts stacked by rows, some read in a permuted order, give
    exactly the single-matrix ops' outputs, concatenated and permuted."""
    parts = [("Q4_K", _random_raw("Q4_K", 64, 512, 1)), ("Q4_K", _random_raw("Q4_K", 32, 512, 2)),
             ("Q6_K", _random_raw("Q6_K", 48, 512, 3))]
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(4))
    indexes = [perm, IN_ORDER, torch.arange(47, -1, -1)]
    x = torch.randn(rows, 512, generator=torch.Generator().manual_seed(5))
    y = torch.ops.lispe.kquant_linear(x, [r for _, r in parts], [0, 0, 1], indexes, bits)
    expected = []
    for (kind, raw), index in zip(parts, indexes):
        part = _op(kind, bits)(x, raw)
        expected.append(part if index is IN_ORDER else part.index_select(1, index))
    assert torch.equal(y, torch.cat(expected, dim=1))


@pytest.mark.parametrize("args, message", [
    (lambda raw: ([raw], [2], [IN_ORDER]), "kind must be 0 \\(Q4_K\\) or 1 \\(Q6_K\\), got 2"),
    (lambda raw: ([raw], [0, 1], [IN_ORDER]), "one kind and one index \\(empty: none\\) per part"),
    (lambda raw: ([raw], [1], [IN_ORDER]), "raw must be contiguous uint8 \\[N, K / 256 \\* 210\\]"),
    (lambda raw: ([raw, raw[:, :144].contiguous()], [0, 0], [IN_ORDER, IN_ORDER]), "the parts must have the same K, got 512 and 256"),
    (lambda raw: ([raw], [0], [torch.arange(7)]), "index must be a contiguous int64 \\[8\\] tensor"),
    (lambda raw: ([raw], [0], [torch.arange(8) + 1]), "index\\[7\\] = 8 is not in 0..7"),
    (lambda raw: ([raw], [0], [torch.tensor([0, 1, 2, 3, 4, 5, 6, 6])]), "index is not a permutation \\(6 appears twice\\)"),
    (lambda raw: ([raw], [0], [IN_ORDER], 4), "bits \\(the activations' width\\) must be 16 or 8, got 4"),
    (lambda raw: ([raw], [0], [IN_ORDER], 4), "bits \\(the activations' width\\) must be 16 or 8, got 4"),
])
def test_stacked_parts_with_bad_arguments_are_refused_with_a_message(args, message):
    raw = _random_raw("Q4_K", 8, 512, 6)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.lispe.kquant_linear(torch.randn(2, 512), *args(raw))


def test_a_compiler_refusing_the_optional_flags_still_builds_the_avx2_kernels(monkeypatch, tmp_path, capsys):
    import subprocess
    from pathlib import Path

    monkeypatch.setattr(native, "_cpu_flags", lambda: {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"})
    monkeypatch.setenv("LISPE_KERNEL_CACHE", str(tmp_path))
    commands = []

    def fake_run(cmd, **kw):
        commands.append(cmd)
        if "-mavx512vnni" in cmd:
            return subprocess.CompletedProcess(cmd, 1, "", "unrecognized command-line option '-mavx512vnni'")
        Path(cmd[cmd.index("-o") + 1]).write_bytes(b"built")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(native.subprocess, "run", fake_run)
    target = tmp_path / "key" / "lispe_kernels.so"
    native.build("c++", target)
    assert len(commands) == 2 and "-mavx512vnni" in commands[0]
    assert not any(flag in commands[1] for flag in native.OPTIONAL_FLAGS)
    assert target.read_bytes() == b"built"
    assert "refused -mavx512f -mavx512bw -mavx512vl -mavx512vnni" in capsys.readouterr().err


_AVX2_ONLY = """
import sys, torch
import lispe_py.models.native as native
native._cpu_flags = lambda: {"avx2", "fma", "f16c"}
assert native.available(), native.reason()
inputs = torch.load(sys.argv[1])
torch.save([getattr(torch.ops.lispe, op)(*args) for op, args in inputs], sys.argv[2])
"""


def test_the_avx2_build_gives_the_same_numbers_as_the_vnni_build(tmp_path):
    """Where this machine's build uses VNNI (vpdpwssd, vpdpbusd), a build without the optional flags (what
    an AVX2-only CPU gets: vpmaddwd / vpmaddubsw + add) computes the very same integers, so the same
    outputs (vpmaddubsw's int16 pair sums of 8-bit x stay below 2 * 255 * 128: no saturation)."""
    import os
    import subprocess
    import sys

    if native.flags() == native.FLAGS:
        pytest.skip("this machine's build has no optional instruction sets to compare against")
    g = torch.Generator().manual_seed(9)
    x = torch.randn(5, 512, generator=g)
    inputs = [("q4k_linear", (x, _random_raw("Q4_K", 24, 512, 1))), ("q6k_linear", (x, _random_raw("Q6_K", 24, 512, 2))),
              ("int4_linear", (x, torch.randint(0, 255, (24, 256), dtype=torch.uint8, generator=g),
                               torch.randn(24, 2, 16, generator=g))),
              ("int4_linear", (x, torch.randint(0, 255, (24, 256), dtype=torch.uint8, generator=g),
                               torch.randn(24, 2, 16, generator=g), 8)),
              ("int8_block_linear", (x, torch.randint(-128, 128, (24, 512), dtype=torch.int8, generator=g),
                                     torch.randn(24, 2, 16, generator=g), 8)),
              ("kquant_linear", (x, [_random_raw("Q4_K", 24, 512, 3), _random_raw("Q6_K", 8, 512, 4)], [0, 1],
                                 [IN_ORDER, IN_ORDER], 8))]
    torch.save(inputs, tmp_path / "in.pt")
    env = {**os.environ, "LISPE_KERNEL_CACHE": str(tmp_path / "kernels")}
    done = subprocess.run([sys.executable, "-c", _AVX2_ONLY, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = torch.load(tmp_path / "out.pt")
    for (op, args), other in zip(inputs, theirs):
        assert torch.equal(getattr(torch.ops.lispe, op)(*args), other), op
