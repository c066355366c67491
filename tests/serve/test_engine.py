"""The continuous-batching engine in-process (no HTTP): requests admitted at different steps, with
prompts of different lengths, through cache growth and timeline shifts, give exactly the tokens of a
lone `generate` for each; seeded sampling is reproducible inside any batch; cancelled rows free."""
from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from lispe_py.generation import GenerationConfig, generate  # noqa: E402
from lispe_py.serve import engine as engine_mod  # noqa: E402
from lispe_py.serve.engine import Engine, Request, build_request_plan  # noqa: E402


def _request(model, ids, cfg, n=1, **kw):
    events = []
    config = GenerationConfig.from_dict(cfg)
    plan = build_request_plan(model, ids, config)
    return Request(ids, config, plan, n, events.append, **kw), events


def _run(engine, schedule, max_iterations=10_000):
    """schedule: {iteration: [requests]}; steps the engine by hand until everything is done."""
    it = 0
    pending = dict(schedule)
    while pending or engine.active or engine.pending:
        for req in pending.pop(it, []):
            engine.submit(req)
        engine._drain_waiting()
        with torch.inference_mode():
            engine._iteration()
        it += 1
        assert it < max_iterations
    return it


def _eos(model):
    e = model.special_tokens["eos_token_id"]
    return set(e if isinstance(e, (list, tuple)) else [e])


def _cut(model, row):
    """New tokens of an output row up to and including its first EOS (generate pads after it)."""
    eos = _eos(model)
    for i, t in enumerate(row):
        if t in eos:
            return row[:i + 1]
    return row


def _local(model, ids, cfg):
    out = generate(model, ids, cfg)
    return _cut(model, out[len(ids):].tolist())


@pytest.fixture()
def small_slots(monkeypatch):
    # start the cache tiny so that growth and shifts happen within a short test
    monkeypatch.setattr(engine_mod, "MIN_SLOTS", 8)


def test_staggered_greedy_requests_equal_lone_generate(tiny_model, small_slots):
    model = tiny_model
    rng = random.Random(1)
    vocab = model.config.vocab_size
    prompts = [[1] + [rng.randrange(3, vocab) for _ in range(rng.randrange(1, 40))] for _ in range(10)]
    lengths = [rng.randrange(1, 30) for _ in prompts]
    eng = Engine(model, max_batch=4, max_model_len=80)
    reqs, schedule = [], {}
    for i, (p, m) in enumerate(zip(prompts, lengths)):
        req, _ = _request(model, p, {"max_length": m})
        reqs.append(req)
        schedule.setdefault(rng.randrange(0, 25), []).append(req)
    _run(eng, schedule)
    assert eng.slots > 8                  # the cache grew while requests ran
    for p, m, req in zip(prompts, lengths, reqs):
        want = _local(model, p, {"max_length": m})
        assert req.outputs[0].tokens == want
        assert req.outputs[0].finish_reason == ("length" if len(want) == m and want[-1] not in _eos(model)
                                                else "stop")


def test_timeline_shifts_left_and_right(tiny_model, small_slots):
    """With max_model_len reached, the shared timeline shifts left; a long prompt arriving when the
    timeline is short shifts the running rows right. Both keep every row exact."""
    model = tiny_model
    rng = random.Random(7)
    eng = Engine(model, max_batch=3, max_model_len=48)
    short = [1, 5, 6]
    long_prompt = [1] + [rng.randrange(3, 300) for _ in range(30)]
    a, _ = _request(model, short, {"max_length": 44})       # runs long: forces left shifts at 48 slots
    b, _ = _request(model, long_prompt, {"max_length": 10})  # longer than the timeline when it arrives
    c, _ = _request(model, [1, 9, 9, 9], {"max_length": 40})
    shifts = []
    orig = eng._shift

    def spy(d):
        shifts.append(d)
        orig(d)
    eng._shift = spy
    _run(eng, {0: [a], 2: [b], 20: [c]})
    assert any(d > 0 for d in shifts) and any(d < 0 for d in shifts)
    for req, p, m in ((a, short, 44), (b, long_prompt, 10), (c, [1, 9, 9, 9], 40)):
        assert req.outputs[0].tokens == _local(model, p, {"max_length": m})


def test_seeded_sampling_is_the_same_alone_and_in_a_batch(tiny_model):
    model = tiny_model
    cfg = {"strategy": "sample", "temperature": 1.0, "top_k": 0, "seed": 11, "max_length": 12}
    prompt = [1, 40, 41, 42]
    want = generate(model, [prompt], {**cfg, "num_return_sequences": 3})[:, len(prompt):].tolist()
    eng = Engine(model, max_batch=8)
    others = [_request(model, [1, 7 + i, 8], {**cfg, "seed": i})[0] for i in range(3)]
    req, _ = _request(model, prompt, cfg, n=3)
    _run(eng, {0: others[:2], 3: [req], 4: others[2:]})
    assert len({tuple(o.tokens) for o in req.outputs}) > 1     # the copies really sample
    for j, o in enumerate(req.outputs):
        assert o.tokens == _cut(model, want[j])


def test_steps_mixing_plain_greedy_requests_with_processed_and_sampled_ones(tiny_model, small_slots):
    """One argmax over the step serves the plain greedy requests only where every request of the step is
    one; steps that also run a logits processor, a stop criterion or sampling pick each request's
    tokens its own way. Every request still gets what it would get alone."""
    model = tiny_model
    configs = [{"max_length": 9}, {"max_length": 9, "repetition_penalty": 1.7},
               {"max_length": 9, "stop_when": lambda text: len(text) > 6},
               {"strategy": "sample", "temperature": 0.8, "seed": 5, "max_length": 9},
               {"max_length": 9, "num_beams": 1, "no_repeat_ngram_size": 2}]
    prompts = [[1, 30 + i, 31, 32 + 2 * i] for i in range(len(configs))]
    eng = Engine(model, max_batch=8)
    reqs = [_request(model, p, c)[0] for p, c in zip(prompts, configs)]
    assert reqs[0].plan.greedy and not len(reqs[0].plan.chain) and not reqs[0].plan.stopping
    _run(eng, {0: reqs[:1], 2: reqs[1:3], 3: reqs[3:]})
    assert reqs[0].history is None and reqs[1].history is not None  # only where something reads it
    for req, p, c in zip(reqs, prompts, configs):
        assert req.outputs[0].tokens == _local(model, p, c), c


def test_cancel_frees_rows(tiny_model):
    model = tiny_model
    eng = Engine(model, max_batch=2)
    a, ev_a = _request(model, [1, 5, 6], {"max_length": 200, "eos_token_id": 0}, ignore_eos=True)
    b, ev_b = _request(model, [1, 7, 8], {"max_length": 5})
    c, ev_c = _request(model, [1, 9], {"max_length": 5})
    eng.submit(a)
    eng.submit(b)
    eng.submit(c)          # waits: two rows only
    eng._drain_waiting()
    with torch.inference_mode():
        for _ in range(3):
            eng._iteration()
        assert len(eng.rows) == 2 and c in eng.pending
        a.cancel()
        for _ in range(20):
            eng._iteration()
    assert a.outputs[0].finish_reason == "abort"
    assert ev_a[-1] == ("done", None)
    assert c.finished and b.finished
    assert not eng.rows and eng.cur == 0
    assert eng.metrics.finished.get("abort") == 1


def test_stop_strings_cut_the_text_and_end_the_row(tiny_model):
    model = tiny_model
    tok = model.tokenizer
    prompt = tok.encode("Hello world")
    full = _local(model, prompt, {"max_length": 30})
    text = tok.decode(full, skip_special_tokens=True)
    if len(text) < 6:
        pytest.skip("the random model ends too early to pick a stop string")
    stop = text[3:5]
    req, _ = _request(model, prompt, {"max_length": 30, "stop": [stop]})
    _run(Engine(model), {0: [req]})
    o = req.outputs[0]
    assert o.finish_reason == "stop"
    assert o.text == text[:text.find(stop)]
    req2, _ = _request(model, prompt, {"max_length": 30, "stop": [stop]}, include_stop=True)
    _run(Engine(model), {0: [req2]})
    assert req2.outputs[0].text == text[:text.find(stop) + len(stop)]


@pytest.mark.parametrize("extra", [
    {"arch": "gpt2"},                                    # learned absolute positions: position_ids
    {"arch": "llama", "sliding_window": 12},             # a sliding window counted in slots
    {"arch": "llama", "num_kv_heads": 1, "attention_bias": True},
], ids=["gpt2", "sliding-window", "mqa-bias"])
def test_other_architectures_staggered(extra, small_slots):
    """Random models without a tokenizer (ids only): staggered requests equal lone generate."""
    from lispe_py.models import create_model

    config = {"vocab_size": 97, "hidden_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 64, "init_std": 0.3, "seed": 3,
              "eos_token_id": 96, **extra}
    model = create_model(config)
    rng = random.Random(5)
    eng = Engine(model, max_batch=3, max_model_len=64)
    reqs, schedule = [], {}
    for i in range(7):
        p = [rng.randrange(0, 96) for _ in range(rng.randrange(1, 20))]
        m = rng.randrange(1, 30)
        req, _ = _request(model, p, {"max_length": m})
        reqs.append((req, p, m))
        schedule.setdefault(rng.randrange(0, 20), []).append(req)
    _run(eng, schedule)
    for req, p, m in reqs:
        assert req.outputs[0].tokens == _local(model, p, {"max_length": m})


@pytest.mark.parametrize("variant", ["bfloat16", "int8", "int4"])
def test_lone_requests_in_other_dtypes_equal_generate(tiny_folder, variant):
    """A request alone takes the very calls of a lone `generate` (prefill, then unmasked steps), so it
    is exact in any dtype or quantization; two at once still finish with their own lengths."""
    from lispe_py.models import load_model

    if variant == "bfloat16":
        model = load_model(tiny_folder, dtype="bfloat16")
    else:
        model = load_model(tiny_folder, quantize=variant)
    tok = model.tokenizer
    for text, m in (("Hello world", 12), ("The quick brown", 7)):
        ids = tok.encode(text)
        req, _ = _request(model, ids, {"max_length": m})
        _run(Engine(model), {0: [req]})
        assert req.outputs[0].tokens == _local(model, ids, {"max_length": m})
    a, _ = _request(model, tok.encode("yes no"), {"max_length": 9}, ignore_eos=True)
    b, _ = _request(model, tok.encode("def f(x):"), {"max_length": 4}, ignore_eos=True)
    _run(Engine(model), {0: [a], 2: [b]})
    assert [len(a.outputs[0].tokens), len(b.outputs[0].tokens)] == [9, 4]


def test_batched_prefill_stays_within_the_quantized_kernels_rows(tiny_folder):
    from lispe_py.models import load_model
    from lispe_py.models.quantize import NATIVE_MAX_ROWS

    model = load_model(tiny_folder, quantize="int4")
    eng = Engine(model, max_batch=8)
    assert eng.prefill_rows == NATIVE_MAX_ROWS
    sizes = []
    orig = eng._start

    def spy(batch):
        sizes.append([len(r.prompt) for r in batch])
        orig(batch)
    eng._start = spy
    prompts = [[1] + [5 + (i + j) % 300 for j in range(29)] for i in range(5)]   # 30 tokens each
    reqs = [_request(model, p, {"max_length": 3})[0] for p in prompts]
    _run(eng, {0: reqs})
    assert all(max(s) * len(s) <= NATIVE_MAX_ROWS for s in sizes) and sum(len(s) for s in sizes) == 5
    assert max(len(s) for s in sizes) == 2
    for req, p in zip(reqs, prompts):
        assert req.outputs[0].tokens == _local(model, p, {"max_length": 3})


def test_the_worker_traces_the_steps_before_the_first_request(tiny_folder):
    """A lone short request (fewer steps than a generation alone would trace for) and a batch of
    left-padded rows run traced steps made at start-up, and give the tokens of a lone generate."""
    from lispe_py.models import load_model

    model = load_model(tiny_folder, quantize="int4")
    model.prompt_cache = False
    eng = Engine(model, max_batch=4)
    eng._warm_up()
    kinds = {key[0] for key in model._graphs}
    assert "trace" in kinds
    # (the padded-rows trace where the model runs the native decode attention: tests/test_decode_step.py)
    padded = model._rows_trace_applies(2, torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 8, dtype=torch.bool))
    assert ("rows" in kinds) == padded
    traced = set(model._graphs)
    reqs = [_request(model, p, {"max_length": 4})[0] for p in ([1, 5, 9], [1, 7, 8, 9, 10, 11], [1, 4])]
    _run(eng, {0: reqs[:1], 2: reqs[1:]})
    assert set(model._graphs) == traced  # the steps ran on the traces made at start-up, none new
    for req, p in zip(reqs, ([1, 5, 9], [1, 7, 8, 9, 10, 11], [1, 4])):
        assert req.outputs[0].tokens == _local(model, p, {"max_length": 4})


def test_warming_up_a_short_context_says_nothing(tiny_folder):
    import warnings

    from lispe_py.models import load_model

    model = load_model(tiny_folder, quantize="int4")
    eng = Engine(model, max_batch=2, max_model_len=40)  # shorter than the engine's first cache size
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eng._warm_up()
    assert eng.slots <= 40 and any(key[0] == "trace" for key in model._graphs)
