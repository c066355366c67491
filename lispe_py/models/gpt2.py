"""GPT-2: LayerNorm, learned absolute positions, fused q/k/v with biases, GELU MLP, tied head."""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import Attention, DecoderModel, Linear, activation


class MLP(nn.Module):
    """fc -> activation -> proj."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.fc = Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.proj = Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.act = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


class GPT2Block(nn.Module):
    """Pre-LayerNorm block."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps)
        self.attn = Attention(config, layer)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, rope, masks: dict, start: int | None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope, masks, start)
        return x + self.mlp(self.mlp_norm(x))


class GPT2Model(DecoderModel):
    """A GPT-2 decoder; positions index the learned position table (max_position_embeddings)."""

    arch = "gpt2"
    uses_rope = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.pos_embed = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layers = nn.ModuleList(GPT2Block(config, i) for i in range(config.num_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed.weight

    def _embed(self, input_ids: torch.Tensor | None, positions: torch.Tensor,
               inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.embed(input_ids) if inputs_embeds is None else inputs_embeds.to(self.embed.weight.dtype)
        return tokens + self.pos_embed(positions)
