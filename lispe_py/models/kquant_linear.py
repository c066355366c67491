"""A linear layer that multiplies by a GGUF file's Q4_K / Q6_K blocks where they lie (memory-mapped).

`KQuantLinear` holds, for each matrix it stacks (fused q/k/v or gate/up), the uint8 rows of its
super-blocks as a view of the memory-mapped file: no copy, no float weight, nothing decoded at load
(the kernel reads pages as it needs them, and the system may drop them again). Each call runs the
native `lispe::kquant_linear` kernel (kernels.cpp) once over all the parts' rows (Q4_K and Q6_K
mixed) into one output; a part whose rows llama.cpp's converter interleaved for its RoPE (attn_q,
attn_k) has each row's result written to its column in the model's order (y = (W x)[index]: the same
numbers as un-permuting the rows, without a copy; the rows are read in memory order, which the
prefetchers follow).

The kernel rounds x to 16 bits per super-block of 256 (`activation_bits`, ~1/65534 of the block's
largest |x|), or, set to 8 (`quantize.set_activations(model, "int8")`), to 8 bits as llama.cpp
does: half the multiplications, ~1/254 of the largest |x| of error.

Calls of more than NATIVE_MAX_ROWS rows (long prompts) multiply by the dequantized weight in float32
(`kquants.dequantize`, built per call). Where the native kernels do not run (another device, no AVX2
or no compiler) the loader does not make these layers: K-quant blocks then go into the int8 / int4
layers of quantize.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import kquants

#: K-quant types with a native kernel reading their blocks, and their codes in `lispe::kquant_linear`
#: (one matrix alone: `lispe::q4k_linear` / `q6k_linear`)
KIND_CODES = {"Q4_K": 0, "Q6_K": 1}
_IN_ORDER = torch.empty(0, dtype=torch.long)  # a part without an output index (the op's "none")


class KQuantLinear(nn.Module):
    """y = x @ W.T for W the row-stack of GGUF K-quant matrices (each Q4_K or Q6_K)."""

    def __init__(self, parts: list[tuple[str, torch.Tensor, torch.Tensor | None]]) -> None:
        """parts: (kind, raw uint8 [n_i, K / 256 * block bytes], output index [n_i] or None) per matrix."""
        super().__init__()
        self.kinds = [kind for kind, _, _ in parts]
        self.out_features = sum(raw.shape[0] for _, raw, _ in parts)
        self.in_features = parts[0][1].shape[1] // kquants.BLOCK_BYTES[parts[0][0]] * kquants.QK_K
        self.group_size = kquants.QK_K
        self.activation_bits = 16
        for i, (kind, raw, index) in enumerate(parts):
            if kind not in KIND_CODES:
                raise ValueError(f"KQuantLinear: no kernel for {kind}")
            self.register_buffer(f"raw{i}", raw, persistent=False)
            self.register_buffer(f"index{i}", index, persistent=False)
        self._op_args: tuple | None = None  # the kernel's (raws, kinds, indexes), made on the first call

    def _parts(self):
        for i, kind in enumerate(self.kinds):
            yield kind, getattr(self, f"raw{i}"), getattr(self, f"index{i}")

    def _apply(self, fn, recurse: bool = True):
        self._op_args = None  # the buffers may be new tensors
        return super()._apply(fn, recurse)

    def _kernel_args(self) -> tuple:
        """(raws, kinds, indexes) as `lispe::kquant_linear` takes them: built once, not at every call
        (a decode step makes ~4 such calls per layer, and walking the buffers cost ~20 us each)."""
        if self._op_args is None:
            raws, kinds, indexes = [], [], []
            for kind, raw, index in self._parts():
                raws.append(raw)
                kinds.append(KIND_CODES[kind])
                indexes.append(_IN_ORDER if index is None else index)
            self._op_args = (raws, kinds, indexes)
        return self._op_args

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight [out, in] this layer multiplies by (rows in the model's order)."""
        rows = []
        for kind, raw, index in self._parts():
            w = kquants.dequantize(kind, raw.reshape(-1, kquants.BLOCK_BYTES[kind])).reshape(raw.shape[0], -1)
            if index is not None:
                w = w.index_select(0, index)
            rows.append(w)
        return torch.cat(rows) if len(rows) > 1 else rows[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .quantize import NATIVE_MAX_ROWS, float_rows, like_input

        h = float_rows(x, self.in_features)
        if h.shape[0] > NATIVE_MAX_ROWS:
            y = F.linear(h, self.dequantized_weight())
        else:  # one native call for all the parts, each read where it lies, q/k rows in the model's order
            raws, kinds, indexes = self._kernel_args()
            y = torch.ops.lispe.kquant_linear(h, raws, kinds, indexes, self.activation_bits)
        return like_input(y, x, self.out_features)

    def extra_repr(self) -> str:
        bits = "" if self.activation_bits == 16 else f", {self.activation_bits}-bit activations"
        return f"in={self.in_features}, out={self.out_features}, {'+'.join(self.kinds)} blocks (memory-mapped){bits}"
