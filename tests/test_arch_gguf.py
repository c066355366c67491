"""GGUF files of the new families, written here as llama.cpp's converter lays them out (Gemma's norm
weights as 1 + weight, Phi-3's fused attn_qkv and gate/up in ffn_up with its LongRoPE factors as
tensors, the Qwen MoE experts stacked in ffn_*_exps): our loader gives the logits of the model they were
written from, and of transformers reading the same file where it can (Gemma 2/3, Phi-3)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

import numpy as np  # noqa: E402

import arch_common as ac  # noqa: E402
from lispe_py.models import load_model  # noqa: E402


def _gemma(kind: str):
    # head_dim 256 = query_pre_attn_scalar and transformers' default soft-caps: llama.cpp's conventions and
    # transformers' GGUF reader (which reads no scalar and no caps) then describe the same model
    common = dict(head_dim=256, num_attention_heads=2, num_key_value_heads=1)
    if kind == "gemma":
        return ac.build(transformers.GemmaConfig, transformers.GemmaForCausalLM, **common)
    if kind == "gemma2":
        return ac.build(transformers.Gemma2Config, transformers.Gemma2ForCausalLM, **common, num_hidden_layers=4,
                        sliding_window=4, query_pre_attn_scalar=256, attn_logit_softcapping=50.0,
                        final_logit_softcapping=30.0)
    return ac.build(transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM, **common, num_hidden_layers=6,
                    sliding_window=4, query_pre_attn_scalar=256)


def _phi3():
    return ac.build(transformers.Phi3Config, transformers.Phi3ForCausalLM)


def _phi4_longrope():
    g = torch.Generator().manual_seed(3)
    return ac.build(transformers.Phi3Config, transformers.Phi3ForCausalLM, max_position_embeddings=96,
                    original_max_position_embeddings=24,
                    rope_parameters={"rope_type": "longrope", "short_factor": (1 + torch.rand(4, generator=g)).tolist(),
                                     "long_factor": (1 + 6 * torch.rand(4, generator=g)).tolist(),
                                     "partial_rotary_factor": 0.5, "rope_theta": 10000.0})


def _qwen2_moe():
    return ac.build(transformers.Qwen2MoeConfig, transformers.Qwen2MoeForCausalLM, num_experts=6, num_experts_per_tok=2,
                    moe_intermediate_size=32, shared_expert_intermediate_size=64, norm_topk_prob=False)


def _qwen3_moe():
    return ac.build(transformers.Qwen3MoeConfig, transformers.Qwen3MoeForCausalLM, num_experts=8, num_experts_per_tok=3,
                    moe_intermediate_size=32, norm_topk_prob=True, head_dim=16)


def _mixtral():
    return ac.build(transformers.MixtralConfig, transformers.MixtralForCausalLM, num_local_experts=6,
                    num_experts_per_tok=2)


def _llama_permute(t, heads):
    """llama.cpp's interleaving of a llama's rotary halves in attn_q/attn_k rows."""
    return t.reshape(heads, 2, t.shape[0] // heads // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)


def write_gguf(path, hf, arch: str) -> None:
    """The model's tensors and metadata under llama.cpp's names (float32 tensors)."""
    cfg = hf.config
    sd = {k.removeprefix("model."): v.detach().float() for k, v in hf.state_dict().items()}
    w = gguf.GGUFWriter(str(path), arch)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    rope = cfg.rope_parameters.get("full_attention", cfg.rope_parameters)
    w.add_rope_freq_base(rope["rope_theta"])
    w.add_vocab_size(cfg.vocab_size)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(ac.PAD)
    gemma = arch.startswith("gemma")
    if arch == "gemma2":
        w.add_float32("gemma2.attn_logit_softcapping", cfg.attn_logit_softcapping)
        w.add_float32("gemma2.final_logit_softcapping", cfg.final_logit_softcapping)
    if arch in ("gemma2", "gemma3"):
        w.add_sliding_window(cfg.sliding_window)
    if arch == "phi3":
        rot = int(head_dim * cfg.rope_parameters.get("partial_rotary_factor", 1.0))
        w.add_rope_dimension_count(rot)
        if cfg.rope_parameters.get("rope_type") == "longrope":
            w.add_uint32("phi3.rope.scaling.original_context_length", cfg.original_max_position_embeddings)
            for kind in ("short", "long"):
                w.add_tensor(f"rope_factors_{kind}.weight", np.array(cfg.rope_parameters[f"{kind}_factor"], np.float32))
    if arch.endswith("moe") or cfg.model_type == "mixtral":
        w.add_expert_count(cfg.num_experts)
        w.add_expert_used_count(cfg.num_experts_per_tok)
        if arch != "llama":
            w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
        if arch == "qwen2moe":
            w.add_expert_shared_feed_forward_length(cfg.shared_expert_intermediate_size)

    def add(name, t, norm=False):
        t = t + 1 if norm and gemma else t
        w.add_tensor(name, np.ascontiguousarray(t.numpy(), dtype=np.float32))

    add("token_embd.weight", sd["embed_tokens.weight"])
    add("output_norm.weight", sd["norm.weight"], True)
    if "lm_head.weight" in sd and not cfg.tie_word_embeddings:
        add("output.weight", sd["lm_head.weight"])
    norms = {"input_layernorm": "attn_norm", "post_attention_layernorm": "post_attention_norm" if gemma and
             arch != "gemma" else "ffn_norm", "pre_feedforward_layernorm": "ffn_norm",
             "post_feedforward_layernorm": "post_ffw_norm", "self_attn.q_norm": "attn_q_norm",
             "self_attn.k_norm": "attn_k_norm"}
    for i in range(cfg.num_hidden_layers):
        p, b = f"layers.{i}.", f"blk.{i}."
        for theirs, ours in norms.items():
            if p + theirs + ".weight" in sd:
                add(b + ours + ".weight", sd[p + theirs + ".weight"], True)
        for kind in ("weight", "bias"):
            for n in ("q", "k", "v", "o"):
                if p + f"self_attn.{n}_proj.{kind}" in sd:
                    t = sd[p + f"self_attn.{n}_proj.{kind}"]
                    if arch == "llama" and n in "qk":
                        t = _llama_permute(t, cfg.num_attention_heads if n == "q" else cfg.num_key_value_heads)
                    add(b + ("attn_output" if n == "o" else f"attn_{n}") + f".{kind}", t)
        if p + "self_attn.qkv_proj.weight" in sd:
            add(b + "attn_qkv.weight", sd[p + "self_attn.qkv_proj.weight"])
        m = p + "mlp."
        if m + "gate_up_proj.weight" in sd:  # Phi-3
            add(b + "ffn_up.weight", sd[m + "gate_up_proj.weight"])
            add(b + "ffn_down.weight", sd[m + "down_proj.weight"])
        elif m + "gate.weight" in sd:  # MoE (transformers 5 holds the experts stacked)
            add(b + "ffn_gate_inp.weight", sd[m + "gate.weight"])
            gate, up = sd[m + "experts.gate_up_proj"].chunk(2, dim=1)
            add(b + "ffn_gate_exps.weight", gate)
            add(b + "ffn_up_exps.weight", up)
            add(b + "ffn_down_exps.weight", sd[m + "experts.down_proj"])
            if m + "shared_expert_gate.weight" in sd:
                add(b + "ffn_gate_inp_shexp.weight", sd[m + "shared_expert_gate.weight"].reshape(-1))
                for n in ("gate", "up", "down"):
                    add(b + f"ffn_{n}_shexp.weight", sd[m + f"shared_expert.{n}_proj.weight"])
        else:
            for n in ("gate", "up", "down"):
                add(b + f"ffn_{n}.weight", sd[m + f"{n}_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


CASES = {"gemma": (lambda: _gemma("gemma"), "gemma", False), "gemma2": (lambda: _gemma("gemma2"), "gemma2", True),
         "gemma3": (lambda: _gemma("gemma3"), "gemma3", True), "phi3": (_phi3, "phi3", True),
         "phi4_longrope": (_phi4_longrope, "phi3", False), "qwen2_moe": (_qwen2_moe, "qwen2moe", False),
         "qwen3_moe": (_qwen3_moe, "qwen3moe", False), "mixtral": (_mixtral, "llama", False)}
# transformers cannot read back: Gemma 1 GGUFs (no reader), Phi-3 LongRoPE factors (not read from the
# rope_factors tensors), and the Qwen MoE expert sizes (expert_feed_forward_length is not read: its reader
# builds 1408/5632-wide experts), Mixtral (a llama with experts, which it reads as a dense llama); those files are checked against the model they were written from.


@pytest.mark.parametrize("case", sorted(CASES))
def test_gguf_of_the_family_loads_exactly(tmp_path, case):
    build, arch, transformers_reads = CASES[case]
    hf = build()
    write_gguf(tmp_path / "m.gguf", hf, arch)
    ours = load_model(tmp_path / "m.gguf", model_cache=False)
    ids = ac.prompts(2, 20, 6)
    with torch.no_grad():
        assert ac.max_diff(ours.forward_full(ids), hf(ids).logits) <= ac.TOL
        if transformers_reads:
            pytest.importorskip("accelerate")
            theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf").eval()
            assert ac.max_diff(ours.forward_full(ids), theirs(ids).logits) <= ac.TOL
    ac.check_generation(hf, ours, seeds=(1,))


@pytest.mark.parametrize("case", ["gemma2", "qwen3_moe"])
def test_gguf_of_the_family_loads_quantized(tmp_path, case):
    """"quantize" on such a file: the float weights quantized after loading (its tensors are float32)."""
    build, arch, _ = CASES[case]
    hf = build()
    write_gguf(tmp_path / "m.gguf", hf, arch)
    q = load_model(tmp_path / "m.gguf", quantize="int8", model_cache=False)
    assert q.quantization.mode == "int8" and q.arch == case
    ids = ac.prompts(1, 12, 6)
    with torch.no_grad():
        assert ac.rel(q.forward_full(ids), hf(ids).logits) < 0.2
