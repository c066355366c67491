"""Weight-only quantization of our decoders' linear layers (gpt-fast's quantize.py, for CPU and CUDA).

    from lispe_py.models.quantize import quantize_model, load_gguf_quantized
    quantize_model(model, "int8")                      # int8, groups of 32 (native kernel) or per channel
    quantize_model(model, "int8", group_size=-1)       # per-output-channel int8 (PER_CHANNEL)
    quantize_model(model, "int4", group_size=32)       # group-wise asymmetric int4 (32, 64 or 128)
    model = load_gguf_quantized(path, "int4")          # int4 straight from GGUF Q4_0/Q4_1 blocks
    model = load_gguf_quantized(path, "int8")          # int8 groups straight from Q8_0/Q4_0/Q4_1 blocks

Only the weights are quantized; activations, norms, attention and the KV cache keep the model's dtype.
On an x86-64 CPU with AVX2 and a C++ compiler, the layers run the native kernels of `kernels.cpp`
(`native.py` builds them once per machine): int8 per channel (float32 activations) or per group
(groups of 32: activations rounded to 16 bits per block, as int4; wider groups: float32), int4 with
activations rounded to 16 bits per block of 32 columns, all reading the weights at memory speed, for
inputs of up to NATIVE_MAX_ROWS rows (longer prompts: one float32 matmul on the dequantized weight). Elsewhere a
quantized layer computes its matmul in `compute_dtype` (bfloat16 by default): torch's CPU kernels
`_weight_int8pack_mm` and `_weight_int4pack_mm_for_cpu` are fast with bfloat16 activations and take a
slow generic path with float32 ones (measured on this AVX2 machine: 10-50x slower). The input is cast to
`compute_dtype` and the output back to the input's dtype. The scales are stored in `compute_dtype`
either way (the native int4 kernel reads them in bfloat16 or float32).

Conventions (checked against the kernels in tests/test_quantize.py):
- int8 per channel: w = q * scale[n], q in [-128, 127], one scale per output row (symmetric).
- int8 groups: w = q * scale[n, g] + offset[n, g], q in [-128, 127], groups of `group_size` input
  columns (asymmetric). GGUF Q8_0 blocks (x = d * q) are this with scale = d, offset = 0; Q4_0
  (x = d * (q - 8)) with values q - 8; Q4_1 (x = d * q + m) with scale = d, offset = m: "int8" then
  multiplies by exactly the file's weights. It is the default where the native kernel runs: torch has
  no int8 kernel with groups, so elsewhere the default is per channel.
- int4: w = (q - 8) * scale[g, n] + zero[g, n], q in [0, 15], groups of `group_size` input columns.
  GGUF Q4_1 blocks (x = d * q + m, 32 values) are exactly this with scale = d, zero = m + 8 d;
  Q4_0 blocks (x = d * (q - 8)) with scale = d, zero = 0.
On CUDA, int8 per channel uses torch's `_weight_int8pack_mm` there and int4 tinygemm's `_weight_int4pack_mm`
(bfloat16, compute capability 8.0+). Where a kernel is missing or a shape does not fit it (the CPU int4
kernel needs out_features % 16 == 0, tinygemm out_features % 8 and in_features % 32), a reference path
dequantizes the layer's weight on each call: slower, same numbers up to rounding. A layer moved to
another device is repacked for the kernel there.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import kquants, native
from .errors import ModelError
from .gguf_loader import single_thread

MODES = ("int8", "int4")
# Inputs of up to this many rows (decode steps, batches, beams, short prompts) go through the native
# kernels (native.py), which read the weights once per 8 rows; longer ones through one float32 matmul.
NATIVE_MAX_ROWS = 64


def float_rows(x: torch.Tensor, k: int) -> torch.Tensor:
    """x as the native kernels take it, a contiguous float32 [rows, k]: x itself where it is one (a
    decode step makes a few such calls per layer; each no-op conversion is one more op to dispatch)."""
    h = x if x.dim() == 2 else x.reshape(-1, k)
    if h.dtype != torch.float32:
        h = h.float()
    return h if h.is_contiguous() else h.contiguous()


def like_input(y: torch.Tensor, x: torch.Tensor, n: int) -> torch.Tensor:
    """A layer's [rows, n] result in the dtype and leading dimensions of its input x."""
    if y.dtype != x.dtype:
        y = y.to(x.dtype)
    return y if x.dim() == 2 else y.reshape(*x.shape[:-1], n)


#: the widths the native kernels of int4, GGUF Q4_K/Q6_K and int8-groups-of-32 layers round activations to,
#: by name (`set_activations`; 16 means float32 for the int8 layers)
ACTIVATION_BITS = {"int16": 16, "int8": 8}
GROUP_SIZES = (32, 64, 128)
DEFAULT_GROUP_SIZE = 32
PER_CHANNEL = -1  # int8 group_size for one scale per output channel (as GPTQ tools spell it)


def _has_op(name: str) -> bool:
    return hasattr(torch.ops.aten, name)


HAS_INT8_KERNEL = _has_op("_weight_int8pack_mm")
HAS_INT4_CPU_KERNEL = _has_op("_weight_int4pack_mm_for_cpu") and _has_op("_convert_weight_to_int4pack_for_cpu")
_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA", "mps": "MPS"}


def _has_kernel(op: str, device_type: str) -> bool:
    key = _DISPATCH_KEYS.get(device_type)
    return _has_op(op) and key is not None and torch._C._dispatch_has_kernel_for_dispatch_key("aten::" + op, key)


@lru_cache(maxsize=None)
def int4_cuda_kernel_on(device: torch.device) -> bool:
    """Whether tinygemm's `_weight_int4pack_mm` runs on this CUDA device (compute capability 8.0+)."""
    return (_has_kernel("_weight_int4pack_mm", "cuda") and _has_kernel("_convert_weight_to_int4pack", "cuda")
            and torch.cuda.get_device_capability(device) >= (8, 0))


def _cuda_int4_tiles(k: int) -> int | None:
    """tinygemm's inner k tiles for in_features k (k must be a multiple of 16 tiles of them)."""
    return next((t for t in (8, 4, 2) if k % (16 * t) == 0), None)


@lru_cache(maxsize=None)
def int8_kernel_on(device_type: str) -> bool:
    """Whether torch has a `_weight_int8pack_mm` kernel for this device type (CPU, MPS and recent CUDA
    builds have one): elsewhere Int8Linear takes its reference path."""
    return _has_kernel("_weight_int8pack_mm", device_type)


# ----- quantizing a float weight -----

def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: (q int8 [N, K], scale float32 [N]) with w ~= q * scale[:, None].
    Rows go in chunks, so a large matrix (an output head) costs no full-size float temporaries."""
    q = torch.empty(w.shape, dtype=torch.int8, device=w.device)
    scale = torch.empty(w.shape[0], dtype=torch.float32, device=w.device)
    for i in range(0, w.shape[0], 4096):
        part = w[i:i + 4096].float()
        s = part.abs().amax(dim=1).clamp(min=1e-10) / 127.0
        q[i:i + 4096] = torch.round(part / s[:, None]).clamp_(-128, 127)
        scale[i:i + 4096] = s
    return q, scale


FP16_TINY = 2.0 ** -14  # the smallest normal float16: group scales at least this are kept in float16
FP16_MAX = 60000.0


def int8_group_params(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric int8 parameters per group of `group_size` input columns: (scale, offset) float32
    [N, K/G] with w ~= q * scale + offset, q in [-128, 127] spanning each group's range. Both are
    rounded to float16 when that costs (almost) nothing, which `Int8Linear` then stores in 4 bytes per
    group instead of 8."""
    n, k = w.shape
    if k % group_size:
        raise ModelError(f"int8: in_features {k} is not a multiple of group_size {group_size}")
    scale = torch.empty(n, k // group_size, dtype=torch.float32, device=w.device)
    offset = torch.empty_like(scale)
    for i in range(0, n, 4096):  # a large head costs no full-size float temporaries
        g = w[i:i + 4096].float().reshape(-1, k // group_size, group_size)
        lo, hi = g.amin(dim=-1), g.amax(dim=-1)
        scale[i:i + 4096], offset[i:i + 4096] = (hi - lo) / 255.0, lo
    offset += 128.0 * scale
    spread = scale > 0
    # float16 when the scales are normal float16 numbers and rounding an offset moves it by at most an
    # eighth of its group's scale (|offset| <= 512 scale): the values are re-rounded to the stored ones
    if (bool(spread.any()) and bool(scale[spread].min() >= FP16_TINY) and bool(scale.max() < FP16_MAX)
            and bool(offset.abs().max() < FP16_MAX)
            and bool((offset.abs() <= 512.0 * scale.clamp(min=FP16_TINY)).all())):
        scale = scale.clamp(min=FP16_TINY).half().float()
        return scale, offset.half().float()
    return scale.clamp(min=1e-10), offset


def _int8_round(w: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """q = round((w - offset) / scale) in [-128, 127], per group ([N, K/G] scale and offset)."""
    n, k = w.shape
    q = torch.empty(w.shape, dtype=torch.int8, device=w.device)
    for i in range(0, n, 4096):
        g = w[i:i + 4096].float().reshape(-1, scale.shape[1], k // scale.shape[1])
        q[i:i + 4096] = torch.round((g - offset[i:i + 4096, :, None]) / scale[i:i + 4096, :, None]).clamp_(-128, 127).reshape(-1, k)
    return q


def quantize_int8_groups(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group-wise asymmetric int8: (q int8 [N, K], scale [N, K/G], offset [N, K/G]) with
    w ~= q * scale + offset per group (`int8_group_params`; error at most half a scale per weight)."""
    scale, offset = int8_group_params(w, group_size)
    return _int8_round(w, scale, offset), scale, offset


def dequantize_int8_groups(q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Float32 [N, K] from int8 q [N, K] and per-group scale/offset [N, K/G]."""
    n, k = q.shape
    groups = scale.shape[1]
    w = q.float().reshape(n, groups, k // groups) * scale.float()[..., None] + offset.float()[..., None]
    return w.reshape(n, k)


@torch.no_grad()
def gptq_int8(w: torch.Tensor, hessian: torch.Tensor, block: int = 128, damp: float = 0.01,
              group_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Int8 like `quantize_int8` (group_size None: per row, symmetric) or `quantize_int8_groups` (same
    scales and offsets), rounded by GPTQ (Frantar et al. 2022) instead of to nearest: columns are rounded
    one by one and each one's rounding error is pushed onto the columns not yet rounded, weighted by the
    inverse of `hessian` = X^T X of the layer's inputs, which minimises the error of the layer's output on
    those inputs rather than the error of the weights. Returns (q, scale, offset or None)."""
    n, k = w.shape
    if group_size is None:
        scale = w.float().abs().amax(dim=1).clamp(min=1e-10) / 127.0
        scales, offsets = scale[:, None], torch.zeros(n, 1, device=w.device)
    else:
        scales, offsets = int8_group_params(w, group_size)
    width = k // scales.shape[1]
    wt = w.detach().float().t().contiguous()  # [K, N]: one input column per row, contiguous
    h = hessian.detach().to(torch.float64).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    wt[dead] = 0.0
    h += damp * torch.diag(h).mean() * torch.eye(k, dtype=h.dtype, device=h.device)
    try:
        hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    except RuntimeError:  # not positive definite even damped: plain rounding
        if group_size is None:
            return (*quantize_int8(w), None)
        return _int8_round(w, scales, offsets), scales, offsets
    hinv = hinv.float()
    q = torch.empty(k, n, dtype=torch.float32, device=wt.device)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        part, errs, hb = wt[i1:i2], torch.empty(i2 - i1, n, device=wt.device), hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            row, s, o = part[i], scales[:, (i1 + i) // width], offsets[:, (i1 + i) // width]
            qi = torch.round((row - o) / s).clamp_(-128, 127)
            q[i1 + i] = qi
            err = (row - (qi * s + o)) / hb[i, i]
            part[i + 1:].addr_(hb[i, i + 1:], err, alpha=-1.0)
            errs[i] = err
        wt[i2:].addmm_(hinv[i1:i2, i2:].t(), errs, alpha=-1.0)
    q8 = q.t().contiguous().to(torch.int8)
    return (q8, scales[:, 0], None) if group_size is None else (q8, scales, offsets)


CALIBRATION_PROMPTS = (
    "Tell me about the history of the bicycle.",
    "How do I bake bread at home?",
    "Write a letter to a friend about your holiday.",
    "What are the rules of chess?",
)


def self_calibration(model: nn.Module, tokens: int = 128, seed: int = 0) -> list[list[int]]:
    """Calibration sequences for `gptq_int8` drawn from the model itself: its sampled answers (temperature
    0.8, top_p 0.95, fixed seeds), prompt included, to CALIBRATION_PROMPTS through its chat template. A
    model without a tokenizer samples from a few fixed token ids instead."""
    from ..generation import generate

    tok = getattr(model, "tokenizer", None)
    if tok is not None and getattr(model, "chat_template", None):
        prompts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True)
                   for p in CALIBRATION_PROMPTS]
    elif tok is not None:
        prompts = [tok.encode(p) for p in CALIBRATION_PROMPTS]
    else:
        prompts = [[(7 * i + j) % model.config.vocab_size for j in range(4)] for i in range(len(CALIBRATION_PROMPTS))]
    sequences = []
    for i, prompt in enumerate(prompts):
        n = max(1, min(tokens, model.config.max_position_embeddings - len(prompt)))
        out = generate(model, prompt, {"strategy": "sample", "temperature": 0.8, "top_p": 0.95, "seed": seed + i,
                                       "max_length": n, "min_new_tokens": n})
        sequences.append(out.tolist())
    return sequences


def _calibration_sequences(calibration: Any) -> list[list[int]] | None:
    """A list of token-id sequences from a list of ids (one sequence) or a list of lists; None if invalid."""
    def ids(x: Any) -> bool:
        return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(i, int) and not isinstance(i, bool) for i in x)
    if ids(calibration):
        return [list(calibration)]
    if isinstance(calibration, (list, tuple)) and calibration and all(ids(c) for c in calibration):
        return [list(c) for c in calibration]
    return None


@torch.no_grad()
def _gptq_from_activations(model: nn.Module, names: list[str], sequences: list[list[int]],
                           group_size: int | None = None) -> dict[str, tuple]:
    """GPTQ int8 (q, scale, offset or None) for the named nn.Linear layers (groups of `group_size`, or
    per channel where it is None or the layer's in_features is not a multiple of 32), fitted on the inputs each one sees in one float
    forward pass over `sequences` (one batch: each cut to the shortest one and to the model's context):
    each layer is rounded inside its own input hook, so only one layer's X^T X exists at a time."""
    length = min(min(len(s) for s in sequences), model.config.max_position_embeddings)
    batch = torch.tensor([s[:length] for s in sequences], device=model.device)
    results: dict[str, tuple] = {}
    hooks = []
    for name in names:
        def hook(module, inputs, name=name):
            x = inputs[0].reshape(-1, module.in_features).to(torch.float64)
            results[name] = gptq_int8(module.weight, x.t() @ x, group_size=_group_for(module.in_features, group_size, "int8"))
        hooks.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        model.forward_full(batch)
    finally:
        for h in hooks:
            h.remove()
    return results


def quantize_int4(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric group-wise int4 (gpt-fast's get_group_qparams): (q uint8 [N, K] in 0..15,
    scale float32 [N, K/G], zero float32 [N, K/G]) with w ~= (q - 8) * scale + zero per group."""
    n, k = w.shape
    if k % group_size:
        raise ModelError(f"int4: in_features {k} is not a multiple of group_size {group_size}")
    g = w.float().reshape(n, k // group_size, group_size)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)
    scale = ((hi - lo) / 15.0).clamp(min=1e-10)
    q = torch.round((g - lo[..., None]) / scale[..., None]).clamp_(0, 15).to(torch.uint8).reshape(n, k)
    return q, scale, lo + 8.0 * scale


def dequantize_int4(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Float32 [N, K] from int4 values q [N, K] and per-group scale/zero [N, K/G]."""
    n, k = q.shape
    groups = scale.shape[1]
    w = (q.float().reshape(n, groups, k // groups) - 8.0) * scale.float()[..., None] + zero.float()[..., None]
    return w.reshape(n, k)


# ----- the quantized layers -----

class Int8Linear(nn.Module):
    """A linear layer with int8 weights, either per output channel (group_size None, symmetric:
    y = (x @ q.T) * scale + bias) or per group of `group_size` input columns (asymmetric:
    w = q * scale + offset per group, which holds GGUF Q8_0 / Q4_0 / Q4_1 blocks exactly).

    Per channel, `scales` [N] is in `compute_dtype` (torch's `_weight_int8pack_mm` wants it so). Per
    group, `scales_and_offsets` [N, 2, K/G] (the row's scales, then its offsets) is float16 when the
    values are float16 numbers (GGUF blocks, `int8_group_params`), else float32, and keeps that dtype
    when the layer is cast: `compute_dtype` is then only the dtype of the reference matmul."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor | None, bias: torch.Tensor | None,
                 compute_dtype: torch.dtype = torch.bfloat16, offset: torch.Tensor | None = None,
                 group_size: int | None = None, planes: torch.Tensor | None = None) -> None:
        """planes: the [N, 2, K/G] scales and offsets as they are (instead of scale and offset; kept in
        their dtype, no copy): what the GGUF K-quant loader builds in place."""
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.group_size = group_size
        self.register_buffer("qweight", q.to(torch.int8).contiguous())
        if group_size is None:
            self.register_buffer("scales", scale.to(compute_dtype).contiguous())
            self.scales_and_offsets = None
        else:
            if self.in_features % group_size or (group_size % 32 and group_size != 16) or (offset is None and planes is None):
                raise ModelError(f"int8: group_size {group_size} must be 16 or a multiple of 32 dividing in_features "
                                 f"{self.in_features}, with an offset per group")
            if planes is None:
                planes = torch.stack((scale.float(), offset.float()), dim=1)  # [N, 2, K/G]
                exact16 = torch.equal(planes.half().float(), planes)
                planes = planes.to(torch.float16 if exact16 else torch.float32)
            self.register_buffer("scales_and_offsets", planes.contiguous())
            self.scales = None
        self.compute_dtype = compute_dtype
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        # The native CPU kernel where it builds (native.py; built here, not at the first token, and
        # chosen again on a move), else torch's kernel for the input's device (int8_kernel_on; per
        # channel only), else the reference matmul. use_kernel=False forces the reference matmul.
        self.native_kernel = self._native_fits()
        self.use_kernel = HAS_INT8_KERNEL or self.native_kernel
        # what the native kernel rounds x to per group of 32 (groups of 32 only; other groups and per-channel
        # layers take x in float32): 16 (the default: 1/65534 of the block's largest |x|, as the int4
        # kernel) or 8 (`set_activations`)
        self.activation_bits = 16

    def _native_fits(self) -> bool:
        return self.qweight.device.type == "cpu" and native.available()

    def _apply(self, fn, recurse: bool = True):
        """`.to(device)` and friends: the native kernel is chosen again for the new device; a cast
        changes `compute_dtype` (and per channel the scales) but not a group layer's scales and offsets."""
        planes = self.scales_and_offsets
        self.compute_dtype = fn(torch.empty(0, dtype=self.compute_dtype, device=self.qweight.device)).dtype
        super()._apply(fn, recurse)
        if planes is not None:
            self.scales_and_offsets = planes.to(self.qweight.device)
        self.native_kernel = self._native_fits()
        return self

    @classmethod
    def from_linear(cls, linear: nn.Linear, compute_dtype: torch.dtype = torch.bfloat16,
                    group_size: int | None = None) -> "Int8Linear":
        w = linear.weight.detach()
        if group_size is None:
            q, scale = quantize_int8(w)
            return cls(q.to(w.device), scale.to(w.device), linear.bias, compute_dtype)
        q, scale, offset = quantize_int8_groups(w, group_size)
        return cls(q, scale, linear.bias, compute_dtype, offset, group_size)

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight [out, in] this layer multiplies by."""
        if self.group_size is None:
            return self.qweight.float() * self.scales.float()[:, None]
        planes = self.scales_and_offsets
        return dequantize_int8_groups(self.qweight, planes[:, 0], planes[:, 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_kernel and self.native_kernel and x.device.type == "cpu":
            h = float_rows(x, self.in_features)
            if h.shape[0] > NATIVE_MAX_ROWS:  # a long prompt: one float32 matmul beats reading the weights once per 8 rows
                y = F.linear(h, self.dequantized_weight())
            elif self.group_size is None:
                y = torch.ops.lispe.int8_linear(h, self.qweight, self.scales)
            else:
                # groups of 32: x rounded to activation_bits (16 by default); other groups: float32 x
                bits = self.activation_bits if self.group_size == 32 else 32
                y = torch.ops.lispe.int8_block_linear(h, self.qweight, self.scales_and_offsets, bits)
        elif self.use_kernel and self.group_size is None and int8_kernel_on(x.device.type):
            h = x.reshape(-1, self.in_features).to(self.scales.dtype)
            y = torch.ops.aten._weight_int8pack_mm(h, self.qweight, self.scales)
        elif self.group_size is None:
            h = x.reshape(-1, self.in_features).to(self.scales.dtype)
            y = F.linear(h, self.qweight.to(h.dtype)) * self.scales
        else:
            h = x.reshape(-1, self.in_features).to(self.compute_dtype)
            y = F.linear(h, self.dequantized_weight().to(h.dtype))
        y = like_input(y, x, self.out_features)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        kind = "per-channel" if self.group_size is None else f"group={self.group_size}"
        bits = ", 8-bit activations" if self.activation_bits == 8 else ""
        return f"in={self.in_features}, out={self.out_features}, int8 {kind}, compute={self.compute_dtype}{bits}"


class Int4Linear(nn.Module):
    """A linear layer with group-wise asymmetric int4 weights: w = (q - 8) * scale + zero per group.

    `scales_and_zeros` is [K/G, N, 2], as torch's int4 kernels want. `layout` says how `qweight` holds
    the values: "native" (kernels.cpp's blocks of 32 columns, with the scales and zeros also repeated
    per block as [N, 2, K/32] for it), "cpu" (the opaque packed layout of `_weight_int4pack_mm_for_cpu`), "cuda" (that of
    `_weight_int4pack_mm`, tinygemm: bfloat16, compute capability 8.0+), or None (reference path: two
    values per byte, low nibble = even column, the weight dequantized on each call). Moving the layer
    to another device or dtype repacks it for the kernel that fits there.
    """

    def __init__(self, q: torch.Tensor, scale: torch.Tensor | None, zero: torch.Tensor | None, bias: torch.Tensor | None,
                 group_size: int, compute_dtype: torch.dtype = torch.bfloat16,
                 scale_dtype: torch.dtype | None = None, native_bytes: bool = False,
                 planes: torch.Tensor | None = None) -> None:
        """scale_dtype: the dtype the scales and zeros are kept in (default `compute_dtype`; float32
        holds GGUF K-quant scales d * sc and zeros exactly, which bfloat16 cannot). native_bytes: q is
        already uint8 [N, K / 2] in the native kernel's layout (a GGUF Q4_0/Q4_1 matrix's value bytes;
        only where that kernel runs). planes: instead of scale and zero, with native_bytes and groups of
        32, the kernel's [N, 2, K / 32] scales then zeros as they are kept (no float copies: a GGUF
        loader builds them a few thousand rows at a time)."""
        super().__init__()
        n, k = q.shape[0], q.shape[1] * (2 if native_bytes else 1)
        if k % group_size or k % 2:
            raise ModelError(f"int4: in_features {k} must be even and a multiple of group_size {group_size}")
        self.out_features, self.in_features, self.group_size = n, k, group_size
        q = q.to(torch.uint8)
        if planes is not None:
            if not native_bytes or group_size != 32 or tuple(planes.shape) != (n, 2, k // 32):
                raise ModelError("int4: planes [N, 2, K / 32] come with native bytes in groups of 32")
            sz = planes.to(q.device).contiguous().permute(2, 0, 1)  # seen as [K/G, N, 2]
        else:
            sz = torch.stack((scale.float().t(), zero.float().t()), dim=-1)  # [K/G, N, 2]
            sz = sz.to(device=q.device, dtype=scale_dtype or compute_dtype).contiguous()
        self.layout = self._kernel_for(q.device, sz.dtype)
        if native_bytes:
            if self.layout != "native":
                raise ModelError("int4: bytes in the native layout need the native kernel")
            packed = q
        elif self.layout == "native":  # straight to the kernel's layout, a few thousand rows at a time: no
            packed = torch.empty(n, k // 2, dtype=torch.uint8, device=q.device)  # full-size temporaries
            for i in range(0, n, 8192):  # (a 128k-row head would otherwise pass through ~1 GB of them)
                packed[i:i + 8192] = _pack_int4(q[i:i + 8192], "native")
        else:
            self.layout = None
            packed = (q[:, 0::2] | (q[:, 1::2] << 4)).contiguous()
        self.register_buffer("qweight", packed)
        self.register_buffer("scales_and_zeros", sz)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.activation_bits = 16  # what the native kernel rounds x to per block of 32 (`set_activations`)
        self._pack()

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int, compute_dtype: torch.dtype = torch.bfloat16) -> "Int4Linear":
        q, scale, zero = quantize_int4(linear.weight.detach(), group_size)
        return cls(q, scale, zero, linear.bias, group_size, compute_dtype)

    @property
    def use_kernel(self) -> bool:
        return self.layout is not None

    def _kernel_for(self, device: torch.device, dtype: torch.dtype) -> str | None:
        n, k = self.out_features, self.in_features
        if device.type == "cpu" and self.group_size % 32 == 0 and native.available():
            return "native"
        if device.type == "cpu":
            fits = HAS_INT4_CPU_KERNEL and n % 16 == 0 and dtype in (torch.float32, torch.bfloat16, torch.float16)
            return "cpu" if fits else None
        if device.type == "cuda":
            return "cuda" if (n % 8 == 0 and _cuda_int4_tiles(k) and dtype == torch.bfloat16
                              and int4_cuda_kernel_on(device)) else None
        return None

    def _pack(self) -> None:
        """Two values per byte -> the layout of the kernel that fits the layer's device and dtype."""
        kind = self._kernel_for(self.qweight.device, self.scales_and_zeros.dtype)
        if kind is not None and self.layout is None:
            q = torch.stack((self.qweight & 0x0F, self.qweight >> 4), dim=-1).reshape(self.out_features, -1)
            self.qweight, self.layout = _pack_int4(q, kind), kind
        self._native_scales = self._block_scales() if self.layout == "native" else None
        if (self._native_scales is not None and self.group_size == 32
                and self._native_scales.dtype == self.scales_and_zeros.dtype):
            # the kernel's [N, 2, K/32] planes are the scales and zeros: keep one copy, seen as [K/32, N, 2]
            self.scales_and_zeros = self._native_scales.permute(2, 0, 1)

    def _block_scales(self) -> torch.Tensor:
        """For the native kernel, per row: the scale of each block of 32 columns, then each block's
        zero, [N, 2, K/32], in the layer's bfloat16 or float32 (float16 widened to float32: exact)."""
        sz = self.scales_and_zeros
        if sz.dtype != torch.bfloat16:
            sz = sz.float()
        planes = sz.permute(1, 2, 0)  # [K/G, N, 2] -> [N, 2, K/G]
        if self.group_size == 32:
            return planes.contiguous()  # (no copy where they are already the planes)
        return planes.repeat_interleave(self.group_size // 32, dim=2).contiguous()

    def _apply(self, fn, recurse: bool = True):
        """`.to(device)`, `.to(dtype)` and friends: a kernel's packed layout means nothing to another
        device's kernel, so a layer whose kernel no longer fits goes back to two values per byte first
        (exactly: the nibbles are moved, not recomputed), and is packed for the kernel that fits after."""
        target = fn(torch.empty(0, dtype=self.scales_and_zeros.dtype, device=self.qweight.device))
        if self.layout is not None and self._kernel_for(target.device, target.dtype) != self.layout:
            self.qweight = _unpack_int4(self.qweight, self.layout, self.out_features, self.in_features)
            self.layout = None
        super()._apply(fn, recurse)
        self._pack()
        return self

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight [out, in] this layer multiplies by (on the CPU, computed through the kernel)."""
        if self.layout == "cpu":
            eye = torch.eye(self.in_features, dtype=torch.float32, device=self.qweight.device)
            sz = self.scales_and_zeros.float()
            return torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.qweight, self.group_size, sz).t()
        return self._reference_weight(torch.float32)

    def _nibbles(self) -> torch.Tensor:
        if self.layout is None:
            return self.qweight
        return _unpack_int4(self.qweight, self.layout, self.out_features, self.in_features)

    def _reference_weight(self, dtype: torch.dtype) -> torch.Tensor:
        packed = self._nibbles()
        q = torch.stack((packed & 0x0F, packed >> 4), dim=-1).reshape(self.out_features, self.in_features)
        sz = self.scales_and_zeros.float()
        return dequantize_int4(q, sz[..., 0].t(), sz[..., 1].t()).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "native":
            h = float_rows(x, self.in_features)
            if h.shape[0] <= NATIVE_MAX_ROWS:
                y = torch.ops.lispe.int4_linear(h, self.qweight, self._native_scales, self.activation_bits)
            else:  # a long prompt: one float32 matmul beats reading the weights once per 8 rows
                y = F.linear(h, self._reference_weight(torch.float32))
        else:
            h = x.reshape(-1, self.in_features).to(self.scales_and_zeros.dtype)
            if self.layout == "cpu":
                y = torch.ops.aten._weight_int4pack_mm_for_cpu(h, self.qweight, self.group_size, self.scales_and_zeros)
            elif self.layout == "cuda":
                y = torch.ops.aten._weight_int4pack_mm(h, self.qweight, self.group_size, self.scales_and_zeros)
            else:
                y = F.linear(h, self._reference_weight(h.dtype))
        y = like_input(y, x, self.out_features)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        path = f"{self.layout} kernel" if self.layout else "reference"
        if self.layout == "native" and self.activation_bits != 16:
            path += f", {self.activation_bits}-bit activations"
        return (f"in={self.in_features}, out={self.out_features}, int4 group={self.group_size}, "
                f"compute={self.scales_and_zeros.dtype}, {path}")


from .kquant_linear import KIND_CODES as KQUANT_KERNELS, KQuantLinear  # noqa: E402  (GGUF Q4_K / Q6_K, mapped)

QuantizedLinear = (Int8Linear, Int4Linear, KQuantLinear)


def _rounding_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose native kernel rounds x to `activation_bits`: int4 layers on the native kernel,
    GGUF K-quant layers, and int8 layers in groups of 32 on the native kernel (GGUF Q8_0 blocks, an
    int4 model's int8 head)."""
    return [m for m in model.modules()
            if isinstance(m, KQuantLinear) or (isinstance(m, Int4Linear) and m.layout == "native")
            or (isinstance(m, Int8Linear) and m.native_kernel and m.group_size == 32)]


def _activations_of(model: nn.Module) -> str | None:
    bits = {m.activation_bits for m in _rounding_layers(model)}
    names = [name for name, b in ACTIVATION_BITS.items() if b in bits]
    return "+".join(names) or None


def set_activations(model: nn.Module, activations: str) -> None:
    """Round the activations of every native quantized layer of `model` that can (int4 layers on the
    native CPU kernel, the layers a GGUF file's Q4_K/Q6_K blocks become, int8 layers in groups of 32)
    to "int16" (the default: per block of 32 or super-block of 256 to 1/65534 of its largest |x|; on
    the tests' models the logits stay within ~1e-3 of the
    dequantized float model's) or "int8" (llama.cpp's arithmetic, its Q8_0 / Q8_1 / Q8_K rows: 1/254 of
    the largest |x|, integer products; next-token distributions within a KL divergence of ~0.003 of
    the 16-bit ones on the tests' models, so greedy ids may part); recorded in
    `model.quantization.activations`. A ModelError for another name or a model without such layers
    (quantize "int4", or "int8" in groups of 32, on a CPU where the native kernels run makes them)."""
    if activations not in ACTIVATION_BITS:
        raise ModelError(f"activations must be one of {', '.join(map(repr, ACTIVATION_BITS))}, got {activations!r}")
    layers = _rounding_layers(model)
    if not layers:
        raise ModelError("activations applies to int4 layers, int8 layers in groups of 32 and the layers a GGUF "
                         "file's Q4_K/Q6_K blocks become, on the native CPU kernels (quantize \"int4\" or \"int8\" "
                         "on a CPU where they run), and this model has none")
    for layer in layers:
        layer.activation_bits = ACTIVATION_BITS[activations]
    quantization = getattr(model, "quantization", None)
    if quantization is not None:
        quantization.activations = activations
    if hasattr(model, "reset_decode_graphs"):
        model.reset_decode_graphs()  # the traced steps hold the kernel's width as a constant


def _pack_int4(q: torch.Tensor, kind: str) -> torch.Tensor:
    """Values q [n, k] (uint8, 0..15, on the kernel's device) in the packed layout of kernel `kind`."""
    if kind == "native":  # blocks of 32 columns, 16 bytes each: byte j = q[j] | q[j + 16] << 4
        n, k = q.shape
        blocks = q.to(torch.uint8).reshape(n, k // 32, 2, 16)
        return interleave_int4_blocks(blocks[:, :, 0] | (blocks[:, :, 1] << 4))
    if kind == "cpu":
        return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)
    pairs = ((q[:, 0::2] << 4) | q[:, 1::2]).to(torch.uint8).contiguous()  # tinygemm: high nibble first
    return torch.ops.aten._convert_weight_to_int4pack(pairs, _cuda_int4_tiles(q.shape[1]))


def interleave_int4_blocks(blocks: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of 16-byte int4 blocks (byte j = v[j] | v[j + 16] << 4, as GGUF's Q4_0/Q4_1 hold them), uint8
    [n, B, 16] with any strides (a file's blocks between their scales), into `out` (uint8 [n, 16 B],
    new if None) in the native kernel's order: each run of 8 blocks as 4 chunks of 32 bytes, chunk c
    holding bytes 4 c .. 4 c + 3 of each of the 8 blocks in turn (so that one integer lane sums one
    block: kernels.cpp `int4_group`); the last B % 8 blocks of a row as they are. One strided copy."""
    n, b, _ = blocks.shape
    if out is None:
        out = torch.empty(n, 16 * b, dtype=torch.uint8, device=blocks.device)
    run = b // 8 * 8
    for dtype in (torch.int32, torch.int16, torch.uint8):  # the widest the strides allow: copies of 4-byte
        try:                                               # units run ~3x faster than of bytes
            src, dst = blocks.view(dtype), out.view(dtype)
            break
        except RuntimeError:
            continue
    u = 4 // src.element_size()  # elements per 4 bytes
    dst[:, :4 * u * run].view(n, run // 8, 4, 8, u).copy_(src[:, :run].view(n, run // 8, 8, 4, u).transpose(2, 3))
    dst[:, 4 * u * run:].view(n, b - run, 4 * u).copy_(src[:, run:])
    return out


def _int4_sources(kind: str, n: int, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For each byte of kernel `kind`'s packed layout of an [n, k] weight, the flat index into q of the
    value its low and its high nibble hold (found by packing indices: holds for whatever layout this
    torch build's kernel uses). Where the layout of 2b rows is that of b rows twice over (the kernels
    work in blocks of rows), the block's sources are tiled instead of packing n * k indices."""
    for b in (16, 32, 64, 128):
        if n % b == 0 and n > b:
            lo, hi = _int4_sources_probe(kind, b, k, device)
            lo2, hi2 = _int4_sources_probe(kind, 2 * b, k, device)
            if torch.equal(lo2, torch.cat((lo, lo + b * k))) and torch.equal(hi2, torch.cat((hi, hi + b * k))):
                offsets = torch.arange(0, n * k, b * k, dtype=torch.int64, device=device)[:, None]
                return (lo[None, :] + offsets).view(-1), (hi[None, :] + offsets).view(-1)
    return _int4_sources_probe(kind, n, k, device)


@lru_cache(maxsize=16)
def _int4_sources_probe(kind: str, n: int, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.arange(n * k, dtype=torch.int64, device=device).view(n, k)
    lo = hi = None
    shift = 0
    while shift == 0 or (n * k - 1) >> shift:
        part = _pack_int4(((idx >> shift) & 15).to(torch.uint8), kind).reshape(-1).view(torch.uint8).long()
        lo = (part & 15) << shift if lo is None else lo | ((part & 15) << shift)
        hi = (part >> 4) << shift if hi is None else hi | ((part >> 4) << shift)
        shift += 4
    return lo, hi


def _unpack_int4(packed: torch.Tensor, kind: str, n: int, k: int) -> torch.Tensor:
    """Kernel `kind`'s packed int4 weight back as two values per byte (low nibble = even column)."""
    lo, hi = _int4_sources(kind, n, k, packed.device)
    flat = packed.reshape(-1).view(torch.uint8)
    q = torch.empty(n * k, dtype=torch.uint8, device=packed.device)
    q[lo] = flat & 15
    q[hi] = flat >> 4
    q = q.view(n, k)
    return (q[:, 0::2] | (q[:, 1::2] << 4)).contiguous()


# ----- whole models -----

@dataclass
class Quantization:
    """What `quantize_model` / `load_gguf_quantized` did to a model (kept as `model.quantization`)."""

    mode: str
    group_size: int | None  # int4's groups, int8's groups or None for int8 per channel
    lm_head: str | None  # "int8", "int4", or None when the head stayed in the model's dtype
    compute_dtype: str
    layers: int  # linear layers replaced
    source: str = "float"  # "float" (quantized from float weights) or "gguf" (from GGUF blocks)
    exact_from_gguf: int = 0  # layers whose values were taken from GGUF blocks as they are
    method: str = "rtn"  # "rtn" (round to nearest) or "gptq" (int8 rounding that compensates its error)
    calibration_tokens: int = 0  # tokens whose activations the "gptq" rounding was fitted on
    activations: str | None = None  # "int16" / "int8": what the rounding native kernels (`set_activations`) take x as; None: no such layers

    def as_dict(self) -> dict:
        return asdict(self)


def _check_mode(mode: str, group_size: int | None) -> None:
    if mode not in MODES:
        raise ModelError(f"unknown quantization {mode!r}; use one of: {', '.join(MODES)}")
    allowed = GROUP_SIZES + ((PER_CHANNEL,) if mode == "int8" else ())
    if group_size is not None and group_size not in allowed:
        raise ModelError(f"{mode} group_size must be one of {', '.join(map(str, allowed))}, got {group_size}"
                         + (f" ({PER_CHANNEL}: one scale per output channel)" if mode == "int8" else ""))


def default_int8_groups(device: str | torch.device) -> bool:
    """Whether "int8" without a group size means groups of 32 (True) or one scale per output channel:
    groups where the native kernel runs (an AVX2 CPU with a C++ compiler: same speed, far closer to the
    float model, and GGUF Q8_0/Q4 blocks held exactly), per channel elsewhere (torch's
    `_weight_int8pack_mm`, which has no groups)."""
    return torch.device(device).type == "cpu" and native.available()


def resolve_group_size(mode: str, group_size: int | None, device: str | torch.device) -> int | None:
    """The group size a layer gets: int4 32 by default; int8 32 or None (per channel, also PER_CHANNEL)."""
    _check_mode(mode, group_size)
    if mode == "int4":
        return group_size or DEFAULT_GROUP_SIZE
    if group_size is None:
        return DEFAULT_GROUP_SIZE if default_int8_groups(device) else None
    return None if group_size == PER_CHANNEL else group_size


def _layer_group(in_features: int, group_size: int, mode: str = "int4") -> int:
    """The group size used for a layer: the requested one, or the largest allowed one dividing K."""
    if in_features % group_size == 0:
        return group_size
    for g in sorted(GROUP_SIZES, reverse=True):
        if g < group_size and in_features % g == 0:
            return g
    raise ModelError(f"{mode}: in_features {in_features} is not a multiple of any group size {GROUP_SIZES}")


def _group_for(in_features: int, group_size: int | None, mode: str) -> int | None:
    """A layer's group size from the resolved one: None stays None (int8 per channel); an int8 layer
    whose in_features is not a multiple of 32 keeps one scale per output channel (None); otherwise
    `_layer_group`."""
    if group_size is None or (mode == "int8" and in_features % 32):
        return None
    return _layer_group(in_features, group_size, mode)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _head_mode(mode: str, lm_head: bool | str) -> str | None:
    # The output head is the most sensitive layer: int4 there costs SmolLM2 ~10% perplexity where int8
    # costs nothing measurable (llama.cpp's Q4 files keep it Q8_0 too), so True means int8.
    if lm_head is False or lm_head is None:
        return None
    if lm_head is True or lm_head == "auto":
        return "int8"
    if lm_head not in MODES:
        raise ModelError(f"lm_head must be True, False, 'auto', 'int8' or 'int4', got {lm_head!r}")
    return lm_head


def _quantized(linear: nn.Linear, mode: str, group_size: int | None, compute_dtype: torch.dtype,
               int8: tuple | None = None) -> nn.Module:
    """The quantized twin of one nn.Linear (group_size resolved: None is int8 per channel); `int8` is a
    GPTQ result (q, scale, offset or None) to use instead of rounding to nearest."""
    group = _group_for(linear.in_features, group_size, mode)
    if mode == "int8" and int8 is not None:
        q, scale, offset = int8
        return Int8Linear(q, scale, linear.bias, compute_dtype, offset, group)
    if mode == "int8":
        return Int8Linear.from_linear(linear, compute_dtype, group)
    return Int4Linear.from_linear(linear, group, compute_dtype)


def _use_native_ops(model: nn.Module) -> None:
    """Where the native kernels run, a quantized model's RMSNorms and decode-step attention use
    `lispe::rms_norm` and `lispe::decode_attention` too (one op instead of six for a norm, ~2.5 ms of
    a SmolLM2 step here; attention ~2x faster than SDPA for one query row). Neither is bit-identical to
    transformers' (another summation order), which a quantized model's output is not anyway."""
    if native.available():
        from .layers import Attention, RMSNorm

        for module in model.modules():
            if isinstance(module, (RMSNorm, Attention)):
                module.native = True


def _keep_tied_weight(model: nn.Module) -> None:
    # The embedding still needs the float table; when the head was tied to it, the quantized head keeps
    # a reference to it under the same name, as an untouched tied model would.
    if getattr(model.config, "tie_word_embeddings", False) and hasattr(model, "embed"):
        model.lm_head.weight = model.embed.weight


@torch.no_grad()
def quantize_model(model: nn.Module, mode: str, group_size: int | None = None, lm_head: bool | str = True,
                   compute_dtype: torch.dtype = torch.bfloat16, calibration: str | list | None = None
                   ) -> nn.Module:
    """Replace the decoder's nn.Linear layers (fused q/k/v and gate/up included) by int8 or int4 ones, in place.

    mode: "int8" or "int4". group_size: int4 groups of 32 (default), 64 or 128 input columns (a layer
    whose in_features the group does not divide uses the largest allowed group that does); int8 groups
    of 32/64/128 (a scale and an offset per group) or PER_CHANNEL (-1: one scale per output channel), by
    default 32 where the native CPU kernel runs and per channel elsewhere (`default_int8_groups`); an
    int8 layer whose in_features is not a multiple of 32 keeps one scale per channel. lm_head: True
    (int8, whatever the mode: int4 there costs SmolLM2 ~10% perplexity), False (keep it in the model's
    dtype), "int8", "int4", or "auto" (the same as True; kept for older callers). Records
    `model.quantization` and returns the model.

    calibration (int8 only): None rounds to nearest; "self" (`self_calibration`: the model's own sampled
    answers), a list of token ids or a list of such sequences fits each int8 layer, head included, with
    `gptq_int8` on the activations of one float forward pass over them (a batch cut to the shortest). Slower to quantize (minutes for SmolLM2 on 2 cores),
    same speed to run, and much closer to the float model's greedy output (docs/performance.md).
    """
    device = getattr(model, "device", "cpu")
    group = resolve_group_size(mode, group_size, device)
    if getattr(model, "quantization", None) is not None:
        raise ModelError(f"the model is already quantized ({model.quantization.mode})")
    if calibration is not None and mode != "int8":
        raise ModelError("calibration (GPTQ rounding) is implemented for int8 only")
    if calibration is not None and calibration != "self" and _calibration_sequences(calibration) is None:
        raise ModelError("calibration must be None, \"self\", a list of token ids or a list of such lists")
    head = _head_mode(mode, lm_head)
    head_group = group if head == mode else resolve_group_size(head, None, device) if head else None
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"]
    for name, linear in targets + ([("lm_head", model.lm_head)] if head == "int4" else []):
        if (mode == "int4" or name == "lm_head") and linear.in_features % 32:  # before any layer changes
            raise ModelError(f"int4: layer {name} has in_features {linear.in_features}, not a multiple of "
                             f"any group size {GROUP_SIZES}; use int8")
    fitted: dict[str, tuple] = {}
    tokens = 0
    if calibration is not None:
        sequences = self_calibration(model) if calibration == "self" else _calibration_sequences(calibration)
        names = [n for n, _ in targets] + (["lm_head"] if head == "int8" else [])
        fitted = _gptq_from_activations(model, names, sequences, group)
        tokens = len(sequences) * min(min(map(len, sequences)), model.config.max_position_embeddings)
    with single_thread():
        if head is not None:
            model.lm_head = _quantized(model.lm_head, head, head_group, compute_dtype, fitted.get("lm_head"))
            _keep_tied_weight(model)
        for name, linear in targets:
            _set_module(model, name, _quantized(linear, mode, group, compute_dtype, fitted.get(name)))
    _use_native_ops(model)
    if hasattr(model, "reset_decode_graphs"):
        model.reset_decode_graphs()  # captured decode steps point at the replaced layers
    model.quantization = Quantization(
        mode, group, head, str(compute_dtype).removeprefix("torch."),
        len(targets) + (head is not None), method="gptq" if fitted else "rtn",
        calibration_tokens=tokens, activations=_activations_of(model),
    )
    return model


def layer_kernel(layer: nn.Module) -> str:
    """Which matmul a quantized layer runs on its device: "native" (kernels.cpp), "torch" (torch's
    weight-packed kernels) or "reference" (the weight dequantized on each call)."""
    if isinstance(layer, Int4Linear):
        return {"native": "native", "cpu": "torch", "cuda": "torch"}.get(layer.layout or "", "reference")
    if isinstance(layer, KQuantLinear):
        return "native"
    device = layer.qweight.device.type
    if not layer.use_kernel:
        return "reference"
    if device == "cpu" and layer.native_kernel:
        return "native"
    return "torch" if layer.group_size is None and int8_kernel_on(device) else "reference"


def model_kernels(model: nn.Module) -> str | None:
    """The kernels of a model's quantized layers ("native", "torch", "reference", or several joined by
    "+"), None when nothing is quantized."""
    kinds = sorted({layer_kernel(layer) for _, layer in quantized_layers(model)})
    return "+".join(kinds) or None


def quantized_layers(model: nn.Module) -> Iterable[tuple[str, nn.Module]]:
    """(name, layer) for every quantized linear layer of `model`."""
    return ((n, m) for n, m in model.named_modules() if isinstance(m, QuantizedLinear))


# ----- straight from GGUF blocks -----

def rope_unpermute_index(rows: int, n_head: int) -> torch.Tensor:
    """Row order that undoes llama.cpp's interleaving of the two rotary halves of each head in attn_q/attn_k
    (new row r comes from old row index[r]); applied to int values and per-row scales alike."""
    dim = rows // n_head // 2
    return torch.arange(rows).reshape(n_head, dim, 2).transpose(1, 2).reshape(rows)


@dataclass
class GGUFParts:
    """A GGUF matrix as integer values and a float32 scale and offset per group: w = q * scale + offset."""

    q: torch.Tensor  # int8 [N, K]: the file's integer values (Q4_0: v - 8; Q6_K: q - 32)
    planes: torch.Tensor  # [N, 2, K / group]: scales then offsets; float16 (Q8_0/Q4_0/Q4_1: the file's
    # own d and m) or float32 (K-quants: d * sc and -dmin * m)
    group: int  # 32, or 16 (Q6_K)
    low: int | None  # 4-bit types: the smallest value (q - low is 0..15); None for wider ones
    kind: str

    @property
    def scale(self) -> torch.Tensor:
        """float32 [N, K / group]"""
        return self.planes[:, 0].float()

    @property
    def offset(self) -> torch.Tensor:
        """float32 [N, K / group]"""
        return self.planes[:, 1].float()


# GGUF blocks of 32 values: (bytes per block, bytes before the values: d, and m for Q4_1)
_BLOCKS_OF_32 = {"Q8_0": (34, 2), "Q4_0": (18, 2), "Q4_1": (20, 4)}


def gguf_parts(tensor, rows: int = 4096, release=None) -> GGUFParts | None:
    """The exact parts of a Q8_0, Q4_0, Q4_1, Q4_K, Q5_K or Q6_K matrix (None for other types), read
    from the blocks a few thousand rows at a time: no float weight is built. release(tensor, start,
    length): called on each K-quant chunk's bytes once read (`GGUFFile.release`)."""
    kind = tensor.type_name
    if len(tensor.shape) != 2:
        return None
    n, k = tensor.shape
    if kind in _BLOCKS_OF_32:
        size, header = _BLOCKS_OF_32[kind]
        raw = torch.from_numpy(tensor.data).view(n, k // 32 * size)
        q = torch.empty(n, k, dtype=torch.int8)
        planes = torch.zeros(n, 2, k // 32, dtype=torch.float16)
        for i in range(0, n, rows):
            part = raw[i:i + rows]
            c = part.shape[0]
            blocks = part.reshape(-1, size)
            planes[i:i + c, 0] = blocks[:, :2].contiguous().view(torch.float16).reshape(c, -1)
            if kind == "Q4_1":
                planes[i:i + c, 1] = blocks[:, 2:4].contiguous().view(torch.float16).reshape(c, -1)
            qs = blocks[:, header:]
            if kind == "Q8_0":
                q[i:i + c] = qs.contiguous().view(torch.int8).reshape(c, k)
            else:  # low nibbles: values 0..15 of a block, high nibbles 16..31
                values = torch.cat((qs & 0x0F, qs >> 4), dim=1).reshape(c, k).view(torch.int8)
                q[i:i + c] = values - 8 if kind == "Q4_0" else values
            if release is not None:
                release(tensor, i * raw.shape[1], c * raw.shape[1])
        return GGUFParts(q, planes, 32, {"Q4_0": -8, "Q4_1": 0}.get(kind), kind)
    if kind not in kquants.KINDS:
        return None
    size, group = kquants.BLOCK_BYTES[kind], kquants.SUB_BLOCK[kind]
    raw = torch.from_numpy(tensor.data).view(n, k // kquants.QK_K * size)
    q = torch.empty(n, k, dtype=torch.int8)
    planes = torch.empty(n, 2, k // group)  # Int8Linear's layout: the int8 layer takes it without a copy
    for i in range(0, n, rows):
        part = raw[i:i + rows]
        qq, ss, oo = kquants.parts(kind, part.reshape(-1, size))
        c = part.shape[0]
        q[i:i + c] = qq.reshape(c, k).to(torch.int8)
        planes[i:i + c, 0], planes[i:i + c, 1] = ss.reshape(c, -1), oo.reshape(c, -1)
        if release is not None:
            release(tensor, i * raw.shape[1], c * raw.shape[1])
    return GGUFParts(q, planes, group, 0 if kind == "Q4_K" else None, kind)


def int4_from_gguf(tensor, group_size: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """(q uint8 [N, K] in 0..15, scale [N, K/G], zero [N, K/G], exact) for one GGUF matrix.

    Q4_1 and Q4_0 tensors with group_size 32 map onto int4 exactly (no float weight is built); any other
    type or group size is dequantized and re-quantized (exact False).
    """
    from .gguf_loader import dequantize

    parts = gguf_parts(tensor) if group_size == 32 else None
    if parts is None or parts.low is None:
        return (*quantize_int4(dequantize(tensor), group_size), False)
    return _int4_of(parts) + (True,)


def _int4_of(p: GGUFParts) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(v uint8 0..15, scale, zero) with w = (v - 8) * scale + zero, of 4-bit parts."""
    v = (p.q if p.low == 0 else p.q - p.low).view(torch.uint8)  # q - low is 0..15: no int8 overflow
    scale, offset = p.scale, p.offset
    return v, scale, (offset if p.low == -8 else offset + float(8 + p.low) * scale)


def int8_from_gguf(tensor, group_size: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """(q int8 [N, K], scale [N, K/G], offset [N, K/G], exact) for one GGUF matrix (w = q * scale + offset).

    Q8_0, Q4_0, Q4_1, Q4_K and Q5_K tensors with group_size 32 map onto int8 groups exactly (scale = d;
    offset 0, -8 d folded into the values, or m; K-quants: d * sc and -dmin * m per sub-block), and
    Q6_K tensors onto groups of 16 (the scale and offset planes are then [N, K/16]); any other type
    or group size is dequantized and re-quantized.
    """
    from .gguf_loader import dequantize

    parts = gguf_parts(tensor) if group_size == 32 else None
    if parts is None:
        return (*quantize_int8_groups(dequantize(tensor), group_size), False)
    return parts.q, parts.scale, parts.offset, True


def _gguf_layer(tensors: list, heads: list[int | None], mode: str, group_size: int | None,
                compute_dtype: torch.dtype, device: str | torch.device, release=None,
                kquant_native: bool = False) -> tuple[nn.Module, bool]:
    """One quantized layer whose rows are the GGUF matrices `tensors` stacked (fused q/k/v, gate/up);
    group_size resolved (None: int8 per channel)."""
    from .gguf_loader import dequantize

    group = _group_for(tensors[0].shape[1], group_size, mode)
    if group is None:  # int8 per channel
        parts = []
        for t, n_head in zip(tensors, heads):
            w = dequantize(t)
            parts.append(w if n_head is None else w[rope_unpermute_index(w.shape[0], n_head)])
        q, scale = quantize_int8(torch.cat(parts))
        return Int8Linear(q.to(device), scale.to(device), None, compute_dtype), False
    exact_layer = _exact_gguf_layer(tensors, heads, mode, group, compute_dtype, device, release, kquant_native)
    if exact_layer is not None:
        return exact_layer, True
    from_gguf = int8_from_gguf if mode == "int8" else int4_from_gguf
    qs, scales, zeros, exact = [], [], [], True
    for t, n_head in zip(tensors, heads):
        q, s, z, ok = from_gguf(t, group)
        if n_head is not None:
            index = rope_unpermute_index(q.shape[0], n_head)
            q, s, z = q[index], s[index], z[index]
        qs.append(q), scales.append(s), zeros.append(z)
        exact = exact and ok

    def cat(parts: list[torch.Tensor]) -> torch.Tensor:  # one matrix (a head): no copy of it
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    if mode == "int8":
        layer = Int8Linear(cat(qs).to(device), cat(scales).to(device), None, compute_dtype, cat(zeros).to(device), group)
    else:
        layer = Int4Linear(cat(qs).to(device), cat(scales), cat(zeros), None, group, compute_dtype)
    return layer, exact


def _int4_from_q4_bytes(tensors: list, heads: list[int | None], compute_dtype: torch.dtype, release=None,
                        rows: int = 8192) -> "Int4Linear":
    """The int4 layer of Q4_0/Q4_1 matrices for the native kernel: a block's 16 bytes of values (byte j =
    v[j] | v[j + 16] << 4) are what that kernel reads, so they are copied without unpacking (only runs
    of 8 blocks interleaved: `interleave_int4_blocks`; no full-size temporaries), with the same scales
    and zeros as `_int4_of` gives (Q4_0: d and 0; Q4_1: d and m + 8 d, in float32)."""
    packed, planes = [], []
    for t, n_head in zip(tensors, heads):
        n, k = t.shape
        size, header = _BLOCKS_OF_32[t.type_name]
        raw = torch.from_numpy(t.data).view(n, k // 32, size)
        values = torch.empty(n, k // 2, dtype=torch.uint8)
        # the kernel's scales and zeros, built a chunk at a time (a 128k-row head's float32 copies would
        # otherwise pass through ~200 MB at once): Q4_0 d and 0, Q4_1 d and m + 8 d, computed in float32
        sz = torch.empty(n, 2, k // 32, dtype=compute_dtype)
        for i in range(0, n, rows):
            part = raw[i:i + rows]
            c = part.shape[0]
            interleave_int4_blocks(part[:, :, header:], out=values[i:i + c])
            d = part[:, :, 0:2].contiguous().view(torch.float16).reshape(c, -1).float()
            sz[i:i + c, 0] = d
            if header == 4:
                sz[i:i + c, 1] = part[:, :, 2:4].contiguous().view(torch.float16).reshape(c, -1).float() + 8.0 * d
            else:
                sz[i:i + c, 1] = 0.0
            if release is not None:
                release(t, i * raw.shape[1] * size, c * raw.shape[1] * size)
        if n_head is not None:
            index = rope_unpermute_index(n, n_head)
            values, sz = values[index], sz[index]
        packed.append(values), planes.append(sz)

    def cat(parts: list[torch.Tensor]) -> torch.Tensor:
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    return Int4Linear(cat(packed), None, None, None, 32, compute_dtype, native_bytes=True, planes=cat(planes))


def _exact_gguf_layer(tensors: list, heads: list[int | None], mode: str, group: int, compute_dtype: torch.dtype,
                      device: str | torch.device, release=None, kquant_native: bool = False) -> nn.Module | None:
    """The layer holding the GGUF matrices' values as they are, or None where the blocks do not fit
    the mode (then `_gguf_layer` re-quantizes). int4: every part 4-bit (Q4_0, Q4_1, Q4_K), groups of
    32; K-quant scales and zeros in float32 unless `compute_dtype` holds them exactly. int8 (or int4
    for a layer with Q5_K/Q6_K parts, as a Q4_K_M file has): groups of 32, or 16 with a Q6_K part."""
    if group != 32:
        return None
    if kquant_native and all(t.type_name in KQUANT_KERNELS for t in tensors):
        # Q4_K / Q6_K matrices (a Q4_K_M file's): the native K-quant kernels read the mapped blocks
        return KQuantLinear([(t.type_name, torch.from_numpy(t.data).view(t.shape[0], -1),
                              None if n_head is None else rope_unpermute_index(t.shape[0], n_head))
                             for t, n_head in zip(tensors, heads)])
    if (mode == "int4" and all(t.type_name in ("Q4_0", "Q4_1") for t in tensors)
            and torch.device(device).type == "cpu" and native.available()):
        return _int4_from_q4_bytes(tensors, heads, compute_dtype, release)
    parts = [gguf_parts(t, release=release) for t in tensors]
    if any(p is None for p in parts):
        return None
    kquant = any(p.kind in kquants.KINDS for p in parts)
    four = all(p.low is not None for p in parts)
    if mode == "int4" and not four and not kquant:
        return None  # e.g. Q8_0 asked as int4: re-quantized, as before K-quants

    def rows(tensors_: list[torch.Tensor]) -> torch.Tensor:
        out = []
        for t, n_head in zip(tensors_, heads):
            out.append(t if n_head is None else t[rope_unpermute_index(t.shape[0], n_head)])
        return out[0] if len(out) == 1 else torch.cat(out)

    if mode == "int4" and four:
        v, s, z = zip(*(_int4_of(p) for p in parts))
        scale, zero = rows(list(s)), rows(list(z))
        keeps = torch.equal(scale.to(compute_dtype).float(), scale) and torch.equal(zero.to(compute_dtype).float(), zero)
        exact_planes = kquant and not keeps and torch.device(device).type == "cpu"  # GPUs' int4 kernel: bfloat16
        return Int4Linear(rows(list(v)).to(device), scale, zero, None, 32, compute_dtype,
                          torch.float32 if exact_planes else None)
    common = min(p.group for p in parts)
    if len(parts) == 1 and heads[0] is None:  # one matrix: its planes as they are
        return Int8Linear(parts[0].q.to(device), None, None, compute_dtype, None, common,
                          planes=parts[0].planes.to(device))

    def widen(x: torch.Tensor, p: GGUFParts) -> torch.Tensor:
        return x if p.group == common else x.repeat_interleave(p.group // common, dim=1)
    q = rows([p.q for p in parts])
    scale = rows([widen(p.scale, p) for p in parts])
    offset = rows([widen(p.offset, p) for p in parts])
    return Int8Linear(q.to(device), scale.to(device), None, compute_dtype, offset.to(device), common)


@torch.no_grad()
def load_gguf_quantized(path: str | Path, mode: str = "int4", group_size: int | None = None, lm_head: bool | str = True,
                        dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                        compute_dtype: torch.dtype = torch.bfloat16,
                        calibration: str | list | None = None) -> nn.Module:
    """A Llama-family model from a .gguf file with quantized linear layers built from the file's blocks.

    The q/k/v, output, gate/up and down matrices never exist in float: Q4_0/Q4_1 blocks become int4
    (group 32) as they are, and Q8_0/Q4_0/Q4_1 blocks int8 groups of 32 (`int8_from_gguf`; the default
    where the native kernel runs, see `quantize_model`); other types, group sizes and int8 per channel
    are dequantized one matrix at a time and quantized. Norms and the
    embedding table are loaded in `dtype`. GPT-2 files (biases on every layer) go through the float loader
    and `quantize_model`. The result matches `load_gguf(path)` (tokenizer, special tokens, chat template).
    With `calibration` (int8 only, see `quantize_model`), the float model is loaded and GPTQ-rounded.
    """
    from .gguf_loader import GGUFFile, config_from_gguf, load_gguf

    group = resolve_group_size(mode, group_size, device)
    if calibration is not None:
        return quantize_model(load_gguf(path, dtype, device), mode, group_size, lm_head, compute_dtype, calibration)
    g = GGUFFile(path)
    config = config_from_gguf(g.metadata)
    if config.arch != "llama" or config.attention_bias:
        model = load_gguf(path, dtype, device)
        return quantize_model(model, mode, group_size, lm_head, compute_dtype)
    head = _head_mode(mode, lm_head)
    head_name = "output.weight" if "output.weight" in g.tensors else "token_embd.weight"  # tied without one
    if (mode == "int4" and lm_head in (True, "auto") and head_name in g.tensors
            and g.tensors[head_name].type_name in ("Q4_0", "Q4_1") and group == 32):
        # a head the file holds in 4-bit blocks: int4 keeps them exactly, as int8 would, at half the memory
        # (the int8 default is for heads rounded here; these were rounded by whoever wrote the file)
        head = "int4"
    head_group = group if head == mode else resolve_group_size(head, None, device) if head else None
    with single_thread():  # elementwise and memory-bound: one thread is as fast and immune to busy cores
        model = _llama_from_gguf(g, config, mode, group, (head, head_group), dtype, device, compute_dtype)
    if "tokenizer.ggml.tokens" in g.metadata:
        from .loading import attach_tokenizer
        from .tokenizer import Tokenizer

        attach_tokenizer(model, Tokenizer.from_gguf(g))
    del g  # the metadata (the vocabulary's strings): the model's tensors keep only the mapped file
    _return_freed_memory()  # after the tokenizer too: building it frees ~20 MB of temporaries (1B, 128k tokens)
    return model.eval()


def _llama_from_gguf(g, config, mode: str, group_size: int | None, head_kind: tuple[str | None, int | None],
                     dtype: torch.dtype, device: str | torch.device, compute_dtype: torch.dtype) -> nn.Module:
    from .gguf_loader import dequantize
    from .loading import MODEL_CLASSES, _skip_init

    head, head_group = head_kind
    names = set(g.tensors)

    def tensor(name: str):
        if name not in names:
            raise ModelError(f"{g.path.name}: tensor {name!r} is missing")
        return g.tensors[name]

    def real(name: str) -> torch.Tensor:
        return dequantize(tensor(name)).to(device=device, dtype=dtype)

    config.tie_word_embeddings = "output.weight" not in names
    # int4 from a K-quant file: Q4_K and Q6_K matrices (head included) stay the file's mapped blocks,
    # multiplied by the native K-quant kernels (kquant_linear.py)
    kquant_native = mode == "int4" and torch.device(device).type == "cpu" and native.available()
    # no random initialisation: on the meta device it would run torch's reference ops, whose first call
    # imports torch._dynamo (sympy, mpmath...: ~90 MB of modules kept for the process's life)
    with _skip_init(), torch.device("meta"):
        model = MODEL_CLASSES[config.arch](config)
    permuted = config.model_type in ("llama", "mistral")
    rope_heads = [config.num_heads, config.num_kv_heads, None] if permuted else [None, None, None]
    state: dict[str, torch.Tensor] = {"norm.weight": real("output_norm.weight")}
    from .gguf_embedding import TYPES as EMBED_TYPES, GGUFEmbedding

    if tensor("token_embd.weight").type_name in EMBED_TYPES:  # rows read from the file's blocks
        model.embed = GGUFEmbedding(tensor("token_embd.weight"), dtype, device)
    else:
        state["embed.weight"] = real("token_embd.weight")
    exact = layers = 0
    for i in range(config.num_layers):
        b, p = f"blk.{i}.", f"layers.{i}."
        fused = {
            "attn.wqkv": ([b + f"attn_{n}.weight" for n in "qkv"], rope_heads),
            "attn.wo": ([b + "attn_output.weight"], [None]),
            "mlp.w_gate_up": ([b + "ffn_gate.weight", b + "ffn_up.weight"], [None, None]),
            "mlp.w_down": ([b + "ffn_down.weight"], [None]),
        }
        for ours, (theirs, heads) in fused.items():
            layer, ok = _gguf_layer([tensor(n) for n in theirs], heads, mode, group_size, compute_dtype, device,
                                    g.release, kquant_native)
            for n in theirs:  # the layer holds its own copy: the file's pages need not stay resident
                g.release(tensor(n))
            _set_module(model, p + ours, layer)
            exact, layers = exact + ok, layers + 1
        state[p + "attn_norm.weight"] = real(b + "attn_norm.weight")
        state[p + "mlp_norm.weight"] = real(b + "ffn_norm.weight")
        if config.qk_norm:
            state[p + "attn.q_norm.weight"] = real(b + "attn_q_norm.weight")
            state[p + "attn.k_norm.weight"] = real(b + "attn_k_norm.weight")
        # A layer's temporaries, freed, stay in glibc's heap (its mmap threshold rises to the largest
        # block freed, up to 32 MB): hand them back at each layer, not once at the end, or they pile up
        # into the load's peak (a 1B Q4_1 file: ~100 MB above what the model keeps).
        _return_freed_memory()
    head_name = "token_embd.weight" if config.tie_word_embeddings else "output.weight"
    if head == "int8" and head_group is None and config.tie_word_embeddings and dtype == torch.float32:
        # the embedding table already holds the dequantized head: quantize it rather than a second copy
        q, scale = quantize_int8(state["embed.weight"] if "embed.weight" in state else real(head_name))
        model.lm_head, layers = Int8Linear(q, scale, None, compute_dtype), layers + 1
    elif head is not None:
        model.lm_head, ok = _gguf_layer([tensor(head_name)], [None], head, head_group, compute_dtype, device,
                                        g.release, kquant_native)
        g.release(tensor(head_name))  # a GGUFEmbedding of the same tensor reads only the rows it looks up
        exact, layers = exact + ok, layers + 1
        _return_freed_memory()
    elif not config.tie_word_embeddings or not isinstance(model.embed, nn.Embedding):
        state["lm_head.weight"] = real(head_name)  # a float head (tied: the embedding has no float table)
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings and isinstance(model.embed, nn.Embedding):
        model.lm_head.weight = model.embed.weight
    _materialize_empty_buffers(model, device, dtype)
    _use_native_ops(model)
    model.quantization = Quantization(
        mode, group_size, head, str(compute_dtype).removeprefix("torch."),
        layers, source="gguf", exact_from_gguf=exact,
        activations=_activations_of(model),
    )
    return model


def _return_freed_memory() -> None:
    """Hand the heap's free memory back to the system (glibc keeps freed blocks below its mmap threshold
    for reuse: after a load's temporaries they would count as resident memory for the process's life)."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def _materialize_empty_buffers(model: nn.Module, device: str | torch.device, dtype: torch.dtype) -> None:
    """Give the buffers and plain tensor attributes still on the meta device (empty tables filled later by
    the model) real storage; any meta tensor with content means a weight the loader did not provide."""
    for name, buf in list(model.named_buffers()):
        if buf.is_meta:
            if buf.numel():
                raise ModelError(f"GGUF quantized load: buffer {name!r} has no data")
            parent, _, child = name.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            kind = dtype if buf.is_floating_point() else buf.dtype
            setattr(owner, child, torch.empty(buf.shape, dtype=kind, device=device))
    for prefix, module in model.named_modules():  # plain tensor attributes (e.g. a decoder's id record)
        for attr, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and value.is_meta:
                if value.numel():
                    raise ModelError(f"GGUF quantized load: {prefix or 'model'}.{attr} has no data")
                setattr(module, attr, torch.empty(value.shape, dtype=value.dtype, device=device))
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        raise ModelError(f"GGUF quantized load: no weights for {missing[:5]}")
