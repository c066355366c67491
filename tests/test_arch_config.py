"""config.json translation of the new families: keys read, and bad values refused with a ModelError
that names the file and what is wrong."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from lispe_py.models import ModelConfig, ModelError, create_model, load_model  # noqa: E402

BASE = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}


def test_gemma_legacy_gelu_is_the_tanh_approximation():
    c = ModelConfig.from_hf_config({**BASE, "model_type": "gemma", "hidden_act": "gelu"})
    assert c.hidden_act == "gelu_pytorch_tanh" and c.tie_word_embeddings and c.norm_offset
    assert c.embed_scale == 32 ** 0.5


def test_gemma2_and_gemma3_layer_patterns_and_rope_bases():
    g2 = ModelConfig.from_hf_config({**BASE, "num_hidden_layers": 4, "model_type": "gemma2", "sliding_window": 8})
    assert g2.layer_types == ["sliding_attention", "full_attention"] * 2
    assert g2.attn_scale == 256 ** -0.5 and g2.norm_placement == "sandwich"
    g3 = ModelConfig.from_hf_config({**BASE, "num_hidden_layers": 7, "model_type": "gemma3_text", "sliding_window": 8,
                                     "rope_theta": 1e6, "rope_local_base_freq": 1e4,
                                     "rope_scaling": {"rope_type": "linear", "factor": 8.0}})
    assert g3.layer_types.count("full_attention") == 1 and g3.layer_types[5] == "full_attention"
    assert (g3.rope_theta, g3.rope_local_theta, g3.rope_scaling["factor"]) == (1e6, 1e4, 8.0)
    assert [g3.layer_window(i) for i in (0, 5)] == [8, None]


def test_phi3_su_scaling_is_longrope_with_its_attention_factor():
    c = ModelConfig.from_hf_config({**BASE, "model_type": "phi3", "max_position_embeddings": 128,
                                    "original_max_position_embeddings": 32,
                                    "rope_scaling": {"type": "su", "short_factor": [1.0] * 4, "long_factor": [2.0] * 4}})
    assert c.rope_scaling["rope_type"] == "longrope"
    assert c.rope_scaling["attention_factor"] == pytest.approx((1 + 1.3862943611198906 / 3.4657359027997265) ** 0.5)


def test_qwen_moe_expert_counts_under_either_name():
    for key in ("num_experts", "num_local_experts"):
        c = ModelConfig.from_hf_config({**BASE, "model_type": "qwen3_moe", key: 6, "num_experts_per_tok": 2,
                                        "moe_intermediate_size": 16})
        assert (c.num_experts, c.moe_intermediate_size, c.qk_norm) == (6, 16, True)


@pytest.mark.parametrize("edit, match", [
    ({"model_type": "mixtral", "num_local_experts": 2, "num_experts_per_tok": 3}, "num_experts_per_tok must be 1..2"),
    ({"model_type": "phi3", "partial_rotary_factor": 0.1}, "partial_rotary_factor 0.1"),
    ({"model_type": "phi3", "rope_scaling": {"type": "longrope", "short_factor": [1.0]}}, "long_factor"),
    ({"model_type": "gemma2", "sliding_window": -4}, "sliding_window must be a positive number"),
    ({"model_type": "gemma3_text", "sliding_window": 4, "rope_parameters": {
        "full_attention": {"rope_type": "default"}, "sliding_attention": {"rope_type": "linear", "factor": 2.0}}},
     "RoPE scaling on Gemma 3's sliding-window layers"),
    ({"model_type": "granite", "rope_scaling": {"rope_type": "yarn", "factor": 2.0}}, "unsupported rope scaling 'yarn'"),
])
def test_bad_family_configs_are_named(tmp_path, edit, match):
    (tmp_path / "config.json").write_text(json.dumps({**BASE, **edit}))
    with pytest.raises(ModelError, match=match) as info:
        load_model(tmp_path)
    assert "config.json" in str(info.value)


def test_llama_refuses_longrope():
    with pytest.raises(ModelError, match="longrope scaling is for the phi3 architecture"):
        ModelConfig(rope_scaling={"rope_type": "longrope", "short_factor": [1.0], "long_factor": [1.0]})


def test_create_model_builds_a_family_with_random_weights():
    model = create_model({"arch": "qwen2_moe", "vocab_size": 64, "hidden_size": 32, "num_layers": 2, "num_heads": 4,
                          "num_experts": 4, "num_experts_per_tok": 2, "shared_expert_intermediate_size": 32})
    model.setup_cache(1, 8)
    logits = model.prefill(torch.tensor([[1, 2, 3]]))
    assert logits.shape == (1, 64) and torch.isfinite(logits).all()
