"""A token embedding read straight from a GGUF file's blocks (memory-mapped), for quantized loads.

A quantized model built from a GGUF file (`quantize.load_gguf_quantized`) keeps its embedding table in
the file's own blocks: `GGUFEmbedding` holds the tensor's bytes as a uint8 view of the memory-mapped
file (no copy; only the rows looked up are ever read from disk) and dequantizes the rows of the
tokens it is given, with the same torch operations as the float loader (`gguf_loader.dequantize`),
so the vectors are bit-identical to those of `load_gguf`. Llama 3.2 1B's table is 262M values:
1 GB as float32, 215 MB as the file's Q6_K blocks.

The float16 block scales (d, and dmin or m) are read once at load into a small float16 table (1/32
of the float table's size for Q8_0/Q4_0/Q4_1, 1/256 for K-quants: float16 holds the file's values
exactly, and a lookup widens the rows it selects to float32), so that a lookup takes no dtype view of
the bytes: decode steps can then be recorded by torch.jit.trace (`DecoderModel._row_step`), which
cannot trace such views. The scales are read a few thousand rows at a time, and `release(tensor,
start, length)` (`GGUFFile.release`), when given, lets the system drop each chunk's pages once read:
reading them would otherwise leave the whole table resident after the load.

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
    def __init__(self, tensor, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 release=None) -> None:
        super().__init__()
        self.kind = tensor.type_name
        if self.kind not in TYPES:
            raise ValueError(f"GGUFEmbedding: tensor type {self.kind} is not supported")
        self.num_embeddings, self.embedding_dim = tensor.shape
        raw = torch.from_numpy(tensor.data).view(self.num_embeddings, -1)
        floats = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}.get(self.kind)
        scales = None
        if floats is not None:
            raw = raw.view(floats)  # the table as the file holds it: rows widened on lookup
        else:  # [V, blocks per row, 2] float16: d and dmin (K-quants), d and m (Q4_1), d and 0
            scales = torch.empty(raw.shape[0], raw.shape[1] // self._block_bytes(), 2, dtype=torch.float16)
            for i in range(0, raw.shape[0], 4096):
                part = raw[i:i + 4096]
                scales[i:i + part.shape[0]] = self._half_scales(part).reshape(part.shape[0], -1, 2)
                if release is not None:
                    release(tensor, i * raw.shape[1], part.shape[0] * raw.shape[1])
        cpu = torch.device(device).type == "cpu"
        self.register_buffer("raw", raw if cpu else raw.to(device), persistent=False)
        self.register_buffer("scales", scales, persistent=False)
        self.register_buffer("_probe", torch.empty(0, dtype=dtype, device=device), persistent=False)

    def _block_bytes(self) -> int:
        return kquants.BLOCK_BYTES[self.kind] if self.kind in kquants.KINDS else {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20}[self.kind]

    def _half_scales(self, raw: torch.Tensor) -> torch.Tensor:
        """float16 [blocks, 2] of the rows `raw` (uint8 [n, row bytes]): each block's d and dmin / m / 0."""
        blocks = raw.reshape(-1, self._block_bytes())
        if self.kind in kquants.KINDS:
            return kquants.half_scales(self.kind, blocks).half()  # float16 values: exact both ways
        d = blocks[:, 0:2].contiguous().view(torch.float16)
        m = blocks[:, 2:4].contiguous().view(torch.float16) if self.kind == "Q4_1" else torch.zeros_like(d)
        return torch.cat((d, m), dim=1)

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
        if self.scales is None:
            return rows.float()
        sc = self.scales.index_select(0, ids).reshape(-1, 2).float()
        if self.kind in kquants.KINDS:
            blocks = rows.reshape(-1, kquants.BLOCK_BYTES[self.kind])
            return kquants.dequantize(self.kind, blocks, sc).reshape(n, -1)
        d, m = sc[:, 0:1], sc[:, 1:2]
        if self.kind == "Q8_0":  # [d][32 x int8]: x = d * q
            q = kquants._int8_of(rows.reshape(-1, 34)[:, 2:]).float()
            return torch.mul(q, d).reshape(n, -1)
        size, header = (20, 4) if self.kind == "Q4_1" else (18, 2)
        qs = rows.reshape(-1, size)[:, header:]
        q = torch.cat((qs & 0x0F, qs >> 4), dim=1).float()  # low nibbles: elements 0..15, high: 16..31
        if self.kind == "Q4_1":  # x = m + q * d
            return torch.addcmul(m, q, d).reshape(n, -1)
        return q.sub(8.0).mul(d).reshape(n, -1)  # Q4_0: x = d * (q - 8)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        flat = self.rows(input_ids.reshape(-1))
        return flat.to(device=self._probe.device, dtype=self._probe.dtype).reshape(*input_ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.kind} blocks (memory-mapped)"
