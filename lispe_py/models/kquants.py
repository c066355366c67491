"""llama.cpp's K-quant blocks (Q4_K, Q5_K, Q6_K: super-blocks of 256 values), read as they are.

`parts(kind, raw)` splits a tensor's blocks into integer values and one float32 scale and offset per
sub-block, w = q * scale + offset, without building a float weight:

    Q4_K (144 bytes): d, dmin (float16), 8 six-bit scales sc and mins m, 256 four-bit q (0..15):
                      w = (d * sc_j) * q - dmin * m_j, sub-blocks j of 32 values
    Q5_K (176 bytes): the same with a fifth bit per value from qh (q 0..31)
    Q6_K (210 bytes): 256 six-bit q (ql + 2 bits of qh), 16 int8 scales sc, d (float16):
                      w = (d * sc_j) * (q - 32), sub-blocks j of 16 values

The scales d * sc and offsets -(dmin * m) are computed in float32, as `gguf.quants.dequantize` does,
so q * scale + offset is bit for bit the value gguf gives (tests/test_kquants.py). The quantized
engines take these parts as int4 groups of 32 (Q4_K) and int8 groups of 32 (Q5_K) or 16 (Q6_K).

`quantize(kind, w)` writes float weights as such blocks (round to nearest, llama.cpp's layout; not its
error-minimizing search): what the tests and bench/models.py build K-quant GGUF files with (the `gguf`
package can read these types but not write them).
"""
from __future__ import annotations

import torch

from .errors import ModelError

QK_K = 256
#: bytes per super-block of 256 values
BLOCK_BYTES = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210}
#: values per sub-block (one scale and offset each)
SUB_BLOCK = {"Q4_K": 32, "Q5_K": 32, "Q6_K": 16}
KINDS = tuple(BLOCK_BYTES)


def _f16(raw: torch.Tensor) -> torch.Tensor:
    """float32 from pairs of bytes holding float16 values ([nb, 2] uint8 -> [nb, 1])."""
    return raw.contiguous().view(torch.float16).float()


def f16_of(raw: torch.Tensor) -> torch.Tensor:
    """The same values as `_f16`, by integer and float arithmetic on the bytes: no dtype view, so a
    torch.jit trace can record it (a lookup of a few rows' scales in a traced decode step). Exact for
    every bit pattern (tests/test_kquants.py checks all 65536): a float16 value is (m + 1024) *
    2^(e - 25), or m * 2^-24 where e = 0, and float32 holds every such product; e = 31 is an infinity
    (m = 0) or a NaN."""
    h = raw[:, 0:1].to(torch.int32) + (raw[:, 1:2].to(torch.int32) << 8)
    e = (h >> 10) & 0x1F
    m = (h & 0x3FF).float()
    power = (1 << (e.clamp(min=1) - 1)).float() * 2.0 ** -24  # 2^(max(e, 1) - 25): integers, no exp2
    value = torch.where(e > 0, m + 1024.0, m) * power
    value = torch.where(e == 31, torch.where(m == 0, float("inf"), float("nan")), value)
    return torch.where(h >> 15 == 1, -value, value)


def _scale_min(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 six-bit scales and 8 six-bit mins packed in 12 bytes ([nb, 12] -> two [nb, 8])."""
    d, m, md = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    sc = torch.cat((d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)), dim=1)
    mn = torch.cat((m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)), dim=1)
    return sc, mn


def _int8_of(u: torch.Tensor) -> torch.Tensor:
    """The signed values of uint8 bytes, as int16, by arithmetic (no dtype view: torch.jit traces it)."""
    v = u.to(torch.int16)
    return v - ((v >> 7) << 8)


def half_scales(kind: str, raw: torch.Tensor, f16=_f16) -> torch.Tensor:
    """float32 [nb, 2]: each super-block's d and dmin (Q6_K: d, 0), read from its float16 bytes
    (`f16`: `f16_of` where a trace must record it)."""
    if kind == "Q6_K":
        d = f16(raw[:, 208:210])
        return torch.cat((d, torch.zeros_like(d)), dim=1)
    return f16(raw[:, 0:4].reshape(-1, 2)).reshape(-1, 2)  # d and dmin, side by side as the bytes are


def parts(kind: str, raw: torch.Tensor, scales: torch.Tensor | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q [nb, 256] uint8 (Q4_K 0..15, Q5_K 0..31) or int8 (Q6_K -32..31), scale float32 [nb, S],
    offset float32 [nb, S]) of the super-blocks `raw` (uint8 [nb, BLOCK_BYTES[kind]]), S = 256 /
    SUB_BLOCK[kind]: w = q * scale + offset per sub-block. scales: `half_scales(kind, raw)` when
    already known (then no dtype view is taken: the computation can be traced)."""
    if kind not in BLOCK_BYTES:
        raise ModelError(f"not a K-quant type: {kind}")
    nb = raw.shape[0]
    if scales is None:
        scales = half_scales(kind, raw)
    if kind == "Q6_K":
        ql, qh, sc, d = raw[:, :128], raw[:, 128:192], raw[:, 192:208], scales[:, 0:1]
        low = torch.stack((ql.reshape(nb, 2, 64) & 0x0F, ql.reshape(nb, 2, 64) >> 4), dim=2)  # [nb, h, nib, 64]
        high = torch.stack([(qh.reshape(nb, 2, 32) >> s) & 0x03 for s in (0, 2, 4, 6)], dim=2)  # [nb, h, s, 32]
        q = (low.reshape(nb, 8, 32) | (high.reshape(nb, 8, 32) << 4)).reshape(nb, QK_K).to(torch.int8) - 32
        scale = d * _int8_of(sc).float()
        return q, scale, torch.zeros_like(scale)
    d, dmin = scales[:, 0:1], scales[:, 1:2]
    sc, mn = _scale_min(raw[:, 4:16])
    qs = raw[:, -128:].reshape(nb, 4, 1, 32)
    q = torch.cat((qs & 0x0F, qs >> 4), dim=2).reshape(nb, 8, 32)
    if kind == "Q5_K":
        qh = raw[:, 16:48]
        q = q | (torch.stack([(qh >> j) & 1 for j in range(8)], dim=1) << 4)
    return q.reshape(nb, QK_K), d * sc.float(), -(dmin * mn.float())


def dequantize(kind: str, raw: torch.Tensor, scales: torch.Tensor | None = None) -> torch.Tensor:
    """float32 [nb * 256] values of the super-blocks `raw`, equal to `gguf.quants.dequantize`'s
    (scales: see `parts`)."""
    q, scale, offset = parts(kind, raw, scales)
    sub = SUB_BLOCK[kind]
    w = q.float().reshape(raw.shape[0], -1, sub) * scale[..., None] + offset[..., None]
    return w.reshape(-1)


# ----- writing blocks -----

def _round_half(x: torch.Tensor) -> torch.Tensor:
    """float16 values (as float32) of x, with zero where x is zero."""
    return x.half().float()


def quantize(kind: str, w: torch.Tensor) -> torch.Tensor:
    """uint8 [N, K / 256 * BLOCK_BYTES] blocks of `kind` for float weights w [N, K] (K a multiple of
    256), rounded to nearest per sub-block."""
    if kind not in BLOCK_BYTES:
        raise ModelError(f"not a K-quant type: {kind}")
    n, k = w.shape
    if k % QK_K:
        raise ModelError(f"{kind}: rows of {k} values are not a whole number of {QK_K}-value blocks")
    x = w.detach().float().reshape(-1, QK_K)
    nb = x.shape[0]
    if kind == "Q6_K":
        g = x.reshape(nb, 16, 16)
        s = g.abs().amax(dim=-1) / 31.0
        d = _round_half(s.amax(dim=-1, keepdim=True) / 127.0)
        sc = torch.where(d > 0, torch.round(s / d.clamp(min=1e-30)), 0.0).clamp(-128, 127)
        eff = d * sc
        q = torch.where(eff[..., None] > 0, torch.round(g / eff.clamp(min=1e-30)[..., None]), 0.0).clamp(-32, 31)
        q = (q + 32).to(torch.uint8).reshape(nb, 8, 32)
        low, high = q & 0x0F, q >> 4
        ql = (low.reshape(nb, 2, 2, 64)[:, :, 0] | (low.reshape(nb, 2, 2, 64)[:, :, 1] << 4)).reshape(nb, 128)
        h = high.reshape(nb, 2, 4, 32)
        qh = (h[:, :, 0] | (h[:, :, 1] << 2) | (h[:, :, 2] << 4) | (h[:, :, 3] << 6)).reshape(nb, 64)
        out = torch.cat((ql, qh, sc.to(torch.int8).view(torch.uint8), d.half().view(torch.uint8).reshape(nb, 2)), dim=1)
        return out.reshape(n, -1)
    top = 15.0 if kind == "Q4_K" else 31.0
    g = x.reshape(nb, 8, 32)
    lo = g.amin(dim=-1).clamp(max=0.0)
    s = (g.amax(dim=-1) - lo) / top
    d = _round_half(s.amax(dim=-1, keepdim=True) / 63.0)
    dmin = _round_half((-lo).amax(dim=-1, keepdim=True) / 63.0)
    sc = torch.where(d > 0, torch.round(s / d.clamp(min=1e-30)), 0.0).clamp(0, 63)
    mn = torch.where(dmin > 0, torch.round(-lo / dmin.clamp(min=1e-30)), 0.0).clamp(0, 63)
    eff, off = d * sc, dmin * mn
    q = torch.where(eff[..., None] > 0, torch.round((g + off[..., None]) / eff.clamp(min=1e-30)[..., None]), 0.0)
    q = q.clamp(0, top).to(torch.uint8)
    sc8, mn8 = sc.to(torch.uint8), mn.to(torch.uint8)
    scales = torch.cat((
        (sc8[:, :4] & 0x3F) | ((sc8[:, 4:] >> 4) << 6),
        (mn8[:, :4] & 0x3F) | ((mn8[:, 4:] >> 4) << 6),
        (sc8[:, 4:] & 0x0F) | ((mn8[:, 4:] & 0x0F) << 4),
    ), dim=1)
    low = (q & 0x0F).reshape(nb, 4, 2, 32)
    qs = (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(nb, 128)
    head = torch.cat((d.half().view(torch.uint8).reshape(nb, 2), dmin.half().view(torch.uint8).reshape(nb, 2), scales), dim=1)
    if kind == "Q4_K":
        return torch.cat((head, qs), dim=1).reshape(n, -1)
    bits = (q >> 4).reshape(nb, 8, 32)
    qh = torch.zeros(nb, 32, dtype=torch.uint8)
    for j in range(8):
        qh |= bits[:, j] << j
    return torch.cat((head, qh, qs), dim=1).reshape(n, -1)
