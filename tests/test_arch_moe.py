"""Mixture-of-experts models against transformers on tiny random models: Mixtral (top-k softmax routing,
renormalised), Qwen2-MoE (shared expert with a sigmoid gate, norm_topk_prob off, a dense layer through
mlp_only_layers) and Qwen3-MoE (q/k norms, norm_topk_prob on). More experts than top-k, and batches
whose rows pick different experts."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import arch_common as ac  # noqa: E402
from lispe_py.models import model_from_hf  # noqa: E402
from lispe_py.models.families import SparseMoE  # noqa: E402


def _mixtral():
    return ac.build(transformers.MixtralConfig, transformers.MixtralForCausalLM, num_local_experts=6,
                    num_experts_per_tok=2)


def _qwen2_moe():
    return ac.build(transformers.Qwen2MoeConfig, transformers.Qwen2MoeForCausalLM, num_experts=6,
                    num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=64,
                    norm_topk_prob=False, mlp_only_layers=[1])


def _qwen3_moe():
    return ac.build(transformers.Qwen3MoeConfig, transformers.Qwen3MoeForCausalLM, num_experts=8,
                    num_experts_per_tok=3, moe_intermediate_size=32, norm_topk_prob=True, head_dim=16)


BUILDERS = {"mixtral": _mixtral, "qwen2_moe": _qwen2_moe, "qwen3_moe": _qwen3_moe}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def pair(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    hf = BUILDERS[request.param]()
    ours = ac.save_and_load(hf, folder)
    assert ours.arch == request.param
    return hf, ours, folder


def test_logits_match_transformers(pair):
    ac.check_logits(pair[0], pair[1])


def test_model_from_hf_reads_the_fused_expert_tensors(pair):
    """transformers 5 holds experts as [E, 2I, H] / [E, H, I] tensors in memory (folders keep the
    Hub's per-expert names): both load to the same model."""
    hf, ours, _ = pair
    ids = ac.prompts(2, 9, 3)
    with torch.no_grad():
        assert ac.max_diff(model_from_hf(hf).forward_full(ids), hf(ids).logits) <= ac.TOL


def test_greedy_and_beam_match_transformers(pair):
    ac.check_generation(pair[0], pair[1])


def test_padded_batch_matches_transformers(pair):
    ac.check_padded_batch(pair[0], pair[1])


def test_rows_pick_different_experts_and_batch_rows_equal_rows_alone(pair):
    hf, ours, _ = pair
    moe = next(m for m in ours.modules() if isinstance(m, SparseMoE))
    assert moe.top_k < len(moe.experts)
    ids = ac.prompts(3, 6, 12)
    with torch.no_grad():
        picked = moe.route(ours.embed(ids).reshape(-1, ours.config.hidden_size))[1].view(3, 6, -1)
    sets = [set(picked[r].flatten().tolist()) for r in range(3)]
    assert len({frozenset(s) for s in sets}) > 1 and len(set().union(*sets)) > moe.top_k
    ac.check_batch_rows(ours)


def test_quantized_models_run_with_exact_routing(pair):
    hf, ours, folder = pair
    # the router stays float, but quantized inputs can flip a token's near-tie between two experts:
    # looser bounds against the float model; the check against the dequantized weights stays tight
    ac.check_quantized(folder, ours, int8_tol=0.2, int4_tol=0.6)


def test_moe_models_decode_op_by_op(pair):
    """The experts a token picks change the computation: no CPU trace or CUDA graph fixes them."""
    ours = pair[1]
    assert not ours._trace_applies(1, None, None) and not ours._graphs_apply()


def test_bfloat16_experts_equal_transformers(pair):
    """In bfloat16 a sparse block gives transformers' bits on the same input (routing weights, the float32
    sum over the chosen experts, the shared expert); whole-model bfloat16 logits are left out here: a
    random tiny model's near-tied routing flips on one-ulp differences of the attention before it."""
    import copy

    hf, _, folder = pair
    hb = copy.deepcopy(hf).to(torch.bfloat16)
    ob = ac.load_model(folder, dtype="bfloat16")
    x = torch.randn(2, 7, 64, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    with torch.no_grad():
        for theirs, ours in zip(hb.model.layers, ob.layers):
            assert torch.equal(theirs.mlp(x), ours.mlp(x))


def test_decode_steps_op_by_op(pair):
    ac.check_traced_decode(pair[0], pair[1])
