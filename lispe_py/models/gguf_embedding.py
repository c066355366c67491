"""A token embedding read straight from a GGUF file's blocks (memory-mapped), for quantized loads.

A quantized model built from a GGUF file (`quantize.load_gguf_quantized`) keeps its embedding table in
the file's own blocks: `GGUFEmbedding` holds the tensor's bytes as a uint8 view of the memory-mapped
file (no copy; only the rows looked up are ever read from disk) and dequantizes the rows of the
tokens it is given, with the same torch operations as the float loader (`gguf_loader.dequantize`),
so the vectors are bit-identical to those of `load_gguf`. Llama 3.2 1B's table is 262M values:
1 GB as float32, 215 MB as the file's Q6_K blocks.

A lookup reads the float16 block scales (d, and dmin or m) of the rows it selects from their bytes by
arithmetic (`kquants.f16_of`, exact for every bit pattern), taking no dtype view of the bytes: decode
steps can then be recorded by torch.jit.trace (`DecoderModel._row_step`), which cannot trace such
views. Nothing of the table is read at load, and nothing of it is kept beside the mapping (a float16
copy of the scales would be 1/32 of the float table for Q8_0/Q4_0/Q4_1: 33 MB for Llama 3.2 1B's
Q4_1 table).

`weight` is an empty tensor carrying the model's dtype and device (what `DecoderModel.dtype` and
`.device` read); there is no float table to tie an output head to, so a tied head is built from the
same GGUF tensor by the quantized loader instead. `.to(device)` moves the bytes (a GPU holds the
file's blocks); `.to(dtype)` changes the dtype of the rows returned.
"""
from __future__ import annotations

import torch
from torch import nn

from . import kquants

#: tensor types whose rows are dequantized by torch operations alone (traceable for decode steps)
TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1") + kquants.KINDS


class GGUFEmbedding(nn.Module):
    def __init__(self, tensor, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.kind = tensor.type_name
        if self.kind not in TYPES:
            raise ValueError(f"GGUFEmbedding: tensor type {self.kind} is not supported")
        self.num_embeddings, self.embedding_dim = tensor.shape
        raw = torch.from_numpy(tensor.data).view(self.num_embeddings, -1)
        floats = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}.get(self.kind)
        if floats is not None:
            raw = raw.view(floats)  # the table as the file holds it: rows widened on lookup
        cpu = torch.device(device).type == "cpu"
        self.register_buffer("raw", raw if cpu else raw.to(device), persistent=False)
        self.register_buffer("_probe", torch.empty(0, dtype=dtype, device=device), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        """An empty tensor of the rows' dtype and device (there is no float table)."""
        return self._probe

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """float32 [n, dim] vectors of the token ids `ids` [n]: the same operations as the float
        loader's (`gguf_loader.dequantize`), without dtype views of the bytes."""
        ids = ids.to(self.raw.device)
        rows = self.raw.index_select(0, ids)
        n = rows.shape[0]
        if self.raw.dtype != torch.uint8:  # F32 / F16 / BF16
            return rows.float()
        if self.kind in kquants.KINDS:
            blocks = rows.reshape(-1, kquants.BLOCK_BYTES[self.kind])
            return kquants.dequantize(self.kind, blocks, kquants.half_scales(self.kind, blocks, kquants.f16_of)).reshape(n, -1)
        if self.kind == "Q8_0":  # [d][32 x int8]: x = d * q
            blocks = rows.reshape(-1, 34)
            q = kquants._int8_of(blocks[:, 2:]).float()
            return torch.mul(q, kquants.f16_of(blocks[:, 0:2])).reshape(n, -1)
        size, header = (20, 4) if self.kind == "Q4_1" else (18, 2)
        blocks = rows.reshape(-1, size)
        sc = kquants.f16_of(blocks[:, :header].reshape(-1, 2)).reshape(-1, header // 2)  # d (and m)
        qs = blocks[:, header:]
        q = torch.cat((qs & 0x0F, qs >> 4), dim=1).float()  # low nibbles: elements 0..15, high: 16..31
        if self.kind == "Q4_1":  # x = m + q * d
            return torch.addcmul(sc[:, 1:2], q, sc[:, 0:1]).reshape(n, -1)
        return q.sub(8.0).mul(sc).reshape(n, -1)  # Q4_0: x = d * (q - 8)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        flat = self.rows(input_ids.reshape(-1))
        return flat.to(device=self._probe.device, dtype=self._probe.dtype).reshape(*input_ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.kind} blocks (memory-mapped)"
