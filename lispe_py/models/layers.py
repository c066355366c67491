"""Shared pieces of our decoders: norms, the static KV cache, attention, RoPE, and the model base class.

gpt-fast style: the KV cache is preallocated once (`setup_cache`), RoPE tables are precomputed, q/k/v
are one fused projection. A decode step slices preallocated buffers with Python ints; it does no work
that grows with the vocabulary, and its only length-dependent work is the attention itself.
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .errors import ModelError


@functools.lru_cache(maxsize=None)
def _onednn_packing_available() -> bool:
    """Whether this torch build packs and runs float32 linears with oneDNN (tried once, on a tiny one)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_linear_weight(torch.ones(16, 8), 2)
            y = torch.ops.mkldnn._linear_pointwise(torch.ones(2, 8), packed, None, "none", [], "")
        return bool(torch.equal(y, torch.full((2, 16), 8.0)))
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


#: bf16/fp16 products of at least this many rows compute in float32 (see DecoderModel._ensure_weight_layout).
WIDEN_ROWS = 16
#: float32 products of up to this many rows run split over the threads (`Linear.split`): MKL's own
#: threading catches up near 512 rows of SmolLM2's shapes on 2 threads.
SPLIT_ROWS = 256


def _column_major(w: torch.Tensor, rows: int = 256) -> torch.Tensor:
    """The matrix `w` stored column-major (its memory is the [in, out] matrix), copied `rows` rows at a
    time so each block's reads and writes stay in cache: SmolLM2's 61 wide weights take 0.33 s instead
    of 0.41-0.54 s with `w.t().contiguous()`."""
    out = torch.empty((w.shape[1], w.shape[0]), dtype=w.dtype, device=w.device)
    for r in range(0, w.shape[0], rows):
        out[:, r:r + rows].copy_(w[r:r + rows].t())
    return out.t()


class Linear(nn.Linear):
    """nn.Linear with CPU fast paths that DecoderModel switches on (`_ensure_weight_layout`).

    - `packed`: multi-row calls (batches, beams) run on a oneDNN-packed float32 copy of the weight
      (float32, bfloat16 and float16 models); the copy is used only without autograd, and the
      ordinary `weight` stays the parameter everything else reads.
    - `split` (> 1): a call of up to SPLIT_ROWS rows without a packed copy (a decode step, a short
      prefill) runs as `split` products over blocks of output columns in one `bmm`, on views of
      `weight` itself (no copy; autograd sees the usual graph).
    - `widen_rows` (bf16/fp16): a call of at least that many rows without a packed copy (a prompt's
      prefill) widens the weight to float32 for the call and rounds the result back once.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.packed: torch.Tensor | None = None       # in use for this call
        self._packed_copy: torch.Tensor | None = None  # kept between calls
        self._packed_from: tuple | None = None
        self.split = 0  # > 1: one-row calls run as a batch of `split` column blocks (DecoderModel sets it)
        self.widen_rows = 0  # > 0: bf16/fp16 calls of at least this many rows compute in float32

    def weight_version(self) -> tuple:
        w = self.weight
        return (id(w), w._version, w.data_ptr(), w.dtype)

    def use_packed(self, on: bool, keep: bool) -> None:
        """on: run on the packed copy (made now if missing or older than the weight); keep: hold the
        copy while off."""
        if on and self._packed_from != self.weight_version():
            self._packed_copy = None  # free the stale copy before making the new one
            with torch.inference_mode(False), torch.no_grad():
                w = self.weight.data.to(torch.float32).contiguous()
                self._packed_copy = torch.ops.mkldnn._reorder_linear_weight(w, 8)
            self._packed_from = self.weight_version()
        if not (on or keep):
            self._packed_copy = self._packed_from = None
        self.packed = self._packed_copy if on else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and not torch.is_grad_enabled():
            if self._packed_from != self.weight_version():  # edited in place or replaced since
                self.use_packed(True, keep=True)
            if x.dtype == torch.float32:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
            # bf16/fp16 model: widened exactly, rounded back once
            y = torch.ops.mkldnn._linear_pointwise(x.float(), self.packed, self._float_bias(), "none", [], "")
            return y.to(x.dtype)
        if self.split and x.numel() <= SPLIT_ROWS * self.in_features:
            y = self._split_forward(x)
            if y is not None:
                return y
        if self.widen_rows and x.numel() >= self.widen_rows * self.in_features and x.dtype != torch.float32:
            return F.linear(x.float(), self.weight.float(), self._float_bias()).to(x.dtype)
        return F.linear(x, self.weight, self.bias)

    def _float_bias(self) -> torch.Tensor | None:
        return None if self.bias is None else self.bias.float()

    def _split_forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """The product as `split` products over blocks of output columns, in one `bmm` (with the
        bias, `baddbmm`, rounded as F.linear's addmm). MKL runs a one-row `F.linear` on one thread
        whatever the thread count, and uses two poorly up to ~128 rows; the batch's blocks run on
        separate threads, so a float32 decode step reads its weights ~20% faster on 2 threads and a
        46-token prefill's products take ~20% less time (docs/performance.md). One row: the results
        equal F.linear's on SmolLM2's shapes (bit for bit here; MKL may pick another kernel for tiny
        matrices, ~1 ulp); several rows: ~1e-7 (blocking). None when the weight is neither row- nor
        column-major (replaced since the layout was set), so the caller falls back to F.linear."""
        p, w, k, n = self.split, self.weight, self.in_features, self.out_features
        if w.t().is_contiguous():  # [in, out] memory: block j is columns j*n/p..
            blocks = w.t().view(k, p, n // p).transpose(0, 1)
        elif w.is_contiguous():  # [out, in] memory: block j is rows j*n/p..
            blocks = w.view(p, n // p, k).transpose(1, 2)
        else:
            return None
        m = x.numel() // k
        rows = x.reshape(1, m, k).expand(p, m, k)
        if self.bias is None:
            y = torch.bmm(rows, blocks)
        else:  # bias + product in one call, as F.linear's addmm rounds it
            y = torch.baddbmm(self.bias.view(p, 1, n // p), rows, blocks)
        if m == 1:
            return y.view(*x.shape[:-1], n)
        return y.transpose(0, 1).reshape(*x.shape[:-1], n)  # [p, m, n/p] -> [m, n]


class RMSNorm(nn.Module):
    """RMSNorm computed in float32, as transformers' LlamaRMSNorm, bit-identical to it in every dtype.

    float32: one `F.rms_norm` with the weight. bfloat16/float16: `F.rms_norm` without the weight
    (it normalises in float32 and rounds once to the input dtype, as transformers' `.to(input_dtype)`
    does), then the weight multiplies in the input dtype: the same two roundings as transformers'
    steps in two calls, ~40% faster than upcasting first. With the weight inside, `F.rms_norm` would
    round once and differ from transformers.

    `native` (set by quantization where the native kernels run, see quantize.py): float32 on the CPU
    runs the one-op `lispe::rms_norm` of kernels.cpp instead (~7 against ~40 us a row here); its sum
    of squares runs in another order, so it is not bit-identical to transformers, which a quantized
    model is not anyway. It has no gradient: while autograd records, F.rms_norm runs.
    """

    native = False

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if dtype == torch.float32:
            if (self.native and x.device.type == "cpu" and x.is_contiguous() and self.weight.dtype == torch.float32
                    and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))):
                return torch.ops.lispe.rms_norm(x, self.weight, self.eps)
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        return self.weight * F.rms_norm(x, self.weight.shape, None, self.eps)


def activation(name: str):
    """The elementwise activation function named as in Hugging Face configs."""
    if name == "silu":
        return F.silu
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    return lambda x: F.gelu(x, approximate="tanh")  # gelu_new, gelu_pytorch_tanh, gelu_fast


class KVCache(nn.Module):
    """Static key/value buffers [max_batch, kv_heads, max_seq_len, head_dim], written by slot."""

    def __init__(self, batch: int, kv_heads: int, seq_len: int, head_dim: int, dtype, device) -> None:
        super().__init__()
        shape = (batch, kv_heads, seq_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, start: int | torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k/v [B, H, T, D] at slots start..start+T-1; return views of slots 0..start+T-1.

        With `start` a one-element 1-D tensor (the slot, on the cache's device: the static decode step
        that CUDA graphs replay) the write is an index_copy_ and the views cover every slot (a mask hides
        the rest). A 0-dim tensor (a traced size) is a slot number like an int."""
        if isinstance(start, torch.Tensor) and start.dim() == 1:
            b = k.shape[0]
            self.k[:b].index_copy_(2, start, k)
            self.v[:b].index_copy_(2, start, v)
            return self.k[:b], self.v[:b]
        b, end = k.shape[0], start + k.shape[2]
        self.k[:b, :, start:end] = k
        self.v[:b, :, start:end] = v
        return self.k[:b, :, :end], self.v[:b, :, :end]

    def through(self, slot: int | torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of rows 0..b-1, slots 0..slot (a kernel that writes slot itself: `lispe::rope_attention`)."""
        return self.k[:b, :, :slot + 1], self.v[:b, :, :slot + 1]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """RoPE on x [..., D]: x * cos + rotate_half(x) * sin, with rotate_half(x) = cat(-x2, x1).

    `sin_signed` is cat(-sin1, sin2), so the rotation is a swap of the halves and the
    result is bit-identical to transformers' form ((-a) * b == -(a * b) exactly). The swap is one
    `roll` by half the head size.
    """
    return x * cos + x.roll(x.shape[-1] // 2, -1) * sin_signed


def rope_inv_freq(config: ModelConfig) -> torch.Tensor:
    """Inverse RoPE frequencies in float32, with linear or llama3 scaling (as transformers computes them)."""
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq
    factor = scaling["factor"]
    if scaling["rope_type"] == "linear":
        return inv_freq / factor
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


class Attention(nn.Module):
    """Multi-head attention with GQA, one fused q/k/v projection, optional q/k RMSNorm and RoPE."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        self.q_size, self.kv_size = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        self.wqkv = Linear(config.hidden_size, self.q_size + 2 * self.kv_size, bias=config.attention_bias)
        self.wo = Linear(self.q_size, config.hidden_size, bias=config.attention_out_bias)
        self.q_norm = RMSNorm(self.head_dim, config.norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, config.norm_eps) if config.qk_norm else None
        self.window = config.layer_window(layer)
        self.scale = self.head_dim**-0.5 / ((layer + 1) if config.attn_scale_by_layer else 1)
        self.kv_cache: KVCache | None = None
        # True: pick the SDPA kernel the way transformers does (bit-identical in bfloat16); see
        # DecoderModel.transformers_attention.
        self.transformers_dispatch = False
        # True (set by quantization where the native kernels run, like RMSNorm.native): a float32
        # decode step without a mask on the CPU runs `lispe::decode_attention` (~2x faster than SDPA
        # for one query row; another summation order, so not bit-identical to SDPA), and a step of
        # left-padded rows `lispe::decode_attention_from` (see DecoderModel._masks).
        self.native = False

    def native_decode(self, dtype: torch.dtype, device: torch.device) -> bool:
        """Whether a one-query step in `dtype` on `device` runs the native decode attention (which,
        given a mask entry ("starts", window), needs no attention mask for left-padded rows)."""
        return (self.native and dtype == torch.float32 and device.type == "cpu" and self.head_dim in (64, 128)
                and not self.transformers_dispatch)

    def _fused_decode(self, qkv: torch.Tensor, rope, mask, start: int | torch.Tensor) -> torch.Tensor | None:
        """One query per row on the native kernels: RoPE, the cache write and the attention as one
        `lispe::rope_attention` (the same numbers as the ops below; ~20 fewer ops per layer and step).
        None where it does not apply (then the ops below run)."""
        if isinstance(start, torch.Tensor) and start.dim() == 1:  # the static (CUDA graph) step
            return None
        attn_mask, _ = mask[self.window]
        starts = mask.get(("starts", self.window))
        cos, sin = rope
        if not ((attn_mask is None or starts is not None) and self.native_decode(qkv.dtype, qkv.device)
                and cos.dtype == torch.float32 and cos.is_contiguous() and sin.is_contiguous()
                and not (torch.is_grad_enabled() and qkv.requires_grad)):
            return None
        k, v = self.kv_cache.through(start, qkv.shape[0])
        return torch.ops.lispe.rope_attention(qkv.view(qkv.shape[0], -1), cos, sin, k, v, self.n_heads, self.scale,
                                              starts)

    def forward(self, x: torch.Tensor, rope, mask, start: int | torch.Tensor | None) -> torch.Tensor:
        """x [B, T, hidden]; rope (cos, signed sin) broadcastable to [B, T, 1, D] or None; mask from `masks`;
        start: first cache slot written (None: no cache, attend within x only; a one-slot tensor: the
        static decode step, see KVCache.update)."""
        b, t, _ = x.shape
        qkv = self.wqkv(x)
        if t == 1 and rope is not None and self.q_norm is None and start is not None:
            y = self._fused_decode(qkv, rope, mask, start)
            if y is not None:
                return self.wo(y.view(b, 1, self.q_size))
        qk_size = self.q_size + self.kv_size
        v = qkv[..., qk_size:].view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        if self.q_norm is None:
            # q and k side by side as heads [B, T, H + KV, D]: RoPE runs once over both.
            qk = qkv[..., :qk_size].view(b, t, self.n_heads + self.n_kv, self.head_dim)
            if rope is not None:
                qk = apply_rope(qk, *rope)
            q, k = qk.split((self.n_heads, self.n_kv), dim=2)
        else:
            q = self.q_norm(qkv[..., :self.q_size].view(b, t, self.n_heads, self.head_dim))
            k = self.k_norm(qkv[..., self.q_size:qk_size].view(b, t, self.n_kv, self.head_dim))
            if rope is not None:
                q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        if start is not None:
            k, v = self.kv_cache.update(start, k, v)
        attn_mask, is_causal = mask[self.window]
        starts = mask.get(("starts", self.window))
        if (t == 1 and (attn_mask is None or starts is not None) and self.native_decode(q.dtype, q.device)
                and not (torch.is_grad_enabled() and q.requires_grad)):
            q = q.reshape(b, self.n_kv, self.n_heads // self.n_kv, self.head_dim).contiguous()
            if starts is None:
                y = torch.ops.lispe.decode_attention(q, k, v, self.scale)
            else:  # left-padded rows: row i attends to slots starts[i].. only, as attn_mask says
                y = torch.ops.lispe.decode_attention_from(q, k, v, self.scale, starts)
            return self.wo(y.reshape(b, 1, self.q_size))
        gqa = self.n_kv != self.n_heads
        if gqa and t == 1 and (attn_mask is not None or not self.transformers_dispatch):
            # Decode step with GQA: the query heads sharing a kv head become rows of one query
            # ([B, kv, rep, D]); no k/v repeat, and ~6x faster than enable_gqa in bfloat16 on CPU.
            y = F.scaled_dot_product_attention(
                q.reshape(b, self.n_kv, self.n_heads // self.n_kv, self.head_dim), k, v,
                attn_mask=attn_mask, scale=self.scale,
            )
            return self.wo(y.reshape(b, 1, self.q_size))
        if gqa and attn_mask is not None and self.transformers_dispatch:
            rep = self.n_heads // self.n_kv
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            gqa = False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=self.scale, enable_gqa=gqa
        )
        return self.wo(y.transpose(1, 2).reshape(b, t, self.q_size))


class DecoderModel(nn.Module):
    """Base of our decoders: cache management, masks, the forward contract of docs/internals.md.

    Subclasses build `self.layers` (blocks called as `block(x, rope, masks, start)`) and define
    `_embed(input_ids, positions, inputs_embeds)`, `_head(x)`, and `uses_rope`.
    """

    arch = ""
    uses_rope = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = None
        self.chat_template: str | None = None
        self.special_tokens: dict = {
            "bos_token_id": config.bos_token_id,
            "eos_token_id": config.eos_token_id,
            "pad_token_id": config.pad_token_id,
        }
        self.max_batch_size = 0
        self.max_seq_len = 0
        self._kv_len = 0
        self._windows = sorted({config.layer_window(i) for i in range(config.num_layers)}, key=lambda w: w or 0)
        self.register_buffer("_slots", torch.empty(0, dtype=torch.long), persistent=False)
        self.register_buffer("_cos", torch.zeros(0), persistent=False)
        self.register_buffer("_sin", torch.zeros(0), persistent=False)
        self._rope_len = 0
        self._layout_key: tuple | None = None
        self._packed_weights = True
        # Prompt cache (opt-in): which token ids row 0's cache slots hold, for reuse by `prefill`.
        self.prompt_cache = False
        self.prefill_chunk_size: int | None = 1024
        self.model_cache_entry: str | None = None  # the model cache folder the weights came from / went to
        self._cached_ids = torch.zeros(0, dtype=torch.long)
        self._cached_len = 0
        self._cached_key: tuple | None = None
        self.last_prefill_start = 0
        # Decode steps replay a captured step (`decode`): a CUDA graph per batch shape on GPUs, a
        # torch.jit trace of the one-row step on CPU.
        self.cuda_graphs = True
        self.traced_decode = True
        self._graphs: dict[tuple, Any] = {}
        self._no_float_linears: bool | None = None  # every linear quantized (found once; reset with the graphs)

    # ----- dtype / device bookkeeping -----
    # The embedding table: every model has one in its float dtype, quantized or not (a quantized
    # output head has no float weight).
    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def _apply(self, fn, recurse: bool = True):
        # .to(dtype)/.to(device)/.half(): rebuild the RoPE tables from float32 so they never carry the
        # rounding of an earlier, lower precision.
        out = super()._apply(fn, recurse)
        if self.uses_rope and self._rope_len:
            self._build_rope(self._rope_len)
        self.reset_decode_graphs()
        return out

    def reset_decode_graphs(self) -> None:
        """Forget the captured decode graphs (they point at the old weights and caches). Called when the
        model moves or changes dtype, when the KV cache is reallocated and by quantize_model; call it
        after replacing a module by hand."""
        self._graphs.clear()
        self._no_float_linears = None

    def _ensure_weight_layout(self, rows: int) -> None:
        """Lay out the linear weights for the current dtype, device and kind of call (checked on each
        forward; redone only when one of them changes).

        On CPU (other devices keep the usual row-major [out, in] layout, which is fastest for them).
        Measured on SmolLM2 with 2 threads (docs/performance.md):
        - float32: a weight with more outputs than inputs (fused q/k/v, gate/up, the output head) is
          stored column-major (its memory is the [in, out] matrix), so a one-token step's `F.linear`
          runs `x @ W_t` on a contiguous W_t: the 49152-row head reads 2x faster, gate/up 1.5x.
          Weights with fewer outputs than inputs (the down projection) are faster row-major, by as much.
        - float32: calls of up to SPLIT_ROWS rows without packed copies (decode steps, prefill) with
          N > 1 threads split each product into N blocks of output columns run by one `bmm`
          (`Linear.split`): MKL's one-row product uses one thread, the batch uses all; a SmolLM2 step
          goes from ~67 to ~54 ms on 2 threads, a 46-row product set from 250 to 195 ms. Views only.
        - multi-row calls (batches, beams) run each linear on a oneDNN-packed float32 copy of its
          weight (`Linear.packed`): 2-3x faster than MKL at 4-8 rows in float32 (a beam-4 step takes
          half the time), and ~1.7x faster than the bfloat16 kernel at 8 rows for bfloat16/float16
          models (their inputs are widened exactly, the result rounded back once; ~1 in 5000 outputs
          then differs by one unit in the last place, so not with `transformers_attention`, which
          promises transformers' bits). The copies cost the linear weights' float32 memory once more
          (`packed_weights = False` turns them off); they are made on the first multi-row call (~1.3 s
          for SmolLM2), kept while the model's dtype and device stay, and remade only for weights
          edited in place or replaced since.
        - bfloat16/float16 calls of 16 rows or more with no packed copy (a single prompt's prefill)
          widen each weight to float32 for the call (`Linear.widen_rows`): the bf16 kernel's cost
          grows with the rows (660 ms for 46 rows of SmolLM2's layers, against 281 ms widened;
          they break even near 12 rows). Same rounding as the copies, no memory kept.
        The values are the same either way; only strides and kernels' rounding differ (float32: ~1e-6;
        bfloat16/float16 copies and widened calls: one unit in the last place, on few outputs).
        """
        cpu = self.device.type == "cpu"
        fp32_cpu = cpu and self.dtype == torch.float32
        low_cpu = cpu and self.dtype in (torch.bfloat16, torch.float16) and not self.transformers_attention
        # (a model whose linears are all quantized has no float weight to lay out: one key for every
        # row count, so its one-row and several-row steps share their traces' key)
        floats = not self._all_linears_quantized()
        copies = self._packed_weights and (fp32_cpu or low_cpu) and floats
        pack = copies and rows > 1 and _onednn_packing_available()
        threads = torch.get_num_threads() if fp32_cpu and floats else 1
        widen = WIDEN_ROWS if low_cpu and floats else 0
        key = (self.dtype, self.device, pack, copies, threads, widen)  # each Linear checks its copy's age when it runs
        if self._layout_key == key:
            return
        self.lay_out_weights()
        with torch.inference_mode(False), torch.no_grad():
            for mod in self._linears():
                mod.use_packed(pack, keep=copies)
                mod.split = threads if threads > 1 and mod.out_features % threads == 0 else 0
                mod.widen_rows = widen
        self._layout_key = key

    def lay_out_weights(self) -> None:
        """Store each linear weight in the memory order the decode step reads fastest for the model's
        dtype and device: column-major for float32 CPU weights with more outputs than inputs, row-major
        otherwise (see `_ensure_weight_layout`). Values are unchanged; a weight already in that order
        is left as it is (the model cache saves and maps the weights in this order)."""
        fp32_cpu = self.device.type == "cpu" and self.dtype == torch.float32
        with torch.inference_mode(False), torch.no_grad():  # the weights stay normal tensors
            for mod in self._linears():
                w = mod.weight.data
                column_major = fp32_cpu and mod.out_features > mod.in_features
                if column_major and not w.t().is_contiguous():
                    mod.weight.data = _column_major(w)
                elif not column_major and not w.is_contiguous():
                    mod.weight.data = w.contiguous()

    def _linears(self):
        return (m for m in self.modules() if isinstance(m, Linear))

    @property
    def packed_weights(self) -> bool:
        """On CPU: run batches and beams on oneDNN-packed float32 weight copies (faster; more memory)."""
        return self._packed_weights

    @packed_weights.setter
    def packed_weights(self, value: bool) -> None:
        self._packed_weights = bool(value)
        self._layout_key = None
        if not value:
            for mod in self._linears():
                mod.use_packed(False, keep=False)

    def _build_rope(self, n: int) -> None:
        inv_freq = rope_inv_freq(self.config).to(self.device)
        freqs = torch.arange(n, device=self.device, dtype=torch.float32)[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        half = inv_freq.shape[0]
        sin = emb.sin()
        sin[:, :half].neg_()  # signed for apply_rope: cat(-sin1, sin2)
        self._cos = emb.cos().to(self.dtype)
        self._sin = sin.to(self.dtype)
        self._rope_len = n
        self.reset_decode_graphs()  # captured steps read the old tables

    def _ensure_rope(self, n: int) -> None:
        if self.uses_rope and n > self._rope_len:
            self._build_rope(max(n, 2 * self._rope_len))

    @property
    def transformers_attention(self) -> bool:
        """Compute exactly as transformers does: SDPA called the same way (GQA via enable_gqa when
        there is no mask, repeated k/v when there is), so bfloat16/float16 results are bit-identical
        to transformers' (RMSNorm always is), and bfloat16/float16 batches run on the low-precision
        kernel instead of float32 weight copies. Default False: decode steps use grouped query rows (6x
        faster in bfloat16 on CPU), at least as accurate; float32 results agree with transformers to
        ~1e-7 either way."""
        return self.layers[0].attn.transformers_dispatch

    @transformers_attention.setter
    def transformers_attention(self, value: bool) -> None:
        for block in self.layers:
            block.attn.transformers_dispatch = bool(value)

    @property
    def kv_len(self) -> int:
        """Number of cache slots holding this sequence's keys/values (0 after setup_cache)."""
        return self._kv_len

    def num_parameters(self) -> int:
        """Number of distinct parameters (tied embeddings counted once); a quantized layer counts its
        logical weights, however packed (`footprint.py`), so a quantized model has its float count."""
        from .footprint import footprint

        return footprint(self)["parameters"]

    # ----- the static KV cache -----
    def setup_cache(self, batch_size: int, max_seq_len: int) -> None:
        """Allocate the static KV cache for up to `batch_size` rows of `max_seq_len` slots.

        Reuses the existing cache when it is already large enough and of the model's dtype and device.
        """
        if max_seq_len > self.config.max_position_embeddings and self.arch == "gpt2":
            raise ModelError(
                f"sequence length {max_seq_len} exceeds the model's context ({self.config.max_position_embeddings})"
            )
        first = self.layers[0].attn.kv_cache
        if (
            first is not None
            and batch_size <= self.max_batch_size
            and max_seq_len <= self.max_seq_len
            and first.k.dtype == self.dtype
            and first.k.device == self.device
        ):
            return
        batch_size, max_seq_len = max(batch_size, self.max_batch_size), max(max_seq_len, self.max_seq_len)
        c = self.config
        # With the prompt cache on, a growing cache keeps row 0's cached tokens (a chat's history).
        keep = self._cached_len if (self.prompt_cache and first is not None and first.k.dtype == self.dtype
                                    and first.k.device == self.device) else 0
        for block in self.layers:
            old = block.attn.kv_cache
            block.attn.kv_cache = None  # free the old buffers (all but the kept rows) first
            new = KVCache(batch_size, c.num_kv_heads, max_seq_len, c.head_dim, self.dtype, self.device)
            if keep:
                new.k[:1, :, :keep] = old.k[:1, :, :keep]
                new.v[:1, :, :keep] = old.v[:1, :, :keep]
            block.attn.kv_cache = new
            del old
        self.max_batch_size, self.max_seq_len = batch_size, max_seq_len
        self.reset_decode_graphs()
        self._slots = torch.arange(max_seq_len, device=self.device)
        ids = torch.zeros(max_seq_len, dtype=torch.long, device=self.device)
        ids[:keep] = self._cached_ids[:keep]
        self._cached_ids, self._cached_len = ids, keep
        self._kv_len = keep
        self._ensure_rope(max_seq_len)

    def reorder_cache(self, index: torch.Tensor) -> None:
        """Beam search: cache row i becomes old row index[i] (for the first len(index) rows)."""
        b, n = index.shape[0], self._kv_len
        self._cached_len = 0  # row 0 now holds another sequence
        index = index.to(self.device)
        for block in self.layers:
            cache = block.attn.kv_cache
            cache.k[:b, :, :n] = cache.k[:, :, :n].index_select(0, index)
            cache.v[:b, :, :n] = cache.v[:, :, :n].index_select(0, index)

    # ----- masks and rope for one call -----
    def _masks(self, start: int, end: int, kv_mask: torch.Tensor | None, slots: torch.Tensor) -> dict:
        """{window: (attn_mask or None, is_causal)} for queries at slots start..end-1 over slots 0..end-1.

        For a decode step (one query) of left-padded rows on the CPU, also {("starts", window): starts}
        where that window's mask is exactly "row i sees slots starts[i]..end-1" (int64 [B]): the
        native decode attention then skips the pad slots instead of reading a mask."""
        t = end - start
        masks = {}
        # (only models whose attention runs the native kernel use the starts: float models keep SDPA)
        starts = (self._suffix_starts(end, kv_mask)
                  if t == 1 and kv_mask is not None and self.layers[0].attn.native else None)
        for window in self._windows:
            if kv_mask is None and (window is None or window >= end):
                if t == 1:
                    masks[window] = (None, False)
                    continue
                if start == 0:
                    masks[window] = (None, True)
                    continue
            k = slots[:end][None, :]
            q = slots[start:end][:, None]
            m = k <= q
            if window is not None:
                m = m & (k > q - window)
            if kv_mask is not None:
                # Left padding: hide pad slots; a pad query still sees itself so no row is all -inf.
                m = m[None, None] & (kv_mask[:, None, None, :end].bool() | (k == q))
            masks[window] = (m, False)
            if starts is not None and (window is None or window >= end):
                masks[("starts", window)] = starts
        return masks

    @staticmethod
    def _suffix_starts(end: int, kv_mask: torch.Tensor) -> torch.Tensor | None:
        """The first visible slot of each row when kv_mask[:, :end] hides a prefix of each row (left
        padding), the query slot end-1 being visible anyway (as `_masks` keeps it); else None."""
        if kv_mask.device.type != "cpu":
            return None
        kv = kv_mask[:, :end].bool()
        starts = (end - kv.sum(-1)).clamp(max=end - 1)
        if not bool((kv[:, :-1] == (torch.arange(end - 1) >= starts[:, None])).all()):
            return None
        return starts.contiguous()

    def _rope(self, position_ids: torch.Tensor | None, start: int, end: int):
        if not self.uses_rope:
            return None
        if position_ids is None:
            return self._cos[start:end, None], self._sin[start:end, None]
        return self._cos[position_ids].unsqueeze(2), self._sin[position_ids].unsqueeze(2)

    # ----- forward passes -----
    def forward(
        self,
        input_ids: torch.Tensor | None,
        input_pos: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        kv_mask: torch.Tensor | None = None,
        last_only: bool = False,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run tokens [B, T] through the model, writing cache slots `input_pos` (contiguous) -> float32 logits.

        position_ids [B, T] (default: the slots); kv_mask [B, S] bool, False on left padding.
        inputs_embeds [B, T, hidden] replaces the token embeddings (input_ids is then None), as in
        transformers (GPT-2 still adds its position embeddings).
        """
        if self.layers[0].attn.kv_cache is None:
            raise ModelError("the KV cache is not set up: call model.setup_cache(batch_size, max_seq_len) first")
        b, t = self._input_shape(input_ids, inputs_embeds)
        self._ensure_weight_layout(b)
        start = int(input_pos[0])
        end = start + t
        self._check_fits(b, start, end)
        self._kv_len = max(self._kv_len, end) if start else end
        self._track_cached_ids(input_ids, start, end,
                               position_ids is None and kv_mask is None and inputs_embeds is None)
        masks = self._masks(start, end, kv_mask, self._slots)
        if position_ids is None:
            positions = self._slots[start:end]
        else:
            positions = position_ids
        x = self._embed(input_ids, positions, inputs_embeds)
        rope = self._rope(position_ids, start, end)
        for block in self.layers:
            x = block(x, rope, masks, start)
        if last_only:
            x = x[:, -1:]
        return self._head(x)

    def _check_fits(self, b: int, start: int, end: int) -> None:
        if end > self.max_seq_len or b > self.max_batch_size:
            raise ModelError(
                f"input of batch {b} at slots {start}..{end - 1} does not fit the KV cache "
                f"(batch {self.max_batch_size}, {self.max_seq_len} slots): call setup_cache with larger sizes"
            )

    # ----- one decode step, replayed as a CUDA graph (GPU) or a torch.jit trace (CPU) -----
    def decode(self, tokens: torch.Tensor, slot: int, position_ids: torch.Tensor | None = None,
               kv_mask: torch.Tensor | None = None, steps_left: int | None = None) -> torch.Tensor:
        """One decode step: tokens [B] (each row's newest token) written at cache slot `slot` -> float32
        logits [B, V] of the next token. The same as `self(tokens[:, None], [slot], position_ids,
        kv_mask, last_only=True)[:, -1]`, minus most of the per-op overhead:

        - on CUDA (`cuda_graphs`, default True) the step is captured once per batch shape as a CUDA
          graph and replayed: a small model's step is bound by kernel launches there, not by its
          weights. The captured step attends over every cache slot with a mask instead of over the
          filled ones, which changes float rounding only.
        - on CPU (`traced_decode`, default True), a single row's step without padding or sliding
          windows runs as a torch.jit trace (the Python between the ~1000 ops of a step goes; the
          slot is a traced size, so one trace serves every slot): the same ops, bit-identical logits.
          Tracing costs ~0.3-1 s once, so a caller that knows how many steps are left (`steps_left`)
          gets no new trace below TRACE_MIN_STEPS of them.
        - on CPU, a step of several rows, or of left-padded rows (position_ids and a kv_mask hiding a
          prefix of each row), of a model whose linears are all quantized and whose attention runs the
          native decode attention runs as one more trace (`_rows_step`): the rows and the slot are
          traced sizes, each row's first visible slot an input, so one trace serves every batch size
          (`lispe serve`'s continuous batching changes it at every admission): bit-identical logits,
          ~1-7 ms less per SmolLM2 step. Float models' batches run op by op on packed weight copies.
        """
        b = tokens.shape[0]
        # (while autograd records, steps run op by op: captured steps give no gradients)
        cuda = self._graphs_apply() and not torch.is_grad_enabled()
        traced = not cuda and not torch.is_grad_enabled() and self._trace_applies(b, position_ids, kv_mask) and (
            steps_left is None or steps_left >= TRACE_MIN_STEPS or self._has_trace())
        starts = None
        if (not (cuda or traced) and not torch.is_grad_enabled() and self._rows_trace_applies(b, position_ids, kv_mask)
                and (steps_left is None or steps_left >= TRACE_MIN_STEPS or ("rows",) + self._trace_key() in self._graphs)):
            starts = self._row_starts(b, slot, position_ids, kv_mask)
            if starts is not None:
                position_ids = (torch.full((b, 1), slot, dtype=torch.long, device=self.device)
                                if position_ids is None else position_ids.view(b, 1))
        if not (cuda or traced or starts is not None):
            return self._eager_step(tokens, slot, position_ids, kv_mask)
        if self.layers[0].attn.kv_cache is None:
            raise ModelError("the KV cache is not set up: call model.setup_cache(batch_size, max_seq_len) first")
        self._ensure_weight_layout(b)
        self._check_fits(b, slot, slot + 1)
        self._kv_len = max(self._kv_len, slot + 1) if slot else slot + 1
        self._track_cached_ids(tokens.view(b, 1), slot, slot + 1, position_ids is None and kv_mask is None)
        if cuda:
            key = ("cuda", b, position_ids is not None, kv_mask is not None, self.max_seq_len, self.dtype)
            make = lambda: _DecodeGraph(self, b, position_ids is not None, kv_mask is not None)  # noqa: E731
        elif starts is not None:
            key = ("rows",) + self._trace_key()
            make = lambda: _TracedStep(self, rows=True)  # noqa: E731
        else:
            key = self._trace_key()
            make = lambda: _TracedStep(self)  # noqa: E731
        with torch.inference_mode():  # the captured steps' buffers are inference tensors, whoever calls
            step = self._graph_for(key, make)
            try:
                logits = step.run(tokens, slot, position_ids, kv_mask if starts is None else starts)
            except Exception as exc:  # noqa: BLE001 - a failed capture must not end the generation
                if step.ready:  # a replay failed: a real error, not a capture problem
                    raise
                # Capture failed (an op the graph or the tracer cannot hold): op by op from now on; a
                # real error in the step then comes back from the op-by-op run.
                self._graphs.pop(key, None)
                what = "CUDA graph capture" if cuda else "torch.jit trace"
                if cuda:
                    self.cuda_graphs = False
                else:
                    self.traced_decode = False
                warnings.warn(f"{what} of the decode step failed ({exc}); decoding op by op from now on",
                              RuntimeWarning, stacklevel=2)
                return self._eager_step(tokens, slot, position_ids if starts is None or kv_mask is not None else None,
                                        kv_mask)
        # a CUDA graph's output buffer is overwritten by the next replay; a trace returns a new tensor
        return logits.clone() if cuda else logits

    def _graphs_apply(self) -> bool:
        return self.cuda_graphs and self.device.type == "cuda" and not self.transformers_attention

    def _trace_applies(self, rows: int, position_ids: torch.Tensor | None, kv_mask: torch.Tensor | None) -> bool:
        # One row only: batches use oneDNN-packed weight copies, which a trace would keep after a rebuild.
        return (self.traced_decode and self.device.type == "cpu" and rows == 1 and position_ids is None
                and kv_mask is None and all(w is None for w in self._windows) and _HAS_JIT_TRACE)

    def _rows_trace_applies(self, rows: int, position_ids: torch.Tensor | None, kv_mask: torch.Tensor | None) -> bool:
        """A step of several rows, or of left-padded ones, runs as one trace for every batch size and slot
        where nothing in it depends on the rows: every linear quantized (no oneDNN-packed copies, which
        a trace would keep after a rebuild; see `_trace_applies`), the native decode attention reading
        each row's first slot (`starts`) instead of a mask, no sliding window."""
        if not (self.traced_decode and self.device.type == "cpu" and _HAS_JIT_TRACE and (rows > 1 or kv_mask is not None)
                and all(w is None for w in self._windows) and (kv_mask is None) == (position_ids is None)):
            return False
        if not self.layers[0].attn.native_decode(self.dtype, self.device):
            return False
        return self._all_linears_quantized()

    def _all_linears_quantized(self) -> bool:
        if self._no_float_linears is None:  # (a walk over every module: not at each step)
            self._no_float_linears = next(self._linears(), None) is None
        return self._no_float_linears

    def _row_starts(self, rows: int, slot: int, position_ids: torch.Tensor | None,
                    kv_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Each row's first visible slot for a step at `slot` (zeros without a mask), or None when the
        mask is not left padding (then the step runs op by op)."""
        if kv_mask is None:
            return torch.zeros(rows, dtype=torch.long, device=self.device)
        return self._suffix_starts(slot + 1, kv_mask)

    def _trace_key(self) -> tuple:
        return ("trace", self.dtype, self._layout_key, self.transformers_attention)

    def _has_trace(self) -> bool:
        self._ensure_weight_layout(1)
        return self._trace_key() in self._graphs

    def _eager_step(self, tokens: torch.Tensor, slot: int, position_ids: torch.Tensor | None,
                    kv_mask: torch.Tensor | None) -> torch.Tensor:
        pos = torch.tensor([slot], device=self.device)
        return self(tokens.view(-1, 1), pos, position_ids=position_ids, kv_mask=kv_mask, last_only=True)[:, -1]

    def _row_step(self, tokens: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """The plain decode step as `torch.jit.trace` records it: tokens [B], window = slots 0..slot,
        whose length (a traced size) gives the slot. The same ops as `forward` for such a step."""
        end = window.shape[0]
        start = end - 1
        x = self._embed(tokens[:, None], window[start:])
        rope = (self._cos[start:end, None], self._sin[start:end, None]) if self.uses_rope else None
        masks = {w: (None, False) for w in self._windows}  # no padding, no sliding window: causal by slot
        for block in self.layers:
            x = block(x, rope, masks, start)
        return self._head(x)[:, -1]

    def _rows_step(self, tokens: torch.Tensor, window: torch.Tensor, position_ids: torch.Tensor,
                   starts: torch.Tensor) -> torch.Tensor:
        """A decode step of B rows as `torch.jit.trace` records it: tokens [B], window = slots 0..slot,
        position_ids [B, 1], starts [B] (row i attends to slots starts[i]..slot). The same ops as
        `forward` runs for such a step with the mask `kv_mask` whose suffix starts are `starts`, less
        the mask, which the native decode attention does not read (bit-identical logits)."""
        end = window.shape[0]
        start = end - 1
        x = self._embed(tokens[:, None], position_ids)
        rope = self._rope(position_ids, start, end)
        masks = {None: (None, False), ("starts", None): starts}
        for block in self.layers:
            x = block(x, rope, masks, start)
        return self._head(x)[:, -1]

    def _graph_for(self, key: tuple, make: Callable[[], Any]) -> Any:
        """The captured step for `key` (made on first use); the least recently used of more than
        MAX_DECODE_GRAPHS is dropped, so varied batch sizes do not pile up graphs and their memory."""
        graph = self._graphs.pop(key, None)
        if graph is None:
            graph = make()
            while len(self._graphs) >= MAX_DECODE_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))
        self._graphs[key] = graph  # most recently used last
        return graph

    def _static_step(self, tokens: torch.Tensor, pos: torch.Tensor, position_ids: torch.Tensor | None,
                     kv_mask: torch.Tensor | None) -> torch.Tensor:
        """The decode step with every shape fixed by the cache (what a CUDA graph captures): tokens [B],
        pos [1] (the slot, a tensor), position_ids [B, 1] or None, kv_mask [B, max_seq_len] or None."""
        slots = self._slots[None, :]
        here = pos[:, None]
        x = self._embed(tokens[:, None], pos if position_ids is None else position_ids)
        rope = None
        if self.uses_rope:
            rope = ((self._cos[pos][:, None], self._sin[pos][:, None]) if position_ids is None else
                    (self._cos[position_ids].unsqueeze(2), self._sin[position_ids].unsqueeze(2)))
        masks = {}
        for window in self._windows:
            m = slots <= here
            if window is not None:
                m = m & (slots > here - window)
            if kv_mask is not None:
                m = m & (kv_mask | (slots == here))
            masks[window] = (m[:, None, None, :], False)
        for block in self.layers:
            x = block(x, rope, masks, pos)
        return self._head(x)[:, -1]

    # ----- prefill: chunks and the prompt cache -----
    def _weights_key(self) -> tuple:
        """Changes when a module is replaced (quantization) or a parameter is modified in place."""
        versions = 0
        for p in self.parameters():
            try:
                versions += p._version
            except RuntimeError:  # an inference tensor without a version counter
                pass
        modules = tuple(id(m) for m in self.modules() if not isinstance(m, KVCache))
        return (self.dtype, self.device, modules, versions)

    def _track_cached_ids(self, input_ids: torch.Tensor, start: int, end: int, plain: bool) -> None:
        """Record which tokens row 0's slots 0..end-1 now hold (only single-row, default-position
        calls count; anything else forgets the record)."""
        if not self.prompt_cache:
            return
        if input_ids.shape[0] != 1 or not plain:
            self._cached_len = 0
            return
        if start == 0:
            self._cached_key = self._weights_key()
        if start <= self._cached_len:
            self._cached_ids[start:end] = input_ids[0]
            self._cached_len = end

    def cached_prefix(self, ids: torch.Tensor) -> int:
        """How many leading tokens of `ids` (1-D) the KV cache already holds, at most len(ids) - 1
        (the last prompt token is always run, to give the next token's logits). 0 unless
        `prompt_cache` is on."""
        n = min(self._cached_len, ids.shape[0] - 1)
        if not self.prompt_cache or n <= 0 or self._cached_key != self._weights_key():
            return 0
        ids = ids.to(self._cached_ids.device)
        differ = (self._cached_ids[:n] != ids[:n]).nonzero()
        return int(differ[0, 0]) if differ.numel() else n

    def prefill(self, input_ids: torch.Tensor | None, position_ids: torch.Tensor | None = None,
                kv_mask: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Run a prompt [B, T] into the cache from slot 0 -> float32 logits [B, V] of its last token.

        The prompt runs in chunks of `prefill_chunk_size` tokens (None: one pass), which bounds the
        activations and masks of long prompts. With `prompt_cache` on, a single-row prompt whose
        leading tokens are already in the cache (the previous call's prompt + output, e.g. a chat's
        earlier turns) runs only from the first token that differs. Chunks and reuse change float
        rounding only (~1e-6 in float32), not the computation.
        """
        b, t = self._input_shape(input_ids, inputs_embeds)
        plain = b == 1 and position_ids is None and kv_mask is None and inputs_embeds is None
        start = self.cached_prefix(input_ids[0]) if plain else 0
        chunk = self.prefill_chunk_size or t
        logits = None
        for s in range(start, t, chunk):
            e = min(s + chunk, t)
            pos = self._slots[s:e] if self._slots.numel() >= e else torch.arange(s, e, device=self.device)
            logits = self(None if input_ids is None else input_ids[:, s:e], pos,
                          position_ids=None if position_ids is None else position_ids[:, s:e],
                          kv_mask=kv_mask, last_only=True,
                          inputs_embeds=None if inputs_embeds is None else inputs_embeds[:, s:e])
        self.last_prefill_start = start
        return logits[:, -1]

    def forward_full(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None = None,
                     inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T, V] (float32) for whole sequences without touching the cache (scoring, logprobs).

        attention_mask [B, T] (1 = token, 0 = left padding) sets the positions as transformers does;
        inputs_embeds [B, T, hidden] replaces the token embeddings (input_ids None).
        """
        b, t = self._input_shape(input_ids, inputs_embeds)
        self._ensure_weight_layout(b)
        self._ensure_rope(t)
        slots = torch.arange(t, device=self.device)
        if attention_mask is None:
            position_ids = None
            positions = slots
        else:
            attention_mask = attention_mask.to(self.device)
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            positions = position_ids
        masks = self._masks(0, t, attention_mask, slots)
        x = self._embed(input_ids, positions, inputs_embeds)
        rope = self._rope(position_ids, 0, t)
        for block in self.layers:
            x = block(x, rope, masks, None)
        return self._head(x)

    def _input_shape(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> tuple[int, int]:
        if (input_ids is None) == (inputs_embeds is None):
            raise ModelError("give either input_ids or inputs_embeds")
        if inputs_embeds is None:
            return tuple(input_ids.shape)
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
            raise ModelError(f"inputs_embeds must be [batch, seq, {self.config.hidden_size}], "
                             f"got {list(inputs_embeds.shape)}")
        return tuple(inputs_embeds.shape[:2])

    def _embed(self, input_ids: torch.Tensor | None, positions: torch.Tensor,
               inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """The block input: token embeddings (or `inputs_embeds`, cast to the model's dtype)."""
        raise NotImplementedError

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(x)).float()

    def extra_repr(self) -> str:
        c = self.config
        return f"arch={self.arch}, layers={c.num_layers}, hidden={c.hidden_size}, vocab={c.vocab_size}"


MAX_DECODE_GRAPHS = 8  # captured decode steps kept per model (one per batch shape)
# A CPU trace of SmolLM2's step costs ~0.3 s (bfloat16) to ~0.7-1 s (float32) once, and saves ~8-12 ms
# per step for the model's lifetime: a generation with fewer steps left than this does not make one
# (it uses one that exists), so short one-off generations do not pay for it.
TRACE_MIN_STEPS = 32
_HAS_JIT_TRACE = hasattr(torch.jit, "trace") and hasattr(torch.jit, "optimized_execution")


class _TracedStep:
    """`DecoderModel._row_step` traced with `torch.jit.trace` (CPU, one row): the recorded graph runs
    the step's ~1000 ops without the Python between them (~20% of a SmolLM2 step on this project's
    machine). The weights, caches and RoPE tables are the trace's constants, by reference: in-place
    edits show, replacements drop the trace (`DecoderModel.reset_decode_graphs`; a change of weight
    layout is part of its key). It runs without TorchScript's optimizing executor, whose profiling
    runs cost ~0.5 s and gain nothing here."""

    def __init__(self, model: DecoderModel, rows: bool = False) -> None:
        self.model = model
        self.rows = rows  # `DecoderModel._rows_step` (inputs: + position_ids, starts) instead of `_row_step`
        self.fn: Callable | None = None

    @property
    def ready(self) -> bool:
        return self.fn is not None

    def run(self, tokens: torch.Tensor, slot: int, position_ids: torch.Tensor | None,
            starts: torch.Tensor | None) -> torch.Tensor:
        window = self.model._slots[:slot + 1]
        inputs = (tokens, window, position_ids, starts) if self.rows else (tokens, window)
        with torch.jit.optimized_execution(False):
            if self.fn is None:
                self.fn = self._trace(inputs)
            return self.fn(*inputs)

    def _trace(self, inputs: tuple) -> Callable:
        """Trace the step (tracing runs it once; the step rewrites its cache slot with the same values,
        so running it again after is harmless). The parameters are traced as constants, which the
        tracer accepts only without requires_grad: it is lifted for the trace and restored."""
        model = self.model
        grads = [p for p in model.parameters() if p.requires_grad]
        try:
            for p in grads:
                p.requires_grad_(False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecation notice; shape-to-int conversions are intended
                step = model._rows_step if self.rows else model._row_step
                return torch.jit.trace(lambda *a: step(*a), inputs, check_trace=False)
        finally:
            for p in grads:
                p.requires_grad_(True)


class _DecodeGraph:
    """A CUDA graph of `DecoderModel._static_step` for one batch shape, with its static input buffers.

    The first `run` executes the step eagerly on a side stream (three times, which warms cuBLAS up as
    capture requires; the step is idempotent) and uses its result, then captures the graph; later runs
    copy the inputs into the buffers and replay, returning the graph's output buffer. The graph reads
    the model's weights and KV cache in place, so it stays valid until they are reallocated
    (`DecoderModel.reset_decode_graphs`)."""

    def __init__(self, model: DecoderModel, rows: int, positioned: bool, masked: bool) -> None:
        device = model.device
        self.model = model
        self.tokens = torch.zeros(rows, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.position_ids = torch.zeros(rows, 1, dtype=torch.long, device=device) if positioned else None
        self.kv_mask = torch.ones(rows, model.max_seq_len, dtype=torch.bool, device=device) if masked else None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: torch.Tensor | None = None

    @property
    def ready(self) -> bool:
        return self.graph is not None

    def _step(self) -> torch.Tensor:
        return self.model._static_step(self.tokens, self.pos, self.position_ids, self.kv_mask)

    def run(self, tokens: torch.Tensor, slot: int, position_ids: torch.Tensor | None,
            kv_mask: torch.Tensor | None) -> torch.Tensor:
        self.tokens.copy_(tokens.view(-1))
        self.pos.fill_(slot)
        if self.position_ids is not None:
            self.position_ids.copy_(position_ids.view(-1, 1))
        if self.kv_mask is not None:
            # slots past the mask's end are never at or before `slot` in this generation
            self.kv_mask[:, :kv_mask.shape[1]].copy_(kv_mask)
        device = self.tokens.device
        with torch.cuda.device(device):  # the model's GPU, whichever is current
            if self.graph is None:
                return self._capture(device)
            self.graph.replay()
        return self.out

    def _capture(self, device: torch.device) -> torch.Tensor:
        """Run the step eagerly (its result is this step's logits), then capture it."""
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):  # the step rewrites the same cache slot with the same values each time
                logits = self._step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.out = self._step()
        self.graph = graph
        return logits
