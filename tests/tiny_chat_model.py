"""A tiny random chat model for the tests of `lispe chat` and the Jupyter kernel (not a test module)."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def write_tiny_chat_model(folder: Path, context: int = 8192) -> Path:
    """A random one-layer Llama as a Hugging Face folder (config.json, model.safetensors), with the
    SmolLM2 tokenizer (tokenizer.json, tokenizer_config.json holding its chat template)."""
    from safetensors.torch import save_file

    from lispe_py.models.loading import embedded_model_path
    from lispe_py.models.tokenizer import Tokenizer

    tok = Tokenizer.from_gguf(str(embedded_model_path("SmolLM2-135M-Instruct")))
    hidden, inter, heads, kv, vocab = 16, 32, 2, 1, tok.vocab_size
    head_dim = hidden // heads
    g = torch.Generator().manual_seed(0)

    def w(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * 0.5).contiguous()

    tensors = {
        "model.embed_tokens.weight": w(vocab, hidden),
        "model.norm.weight": torch.ones(hidden),
        "model.layers.0.input_layernorm.weight": torch.ones(hidden),
        "model.layers.0.post_attention_layernorm.weight": torch.ones(hidden),
        "model.layers.0.self_attn.q_proj.weight": w(heads * head_dim, hidden),
        "model.layers.0.self_attn.k_proj.weight": w(kv * head_dim, hidden),
        "model.layers.0.self_attn.v_proj.weight": w(kv * head_dim, hidden),
        "model.layers.0.self_attn.o_proj.weight": w(hidden, heads * head_dim),
        "model.layers.0.mlp.gate_proj.weight": w(inter, hidden),
        "model.layers.0.mlp.up_proj.weight": w(inter, hidden),
        "model.layers.0.mlp.down_proj.weight": w(hidden, inter),
    }
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": inter, "num_hidden_layers": 1, "num_attention_heads": heads,
        "num_key_value_heads": kv, "max_position_embeddings": context, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "vocab_size": vocab, "tie_word_embeddings": True,
        "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}))
    tok.save(folder)
    return folder
