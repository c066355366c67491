"""GGUF files of the families of `families.py`, as llama.cpp's converter writes them: Gemma 1/2/3 (norm
weights stored as 1 + weight), Phi-3 (fused attn_qkv and gate/up in ffn_up, LongRoPE factors as the
rope_factors_short/long tensors), Qwen2-MoE and Qwen3-MoE (experts stacked in ffn_*_exps, the shared
expert in ffn_*_shexp), Mixtral (a llama with llama.expert_count and stacked experts). `gguf_loader`
hands these architectures to `config_from_gguf_family` and `state_dict_from_gguf_family`."""
from __future__ import annotations

import math
from typing import Any

import torch

from .config import ModelConfig
from .errors import ModelError

#: GGUF general.architecture -> our arch
GGUF_FAMILIES = {"gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3", "phi3": "phi3",
                 "qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe"}


def _int(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    value = meta.get(key, default)
    if value is None:
        raise ModelError(f"GGUF metadata: missing key {key}")
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__") or int(value) <= 0:
        raise ModelError(f"GGUF metadata: {key} must be a positive integer, got {value!r}")
    return int(value)


def _float(meta: dict[str, Any], key: str, default: float | None = None) -> float | None:
    value = meta.get(key, default)
    return None if value is None else float(value)


def config_from_gguf_family(meta: dict[str, Any], rope_factors: dict[str, list[float]] | None = None
                            ) -> ModelConfig | None:
    """ModelConfig from the metadata of a GGUF file of one of GGUF_FAMILIES, None for other
    architectures. rope_factors: Phi-3's {"short": [...], "long": [...]} from the file's tensors."""
    arch = meta.get("general.architecture")
    if arch == "llama" and meta.get("llama.expert_count"):
        ours = "mixtral"  # llama.cpp writes Mixtral as a llama with experts
    elif arch in GGUF_FAMILIES:
        ours = GGUF_FAMILIES[arch]
    else:
        return None
    p = f"{arch}."
    hidden, heads = _int(meta, p + "embedding_length"), _int(meta, p + "attention.head_count")
    layers = _int(meta, p + "block_count")
    head_dim = int(meta.get(p + "attention.key_length") or hidden // heads)
    vocab = meta.get(p + "vocab_size") or len(meta.get("tokenizer.ggml.tokens", ()))
    if not vocab:
        raise ModelError(f"GGUF metadata: no vocabulary size ({p}vocab_size and tokenizer.ggml.tokens missing)")
    values: dict[str, Any] = dict(
        arch=ours, model_type=ours, vocab_size=int(vocab), hidden_size=hidden, num_layers=layers, num_heads=heads,
        num_kv_heads=int(meta.get(p + "attention.head_count_kv", heads)), head_dim=head_dim,
        intermediate_size=_int(meta, p + "feed_forward_length", meta.get(p + "expert_feed_forward_length")),
        max_position_embeddings=int(meta.get(p + "context_length", 2048)),
        rope_theta=float(meta.get(p + "rope.freq_base", 10000.0)),
        norm_eps=float(meta.get(p + "attention.layer_norm_rms_epsilon", 1e-6)),
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"), eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=meta.get("tokenizer.ggml.padding_token_id"),
    )
    if meta.get(p + "rope.scaling.type") == "linear":
        values["rope_scaling"] = {"rope_type": "linear", "factor": float(meta[p + "rope.scaling.factor"])}
    if ours.startswith("gemma"):
        values.update(hidden_act="gelu_pytorch_tanh", embed_scale=hidden ** 0.5, norm_offset=True)
        if ours != "gemma":
            window = meta.get(p + "attention.sliding_window")
            # llama.cpp's query scale: 1/sqrt(hidden / heads) for the 27B models, 1/sqrt(head_dim) otherwise
            big = layers == (46 if ours == "gemma2" else 62)
            values.update(norm_placement="sandwich", attn_scale=(hidden / heads if big else head_dim) ** -0.5,
                          attn_softcap=_float(meta, p + "attn_logit_softcapping"),
                          final_softcap=_float(meta, p + "final_logit_softcapping"))
            if window:
                pattern = 2 if ours == "gemma2" else int(meta.get(p + "attention.sliding_window_pattern", 6))
                values.update(sliding_window=int(window), layer_types=[
                    "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(layers)])
        if ours == "gemma3":
            values.update(qk_norm=True, rope_local_theta=10000.0)
    elif ours == "phi3":
        rot = int(meta.get(p + "rope.dimension_count", head_dim))
        values["partial_rotary_factor"] = rot / head_dim
        if meta.get(p + "attention.sliding_window"):
            values["sliding_window"] = int(meta[p + "attention.sliding_window"])
        if rope_factors:
            original = _int(meta, p + "rope.scaling.original_context_length")
            factor = values["max_position_embeddings"] / original
            attn = _float(meta, p + "rope.scaling.attn_factor")
            if attn is None:
                attn = 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original))
            values["rope_scaling"] = {"rope_type": "longrope", "short_factor": rope_factors["short"],
                                      "long_factor": rope_factors["long"], "original_max_position_embeddings": original,
                                      "attention_factor": attn}
    elif ours == "mixtral":
        values.update(num_experts=_int(meta, p + "expert_count"),
                      num_experts_per_tok=_int(meta, p + "expert_used_count"), norm_topk_prob=True,
                      norm_eps=float(meta.get(p + "attention.layer_norm_rms_epsilon", 1e-5)))
    else:  # Qwen2-MoE, Qwen3-MoE
        values.update(num_experts=_int(meta, p + "expert_count"),
                      num_experts_per_tok=_int(meta, p + "expert_used_count"),
                      moe_intermediate_size=_int(meta, p + "expert_feed_forward_length"),
                      norm_topk_prob=ours == "qwen3_moe")  # llama.cpp renormalises for Qwen3-MoE only
        if ours == "qwen2_moe":
            values.update(attention_bias=True,
                          shared_expert_intermediate_size=int(meta.get(p + "expert_shared_feed_forward_length", 0)))
        else:
            values["qk_norm"] = True
    return ModelConfig(**values)


def rope_factors(tensors: dict, dequantize) -> dict[str, list[float]] | None:
    """Phi-3's LongRoPE factors from the rope_factors_short/long tensors of a GGUF file, or None."""
    if "rope_factors_long.weight" not in tensors:
        return None
    return {kind: dequantize(f"rope_factors_{kind}.weight").flatten().tolist() for kind in ("short", "long")}


def state_dict_from_gguf_family(config: ModelConfig, get, names: set[str]) -> dict[str, torch.Tensor]:
    """Our state dict (FamilyModel's names) from a GGUF file's tensors; `get(name)` dequantizes one."""
    from .families import _permute_heads, _rotary_order
    from .gguf_loader import _unpermute

    gemma = config.norm_offset
    def norm(name: str) -> torch.Tensor:  # noqa: E306
        w = get(name)
        return w - 1 if gemma else w  # llama.cpp stores Gemma's norm weights as 1 + weight

    out = {"embed.weight": get("token_embd.weight"), "norm.weight": norm("output_norm.weight")}
    config.tie_word_embeddings = "output.weight" not in names
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = get("output.weight")
    q_size, kv_size = config.num_heads * config.head_dim, config.num_kv_heads * config.head_dim
    order = _rotary_order(config)
    for i in range(config.num_layers):
        b, q = f"blk.{i}.", f"layers.{i}."
        kinds = ("weight", "bias") if config.attention_bias else ("weight",)
        for kind in kinds:
            if b + f"attn_qkv.{kind}" in names:
                wq, wk, wv = get(b + f"attn_qkv.{kind}").split((q_size, kv_size, kv_size))
            else:
                wq, wk, wv = (get(b + f"attn_{n}.{kind}") for n in "qkv")
            if order is not None:
                wq, wk = _permute_heads(wq, config.num_heads, order), _permute_heads(wk, config.num_kv_heads, order)
            if config.arch == "mixtral":  # llama.cpp interleaves a llama's rotary halves: undone
                wq, wk = _unpermute(wq, config.num_heads), _unpermute(wk, config.num_kv_heads)
            out[q + f"attn.wqkv.{kind}"] = torch.cat([wq, wk, wv])
        out[q + "attn.wo.weight"] = get(b + "attn_output.weight")
        if config.qk_norm:
            out[q + "attn.q_norm.weight"] = norm(b + "attn_q_norm.weight")
            out[q + "attn.k_norm.weight"] = norm(b + "attn_k_norm.weight")
        out[q + "attn_norm.weight"] = norm(b + "attn_norm.weight")
        out[q + "mlp_norm.weight"] = norm(b + "ffn_norm.weight")
        if config.norm_placement == "sandwich":
            out[q + "post_attn_norm.weight"] = norm(b + "post_attention_norm.weight")
            out[q + "post_mlp_norm.weight"] = norm(b + "post_ffw_norm.weight")
        if config.is_moe_layer(i):
            m = q + "mlp."
            out[m + "router"] = get(b + "ffn_gate_inp.weight")
            gate, up, down = (get(b + f"ffn_{n}_exps.weight") for n in ("gate", "up", "down"))
            for e in range(config.num_experts):
                out[m + f"experts.{e}.w_gate_up.weight"] = torch.cat([gate[e], up[e]])
                out[m + f"experts.{e}.w_down.weight"] = down[e]
            if config.shared_expert_intermediate_size:
                out[m + "shared.w_gate_up.weight"] = torch.cat([get(b + "ffn_gate_shexp.weight"),
                                                                get(b + "ffn_up_shexp.weight")])
                out[m + "shared.w_down.weight"] = get(b + "ffn_down_shexp.weight")
                out[m + "shared_gate"] = get(b + "ffn_gate_inp_shexp.weight").reshape(1, -1)
        elif b + "ffn_gate.weight" in names:
            out[q + "mlp.w_gate_up.weight"] = torch.cat([get(b + "ffn_gate.weight"), get(b + "ffn_up.weight")])
            out[q + "mlp.w_down.weight"] = get(b + "ffn_down.weight")
        else:  # Phi-3: gate and up fused in ffn_up
            out[q + "mlp.w_gate_up.weight"] = get(b + "ffn_up.weight")
            out[q + "mlp.w_down.weight"] = get(b + "ffn_down.weight")
    return out
