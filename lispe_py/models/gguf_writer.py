"""Writing a Llama-family model as a GGUF file in llama.cpp's layout (for tests and bench/models.py).

    write_llama_gguf(path, model, "Q4_K_M")            # our model's weights, llama.cpp's Q4_K_M mix
    write_llama_gguf(path, config, "Q4_1", weights=fn)   # fn(gguf tensor name) -> float32 tensor
    rewrite_gguf(src, dst, tensor=fn, meta={...})         # a copy of a file, tensors or keys changed

Types: one tensor type for every matrix ("F32", "F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
"Q4_K", "Q5_K", "Q6_K"), or the mixes "Q4_K_M" / "Q5_K_M" as llama.cpp's quantize makes them (the
output/embedding matrix Q6_K, attn_v and ffn_down Q6_K in the first and last eighth of the layers and
every third layer between, the rest Q4_K / Q5_K). Norms stay float32; q/k rows are interleaved for
llama.cpp's RoPE, as its converter does. K-quant blocks come from `kquants.quantize`, the other types
from `gguf.quants.quantize`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import kquants
from .config import ModelConfig

MIXES = {"Q4_K_M": "Q4_K", "Q5_K_M": "Q5_K"}


def mix_type(mix: str, name: str, num_layers: int) -> str:
    """The tensor type of matrix `name` (GGUF name) in file type `mix` (a mix or one type)."""
    if mix not in MIXES:
        return mix
    if name in ("token_embd.weight", "output.weight"):
        return "Q6_K"
    if name.endswith(("attn_v.weight", "ffn_down.weight")):
        i = int(name.split(".")[1])
        if i < num_layers // 8 or i >= 7 * num_layers // 8 or (i - num_layers // 8) % 3 == 2:
            return "Q6_K"
    return MIXES[mix]


def _permute(t: torch.Tensor, heads: int) -> torch.Tensor:
    return t.reshape(heads, 2, t.shape[0] // heads // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)


def encode(kind: str, w: torch.Tensor) -> tuple[np.ndarray, Any]:
    """(raw array, gguf type) of float weights w [N, K] as tensor type `kind`."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    qtype = GGMLQuantizationType[kind]
    if kind in kquants.KINDS:
        rows = [kquants.quantize(kind, w[i:i + 2048]) for i in range(0, w.shape[0], 2048)]
        return torch.cat(rows).numpy(), qtype
    arr = np.ascontiguousarray(w.detach().float().numpy())
    if kind == "F32":
        return arr, qtype
    return quantize(arr, qtype), qtype


def model_weights(model: Any) -> Callable[[str], torch.Tensor]:
    """fn(gguf name) -> float32 weight of our llama model (q/k not yet interleaved)."""
    c = model.config
    sd = model.state_dict()
    q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    inter = c.intermediate_size

    def get(name: str) -> torch.Tensor:
        if name == "token_embd.weight":
            return sd["embed.weight"].float()
        if name == "output.weight":
            return sd["lm_head.weight"].float()
        if name == "output_norm.weight":
            return sd["norm.weight"].float()
        _, i, part, _ = name.split(".")
        p = f"layers.{i}."
        qkv = sd[p + "attn.wqkv.weight"].float()
        gate_up = sd[p + "mlp.w_gate_up.weight"].float()
        return {"attn_q": qkv[:q], "attn_k": qkv[q:q + kv], "attn_v": qkv[q + kv:],
                "attn_output": sd[p + "attn.wo.weight"], "ffn_gate": gate_up[:inter], "ffn_up": gate_up[inter:],
                "ffn_down": sd[p + "mlp.w_down.weight"], "attn_norm": sd[p + "attn_norm.weight"],
                "ffn_norm": sd[p + "mlp_norm.weight"]}[part].float()
    return get


def placeholder_vocab(size: int) -> tuple[list[str], list[str]]:
    """(tokens, merges) of a byte-level BPE vocabulary of `size` tokens for a model with random weights:
    the 256 byte symbols, one merge, then "<|tN|>" tokens, so that llama.cpp and our loader accept the
    file (ids are fed directly; text encodes to the byte tokens)."""
    from .tokenizer import bytes_to_unicode

    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + ["\u0120t"]
    tokens += [f"<|t{i}|>" for i in range(len(tokens), size)]
    return tokens[:size], ["\u0120 t"]


def write_llama_gguf(path: str | Path, model_or_config: Any, file_type: str,
                     weights: Callable[[str], torch.Tensor] | None = None, tied: bool | None = None,
                     vocab: bool = False) -> Path:
    """Write a llama-architecture GGUF; without `vocab` no tokenizer (`llama.vocab_size` gives the
    vocabulary size), with it `placeholder_vocab`. `model_or_config`: our llama model (its weights)
    or a ModelConfig with `weights(name)`."""
    from gguf import GGUFWriter

    config: ModelConfig = getattr(model_or_config, "config", model_or_config)
    get = weights if weights is not None else model_weights(model_or_config)
    tied = config.tie_word_embeddings if tied is None else tied
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(config.num_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_heads)
    w.add_head_count_kv(config.num_kv_heads)
    w.add_rope_dimension_count(config.head_dim)
    w.add_rope_freq_base(config.rope_theta)
    w.add_layer_norm_rms_eps(config.norm_eps)
    w.add_vocab_size(config.vocab_size)
    if config.bos_token_id is not None:
        w.add_bos_token_id(config.bos_token_id)
    if isinstance(config.eos_token_id, int):
        w.add_eos_token_id(config.eos_token_id)
    if vocab:
        tokens, merges = placeholder_vocab(config.vocab_size)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_types([1] * len(tokens))
        w.add_token_merges(merges)

    def add(name: str, t: torch.Tensor) -> None:
        if t.dim() == 1:
            w.add_tensor(name, np.ascontiguousarray(t.detach().float().numpy()))
            return
        arr, qtype = encode(mix_type(file_type, name, config.num_layers), t)
        w.add_tensor(name, arr, raw_dtype=qtype)

    add("token_embd.weight", get("token_embd.weight"))
    add("output_norm.weight", get("output_norm.weight"))
    if not tied:
        add("output.weight", get("output.weight"))
    for i in range(config.num_layers):
        for part in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
                     "attn_norm", "ffn_norm"):
            t = get(f"blk.{i}.{part}.weight")
            if part == "attn_q":
                t = _permute(t, config.num_heads)
            elif part == "attn_k":
                t = _permute(t, config.num_kv_heads)
            add(f"blk.{i}.{part}.weight", t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


def rewrite_gguf(src: str | Path, dst: str | Path, tensor: Callable[[Any, tuple[int, ...]], np.ndarray] | None = None,
                 meta: dict[str, int | None] | None = None) -> Path:
    """A copy of the GGUF file `src` written to `dst` by the gguf package: every metadata key as it is
    (value and type) but those in `meta` (key -> a uint32 value, or None to leave the key out), every
    tensor as `tensor(reader_tensor, shape)` gives it (shape in torch order; default: the file's data
    as it is, in that shape)."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    writer = gguf.GGUFWriter(str(dst), reader.fields["general.architecture"].contents())
    edits = meta or {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture" or name in edits:
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_array(name, field.contents())
        else:
            writer.add_key_value(name, field.contents(), field.types[0])
    for name, value in edits.items():
        if value is not None:
            writer.add_key_value(name, value, gguf.GGUFValueType.UINT32)
    for t in reader.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))
        writer.add_tensor(t.name, tensor(t, shape) if tensor is not None else np.asarray(t.data).reshape(shape))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(dst)
