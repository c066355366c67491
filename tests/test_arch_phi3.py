"""Phi-3 / Phi-4 (fused qkv_proj and gate_up_proj, sliding window, LongRoPE with short and long factors,
partial rotary) against transformers on tiny random models saved as folders."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import arch_common as ac  # noqa: E402
from lispe_py.generation import generate  # noqa: E402

ORIGINAL = 24  # LongRoPE's original context: positions past it switch to the long factors


def _phi3():
    return ac.build(transformers.Phi3Config, transformers.Phi3ForCausalLM, sliding_window=5)


def _phi4_longrope():
    """Phi-4-mini's shape of config: LongRoPE and a partial rotary factor (8 of 16 head dimensions)."""
    rot = 8
    g = torch.Generator().manual_seed(3)
    short = (1 + torch.rand(rot // 2, generator=g)).tolist()
    long = (1 + 6 * torch.rand(rot // 2, generator=g)).tolist()
    return ac.build(transformers.Phi3Config, transformers.Phi3ForCausalLM, max_position_embeddings=4 * ORIGINAL,
                    original_max_position_embeddings=ORIGINAL, tie_word_embeddings=True,
                    rope_parameters={"rope_type": "longrope", "short_factor": short, "long_factor": long,
                                     "partial_rotary_factor": 0.5, "rope_theta": 10000.0})


@pytest.fixture(scope="module")
def phi3(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phi3")
    hf = _phi3()
    return hf, ac.save_and_load(hf, folder), folder


@pytest.fixture(scope="module")
def phi4(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phi4")
    hf = _phi4_longrope()
    ours = ac.save_and_load(hf, folder)
    assert ours.config.rotary_dim == 8 and ours.config.rope_scaling["rope_type"] == "longrope"
    return hf, ours, folder


def test_phi3_logits_generation_and_batches(phi3):
    hf, ours, folder = phi3
    assert ours.arch == "phi3" and ours.config.sliding_window == 5
    ac.check_logits(hf, ours)
    ac.check_generation(hf, ours)
    ac.check_padded_batch(hf, ours)
    ac.check_batch_rows(ours)


def test_phi3_quantized_models_run(phi3):
    ac.check_quantized(phi3[2], phi3[1])


def test_longrope_short_context_logits(phi4):
    hf, ours, _ = phi4
    ac.check_logits(hf, ours, length=ORIGINAL)  # all positions inside the original context: short factors


def test_longrope_long_context_uses_long_factors(phi4):
    hf, ours, _ = phi4
    ids = ac.prompts(2, ORIGINAL + 9, 4)
    with torch.inference_mode():
        ref = hf(ids).logits
        assert ac.max_diff(ours.forward_full(ids), ref) <= ac.TOL
        ours.setup_cache(2, ids.shape[1])
        assert ac.max_diff(ours.prefill(ids), ref[:, -1]) <= ac.TOL
        ours.prefill_chunk_size = 8  # chunks of a long prompt all run with the long factors
        try:
            assert ac.max_diff(ours.prefill(ids), ref[:, -1]) <= ac.TOL
        finally:
            ours.prefill_chunk_size = 1024


@pytest.mark.parametrize("prompt", [6, ORIGINAL + 3])
def test_longrope_generation_crossing_the_original_context(phi4, prompt):
    """Greedy and beam-4 ids equal transformers' while decoding crosses (or starts past) the original
    context: transformers switches each step's factors by the sequence length."""
    hf, ours, _ = phi4
    new = ORIGINAL + 6 - min(prompt, ORIGINAL)
    ids = ac.prompts(1, prompt, 9)
    theirs = ac.hf_generate(hf, ids, max_new_tokens=new, do_sample=False, eos_token_id=2)
    assert generate(ours, ids, max_length=new, eos_token_id=2, pad_token_id=ac.PAD).tolist() == theirs.tolist()
    theirs = ac.hf_generate(hf, ids, max_new_tokens=new, do_sample=False, num_beams=4, eos_token_id=2)
    mine = generate(ours, ids, max_length=new, strategy="beam_search", num_beams=4, eos_token_id=2, pad_token_id=ac.PAD)
    assert mine.tolist() == theirs.tolist()


def test_longrope_padded_batch_matches_transformers(phi4):
    ac.check_padded_batch(phi4[0], phi4[1], new=ORIGINAL)


def test_longrope_quantized_models_run(phi4):
    ac.check_quantized(phi4[2], phi4[1])


def test_bfloat16_as_close_as_transformers_own(phi3, phi4):
    ac.check_bf16(phi3[0], phi3[2])
    ac.check_bf16(phi4[0], phi4[2])


def test_traced_decode_steps(phi3, phi4):
    ac.check_traced_decode(phi4[0], phi4[1], length=ORIGINAL)  # no sliding window: traced
    ac.check_traced_decode(phi3[0], phi3[1])  # sliding window: op by op
