"""Our decoders against transformers on tiny random models: same weights -> same logits (<= 1e-4 fp32),
full forward, cached incremental decode, and left-padded batches; plus cache, dtype and config behaviour."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lispe_py.models import ModelConfig, ModelError, create_model, model_from_hf  # noqa: E402

torch.set_flush_denormal(True)
TOL = 1e-4
VOCAB = 96

# Every supported Hugging Face architecture, tiny, with the features that make it differ from Llama.
HF_CONFIGS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=2, attention_bias=True, mlp_bias=True)),
    "llama3_rope": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(
            num_key_value_heads=1,
            rope_parameters=dict(
                rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                high_freq_factor=4.0, original_max_position_embeddings=16,
            ),
        ),
    ),
    "smollm_tied": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(num_key_value_heads=2, sliding_window=5)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_key_value_heads=2)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(num_key_value_heads=2, head_dim=24)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=64, n_layer=2, n_head=4, n_positions=64)),
}
COMMON = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=64,
)


def _build_hf(name: str):
    config_cls, model_cls, extra = HF_CONFIGS[name]
    kwargs = dict(vocab_size=VOCAB, **extra) if name == "gpt2" else {**COMMON, **extra}
    config = getattr(transformers, config_cls)(**kwargs)
    config._attn_implementation = "sdpa"
    torch.manual_seed(1)
    hf = getattr(transformers, model_cls)(config).eval()
    with torch.no_grad():  # randomize everything (norm weights and biases too) so every path is exercised
        for p in hf.parameters():
            p.normal_(0.0, 0.15)
    return hf


@pytest.fixture(scope="module", params=sorted(HF_CONFIGS))
def pair(request):
    hf = _build_hf(request.param)
    return request.param, hf, model_from_hf(hf)


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, VOCAB, (2, 11), generator=torch.Generator().manual_seed(3))


def test_full_forward_matches(pair, ids):
    name, hf, ours = pair
    with torch.no_grad():
        ref = hf(ids).logits
        got = ours.forward_full(ids)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    assert (ref - got).abs().max().item() <= TOL, name


def test_cached_decode_matches(pair, ids):
    name, hf, ours = pair
    with torch.no_grad():
        ref = hf(ids).logits
        ours.setup_cache(2, 16)
        pieces = [ours(ids[:, :4], torch.arange(4))]
        for i in range(4, ids.shape[1]):
            pieces.append(ours(ids[:, i : i + 1], torch.tensor([i])))
        last = ours(ids[:, :7], torch.arange(7), last_only=True)  # a new prefill reuses the cache
    got = torch.cat(pieces, dim=1)
    assert (ref - got).abs().max().item() <= TOL, name
    assert last.shape == (2, 1, VOCAB)
    assert (last[:, 0] - ref[:, 6]).abs().max().item() <= TOL


def test_inputs_embeds_match_transformers(pair, ids):
    """Prompt embeddings instead of ids: full forward, and a cached prefill continued by token ids."""
    name, hf, ours = pair
    emb = torch.randn(2, 6, hf.config.hidden_size, generator=torch.Generator().manual_seed(5)) * 0.3
    with torch.no_grad():
        ref = hf(inputs_embeds=emb).logits
        full = ours.forward_full(None, inputs_embeds=emb)
        ours.setup_cache(2, 16)
        first = ours.prefill(None, inputs_embeds=emb)
        nxt = ours(ids[:, :1], torch.tensor([6]))[:, 0]
        ref_next = hf(inputs_embeds=torch.cat([emb, hf.get_input_embeddings()(ids[:, :1])], 1)).logits[:, -1]
        same = ours.forward_full(None, inputs_embeds=hf.get_input_embeddings()(ids))
    assert (ref - full).abs().max().item() <= TOL, name
    assert (ref[:, -1] - first).abs().max().item() <= TOL, name
    assert (ref_next - nxt).abs().max().item() <= TOL, name
    assert (same - ours.forward_full(ids)).abs().max().item() <= TOL, name


def test_inputs_embeds_errors():
    model = create_model(dict(arch="llama", vocab_size=50, hidden_size=32, intermediate_size=40, num_layers=1,
                              num_heads=2, num_kv_heads=1, max_position_embeddings=32))
    model.setup_cache(1, 8)
    with pytest.raises(ModelError, match="either input_ids or inputs_embeds"):
        model.forward_full(None)
    with pytest.raises(ModelError, match=r"inputs_embeds must be \[batch, seq, 32\], got \[1, 3, 31\]"):
        model.prefill(None, inputs_embeds=torch.zeros(1, 3, 31))


def test_left_padded_batch_matches(pair, ids):
    name, hf, ours = pair
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    kv_mask = torch.zeros(2, 16, dtype=torch.bool)
    kv_mask[:, : ids.shape[1]] = mask.bool()
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, position_ids=position_ids).logits
        alone = hf(ids[1:, 4:]).logits
        full = ours.forward_full(ids, attention_mask=mask)
        ours.setup_cache(2, 16)
        pieces = [ours(ids[:, :6], torch.arange(6), position_ids=position_ids[:, :6], kv_mask=kv_mask)]
        for i in range(6, ids.shape[1]):
            pieces.append(ours(ids[:, i : i + 1], torch.tensor([i]), position_ids[:, i : i + 1], kv_mask))
    got = torch.cat(pieces, dim=1)
    real = mask.bool()
    assert (ref - full)[real].abs().max().item() <= TOL, name
    assert (ref - got)[real].abs().max().item() <= TOL, name
    assert (alone[0] - got[1, 4:]).abs().max().item() <= TOL, name  # a padded row equals the row alone
    assert torch.isfinite(got).all()


def test_static_decode_step_equals_the_decode_step(pair, ids):
    """The step CUDA graphs capture (fixed shapes: every cache slot, a mask, an index_copy_ write)
    gives the logits of the ordinary decode step, left padding and sliding windows included."""
    name, hf, ours = pair
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    slots = 16
    kv_mask = torch.zeros(2, slots, dtype=torch.bool)
    kv_mask[:, : ids.shape[1]] = mask.bool()
    kv_mask[:, ids.shape[1]:] = True
    with torch.no_grad():
        ours.setup_cache(2, slots)
        ours(ids[:, :5], torch.arange(5), position_ids=position_ids[:, :5], kv_mask=kv_mask)
        for i in range(5, ids.shape[1]):
            step = ours(ids[:, i:i + 1], torch.tensor([i]), position_ids[:, i:i + 1], kv_mask, last_only=True)[:, -1]
            static = ours._static_step(ids[:, i], torch.tensor([i]), position_ids[:, i:i + 1], kv_mask)
            assert (step - static).abs().max().item() <= 1e-5, (name, i)
            assert torch.equal(ours.decode(ids[:, i], i, position_ids[:, i:i + 1], kv_mask), step)
        ours.setup_cache(1, slots)  # one row, no mask
        ours(ids[:1, :5], torch.arange(5))
        step = ours(ids[:1, 5:6], torch.tensor([5]), last_only=True)[:, -1]
        static = ours._static_step(ids[:1, 5], torch.tensor([5]), None, None)
    assert (step - static).abs().max().item() <= 1e-5, name


def test_decode_graphs_kept_are_bounded_and_least_recently_used_go_first():
    from lispe_py.models import layers

    model = create_model(ModelConfig(vocab_size=40, hidden_size=32, num_layers=1, num_heads=2))
    made = []
    def get(key):
        return model._graph_for(key, lambda: made.append(key) or f"graph {key}")
    for key in range(layers.MAX_DECODE_GRAPHS):
        assert get(key) == f"graph {key}"
    assert get(0) == "graph 0" and len(made) == layers.MAX_DECODE_GRAPHS  # reused, now the most recent
    get("new")  # one too many: key 1, the least recently used, goes
    assert 1 not in model._graphs and 0 in model._graphs and len(model._graphs) == layers.MAX_DECODE_GRAPHS
    model.to(torch.float64)
    assert not model._graphs


def test_a_failed_graph_capture_falls_back_to_op_by_op_steps(monkeypatch):
    """Where CUDA cannot capture the step, decoding warns once and goes on op by op, same logits.
    (Run on the CPU by pretending the graph path applies and making the capture fail.)"""
    from lispe_py.models import layers

    model = create_model(ModelConfig(vocab_size=40, hidden_size=32, num_layers=1, num_heads=2, seed=1))
    model.setup_cache(1, 8)
    with torch.no_grad():
        model(torch.tensor([[3, 4]]), torch.arange(2))
        expected = model(torch.tensor([[5]]), torch.tensor([2]), last_only=True)[:, -1]
    def refuse(self, device):
        raise RuntimeError("operation not permitted when stream is capturing")
    monkeypatch.setattr(layers.DecoderModel, "_graphs_apply", lambda self: self.cuda_graphs)
    monkeypatch.setattr(layers._DecodeGraph, "__init__", lambda self, *a: setattr(self, "graph", None))
    monkeypatch.setattr(layers._DecodeGraph, "run", lambda self, *a: refuse(self, None))
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="CUDA graph capture of the decode step failed"):
        got = model.decode(torch.tensor([5]), 2)
    assert torch.equal(got, expected) and not model.cuda_graphs and not model._graphs
    with torch.no_grad():
        assert torch.equal(model.decode(torch.tensor([5]), 2), expected)  # no second warning: op by op


def test_reorder_cache(pair, ids):
    name, hf, ours = pair
    with torch.no_grad():
        ours.setup_cache(2, 16)
        ours(ids[:, :5], torch.arange(5))
        ours.reorder_cache(torch.tensor([1, 1]))
        step = ours(ids[1:, 5:6].expand(2, 1), torch.tensor([5]))
        ref = hf(ids[1:, :6]).logits[:, -1]
    assert (step[0, 0] - ref[0]).abs().max().item() <= TOL
    assert (step[1, 0] - ref[0]).abs().max().item() <= TOL


def test_config_translation_and_parameter_count(pair):
    name, hf, ours = pair
    assert ours.num_parameters() == sum(p.numel() for p in hf.parameters())
    assert ours.arch == ("gpt2" if name == "gpt2" else "llama")
    assert ours.config.vocab_size == VOCAB


# ----- our own behaviour (no oracle needed) -----

def test_create_model_is_seeded_and_reproducible():
    cfg = dict(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, seed=7)
    a, b = create_model(cfg), create_model(cfg)
    c = create_model({**cfg, "seed": 8})
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        la, lb, lc = a.forward_full(ids), b.forward_full(ids), c.forward_full(ids)
    assert torch.equal(la, lb)
    assert not torch.equal(la, lc)
    assert la.shape == (1, 4, 50)


def test_cache_must_be_set_up_and_large_enough():
    model = create_model(ModelConfig(vocab_size=40, hidden_size=32, num_layers=1, num_heads=2))
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ModelError, match="setup_cache"):
        model(ids, torch.arange(3))
    model.setup_cache(1, 4)
    with pytest.raises(ModelError, match="does not fit"):
        model(torch.tensor([[1, 2, 3, 4, 5]]), torch.arange(5))
    with pytest.raises(ModelError, match="does not fit"):
        model(torch.tensor([[1], [2]]), torch.tensor([0]))


def test_setup_cache_reuses_buffers_and_grows():
    model = create_model(ModelConfig(vocab_size=40, hidden_size=32, num_layers=1, num_heads=2))
    model.setup_cache(2, 8)
    k = model.layers[0].attn.kv_cache.k
    model.setup_cache(1, 6)
    assert model.layers[0].attn.kv_cache.k is k
    model.setup_cache(3, 8)
    assert model.layers[0].attn.kv_cache.k.shape[0] == 3
    # A smaller batch after a larger one gives the same logits.
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        assert (model(ids, torch.arange(3)) - model.forward_full(ids)).abs().max() <= TOL


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dtype_switch_keeps_cache_and_rope_consistent(dtype):
    cfg = ModelConfig(vocab_size=64, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, seed=2)
    model = create_model(cfg)
    ids = torch.tensor([[3, 9, 27, 17, 5]])
    with torch.no_grad():
        model.setup_cache(1, 8)
        ref = model.forward_full(ids)
        model.to(dtype)
        assert model.layers[0].attn.kv_cache.k.dtype == dtype
        assert model._cos.dtype == dtype
        low = model(ids, torch.arange(5))
        assert low.dtype == torch.float32
        assert (low - ref).abs().max() < 0.1
        model.to(torch.float32)
        model.setup_cache(1, 8)
        back = model(ids, torch.arange(5))
    # Back in float32 the RoPE tables are rebuilt exactly (weights were rounded by the round trip).
    rebuilt = create_model(cfg)
    rebuilt._build_rope(model._rope_len)
    assert torch.equal(model._cos, rebuilt._cos)
    assert (back - ref).abs().max() < 0.1


def test_config_errors():
    with pytest.raises(ModelError, match="unsupported architecture"):
        ModelConfig(arch="mamba")
    with pytest.raises(ModelError, match="unknown key"):
        ModelConfig.from_dict({"hidden": 3})
    with pytest.raises(ModelError, match="multiple of num_kv_heads"):
        ModelConfig(num_heads=4, num_kv_heads=3)
    with pytest.raises(ModelError, match="unsupported model_type"):
        ModelConfig.from_hf_config({"model_type": "bert"})
    with pytest.raises(ModelError, match="rope scaling"):
        ModelConfig.from_hf_config(
            {**COMMON, "model_type": "llama", "rope_scaling": {"type": "yarn", "factor": 2.0}}
        )


def test_config_from_old_style_hf_dict():
    cfg = ModelConfig.from_hf_config(
        {
            **COMMON, "model_type": "llama", "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192},
        }
    )
    assert cfg.rope_theta == 500000.0 and cfg.rope_scaling["rope_type"] == "llama3"
    assert cfg.num_kv_heads == 4 and cfg.head_dim == 16 and cfg.norm_eps == 1e-5
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", ["llama", "qwen3"])
def test_bfloat16_decode_is_bit_identical_with_transformers_attention(name):
    hf = _build_hf(name)
    inv_freq = hf.model.rotary_emb.inv_freq.clone()
    hf.to(torch.bfloat16)
    hf.model.rotary_emb.inv_freq = inv_freq  # float32, as from_pretrained(dtype=bfloat16) leaves it
    ours = model_from_hf(hf)
    assert ours.dtype == torch.bfloat16 and not ours.transformers_attention
    ours.transformers_attention = True
    prompt = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = hf.generate(prompt, max_new_tokens=10, do_sample=False, output_logits=True,
                          return_dict_in_generate=True, pad_token_id=0)
        ours.setup_cache(1, 16)
        logits = ours(prompt, torch.arange(6), last_only=True)
        steps = [logits[:, -1]]
        for i, tok in enumerate(out.sequences[0, 6:-1].tolist()):
            steps.append(ours(torch.tensor([[tok]]), torch.tensor([6 + i]))[:, -1])
    for step, ref in zip(steps, out.logits):
        assert torch.equal(step, ref.float())
    assert [int(s.argmax()) for s in steps] == out.sequences[0, 6:].tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_rmsnorm_is_bit_identical_with_transformers_in_every_dtype(dtype):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from lispe_py.models.layers import RMSNorm

    gen = torch.Generator().manual_seed(0)
    ours, ref = RMSNorm(576, 1e-5), LlamaRMSNorm(576, eps=1e-5)
    with torch.no_grad():
        ours.weight.copy_(torch.rand(576, generator=gen) * 2)
        ref.weight.copy_(ours.weight)
    ours.to(dtype), ref.to(dtype)
    x = (torch.randn(4, 7, 576, generator=gen) * torch.logspace(-2, 2, 7)[:, None]).to(dtype)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
