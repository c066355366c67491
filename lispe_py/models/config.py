"""ModelConfig: the shape of a decoder-only transformer, and its translation from Hugging Face configs."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ModelError

#: The families of `families.py` (FamilyModel): each names a Hugging Face weight layout; what the
#: blocks compute is set by the config's fields (norms, soft-caps, multipliers, experts, RoPE).
FAMILY_ARCHS = ("gemma", "gemma2", "gemma3", "phi3", "olmo2", "granite", "mixtral", "qwen2_moe", "qwen3_moe")
ARCHS = ("llama", "gpt2") + FAMILY_ARCHS
# Hugging Face model_type -> our arch. SmolLM(2) ships as model_type "llama".
HF_MODEL_TYPES = {"llama": "llama", "mistral": "llama", "qwen2": "llama", "qwen3": "llama", "gpt2": "gpt2",
                  "gemma": "gemma", "gemma2": "gemma2", "gemma3_text": "gemma3", "gemma3": "gemma3",
                  "phi3": "phi3", "olmo2": "olmo2", "granite": "granite", "mixtral": "mixtral",
                  "qwen2_moe": "qwen2_moe", "qwen3_moe": "qwen3_moe"}
ACTIVATIONS = ("silu", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu")
ROPE_TYPES = ("default", "linear", "llama3", "longrope")
NORM_PLACEMENTS = ("pre", "sandwich", "post")


@dataclass
class ModelConfig:
    """Hyper-parameters of one model; `None` fields get derived defaults in `__post_init__`.

    `arch` is "llama" (Llama 2/3, Mistral, Qwen2, Qwen3, SmolLM: RMSNorm, RoPE, SwiGLU, GQA) or
    "gpt2" (LayerNorm, learned positions, GELU MLP). `model_type` keeps the Hugging Face name.
    """

    arch: str = "llama"
    vocab_size: int = 256
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int | None = None  # default: num_heads (no GQA)
    head_dim: int | None = None  # default: hidden_size // num_heads (Qwen3 sets it explicitly)
    intermediate_size: int | None = None  # default: 4 * hidden_size
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # {"rope_type": "linear"|"llama3", "factor": ..., ...}
    norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # biases on q/k/v (Qwen2: True)
    attention_out_bias: bool = False  # bias on the output projection (Llama attention_bias=True sets both)
    qk_norm: bool = False  # RMSNorm over head_dim on q and k before RoPE (Qwen3)
    mlp_bias: bool = False
    hidden_act: str | None = None  # default: "silu" (llama), "gelu_new" (gpt2)
    sliding_window: int | None = None
    layer_types: list[str] | None = None  # per layer "full_attention" | "sliding_attention"
    attn_scale_by_layer: bool = False  # GPT-2 scale_attn_by_inverse_layer_idx
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    model_type: str | None = None  # Hugging Face model_type, for the record
    init_std: float = 0.02
    seed: int = 0
    # ----- the families of FAMILY_ARCHS (ignored by llama/gpt2) -----
    embed_scale: float | None = None  # token embeddings times this (Gemma: sqrt(hidden); Granite: embedding_multiplier)
    norm_offset: bool = False  # Gemma RMSNorm: x_normed * (1 + weight), in float32
    norm_placement: str = "pre"  # "pre" (Llama), "sandwich" (Gemma 2/3: pre and post), "post" (OLMo 2)
    attn_scale: float | None = None  # attention scale (default head_dim**-0.5): query_pre_attn_scalar**-0.5, attention_multiplier
    attn_softcap: float | None = None  # Gemma 2: scores = cap * tanh(scores / cap)
    final_softcap: float | None = None  # Gemma 2: logits = cap * tanh(logits / cap)
    residual_multiplier: float = 1.0  # Granite: x + f(x) * residual_multiplier
    logits_scaling: float = 1.0  # Granite: logits / logits_scaling
    qk_norm_full: bool = False  # OLMo 2: RMSNorm over the whole q and k projections (not per head)
    rope_local_theta: float | None = None  # Gemma 3: RoPE base of the sliding-window layers (unscaled)
    partial_rotary_factor: float = 1.0  # Phi-4-mini: RoPE on this fraction of head_dim
    num_experts: int = 0  # mixture of experts: experts per MoE layer (0: dense)
    num_experts_per_tok: int = 0  # top-k
    moe_intermediate_size: int | None = None  # each expert's intermediate size (default intermediate_size)
    shared_expert_intermediate_size: int = 0  # Qwen2-MoE: a shared expert with a sigmoid gate
    norm_topk_prob: bool = False  # renormalise the top-k routing weights to sum to 1 (Mixtral: always)
    decoder_sparse_step: int = 1  # MoE on layers with (layer + 1) % step == 0 ...
    mlp_only_layers: list[int] | None = None  # ... except these (dense MLP of intermediate_size)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ModelError(f"unsupported architecture {self.arch!r}; supported: {', '.join(ARCHS)}")
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ModelError(f"model config: {name} must be a positive integer, got {value!r}")
        for name in ("num_kv_heads", "head_dim", "intermediate_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ModelError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_heads
        if self.num_heads % self.num_kv_heads:
            raise ModelError(
                f"model config: num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise ModelError(
                    f"model config: hidden_size ({self.hidden_size}) is not a multiple of num_heads ({self.num_heads})"
                )
            self.head_dim = self.hidden_size // self.num_heads
        if self.arch != "gpt2" and self.head_dim % 2:
            raise ModelError(f"model config: head_dim must be even for RoPE, got {self.head_dim}")
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        if self.hidden_act is None:
            self.hidden_act = "gelu_new" if self.arch == "gpt2" else "silu"
        if self.hidden_act not in ACTIVATIONS:
            raise ModelError(f"model config: unsupported hidden_act {self.hidden_act!r}; supported: {ACTIVATIONS}")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type", "default"))
            if kind not in ROPE_TYPES:
                raise ModelError(f"model config: unsupported rope scaling {kind!r}; supported: {ROPE_TYPES}")
            if kind == "longrope" and self.arch not in FAMILY_ARCHS:
                raise ModelError(f"model config: longrope scaling is for the phi3 architecture, not {self.arch}")
            if kind == "default":
                self.rope_scaling = None
            else:
                self.rope_scaling = {**self.rope_scaling, "rope_type": kind}
                self.rope_scaling.pop("type", None)
                if kind == "llama3":
                    self.rope_scaling.setdefault("original_max_position_embeddings", self.max_position_embeddings)
        if self.layer_types is not None and len(self.layer_types) != self.num_layers:
            raise ModelError(f"model config: layer_types has {len(self.layer_types)} entries for {self.num_layers} layers")
        if self.norm_placement not in NORM_PLACEMENTS:
            raise ModelError(f"model config: norm_placement must be one of {NORM_PLACEMENTS}, got {self.norm_placement!r}")
        if self.num_experts:
            if self.arch not in FAMILY_ARCHS:
                raise ModelError(f"model config: the {self.arch} architecture has no mixture of experts")
            if not 0 < self.num_experts_per_tok <= self.num_experts:
                raise ModelError(f"model config: num_experts_per_tok must be 1..{self.num_experts}, "
                                 f"got {self.num_experts_per_tok!r}")
            if self.moe_intermediate_size is None:
                self.moe_intermediate_size = self.intermediate_size
        rotary = int(self.head_dim * self.partial_rotary_factor)
        if not 0 < self.partial_rotary_factor <= 1 or rotary <= 0 or rotary % 2:
            raise ModelError(f"model config: partial_rotary_factor {self.partial_rotary_factor} must give an even "
                             f"number of the head's {self.head_dim} dimensions")

    @property
    def rotary_dim(self) -> int:
        """Head dimensions that RoPE rotates (all but Phi-4-mini's partial rotary)."""
        return int(self.head_dim * self.partial_rotary_factor)

    def is_moe_layer(self, layer: int) -> bool:
        """Whether `layer`'s feed-forward is a mixture of experts (Qwen2-MoE's decoder_sparse_step and
        mlp_only_layers; every layer for Mixtral and Qwen3-MoE)."""
        return (self.num_experts > 0 and layer not in (self.mlp_only_layers or ())
                and (layer + 1) % self.decoder_sparse_step == 0)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """A config from our own keys (as written by `to_dict`); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            from ..hints import did_you_mean

            hint = did_you_mean(unknown[0], names) if len(unknown) == 1 else ""
            raise ModelError(f"model config: unknown key(s) {', '.join(unknown)}{hint}; "
                             f"known: {', '.join(sorted(names))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (round-trips through `from_dict`)."""
        return dataclasses.asdict(self)

    def layer_window(self, layer: int) -> int | None:
        """The sliding-window size of `layer`, or None for full attention."""
        if self.sliding_window is None:
            return None
        if self.layer_types is None:
            return self.sliding_window
        return self.sliding_window if self.layer_types[layer] == "sliding_attention" else None

    @classmethod
    def from_hf_config(cls, hf: dict[str, Any]) -> ModelConfig:
        """Translate a Hugging Face `config.json` dict (Llama 2/3, Mistral, Qwen2, Qwen3, SmolLM, GPT-2)."""
        model_type = hf.get("model_type")
        if model_type not in HF_MODEL_TYPES:
            raise ModelError(
                f"unsupported model_type {model_type!r}; supported: {', '.join(sorted(HF_MODEL_TYPES))}"
            )
        if HF_MODEL_TYPES[model_type] == "gpt2":
            return _gpt2_from_hf(hf)
        if HF_MODEL_TYPES[model_type] in FAMILY_ARCHS:
            from .family_configs import family_from_hf

            return family_from_hf(hf, model_type)
        return _llama_from_hf(hf, model_type)


def _rope_from_hf(hf: dict[str, Any]) -> tuple[float, dict | None]:
    # transformers 5 writes "rope_parameters" (theta inside); 4.x wrote "rope_theta" + "rope_scaling".
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = params.pop("rope_theta", None) or hf.get("rope_theta") or 10000.0
    kind = params.get("rope_type", params.get("type", "default"))
    if params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ModelError("unsupported: partial rotary embeddings (partial_rotary_factor != 1)")
    if kind == "default":
        return float(theta), None
    if kind not in ROPE_TYPES:
        raise ModelError(f"unsupported rope scaling {kind!r}; supported: {', '.join(ROPE_TYPES)}")
    if kind == "llama3":
        params.setdefault(
            "original_max_position_embeddings",
            hf.get("original_max_position_embeddings", hf.get("max_position_embeddings", 2048)),
        )
    params.pop("partial_rotary_factor", None)
    return float(theta), params


def _llama_from_hf(hf: dict[str, Any], model_type: str) -> ModelConfig:
    heads = hf["num_attention_heads"]
    if not isinstance(heads, int) or isinstance(heads, bool) or heads <= 0:
        raise ModelError(f"num_attention_heads must be a positive integer, got {heads!r}")
    theta, scaling = _rope_from_hf(hf)
    bias = bool(hf.get("attention_bias", False))
    qkv_bias, out_bias = (True, False) if model_type == "qwen2" else (bias, bias)
    window = None
    layer_types = None
    if model_type == "mistral" or hf.get("use_sliding_window"):
        window = hf.get("sliding_window")
    if window is not None:
        layer_types = hf.get("layer_types")
        if layer_types is None and model_type != "mistral":
            first = hf.get("max_window_layers", 0)
            layer_types = [
                "sliding_attention" if i >= first else "full_attention" for i in range(hf["num_hidden_layers"])
            ]
    return ModelConfig(
        arch="llama",
        model_type=model_type,
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        intermediate_size=hf["intermediate_size"],
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        rope_theta=theta,
        rope_scaling=scaling,
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        attention_bias=qkv_bias,
        attention_out_bias=out_bias,
        qk_norm=model_type == "qwen3",
        mlp_bias=bool(hf.get("mlp_bias", False)),
        hidden_act=hf.get("hidden_act", "silu"),
        sliding_window=window,
        layer_types=layer_types,
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        pad_token_id=hf.get("pad_token_id"),
        init_std=hf.get("initializer_range", 0.02),
    )


def _gpt2_from_hf(hf: dict[str, Any]) -> ModelConfig:
    hidden = hf.get("n_embd", 768)
    if hf.get("scale_attn_weights", True) is False or hf.get("add_cross_attention"):
        raise ModelError("unsupported GPT-2 variant: unscaled attention or cross-attention")
    return ModelConfig(
        arch="gpt2",
        model_type="gpt2",
        vocab_size=hf.get("vocab_size", 50257),
        hidden_size=hidden,
        num_layers=hf.get("n_layer", 12),
        num_heads=hf.get("n_head", 12),
        intermediate_size=hf.get("n_inner") or 4 * hidden,
        max_position_embeddings=hf.get("n_positions", 1024),
        norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)),
        attention_bias=True,
        attention_out_bias=True,
        mlp_bias=True,
        hidden_act=hf.get("activation_function", "gelu_new"),
        attn_scale_by_layer=bool(hf.get("scale_attn_by_inverse_layer_idx", False)),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        pad_token_id=hf.get("pad_token_id"),
        init_std=hf.get("initializer_range", 0.02),
    )
