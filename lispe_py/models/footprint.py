"""How many parameters a model really has, and in what storage (for torch_model_info and the printed
model).

    from lispe_py.models.footprint import footprint
    footprint(model)
    # {"parameters": 134515008, "by_storage": {"int4": 106217472, "float32": 28297536},
    #  "storage": "int4+float32", "weight_bytes": ...}

`model.num_parameters()` counts torch Parameters, and a quantized layer keeps its weights in buffers
(a packed int4 buffer holds two weights per byte, a K-quant block 256 weights), so a quantized model
would look like its float parts alone (SmolLM2-135M int4: 28.3M, its embedding table). Here each
quantized layer counts its logical weights, out_features x in_features (an embedding: rows x columns),
whatever the layout holds them, under its storage: "int8", "int4", a GGUF block type ("Q4_K", "Q6_K",
"Q8_0", ...) for layers reading a file's blocks as they are, and the dtype name for everything else.

A tied output head counts once, as the float model counts it: when the model ties its head to the
embedding and the head was quantized into a layer of its own (a quantized twin of the table), the head's
weights are the embedding's and are counted under the embedding's storage only (its bytes are counted
in weight_bytes: that copy is real memory).

weight_bytes: the bytes that hold the parameters (quantized values with their scales, zeros and
offsets, float tables, norms, biases), each storage once; buffers that are not weights (RoPE tables,
the KV cache) are not counted.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

_GGUF_FLOATS = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _quantized_layers(model: nn.Module) -> dict[nn.Module, list[tuple[str, int]]]:
    """Each quantized module of the model with its logical weights as (storage, count) pairs."""
    from .gguf_embedding import GGUFEmbedding
    from .kquant_linear import KQuantLinear
    from .quantize import Int4Linear, Int8Linear

    out: dict[nn.Module, list[tuple[str, int]]] = {}
    for module in model.modules():
        if isinstance(module, Int8Linear):
            out[module] = [("int8", module.out_features * module.in_features)]
        elif isinstance(module, Int4Linear):
            out[module] = [("int4", module.out_features * module.in_features)]
        elif isinstance(module, KQuantLinear):
            out[module] = [(kind, raw.shape[0] * module.in_features) for kind, raw, _ in module._parts()]
        elif isinstance(module, GGUFEmbedding):
            kind = _GGUF_FLOATS.get(module.kind, module.kind)
            out[module] = [(kind, module.num_embeddings * module.embedding_dim)]
    return out


def _tied_quantized_head(model: nn.Module, quantized: dict) -> nn.Module | None:
    """The output head when it is a quantized copy of a tied embedding (counted once, as the table)."""
    head = getattr(model, "lm_head", None)
    config = getattr(model, "config", None)
    if (head is not None and head in quantized and getattr(config, "tie_word_embeddings", False)
            and getattr(model, "embed", None) is not None):
        return head
    return None


def footprint(model: nn.Module) -> dict[str, Any]:
    """{"parameters": n, "by_storage": {storage: n, ...} (largest first), "storage": "int4+float32",
    "weight_bytes": bytes}: the logical parameter count of a float or quantized model (see the module's
    docstring)."""
    quantized = _quantized_layers(model)
    skip_head = _tied_quantized_head(model, quantized)
    counts: dict[str, int] = {}
    seen_params: set[int] = set()
    seen_storage: set[int] = set()
    weight_bytes = 0

    def add_bytes(t: torch.Tensor) -> None:
        nonlocal weight_bytes
        if not t.numel():
            return
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen_storage:
            seen_storage.add(storage.data_ptr())
            weight_bytes += storage.nbytes()

    for module, parts in quantized.items():
        if module is not skip_head:
            for kind, n in parts:
                counts[kind] = counts.get(kind, 0) + n
        for name, t in module.named_buffers(recurse=False):
            if t is not None and name != "_probe":
                add_bytes(t)
        native = getattr(module, "_native_scales", None)   # the int4 kernel's copy of the scales
        if isinstance(native, torch.Tensor):
            add_bytes(native)
    for p in model.parameters():          # float parameters (tied ones once), biases of quantized layers
        if id(p) in seen_params or not p.numel():
            continue
        seen_params.add(id(p))
        name = _dtype_name(p.dtype)
        counts[name] = counts.get(name, 0) + p.numel()
        add_bytes(p)
    by_storage = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return {"parameters": sum(by_storage.values()), "by_storage": by_storage,
            "storage": "+".join(by_storage) or None, "weight_bytes": weight_bytes}
