"""`DecoderModel.decode` on CPU: a single row's decode step runs as a torch.jit trace, which must give
exactly (bit for bit) the logits of the op-by-op step, for every architecture, dtype and quantization,
follow the model through changes, and fall back to op-by-op steps where it cannot apply. A quantized
model's steps of several (left-padded) rows run as one more trace, for every batch size."""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")

from lispe_py.generation import generate  # noqa: E402
from lispe_py.models import create_model  # noqa: E402
from lispe_py.models import layers  # noqa: E402
from lispe_py.models.quantize import quantize_model  # noqa: E402

torch.set_flush_denormal(True)


@pytest.fixture(autouse=True)
def _trace_short_generations(monkeypatch):
    """These tests generate a few tokens: let such generations trace (the threshold has its own test)."""
    monkeypatch.setattr(layers, "TRACE_MIN_STEPS", 2)

ARCHS = {
    "llama_gqa": dict(arch="llama", num_heads=4, num_kv_heads=2),
    "llama_mha_biases": dict(arch="llama", num_heads=4, num_kv_heads=4, attention_bias=True, mlp_bias=True),
    "qwen3_qk_norm": dict(arch="llama", num_heads=4, num_kv_heads=2, qk_norm=True, head_dim=24),
    "gpt2": dict(arch="gpt2", num_heads=4),
}


def _model(name: str, dtype=torch.float32, **extra):
    cfg = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_layers=2,
               max_position_embeddings=128, seed=3, **ARCHS[name], **extra)
    return create_model(cfg).to(dtype)


def _steps(model, prompt, tokens, traced: bool):
    """Logits of decode steps feeding `tokens` after `prompt`, traced or op by op."""
    model.traced_decode = traced
    model.reset_decode_graphs()
    model.setup_cache(1, 64)
    with torch.inference_mode():
        model.prefill(torch.tensor([prompt]))
        return [model.decode(torch.tensor([t]), len(prompt) + i) for i, t in enumerate(tokens)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_traced_step_is_bit_identical_to_the_op_by_op_step(name, dtype):
    model = _model(name, dtype)
    prompt, tokens = [5, 9, 13, 2, 40], [7, 70, 33, 33, 1, 95, 12]
    eager = _steps(model, prompt, tokens, traced=False)
    assert not model._graphs
    traced = _steps(model, prompt, tokens, traced=True)
    assert [k[0] for k in model._graphs] == ["trace"]  # one trace served every slot
    for a, b in zip(eager, traced):
        assert a.dtype == torch.float32 and torch.equal(a, b)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_traced_step_of_quantized_models(mode):
    model = quantize_model(_model("llama_gqa"), mode)
    prompt, tokens = [5, 9, 13], [7, 70, 33, 1]
    assert all(torch.equal(a, b) for a, b in zip(_steps(model, prompt, tokens, False),
                                                   _steps(model, prompt, tokens, True)))


def test_generation_is_the_same_traced_or_not():
    model = _model("llama_gqa")
    prompt = [5, 9, 13, 2]
    for cfg in ({"strategy": "greedy", "repetition_penalty": 1.3},
                {"strategy": "sample", "seed": 4, "top_k": 20, "temperature": 1.5},
                {"strategy": "beam_search", "num_beams": 3, "num_return_sequences": 2}):
        model.traced_decode = False
        eager = generate(model, prompt, max_length=24, **cfg).tolist()
        model.traced_decode = True
        assert generate(model, prompt, max_length=24, **cfg).tolist() == eager, cfg


def test_where_the_trace_does_not_apply_steps_run_op_by_op():
    model = _model("llama_gqa")
    rows = [[5, 9, 13, 2], [7, 8]]  # a padded batch: positions and a mask
    generate(model, rows, max_length=6)
    assert not model._graphs
    windowed = create_model(dict(arch="llama", vocab_size=96, hidden_size=64, intermediate_size=128,
                                 num_layers=2, num_heads=4, num_kv_heads=2, sliding_window=3, seed=1))
    generate(windowed, [5, 9, 13, 2], max_length=6)
    assert not windowed._graphs


def test_short_generations_do_not_pay_for_a_trace_but_use_one(monkeypatch):
    monkeypatch.setattr(layers, "TRACE_MIN_STEPS", 32)
    model = _model("llama_gqa")
    short = generate(model, [5, 9, 13], max_length=20).tolist()
    assert not model._graphs  # 19 steps left at most: op by op
    long = generate(model, [5, 9, 13], max_length=70).tolist()
    assert len(model._graphs) == 1 and long[:23] == short
    eager_steps = []
    real = layers.DecoderModel._eager_step
    monkeypatch.setattr(layers.DecoderModel, "_eager_step", lambda self, *a: eager_steps.append(1) or real(self, *a))
    assert generate(model, [5, 9, 13], max_length=20).tolist() == short  # the trace that exists serves
    assert not eager_steps
    model.traced_decode = False
    assert generate(model, [5, 9, 13], max_length=70).tolist() == long


def test_the_trace_follows_the_model():
    model = _model("llama_gqa")
    params = list(model.parameters())
    generate(model, [5, 9, 13], max_length=4)
    assert len(model._graphs) == 1
    assert all(p.requires_grad for p in params)  # lifted for the trace only
    with torch.no_grad():  # in-place edits show: the trace holds the weights by reference
        model.layers[0].mlp.w_down.weight.mul_(3)
    model.traced_decode = False
    expected = generate(model, [5, 9, 13], max_length=8).tolist()
    model.traced_decode = True
    assert generate(model, [5, 9, 13], max_length=8).tolist() == expected
    model.to(torch.bfloat16)  # a new dtype: traced again
    assert not model._graphs
    generate(model, [5, 9, 13], max_length=4)
    assert [k[1] for k in model._graphs] == [torch.bfloat16]
    model.setup_cache(1, 200)  # a new cache: traced again
    assert not model._graphs
    quantize_model(model, "int8")
    assert not model._graphs


def test_steps_run_op_by_op_while_autograd_records():
    model = _model("llama_gqa")
    model.setup_cache(1, 16)
    model(torch.tensor([[5, 9, 13]]), torch.arange(3))
    logits = model.decode(torch.tensor([7]), 3)
    assert logits.requires_grad and not model._graphs  # recorded by autograd, nothing traced


def test_a_failed_trace_falls_back_to_op_by_op_steps(monkeypatch):
    model = _model("llama_gqa")
    model.traced_decode = False
    expected = generate(model, [5, 9, 13], max_length=8).tolist()
    model.traced_decode = True

    def refuse(*args, **kwargs):
        raise RuntimeError("this torch cannot trace")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    with pytest.warns(RuntimeWarning, match="torch.jit trace of the decode step failed"):
        got = generate(model, [5, 9, 13], max_length=8).tolist()
    assert got == expected and not model.traced_decode and not model._graphs
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert generate(model, [5, 9, 13], max_length=8).tolist() == expected


def _padded_steps(model, rows, steps: int, traced: bool, extra_pad: int = 0):
    """Logits of `steps` greedy decode steps after a left-padded prefill of `rows` (every row padded by
    `extra_pad` more slots: a lone row can have a pad), traced or op by op."""
    model.traced_decode = traced
    b, p = len(rows), max(len(r) for r in rows) + extra_pad
    pads = torch.tensor([p - len(r) for r in rows])
    ids = torch.tensor([[0] * (p - len(r)) + r for r in rows])
    slots = torch.arange(64)
    kv_mask = slots[None, :] >= pads[:, None]
    model.setup_cache(b, 64)
    out = []
    with torch.inference_mode():
        logits = model.prefill(ids, position_ids=(slots[None, :p] - pads[:, None]).clamp(min=0), kv_mask=kv_mask[:, :p])
        tokens = logits.argmax(-1)  # prefill: the last position's logits [B, V]
        for slot in range(p, p + steps):
            logits = model.decode(tokens, slot, (slot - pads)[:, None], kv_mask[:, :slot + 1])
            out.append(logits)
            tokens = logits.argmax(-1)
    return out


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_padded_batch_steps_of_quantized_models_run_one_trace_for_every_batch_size(mode):
    from lispe_py.models import native

    if not native.available():
        pytest.skip(f"the native decode attention reads the rows' starts: {native.reason()}")
    model = quantize_model(_model("llama_gqa", head_dim=64), mode)
    batches = [[[5, 9, 13, 2, 40], [7, 8], [3, 4, 5]], [[1, 2], [9, 9, 9, 9, 9, 9]], [[4, 5, 6]] * 4]
    for rows in batches:
        eager = _padded_steps(model, rows, 5, traced=False)
        traced = _padded_steps(model, rows, 5, traced=True)
        assert all(torch.equal(a, b) for a, b in zip(eager, traced)), rows
    assert [k[0] for k in model._graphs] == ["rows"]  # batches of 3, 2 and 4 rows: one trace
    model.reset_decode_graphs()
    with torch.inference_mode():
        model.decode(torch.tensor([1, 2]), 6, steps_left=1)  # a short batch makes no trace (threshold 2 here)
    assert not model._graphs


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_a_lone_left_padded_row_runs_the_trace_the_batches_made(mode):
    """The last row of a `lispe serve` batch keeps its left padding: its steps run the batches' trace.
    A quantized model lays no float weight out per row count, so one key serves 1 row and several
    (a second trace there cost ~0.35 s in the middle of serving SmolLM2)."""
    from lispe_py.models import native

    if not native.available():
        pytest.skip(f"the native decode attention reads the rows' starts: {native.reason()}")
    model = quantize_model(_model("llama_gqa", head_dim=64), mode)
    _padded_steps(model, [[5, 9, 13, 2, 40], [7, 8]], 3, traced=True)
    made = set(model._graphs)
    assert [k[0] for k in made] == ["rows"]
    eager = _padded_steps(model, [[7, 8, 11]], 4, traced=False, extra_pad=3)
    traced = _padded_steps(model, [[7, 8, 11]], 4, traced=True, extra_pad=3)
    assert all(torch.equal(a, b) for a, b in zip(eager, traced))
    assert set(model._graphs) == made


def test_padded_batch_steps_of_float_models_run_op_by_op():
    from lispe_py.models import native

    model = _model("llama_gqa", head_dim=64)  # float linears: batches run on oneDNN-packed copies, never traced
    _padded_steps(model, [[5, 9, 13], [7]], 3, traced=True)
    assert not model._graphs
    quantize_model(model, "int4")  # the same model quantized: what was found about its linears is redone
    _padded_steps(model, [[5, 9, 13], [7]], 3, traced=True)
    assert ("rows" in {key[0] for key in model._graphs}) == native.available()


def test_padded_batch_steps_of_a_family_with_its_own_attention_stay_masked():
    """OLMo 2's attention (q/k norms over the whole projections) attends with SDPA and the mask, never
    with the native decode attention: its padded steps are not traced, and equal the op-by-op ones."""
    model = quantize_model(create_model(dict(arch="olmo2", vocab_size=96, hidden_size=128, intermediate_size=128,
                                             num_layers=2, num_heads=2, num_kv_heads=1, head_dim=64,
                                             qk_norm_full=True, max_position_embeddings=128, seed=3)), "int4")
    rows = [[5, 9, 13, 2, 40], [7, 8]]
    eager = _padded_steps(model, rows, 4, traced=False)
    traced = _padded_steps(model, rows, 4, traced=True)
    assert not any(key[0] == "rows" for key in model._graphs)
    assert all(torch.equal(a, b) for a, b in zip(eager, traced))
