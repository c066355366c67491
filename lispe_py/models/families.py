"""The families beyond Llama and GPT-2, in one configurable decoder (`FamilyModel`):

- Gemma (1): embeddings times sqrt(hidden), RMSNorm with (1 + weight) in float32, GeGLU (tanh GELU), tied head;
- Gemma 2: + sandwich norms, attention and final logit soft-capping, alternating sliding-window layers,
  query_pre_attn_scalar;
- Gemma 3 text: + q/k norms, local layers with their own RoPE base (`rope_local_theta`);
- Phi-3 / Phi-4: fused qkv and gate_up weights (ours are fused anyway), LongRoPE, partial rotary;
- OLMo 2: norms after attention and MLP only, q/k RMSNorm over the whole projections;
- Granite: embedding, residual, attention and logits multipliers;
- Mixtral, Qwen2-MoE (shared expert with a sigmoid gate), Qwen3-MoE (q/k norms): top-k routed experts.

Each is exact against transformers in float32 (tests/test_arch_*.py). The Llama and GPT-2 classes are
left as they are: nothing here runs on their decode path. The blocks follow the DecoderModel contract
(`block(x, rope, masks, start)`), so the static KV cache, sliding windows, prefill chunks, beams and
quantization work as for Llama. Captured decode steps (the CPU trace, CUDA graphs) are not used for
mixture-of-experts models: which experts run depends on the token, and a capture would fix them.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import Attention, DecoderModel, Linear, RMSNorm, activation, apply_rope, rope_inv_freq


class GemmaRMSNorm(nn.Module):
    """Gemma's RMSNorm: normalised in float32, times (1 + weight) in float32, then rounded to the input
    dtype once (transformers' GemmaRMSNorm; the stored weight is the offset from 1). With `offset` 0 it
    is OLMo 2's (the weight also multiplies in float32: bfloat16 results differ from Llama's RMSNorm)."""

    def __init__(self, dim: int, eps: float, offset: float = 1.0) -> None:
        super().__init__()
        self.eps, self.offset = eps, offset
        self.weight = nn.Parameter(torch.zeros(dim) if offset else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float()
        y = F.rms_norm(x.float(), self.weight.shape, None, self.eps) * (w + self.offset if self.offset else w)
        return y.to(x.dtype)


def _norm(config: ModelConfig, dim: int) -> nn.Module:
    if config.norm_offset:
        return GemmaRMSNorm(dim, config.norm_eps)
    if config.arch == "olmo2":
        return GemmaRMSNorm(dim, config.norm_eps, offset=0.0)
    return RMSNorm(dim, config.norm_eps)


class FeedForward(nn.Module):
    """Gated feed-forward (SwiGLU, GeGLU) with gate and up fused: act(gate) * up -> down."""

    def __init__(self, hidden: int, inter: int, act: str, bias: bool = False) -> None:
        super().__init__()
        self.inter = inter
        self.w_gate_up = Linear(hidden, 2 * inter, bias=bias)
        self.w_down = Linear(inter, hidden, bias=bias)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w_gate_up(x).split((self.inter, self.inter), dim=-1)
        return self.w_down(self.act(gate) * up)


class SparseMoE(nn.Module):
    """Top-k routed experts (Mixtral, Qwen2-MoE, Qwen3-MoE), as transformers computes them: softmax over
    the router logits in float32, the top k, optionally renormalised to sum to 1, each chosen expert run
    on its tokens, the weighted outputs summed over the k choices; Qwen2-MoE adds a shared expert gated
    by a sigmoid. The router and the shared gate are plain parameters, not Linear layers, so quantization
    leaves the routing exact."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.top_k, self.norm_topk = config.num_experts_per_tok, config.norm_topk_prob
        self.float_weights = config.arch == "mixtral"  # Mixtral weighs in float32; the Qwens in the model dtype
        self.router = nn.Parameter(torch.empty(config.num_experts, h))
        self.experts = nn.ModuleList(FeedForward(h, config.moe_intermediate_size, config.hidden_act)
                                     for _ in range(config.num_experts))
        shared = config.shared_expert_intermediate_size
        self.shared = FeedForward(h, shared, config.hidden_act) if shared else None
        self.shared_gate = nn.Parameter(torch.empty(1, h)) if shared else None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, hidden] -> (weights [N, k], expert ids [N, k])."""
        probs = F.softmax(F.linear(x, self.router), dim=-1, dtype=torch.float32)
        weights, ids = torch.topk(probs, self.top_k, dim=-1)
        if self.norm_topk:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return (weights if self.float_weights else weights.to(x.dtype)), ids

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        weights, ids = self.route(flat)
        # each (token, choice) row's weighted expert output, then the sum over the choices in float32
        # (torch's sum accumulates low precisions in float32) rounded once: transformers' default
        # "grouped_mm" experts compute it this way
        out = flat.new_empty((*ids.shape, shape[-1]), dtype=torch.promote_types(flat.dtype, weights.dtype))
        for e in torch.unique(ids).tolist():
            token, slot = torch.where(ids == e)
            out[token, slot] = self.experts[e](flat[token]) * weights[token, slot, None]
        out = out.sum(dim=1).to(flat.dtype)
        if self.shared is not None:
            out = out + torch.sigmoid(F.linear(flat, self.shared_gate)) * self.shared(flat)
        return out.view(shape)


class FamilyAttention(Attention):
    """Attention with the families' additions: Gemma q/k norms, OLMo 2's norms over the whole q and k
    projections, soft-capped scores (Gemma 2: computed as transformers' eager attention), a scale of
    the config's choosing, and Gemma 3's second RoPE table for sliding-window layers. Without any of
    the per-call additions it is Llama's Attention."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__(config, layer)
        if config.qk_norm:
            self.q_norm, self.k_norm = _norm(config, self.head_dim), _norm(config, self.head_dim)
        self.full_qk_norm = config.qk_norm_full
        if self.full_qk_norm:
            self.q_norm, self.k_norm = _norm(config, self.q_size), _norm(config, self.kv_size)
        if config.attn_scale is not None:
            self.scale = config.attn_scale
        self.softcap = config.attn_softcap
        # Gemma 3: the RoPE tables hold [global | local] side by side (FamilyModel._build_rope)
        self.rope_half = None
        if config.rope_local_theta is not None:
            self.rope_half = 1 if self.window is not None else 0
        self.custom = self.full_qk_norm or self.softcap is not None or self.rope_half is not None

    def native_decode(self, dtype: torch.dtype, device: torch.device) -> bool:
        # the custom forward (soft-capping, full q/k norms, Gemma 3's halves) attends with SDPA and a mask
        return not self.custom and super().native_decode(dtype, device)

    def forward(self, x: torch.Tensor, rope, mask, start) -> torch.Tensor:
        if not self.custom:
            return super().forward(x, rope, mask, start)
        b, t, _ = x.shape
        qkv = self.wqkv(x)
        q, k, v = qkv.split((self.q_size, self.kv_size, self.kv_size), dim=-1)
        if self.full_qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.reshape(b, t, self.n_heads, self.head_dim)
        k = k.reshape(b, t, self.n_kv, self.head_dim)
        if self.q_norm is not None and not self.full_qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            cos, sin = rope
            if self.rope_half is not None:
                lo, hi = self.rope_half * self.head_dim, (self.rope_half + 1) * self.head_dim
                cos, sin = cos[..., lo:hi], sin[..., lo:hi]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = v.reshape(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        if start is not None:
            k, v = self.kv_cache.update(start, k, v)
        attn_mask, is_causal = mask[self.window]
        if self.softcap is None:
            gqa = self.n_kv != self.n_heads
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                               scale=self.scale, enable_gqa=gqa)
        else:
            y = self._softcapped(q, k, v, attn_mask, is_causal)
        return self.wo(y.transpose(1, 2).reshape(b, t, self.q_size))

    def _softcapped(self, q, k, v, attn_mask, is_causal) -> torch.Tensor:
        """transformers' eager attention with soft-capping: scores * scale, cap * tanh(scores / cap),
        masked, softmax in float32, rounded to the model dtype, times v."""
        rep = self.n_heads // self.n_kv
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scale
        scores = torch.tanh(scores / self.softcap) * self.softcap
        if attn_mask is None and is_causal:
            t, s = scores.shape[-2:]
            attn_mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return torch.matmul(probs, v)


class FamilyBlock(nn.Module):
    """A decoder block with the norms where the family puts them ("pre": Llama; "sandwich": Gemma 2/3,
    before and after each sub-layer; "post": OLMo 2, after only), Granite's residual multiplier, and a
    dense or mixture-of-experts feed-forward."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        h, place = config.hidden_size, config.norm_placement
        self.attn_norm = _norm(config, h) if place != "post" else None
        self.attn = FamilyAttention(config, layer)
        self.post_attn_norm = _norm(config, h) if place != "pre" else None
        self.mlp_norm = _norm(config, h) if place != "post" else None
        if config.is_moe_layer(layer):
            self.mlp = SparseMoE(config)
        else:
            self.mlp = FeedForward(h, config.intermediate_size, config.hidden_act, config.mlp_bias)
        self.post_mlp_norm = _norm(config, h) if place != "pre" else None
        self.residual_multiplier = config.residual_multiplier

    def forward(self, x: torch.Tensor, rope, masks: dict, start) -> torch.Tensor:
        h = self.attn(x if self.attn_norm is None else self.attn_norm(x), rope, masks, start)
        if self.post_attn_norm is not None:
            h = self.post_attn_norm(h)
        x = x + (h if self.residual_multiplier == 1.0 else h * self.residual_multiplier)
        h = self.mlp(x if self.mlp_norm is None else self.mlp_norm(x))
        if self.post_mlp_norm is not None:
            h = self.post_mlp_norm(h)
        return x + (h if self.residual_multiplier == 1.0 else h * self.residual_multiplier)


class FamilyModel(DecoderModel):
    """The decoder of the families in config.FAMILY_ARCHS; see DecoderModel for the forward/cache contract."""

    uses_rope = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.arch = config.arch
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(FamilyBlock(config, i) for i in range(config.num_layers))
        self.norm = _norm(config, config.hidden_size)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed.weight
        self.moe = config.num_experts > 0
        scaling = config.rope_scaling or {}
        self._long_from = scaling.get("original_max_position_embeddings") if scaling.get(
            "rope_type") == "longrope" else None
        self._prefill_top = 0
        self.register_buffer("_cos_long", torch.zeros(0), persistent=False)
        self.register_buffer("_sin_long", torch.zeros(0), persistent=False)
        self._slot_ids = torch.zeros(0, 0, dtype=torch.long)  # LongRoPE: the token of each cache slot

    # ----- embeddings and head -----
    def _embed(self, input_ids: torch.Tensor | None, positions: torch.Tensor,
               inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        scale = self.config.embed_scale
        if inputs_embeds is not None:
            x = inputs_embeds.to(self.embed.weight.dtype)
            if scale is None or self.arch == "gemma3":  # Gemma 3 scales inside its embedding layer only
                return x
        else:
            x = self.embed(input_ids)
            if scale is None:
                return x
        if self.arch == "granite":  # transformers multiplies by the Python float
            return x * scale
        return x * torch.tensor(scale, dtype=x.dtype, device=x.device)  # Gemma: the scale in the model dtype

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(self.norm(x))
        c = self.config
        if c.logits_scaling != 1.0:
            logits = logits / c.logits_scaling
        if c.final_softcap is not None:
            logits = torch.tanh(logits / c.final_softcap) * c.final_softcap
        return logits.float()

    # ----- RoPE: scaling, partial rotary, Gemma 3's local table, LongRoPE's two sets -----
    def _tables(self, n: int, theta: float, scaling: dict | None,
                factors: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 (cos, signed sin) [n, head_dim] for positions 0..n-1, as `apply_rope` takes them.
        Partial rotary: the rotated dimensions are the first and third quarters of a head's layout (q/k
        rows are permuted at load, see `convert_family_state_dict`); the others get cos 1 and sin 0."""
        c = self.config
        rot = c.rotary_dim
        sub = dataclasses.replace(c, head_dim=rot, partial_rotary_factor=1.0, rope_theta=theta,
                                  rope_scaling=None if (scaling or {}).get("rope_type") == "longrope" else scaling)
        inv_freq = rope_inv_freq(sub)
        if factors is not None:  # LongRoPE: 1 / (factor * base ** (2i / d))
            shape = torch.arange(0, rot, 2, dtype=torch.int64).float() / rot
            inv_freq = 1.0 / (torch.tensor(factors, dtype=torch.float32) * theta ** shape)
        inv_freq = inv_freq.to(self.device)
        freqs = torch.arange(n, device=self.device, dtype=torch.float32)[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        factor = (scaling or {}).get("attention_factor", 1.0) if factors is not None else 1.0
        cos, sin = emb.cos() * factor, emb.sin() * factor
        half = rot // 2
        sin[:, :half].neg_()
        if rot != c.head_dim:
            pad = (c.head_dim - rot) // 2
            ones, zeros = cos.new_ones(n, pad), sin.new_zeros(n, pad)
            cos = torch.cat((cos[:, :half], ones, cos[:, half:], ones), dim=-1)
            sin = torch.cat((sin[:, :half], zeros, sin[:, half:], zeros), dim=-1)
        return cos, sin

    def _build_rope(self, n: int) -> None:
        c = self.config
        scaling = c.rope_scaling
        if self._long_from is not None:
            short = self._tables(n, c.rope_theta, scaling, scaling["short_factor"])
            long = self._tables(n, c.rope_theta, scaling, scaling["long_factor"])
            # one step at position p runs with the long set when p + 1 > original_max_position_embeddings
            # (transformers picks the set by the call's largest position): short below, long from there
            cut = min(self._long_from, n)
            cos = torch.cat((short[0][:cut], long[0][cut:]))
            sin = torch.cat((short[1][:cut], long[1][cut:]))
            self._cos_long, self._sin_long = long[0].to(self.dtype), long[1].to(self.dtype)
        else:
            cos, sin = self._tables(n, c.rope_theta, scaling)
            if c.rope_local_theta is not None:
                local = self._tables(n, c.rope_local_theta, None)
                cos, sin = torch.cat((cos, local[0]), dim=-1), torch.cat((sin, local[1]), dim=-1)
        self._cos, self._sin = cos.to(self.dtype), sin.to(self.dtype)
        self._rope_len = n
        self.reset_decode_graphs()

    def _rope(self, position_ids: torch.Tensor | None, start: int, end: int):
        if self._long_from is not None:
            top = max(end if position_ids is None else int(position_ids.max()) + 1, self._prefill_top)
            if top > self._long_from:
                if position_ids is None:
                    return self._cos_long[start:end, None], self._sin_long[start:end, None]
                return self._cos_long[position_ids].unsqueeze(2), self._sin_long[position_ids].unsqueeze(2)
        return super()._rope(position_ids, start, end)

    def prefill(self, input_ids, position_ids=None, kv_mask=None, inputs_embeds=None) -> torch.Tensor:
        if self._long_from is None:
            return super().prefill(input_ids, position_ids, kv_mask, inputs_embeds)
        # LongRoPE: every chunk of a prompt longer than the original context runs with the long set,
        # as transformers' one pass over the prompt does
        b, t = self._input_shape(input_ids, inputs_embeds)
        self._prefill_top = t if position_ids is None else int(position_ids.max()) + 1
        try:
            return super().prefill(input_ids, position_ids, kv_mask, inputs_embeds)
        finally:
            self._prefill_top = 0

    # ----- LongRoPE: the switch to the long factors re-encodes the sequence, as transformers' Phi-3 -----
    def forward(self, input_ids, input_pos, position_ids=None, kv_mask=None, last_only=False, inputs_embeds=None):
        if self._long_from is not None:
            self._record_ids(input_ids, int(input_pos[0]), inputs_embeds)
        return super().forward(input_ids, input_pos, position_ids, kv_mask, last_only, inputs_embeds)

    def _record_ids(self, input_ids, start: int, inputs_embeds) -> None:
        """Which token each cache slot holds (row by row), for the re-encoding in `decode`; rows fed
        embeddings are unknown (-1)."""
        b, t = self._input_shape(input_ids, inputs_embeds)
        ids = self._slot_ids
        if ids.shape[0] < self.max_batch_size or ids.shape[1] < self.max_seq_len:
            grown = torch.full((self.max_batch_size, self.max_seq_len), -1, dtype=torch.long, device=self.device)
            grown[:ids.shape[0], :ids.shape[1]] = ids.to(self.device)
            self._slot_ids = ids = grown
        ids[:b, start:start + t] = -1 if input_ids is None else input_ids

    def reorder_cache(self, index: torch.Tensor) -> None:
        super().reorder_cache(index)
        if self._long_from is not None and self._slot_ids.numel():
            b = index.shape[0]
            self._slot_ids[:b] = self._slot_ids.index_select(0, index.to(self._slot_ids.device))

    def decode(self, tokens, slot, position_ids=None, kv_mask=None, steps_left=None) -> torch.Tensor:
        if self._long_from is not None:
            if slot == self._long_from:
                return self._reencode(tokens, slot, position_ids, kv_mask)
            if position_ids is not None:
                # rows at other positions: the set is chosen by the largest (see _rope), not per row
                return self._eager_step(tokens, slot, position_ids, kv_mask)
        return super().decode(tokens, slot, position_ids, kv_mask, steps_left)

    def _reencode(self, tokens: torch.Tensor, slot: int, position_ids: torch.Tensor | None,
                  kv_mask: torch.Tensor | None) -> torch.Tensor:
        """The step that makes the sequence longer than LongRoPE's original context. transformers' Phi-3
        drops its cache there (prepare_inputs_for_generation) and runs the whole sequence again, now with
        the long factors; so does this, from the token ids the cache slots hold."""
        b = tokens.shape[0]
        ids = self._slot_ids[:b, :slot + 1].clone() if self._slot_ids.shape[1] > slot else None
        if ids is None or bool((ids[:, :slot] < 0).any()):  # embeddings were fed: cannot re-encode
            return self._eager_step(tokens, slot, position_ids, kv_mask)
        ids[:, slot] = tokens.view(-1)
        positions = None if kv_mask is None else self._positions(kv_mask, slot + 1)
        logits = self(ids, self._slots[:slot + 1], position_ids=positions, kv_mask=kv_mask, last_only=True)
        return logits[:, -1]

    @staticmethod
    def _positions(kv_mask: torch.Tensor, end: int) -> torch.Tensor:
        return (kv_mask[:, :end].long().cumsum(-1) - 1).clamp(min=0)

    # ----- captured decode steps -----
    def _graphs_apply(self) -> bool:
        return not self.moe and super()._graphs_apply()

    def _trace_applies(self, rows, position_ids, kv_mask) -> bool:
        return not self.moe and super()._trace_applies(rows, position_ids, kv_mask)

    def _rows_trace_applies(self, rows, position_ids, kv_mask) -> bool:
        # (LongRoPE picks its tables by the largest position, a value a trace would freeze)
        return not self.moe and self._long_from is None and super()._rows_trace_applies(rows, position_ids, kv_mask)


# ----- Hugging Face weight names -> ours -----

def _prefix(names: set[str]) -> str:
    for pre in ("model.", "", "model.language_model.", "language_model.model."):
        if f"{pre}embed_tokens.weight" in names:
            return pre
    raise KeyError("model.embed_tokens.weight")


def _rotary_order(config: ModelConfig) -> torch.Tensor | None:
    """Partial rotary: the order of a head's dimensions that puts the rotated halves a half-head apart
    ([rot1, pass1, rot2, pass2]), so `apply_rope`'s half-head roll rotates them; None when all rotate."""
    d, r = config.head_dim, config.rotary_dim
    if r == d:
        return None
    p = (d - r) // 2
    return torch.cat([torch.arange(0, r // 2), torch.arange(r, r + p), torch.arange(r // 2, r), torch.arange(r + p, d)])


def _permute_heads(w: torch.Tensor, heads: int, order: torch.Tensor) -> torch.Tensor:
    d = order.numel()
    return w.reshape(heads, d, *w.shape[1:])[:, order].reshape(w.shape)


def convert_family_state_dict(config: ModelConfig, get: Callable[[str], torch.Tensor],
                              names: set[str]) -> dict[str, torch.Tensor]:
    """Our state dict (FamilyModel's names) from a Hugging Face checkpoint of the family."""
    pre = _prefix(names)
    out = {"embed.weight": get(f"{pre}embed_tokens.weight"), "norm.weight": get(f"{pre}norm.weight")}
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = get("lm_head.weight")
    order = _rotary_order(config)
    q_size, kv_size = config.num_heads * config.head_dim, config.num_kv_heads * config.head_dim
    place = config.norm_placement
    for i in range(config.num_layers):
        p, q = f"{pre}layers.{i}.", f"layers.{i}."
        att = p + "self_attn."
        for kind in ("weight", "bias") if config.attention_bias else ("weight",):
            if att + f"qkv_proj.{kind}" in names:  # Phi-3: fused already
                wq, wk, wv = get(att + f"qkv_proj.{kind}").split((q_size, kv_size, kv_size))
            else:
                wq, wk, wv = (get(att + f"{n}_proj.{kind}") for n in "qkv")
            if order is not None:
                wq, wk = _permute_heads(wq, config.num_heads, order), _permute_heads(wk, config.num_kv_heads, order)
            out[q + f"attn.wqkv.{kind}"] = torch.cat([wq, wk, wv])
        out[q + "attn.wo.weight"] = get(att + "o_proj.weight")
        if config.attention_out_bias:
            out[q + "attn.wo.bias"] = get(att + "o_proj.bias")
        if config.qk_norm or config.qk_norm_full:
            out[q + "attn.q_norm.weight"] = get(att + "q_norm.weight")
            out[q + "attn.k_norm.weight"] = get(att + "k_norm.weight")
        norms = {"pre": {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"},
                 "sandwich": {"attn_norm": "input_layernorm", "post_attn_norm": "post_attention_layernorm",
                              "mlp_norm": "pre_feedforward_layernorm", "post_mlp_norm": "post_feedforward_layernorm"},
                 "post": {"post_attn_norm": "post_attention_layernorm",
                          "post_mlp_norm": "post_feedforward_layernorm"}}[place]
        for ours, theirs in norms.items():
            out[q + ours + ".weight"] = get(p + theirs + ".weight")
        if config.is_moe_layer(i):
            out.update(_convert_moe(config, get, names, p, q + "mlp."))
        else:
            out.update(_convert_ffn(get, names, p + "mlp.", q + "mlp.", config.mlp_bias))
    return out


def _convert_ffn(get, names: set[str], theirs: str, ours: str, bias: bool = False,
                 gate: str = "gate_proj", up: str = "up_proj", down: str = "down_proj") -> dict[str, torch.Tensor]:
    out = {}
    for kind in ("weight", "bias") if bias else ("weight",):
        if theirs + f"gate_up_proj.{kind}" in names:  # Phi-3: [gate; up] fused already
            out[ours + f"w_gate_up.{kind}"] = get(theirs + f"gate_up_proj.{kind}")
        else:
            out[ours + f"w_gate_up.{kind}"] = torch.cat([get(theirs + f"{gate}.{kind}"), get(theirs + f"{up}.{kind}")])
        out[ours + f"w_down.{kind}"] = get(theirs + f"{down}.{kind}")
    return out


def _convert_moe(config: ModelConfig, get, names: set[str], p: str, ours: str) -> dict[str, torch.Tensor]:
    """Experts as transformers 5 saves them (mlp.experts.gate_up_proj [E, 2I, H], down_proj [E, H, I]),
    as the Hub's Qwen MoE checkpoints hold them (mlp.experts.N.gate_proj/up_proj/down_proj), or as
    Mixtral's (block_sparse_moe.experts.N.w1/w3/w2, block_sparse_moe.gate)."""
    out = {}
    theirs = p + ("block_sparse_moe." if p + "block_sparse_moe.gate.weight" in names else "mlp.")
    out[ours + "router"] = get(theirs + "gate.weight")
    experts = theirs + "experts."
    if experts + "gate_up_proj" in names:
        gate_up, down = get(experts + "gate_up_proj"), get(experts + "down_proj")
        for e in range(config.num_experts):
            out[ours + f"experts.{e}.w_gate_up.weight"] = gate_up[e]
            out[ours + f"experts.{e}.w_down.weight"] = down[e]
    else:
        mixtral = experts + "0.w1.weight" in names
        for e in range(config.num_experts):
            out.update(_convert_ffn(get, names, experts + f"{e}.", ours + f"experts.{e}.",
                                    **(dict(gate="w1", up="w3", down="w2") if mixtral else {})))
    if config.shared_expert_intermediate_size:
        out.update(_convert_ffn(get, names, theirs + "shared_expert.", ours + "shared."))
        out[ours + "shared_gate"] = get(theirs + "shared_expert_gate.weight")
    return out
