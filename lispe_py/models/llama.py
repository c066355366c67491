"""The Llama family (Llama 2/3, Mistral, Qwen2, Qwen3, SmolLM): RMSNorm, RoPE, GQA, SwiGLU."""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import Attention, DecoderModel, Linear, RMSNorm, activation


class GatedMLP(nn.Module):
    """SwiGLU feed-forward with the gate and up projections fused into one matmul."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.inter = config.intermediate_size
        self.w_gate_up = Linear(config.hidden_size, 2 * self.inter, bias=config.mlp_bias)
        self.w_down = Linear(self.inter, config.hidden_size, bias=config.mlp_bias)
        self.act = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w_gate_up(x).split((self.inter, self.inter), dim=-1)
        return self.w_down(self.act(gate) * up)


class LlamaBlock(nn.Module):
    """Pre-norm decoder block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.attn = Attention(config, layer)
        self.mlp_norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.mlp = GatedMLP(config)

    def forward(self, x: torch.Tensor, rope, masks: dict, start: int | None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope, masks, start)
        return x + self.mlp(self.mlp_norm(x))


class LlamaModel(DecoderModel):
    """A Llama-family decoder; see DecoderModel for the forward/cache contract."""

    arch = "llama"
    uses_rope = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaBlock(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed.weight

    def _embed(self, input_ids: torch.Tensor | None, positions: torch.Tensor,
               inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if inputs_embeds is not None:
            return inputs_embeds.to(self.embed.weight.dtype)
        return self.embed(input_ids)
