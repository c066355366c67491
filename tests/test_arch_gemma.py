"""Gemma 1, Gemma 2 and Gemma 3 (text) against transformers on tiny random models saved as folders."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import arch_common as ac  # noqa: E402


def _gemma():
    return ac.build(transformers.GemmaConfig, transformers.GemmaForCausalLM, head_dim=16)


def _gemma2(window: int = 4):
    return ac.build(transformers.Gemma2Config, transformers.Gemma2ForCausalLM, head_dim=16, num_hidden_layers=4,
                    sliding_window=window, query_pre_attn_scalar=24, attn_logit_softcapping=3.0,
                    final_logit_softcapping=5.0)


def _gemma3(window: int = 4):
    return ac.build(transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM, head_dim=16, num_hidden_layers=4,
                    sliding_window=window, query_pre_attn_scalar=24, sliding_window_pattern=2,
                    rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
                                     "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})


BUILDERS = {"gemma": _gemma, "gemma2": _gemma2, "gemma3": _gemma3}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def pair(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    hf = BUILDERS[request.param]()
    ours = ac.save_and_load(hf, folder)
    assert ours.arch == request.param
    return hf, ours, folder


def test_logits_match_transformers(pair):
    hf, ours, _ = pair
    ac.check_logits(hf, ours)


def test_greedy_and_beam_match_transformers(pair):
    hf, ours, _ = pair
    ac.check_generation(hf, ours)


def test_padded_batch_matches_transformers(pair):
    hf, ours, _ = pair
    ac.check_padded_batch(hf, ours)


def test_batch_rows_equal_rows_alone(pair):
    ac.check_batch_rows(pair[1])


def test_quantized_models_run(pair):
    ac.check_quantized(pair[2], pair[1])


def test_bfloat16_as_close_as_transformers_own(pair):
    hf, _, folder = pair
    ac.check_bf16(hf, folder)


def test_gemma3_multimodal_folder_loads_its_text_model(tmp_path):
    """Gemma 3 4B+ ship as Gemma3ForConditionalGeneration (model_type "gemma3", a text_config, the
    language model's tensors under language_model.*): the text model loads and answers text prompts as
    transformers' multimodal model does; the vision tower is not read."""
    text = dict(vocab_size=ac.VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, max_position_embeddings=128, sliding_window=4,
                query_pre_attn_scalar=24, sliding_window_pattern=2, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    config = transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                                       image_token_index=150, boi_token_index=151, eoi_token_index=152)
    torch.manual_seed(0)
    hf = transformers.Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.15) if p.dim() > 1 else p.uniform_(-0.4, 0.4)
    ours = ac.save_and_load(hf, tmp_path)
    assert ours.arch == "gemma3" and ours.config.layer_types[:2] == ["sliding_attention", "full_attention"]
    ids = ac.prompts(2, 12, 3)
    with torch.no_grad():
        assert ac.max_diff(ours.forward_full(ids), hf(input_ids=ids).logits) <= ac.TOL
    prompt = ac.prompts(1, 6, 4)
    theirs = ac.hf_generate(hf, prompt, max_new_tokens=10, do_sample=False, eos_token_id=2)
    assert ac.generate(ours, prompt, max_length=10, eos_token_id=2, pad_token_id=ac.PAD).tolist() == theirs.tolist()


def test_traced_decode_steps(pair):
    ac.check_traced_decode(pair[0], pair[1])
