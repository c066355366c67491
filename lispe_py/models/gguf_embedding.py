"""A token embedding read straight from a GGUF file's blocks (memory-mapped), for quantized loads.

A quantized model built from a GGUF file (`quantize.load_gguf_quantized`) keeps its embedding table in
the file's own blocks: `GGUFEmbedding` holds the tensor's bytes as a uint8 view of the memory-mapped
file (no copy; only the rows looked up are ever read from disk) and dequantizes the rows of the
tokens it is given, with the same torch operations as the float loader (`gguf_loader.dequantize`),
so the vectors are bit-identical to those of `load_gguf`. Llama 3.2 1B's table is 262M values:
1 GB as float32, 215 MB as the file's Q6_K blocks.

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
        self.register_buffer("raw", raw if torch.device(device).type == "cpu" else raw.to(device), persistent=False)
        self.register_buffer("_probe", torch.empty(0, dtype=dtype, device=device), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        """An empty tensor of the rows' dtype and device (there is no float table)."""
        return self._probe

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """float32 [n, dim] vectors of the token ids `ids` [n]."""
        from .gguf_loader import _dequant_blocks

        blocks = self.raw.index_select(0, ids.to(self.raw.device))
        n = blocks.shape[0]
        if self.kind == "F32":
            return blocks.view(torch.float32).reshape(n, -1)
        if self.kind in ("F16", "BF16"):
            return blocks.view(torch.float16 if self.kind == "F16" else torch.bfloat16).float().reshape(n, -1)
        if self.kind in kquants.KINDS:
            return kquants.dequantize(self.kind, blocks.reshape(-1, kquants.BLOCK_BYTES[self.kind])).reshape(n, -1)
        out = torch.empty(n * self.embedding_dim // 32, 32, dtype=torch.float32, device=blocks.device)
        _dequant_blocks(blocks.reshape(-1), self.kind, out)
        return out.reshape(n, -1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        flat = self.rows(input_ids.reshape(-1))
        return flat.to(device=self._probe.device, dtype=self._probe.dtype).reshape(*input_ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.kind} blocks (memory-mapped)"
