"""ModelConfig from the config.json of the families of `families.py`: Gemma 1/2/3, Phi-3/Phi-4, OLMo 2,
Granite, Mixtral, Qwen2-MoE and Qwen3-MoE (transformers 4.x and 5.x spellings of the RoPE keys)."""
from __future__ import annotations

import math
from typing import Any

from .config import HF_MODEL_TYPES, ModelConfig
from .errors import ModelError


def _positive(hf: dict[str, Any], key: str, default: Any = None) -> Any:
    value = hf.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ModelError(f"{key} must be a positive number, got {value!r}")
    return value


def _rope(params: dict[str, Any] | None, hf: dict[str, Any], theta_key: str = "rope_theta",
          default_theta: float = 10000.0) -> tuple[float, dict | None]:
    """(theta, scaling) from one RoPE parameter dict (transformers 5) or the top-level keys (4.x)."""
    params = dict(params or {})
    theta = params.pop("rope_theta", None) or hf.get(theta_key) or default_theta
    params.pop("partial_rotary_factor", None)
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "su":  # Phi-3's first name for LongRoPE
        kind = "longrope"
    if kind == "default":
        return float(theta), None
    if kind not in ("linear", "llama3", "longrope"):
        raise ModelError(f"unsupported rope scaling {kind!r}; supported: linear, llama3, longrope")
    params["rope_type"] = kind
    params.pop("type", None)
    if kind in ("llama3", "longrope"):
        params.setdefault("original_max_position_embeddings",
                          hf.get("original_max_position_embeddings", hf.get("max_position_embeddings", 2048)))
    if kind == "longrope":
        for key in ("short_factor", "long_factor"):
            if not isinstance(params.get(key), list):
                raise ModelError(f"longrope scaling needs a {key} list")
        if params.get("attention_factor") is None:
            # as transformers: from max_position_embeddings / original_max_position_embeddings unless given
            factor = params.get("factor") or hf.get("max_position_embeddings", 2048) / params[
                "original_max_position_embeddings"]
            params["attention_factor"] = 1.0 if factor <= 1.0 else math.sqrt(
                1 + math.log(factor) / math.log(params["original_max_position_embeddings"]))
    return float(theta), params


def _rope_params(hf: dict[str, Any]) -> dict[str, Any] | None:
    return hf.get("rope_parameters") or hf.get("rope_scaling")


def _base(hf: dict[str, Any], model_type: str, **extra: Any) -> dict[str, Any]:
    heads = hf["num_attention_heads"]
    if not isinstance(heads, int) or isinstance(heads, bool) or heads <= 0:
        raise ModelError(f"num_attention_heads must be a positive integer, got {heads!r}")
    values = dict(
        arch=HF_MODEL_TYPES[model_type],
        model_type=model_type,
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        intermediate_size=hf["intermediate_size"],
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        attention_bias=bool(hf.get("attention_bias", False)),
        attention_out_bias=bool(hf.get("attention_bias", False)),
        mlp_bias=bool(hf.get("mlp_bias", False)),
        hidden_act=hf.get("hidden_act", "silu"),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        pad_token_id=hf.get("pad_token_id"),
        init_std=hf.get("initializer_range", 0.02),
    )
    values.update(extra)
    return values


def _layer_types(hf: dict[str, Any], window: int | None, pattern: int) -> list[str] | None:
    """Gemma 2 (every other layer) and Gemma 3 (5 local, 1 global) alternate sliding-window layers."""
    if window is None:
        return None
    types = hf.get("layer_types")
    if types is None:
        types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(hf["num_hidden_layers"])]
    return list(types)


def _gemma(hf: dict[str, Any], model_type: str) -> ModelConfig:
    act = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
    if act == "gelu":  # the first Gemma releases' legacy value, meant as the tanh approximation (as transformers)
        act = "gelu_pytorch_tanh"
    common = dict(hidden_act=act, tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)),
                  embed_scale=hf["hidden_size"] ** 0.5, norm_offset=True)
    if model_type == "gemma":
        theta, scaling = _rope(_rope_params(hf), hf)
        return ModelConfig(**_base(hf, model_type, **common, rope_theta=theta, rope_scaling=scaling))
    window = _positive(hf, "sliding_window")
    scalar = _positive(hf, "query_pre_attn_scalar", 256)
    common.update(norm_placement="sandwich", attn_scale=float(scalar) ** -0.5,
                  attn_softcap=_positive(hf, "attn_logit_softcapping"),
                  final_softcap=_positive(hf, "final_logit_softcapping"), sliding_window=window)
    if model_type == "gemma2":
        theta, scaling = _rope(_rope_params(hf), hf)
        return ModelConfig(**_base(hf, model_type, **common, rope_theta=theta, rope_scaling=scaling,
                                   layer_types=_layer_types(hf, window, 2)))
    # Gemma 3 text: global layers use rope_theta (and its scaling), local ones rope_local_base_freq
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and ("full_attention" in params or "sliding_attention" in params):
        theta, scaling = _rope(params.get("full_attention"), hf, default_theta=1e6)
        local, local_scaling = _rope(params.get("sliding_attention"), hf, theta_key="rope_local_base_freq")
    else:
        theta, scaling = _rope(hf.get("rope_scaling"), hf, default_theta=1e6)
        local, local_scaling = float(hf.get("rope_local_base_freq", 10000.0)), None
    if local_scaling is not None:
        raise ModelError("unsupported: RoPE scaling on Gemma 3's sliding-window layers")
    pattern = hf.get("sliding_window_pattern", hf.get("_sliding_window_pattern", 6))
    return ModelConfig(**_base(hf, "gemma3", **common, rope_theta=theta, rope_scaling=scaling, rope_local_theta=local,
                               qk_norm=True, layer_types=_layer_types(hf, window, pattern)))


def _phi3(hf: dict[str, Any]) -> ModelConfig:
    params = dict(_rope_params(hf) or {})
    factor = params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if params.get("rope_type", params.get("type")) == "yarn":  # Phi-3's legacy name, LongRoPE for transformers
        params["rope_type"] = "longrope"
        params.pop("type", None)
    theta, scaling = _rope(params, hf)
    window = hf.get("sliding_window")
    return ModelConfig(**_base(hf, "phi3", rope_theta=theta, rope_scaling=scaling, partial_rotary_factor=float(factor),
                               sliding_window=window, attention_bias=False, attention_out_bias=False))


def _olmo2(hf: dict[str, Any]) -> ModelConfig:
    theta, scaling = _rope(_rope_params(hf), hf)
    return ModelConfig(**_base(hf, "olmo2", rope_theta=theta, rope_scaling=scaling, norm_placement="post",
                               qk_norm_full=True, norm_eps=float(hf.get("rms_norm_eps", 1e-5))))


def _granite(hf: dict[str, Any]) -> ModelConfig:
    theta, scaling = _rope(_rope_params(hf), hf)
    return ModelConfig(**_base(
        hf, "granite", rope_theta=theta, rope_scaling=scaling,
        embed_scale=float(hf.get("embedding_multiplier", 1.0)),
        residual_multiplier=float(hf.get("residual_multiplier", 1.0)),
        attn_scale=float(hf.get("attention_multiplier", 1.0)),
        logits_scaling=float(hf.get("logits_scaling", 1.0)),
    ))


def _moe(hf: dict[str, Any], model_type: str) -> ModelConfig:
    theta, scaling = _rope(_rope_params(hf), hf)
    extra: dict[str, Any] = dict(rope_theta=theta, rope_scaling=scaling,
                                 num_experts_per_tok=hf.get("num_experts_per_tok", 2))
    # transformers 5 writes num_local_experts for every family; the Hub's Qwen configs say num_experts
    experts = hf.get("num_local_experts") or hf.get("num_experts") or (8 if model_type == "mixtral" else 60)
    if model_type == "mixtral":
        extra.update(num_experts=experts, norm_topk_prob=True,
                     sliding_window=hf.get("sliding_window"))
    else:
        extra.update(num_experts=experts, norm_topk_prob=bool(hf.get("norm_topk_prob", False)),
                     moe_intermediate_size=hf.get("moe_intermediate_size"),
                     decoder_sparse_step=hf.get("decoder_sparse_step", 1) or 1,
                     mlp_only_layers=list(hf.get("mlp_only_layers") or []))
        if hf.get("use_sliding_window") and hf.get("sliding_window"):
            extra["sliding_window"] = hf["sliding_window"]
            types = hf.get("layer_types")
            if types is None and model_type == "qwen2_moe":
                first = hf.get("max_window_layers", hf["num_hidden_layers"])
                types = ["sliding_attention" if (i + 1) % 2 and i < first else "full_attention"
                         for i in range(hf["num_hidden_layers"])]
            extra["layer_types"] = types
    if model_type == "qwen2_moe":
        bias = bool(hf.get("qkv_bias", True))
        extra.update(attention_bias=bias, attention_out_bias=False,
                     shared_expert_intermediate_size=hf.get("shared_expert_intermediate_size") or 0)
    if model_type == "qwen3_moe":
        extra["qk_norm"] = True
    return ModelConfig(**_base(hf, model_type, **extra))


def family_from_hf(hf: dict[str, Any], model_type: str) -> ModelConfig:
    """ModelConfig from a Hugging Face config.json dict of one of the families of `families.py`."""
    if model_type == "gemma3" and isinstance(hf.get("text_config"), dict):  # the multimodal wrapper's text model
        text = dict(hf["text_config"])
        text.setdefault("vocab_size", hf.get("vocab_size", 262208))
        for key in ("bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings"):
            if key not in text and key in hf:
                text[key] = hf[key]
        hf = text
    if model_type.startswith("gemma"):
        return _gemma(hf, model_type)
    if model_type == "phi3":
        return _phi3(hf)
    if model_type == "olmo2":
        return _olmo2(hf)
    if model_type == "granite":
        return _granite(hf)
    return _moe(hf, model_type)
