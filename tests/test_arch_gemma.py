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
