"""Prefill in chunks, the opt-in prompt cache, and the float32 weight layouts (column-major for
single rows, products of up to 256 rows split over the threads, oneDNN-packed copies for batches and beams;
issues 3 and 6): each changes rounding only, never which tokens come out, and the cache is forgotten
whenever it could be stale (batched calls, beam search, replaced or modified weights)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lispe_py.generation import generate  # noqa: E402
from lispe_py.models import create_model  # noqa: E402
from lispe_py.models.quantize import quantize_model  # noqa: E402

CONFIG = dict(arch="llama", vocab_size=120, hidden_size=48, intermediate_size=80, num_layers=2,
              num_heads=4, num_kv_heads=2, max_position_embeddings=256, seed=3, init_std=0.2)


def _model(dtype=torch.float64, **extra):
    """float64 by default, so that rounding differences can never flip a greedy choice."""
    return create_model({**CONFIG, **extra}).to(dtype)


def _logits(model, ids):
    model.setup_cache(ids.shape[0], 64)
    with torch.inference_mode():
        return model.prefill(ids).clone()


def test_chunked_prefill_equals_one_pass():
    model = _model()
    ids = torch.randint(0, 120, (2, 23), generator=torch.Generator().manual_seed(0))
    whole = _logits(model, ids)
    for chunk in (1, 4, 7, 22):
        model.prefill_chunk_size = chunk
        assert torch.allclose(_logits(model, ids), whole, atol=1e-10), chunk


def test_chunked_prefill_with_left_padding_gives_the_same_tokens():
    model = _model()
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13]]
    want = generate(model, prompts, {"max_length": 6})
    model.prefill_chunk_size = 2
    assert torch.equal(generate(model, prompts, {"max_length": 6}), want)


def test_prompt_cache_reuses_the_previous_prompt_and_output():
    model = _model()
    first = [3, 14, 15, 92, 65, 35]
    out1 = generate(model, first, {"max_length": 5}).tolist()
    model.prompt_cache = True
    assert generate(model, first, {"max_length": 5}).tolist() == out1
    assert model.last_prefill_start == 0           # nothing was cached before this call
    follow = out1 + [7, 8, 9]                      # a chat's next turn: history + new text
    cold = _model()
    want = generate(cold, follow, {"max_length": 5}).tolist()
    assert generate(model, follow, {"max_length": 5}).tolist() == want
    # every token of out1 but its last (never fed to the model) was reused
    assert model.last_prefill_start == len(out1) - 1


def test_prompt_cache_stops_at_the_first_different_token():
    model = _model()
    model.prompt_cache = True
    generate(model, [1, 2, 3, 4, 5, 6], {"max_length": 2})
    out = generate(model, [1, 2, 3, 9, 9, 9, 9], {"max_length": 3})
    assert model.last_prefill_start == 3
    assert out.tolist() == generate(_model(), [1, 2, 3, 9, 9, 9, 9], {"max_length": 3}).tolist()


def test_prompt_cache_survives_a_growing_cache():
    model = _model()
    model.prompt_cache = True
    first = generate(model, [4, 5, 6, 7], {"max_length": 3}).tolist()
    assert model.max_seq_len == 7
    longer = first + list(range(20, 60))           # needs a bigger cache: the buffers grow
    out = generate(model, longer, {"max_length": 4}).tolist()
    assert model.last_prefill_start == len(first) - 1
    assert out == generate(_model(), longer, {"max_length": 4}).tolist()


@pytest.mark.parametrize("spoiler", ["batch", "beam", "quantize", "weights", "off"])
def test_prompt_cache_is_forgotten_when_it_could_be_stale(spoiler):
    model = _model(dtype=torch.float32)
    model.prompt_cache = True
    prompt = [9, 8, 7, 6, 5]
    out = generate(model, prompt, {"max_length": 3}).tolist()
    if spoiler == "batch":
        generate(model, [[1, 2, 3], [4, 5, 6]], {"max_length": 2})
    elif spoiler == "beam":
        generate(model, [1, 2, 3], {"strategy": "beam_search", "num_beams": 2, "max_length": 2})
    elif spoiler == "quantize":
        quantize_model(model, "int8", lm_head=False)
    elif spoiler == "weights":
        with torch.no_grad():
            model.layers[0].mlp.w_down.weight.mul_(0.5)
    else:
        model.prompt_cache = False
    generate(model, out + [1, 2], {"max_length": 2})
    assert model.last_prefill_start == 0


def test_float32_wide_weights_are_column_major_and_batches_run_on_packed_copies():
    model = _model(dtype=torch.float32, tie_word_embeddings=True)
    ids = torch.tensor([[1, 2, 3, 4]])
    before = _logits(model, ids)
    head, block = model.lm_head.weight, model.layers[0]

    def column_major_where_wide():
        return (head.shape == (120, 48) and head.t().is_contiguous()          # more outputs than inputs
                and block.attn.wqkv.weight.t().is_contiguous() and block.mlp.w_gate_up.weight.t().is_contiguous()
                and block.mlp.w_down.weight.is_contiguous() and block.attn.wo.weight.is_contiguous())

    assert column_major_where_wide() and model.embed.weight is head          # still tied
    assert all(m.packed is None for m in model._linears())
    batch = _logits(model, ids.repeat(2, 1))               # a batch: oneDNN-packed copies, same layout
    assert column_major_where_wide()
    copies = [m.packed for m in model._linears()]
    assert all(c is not None for c in copies)
    assert torch.allclose(batch[0], before[0], atol=1e-5)
    assert torch.allclose(_logits(model, ids), before, atol=1e-6)
    assert all(m.packed is None for m in model._linears())           # single rows: the plain weights
    _logits(model, ids.repeat(3, 1))                                  # the copies were kept, not remade
    assert all(m.packed is c for m, c in zip(model._linears(), copies))
    model.to(torch.bfloat16)
    _logits(model, ids.repeat(2, 1))
    assert model.lm_head.weight.is_contiguous() and block.mlp.w_gate_up.weight.is_contiguous()
    assert all(m.packed is not None and m.packed is not c for m, c in zip(model._linears(), copies))
    model.transformers_attention = True                  # transformers' bits: the bf16 kernel, no copies
    _logits(model, ids.repeat(2, 1))
    assert all(m.packed is None and m._packed_copy is None for m in model._linears())
    model.to(torch.float32)
    assert torch.allclose(_logits(model, ids), before, atol=0.5)   # bf16 round trip of the weights


def test_packed_copies_follow_weight_edits_and_can_be_turned_off():
    model = _model(dtype=torch.float32)
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    _logits(model, ids)
    with torch.no_grad():
        model.layers[1].mlp.w_down.weight.mul_(-2.0)         # in place: the packed copy is now stale
    edited = _logits(model, ids)
    model.packed_weights = False
    assert all(m.packed is None and m._packed_copy is None for m in model._linears())
    plain = _logits(model, ids)
    assert all(m.packed is None for m in model._linears())
    assert torch.allclose(edited, plain, atol=1e-5)
    model.packed_weights = True
    with torch.no_grad():
        model.layers[0].attn.wo.weight = torch.nn.Parameter(torch.zeros_like(model.layers[0].attn.wo.weight))
    replaced = _logits(model, ids)
    model.packed_weights = False
    assert torch.allclose(replaced, _logits(model, ids), atol=1e-5)
    assert not torch.allclose(replaced, plain, atol=1e-3)


def test_a_weight_edited_between_single_row_calls_is_repacked_alone():
    model = _model(dtype=torch.float32)
    batch, one = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]), torch.tensor([[1, 2, 3, 4]])
    _logits(model, batch)
    copies = {id(m): m.packed for m in model._linears()}
    _logits(model, one)
    edited = model.layers[0].mlp.w_gate_up
    with torch.no_grad():
        edited.weight.mul_(0.5)
    packed = _logits(model, batch)
    for m in model._linears():
        assert (m.packed is copies[id(m)]) == (m is not edited)
    model.packed_weights = False
    assert torch.allclose(packed, _logits(model, batch), atol=1e-5)


def test_packed_copies_are_not_used_when_autograd_records():
    model = _model(dtype=torch.float32)
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    _logits(model, ids)                                      # packs
    assert model.lm_head.packed is not None
    logits = model.forward_full(ids)
    logits.sum().backward()
    assert model.layers[0].mlp.w_gate_up.weight.grad is not None


def test_without_onednn_batches_run_on_the_plain_weights(monkeypatch):
    import lispe_py.models.layers as layers

    model = _model(dtype=torch.float32)
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    packed = _logits(model, ids)
    monkeypatch.setattr(layers, "_onednn_packing_available", lambda: False)
    model.packed_weights = True        # forget the layout: the next call decides again
    plain = _logits(model, ids)
    assert all(m.packed is None for m in model._linears())
    assert torch.allclose(packed, plain, atol=1e-5)


@pytest.fixture
def threads():
    """Set torch's thread count for one test and restore it afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("column_major", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("split", [2, 3])
def test_a_split_product_equals_f_linear(column_major, bias, split):
    from lispe_py.models.layers import Linear

    torch.manual_seed(split)
    lin = Linear(40, 96, bias=bias)
    if column_major:
        lin.weight.data = lin.weight.data.t().contiguous().t()
    lin.split = split
    for x in (torch.randn(40), torch.randn(1, 1, 40), torch.randn(5, 40), torch.randn(2, 3, 40)):
        with torch.no_grad():
            got = lin(x)
        assert got.shape == x.shape[:-1] + (96,)
        assert torch.allclose(got, torch.nn.functional.linear(x, lin.weight, lin.bias), rtol=0, atol=1e-6)


def test_split_is_only_taken_up_to_split_rows_and_for_plain_layouts(monkeypatch):
    from lispe_py.models.layers import SPLIT_ROWS, Linear

    lin = Linear(40, 96)
    lin.split = 2
    calls = []
    real = Linear._split_forward
    monkeypatch.setattr(Linear, "_split_forward", lambda self, x: calls.append(x.shape) or real(self, x))
    f = torch.nn.functional
    with torch.no_grad():
        many, most = torch.randn(SPLIT_ROWS + 1, 40), torch.randn(SPLIT_ROWS, 40)
        assert torch.allclose(lin(many), f.linear(many, lin.weight, lin.bias), atol=1e-6)
        assert calls == []                                        # past SPLIT_ROWS: F.linear
        assert torch.allclose(lin(most), f.linear(most, lin.weight, lin.bias), atol=1e-6)
        assert calls == [(SPLIT_ROWS, 40)]
        lin.weight.data = torch.randn(96, 80)[:, ::2]              # neither row- nor column-major
        one = torch.randn(1, 40)
        assert torch.equal(lin(one), f.linear(one, lin.weight, lin.bias))
        assert calls[1:] == [(1, 40)]                             # tried, fell back


def test_split_products_carry_gradients():
    from lispe_py.models.layers import Linear

    torch.manual_seed(0)
    lin = Linear(40, 96)
    x = torch.randn(1, 40, requires_grad=True)
    torch.nn.functional.linear(x, lin.weight, lin.bias).square().sum().backward()
    expected = (x.grad.clone(), lin.weight.grad.clone(), lin.bias.grad.clone())
    x.grad = lin.weight.grad = lin.bias.grad = None
    lin.split = 2
    lin(x).square().sum().backward()
    for got, want in zip((x.grad, lin.weight.grad, lin.bias.grad), expected):
        assert torch.allclose(got, want, atol=1e-5)


def test_float32_decode_steps_split_products_over_the_threads(threads, monkeypatch):
    from lispe_py.models.layers import Linear

    model = _model(dtype=torch.float32, tie_word_embeddings=True)
    model.traced_decode = False  # count the Python calls of every step (a trace records them once)
    prompt = torch.tensor([1, 2, 3, 4])
    config = {"strategy": "greedy", "max_new_tokens": 12}
    threads(1)
    one_thread = generate(model, prompt, config)
    assert all(m.split == 0 for m in model._linears())
    threads(3)
    calls = []
    real = Linear._split_forward
    monkeypatch.setattr(Linear, "_split_forward", lambda self, x: calls.append(self) or real(self, x))
    assert torch.equal(generate(model, prompt, config), one_thread)
    splits = {m.out_features: m.split for m in model._linears()}
    assert splits == {96: 3, 48: 3, 160: 0, 120: 3}             # q/k/v, wo, gate/up (160 % 3), head
    # the 4-token prefill and 11 decode steps, each 3 split products per layer and the head
    assert len(calls) == 12 * (2 * 3 + 1)
    assert model.lm_head.weight.t().is_contiguous() and model.embed.weight is model.lm_head.weight
    model.to(torch.bfloat16)
    generate(model, prompt, config)
    assert all(m.split == 0 for m in model._linears())             # float32 only


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_batches_run_on_float32_copies_and_round_once(dtype):
    model = _model(dtype=torch.float32).to(dtype)
    prompts = [[5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
    config = {"strategy": "greedy", "max_new_tokens": 8}
    with torch.inference_mode():
        copied = _logits(model, torch.tensor(prompts))
        assert all(m.packed is not None and m.packed.dtype == torch.float32 for m in model._linears())
        x = torch.randn(3, 48, generator=torch.Generator().manual_seed(1)).to(dtype)
        wo = model.layers[0].attn.wo
        exact = (x.double() @ wo.weight.double().t()).to(dtype)   # the product, rounded once
        assert (wo(x) == exact).float().mean() > 0.95            # the copy: ~1 ulp, rarely
        tokens = generate(model, prompts, config)
        model.packed_weights = False
        assert all(m.packed is None and m._packed_copy is None for m in model._linears())
        plain = _logits(model, torch.tensor(prompts))
        assert torch.allclose(copied, plain, atol=0.05)
        assert torch.equal(generate(model, prompts, config), tokens)


def test_long_low_precision_calls_compute_in_float32():
    from lispe_py.models.layers import WIDEN_ROWS, Linear

    torch.manual_seed(0)
    lin = Linear(48, 80).to(torch.bfloat16)
    lin.widen_rows = WIDEN_ROWS
    f = torch.nn.functional
    with torch.no_grad():
        long, short = torch.randn(1, WIDEN_ROWS, 48).bfloat16(), torch.randn(1, WIDEN_ROWS - 1, 48).bfloat16()
        assert torch.equal(lin(long), f.linear(long.float(), lin.weight.float(), lin.bias.float()).bfloat16())
        assert torch.equal(lin(short), f.linear(short, lin.weight, lin.bias))       # the bf16 kernel

    model = _model(dtype=torch.float32).to(torch.bfloat16)
    prompt = torch.arange(1, 21)[None]
    _logits(model, prompt)
    assert all(m.widen_rows == WIDEN_ROWS for m in model._linears())
    model.transformers_attention = True
    _logits(model, prompt)
    assert all(m.widen_rows == 0 for m in model._linears())          # transformers' bits: its kernel
    model.transformers_attention = False
    model.to(torch.float64)
    _logits(model, prompt)
    assert all(m.widen_rows == 0 for m in model._linears())          # never narrows
