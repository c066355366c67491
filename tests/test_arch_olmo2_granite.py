"""OLMo 2 (norms after attention and MLP only, q/k RMSNorm over the whole projections) and Granite
(embedding, residual, attention and logits multipliers) against transformers on tiny random models."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import arch_common as ac  # noqa: E402


def _olmo2():
    return ac.build(transformers.Olmo2Config, transformers.Olmo2ForCausalLM)


def _granite():
    return ac.build(transformers.GraniteConfig, transformers.GraniteForCausalLM, embedding_multiplier=6.0,
                    residual_multiplier=0.4, attention_multiplier=0.09, logits_scaling=3.0, tie_word_embeddings=True)


BUILDERS = {"olmo2": _olmo2, "granite": _granite}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def pair(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    hf = BUILDERS[request.param]()
    ours = ac.save_and_load(hf, folder)
    assert ours.arch == request.param
    return hf, ours, folder


def test_logits_match_transformers(pair):
    ac.check_logits(pair[0], pair[1])


def test_greedy_and_beam_match_transformers(pair):
    ac.check_generation(pair[0], pair[1])


def test_padded_batch_matches_transformers(pair):
    ac.check_padded_batch(pair[0], pair[1])


def test_batch_rows_equal_rows_alone(pair):
    ac.check_batch_rows(pair[1])


def test_quantized_models_run(pair):
    ac.check_quantized(pair[2], pair[1])


def test_granite_multipliers_are_read():
    from lispe_py.models import ModelConfig

    c = ModelConfig.from_hf_config(_granite().config.to_dict())
    assert (c.embed_scale, c.residual_multiplier, c.attn_scale, c.logits_scaling) == (6.0, 0.4, 0.09, 3.0)


def test_bfloat16_as_close_as_transformers_own(pair):
    hf, _, folder = pair
    ac.check_bf16(hf, folder)


def test_traced_decode_steps(pair):
    ac.check_traced_decode(pair[0], pair[1])
