"""Generation from prompt embeddings (`inputs_embeds`), against transformers' generate(inputs_embeds=...):
the output holds only the new tokens and the processors see only those."""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lispe_py.generation import GenerationError, generate  # noqa: E402
from lispe_py.models import model_from_hf  # noqa: E402

HIDDEN = 64


@pytest.fixture(scope="module")
def pair():
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   eos_token_id=None, pad_token_id=0, bos_token_id=1)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.15)
    return hf, model_from_hf(hf)


@pytest.fixture(scope="module")
def embeds():
    return torch.randn(2, 5, HIDDEN, generator=torch.Generator().manual_seed(4)) * 0.5


def _hf(hf, embeds, **kw):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf.generate(inputs_embeds=embeds, eos_token_id=None, pad_token_id=0, **kw)


@pytest.mark.parametrize("ours_cfg, hf_kw", [
    ({}, {}),
    ({"repetition_penalty": 1.3, "no_repeat_ngram_size": 2}, {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2}),
    ({"strategy": "beam_search", "num_beams": 3}, {"num_beams": 3}),
])
def test_embeddings_prompt_matches_transformers(pair, embeds, ours_cfg, hf_kw):
    hf, ours = pair
    want = _hf(hf, embeds, max_new_tokens=8, do_sample=False, **hf_kw)
    got = generate(ours, None, {"max_length": 8, "eos_token_id": None, **ours_cfg}, inputs_embeds=embeds)
    assert got.tolist() == want.tolist()


def test_embeddings_of_the_ids_continue_like_the_ids(pair):
    """Token embeddings as the prompt give the ids' continuation (new tokens only)."""
    hf, ours = pair
    ids = torch.tensor([[5, 17, 33, 2, 60]])
    from_ids = generate(ours, ids, {"max_length": 6, "eos_token_id": None})
    with torch.no_grad():
        emb = ours.embed(ids)
    from_embeds = generate(ours, None, {"max_length": 6, "eos_token_id": None}, inputs_embeds=emb)
    assert from_embeds.tolist() == from_ids[:, 5:].tolist()


def test_one_row_as_2d_embeddings_gives_1d_output_and_streams(pair, embeds):
    _, ours = pair
    seen = []
    out = generate(ours, None, {"max_length": 4, "eos_token_id": None, "callback": lambda t, p: seen.append(t)},
                   inputs_embeds=embeds[0])
    assert out.dim() == 1 and out.tolist() == seen
    again = generate(ours, None, {"max_length": 4, "eos_token_id": None}, inputs_embeds=embeds[:1])
    assert again.tolist() == [seen]


def test_seeded_sampling_rows_equal_alone_and_in_a_batch(pair, embeds):
    _, ours = pair
    cfg = {"max_length": 6, "eos_token_id": None, "strategy": "sample", "seed": 3, "num_return_sequences": 2}
    both = generate(ours, None, cfg, inputs_embeds=embeds)
    first = generate(ours, None, cfg, inputs_embeds=embeds[:1])
    assert both.shape == (4, 6) and both[:2].tolist() == first.tolist()


@pytest.mark.parametrize("value, message", [
    (torch.zeros(1, 3, HIDDEN - 1), r"inputs_embeds must be \[batch, seq, 64\], got \[1, 3, 63\]"),
    (torch.zeros(1, 0, HIDDEN), r"must be \[batch, seq, 64\]"),
    (torch.zeros(1, 3, HIDDEN, dtype=torch.long), "must be a float tensor"),
    ([[0.0] * HIDDEN], "must be a float tensor"),
    (torch.full((1, 2, HIDDEN), float("nan")), "NaN or infinite"),
])
def test_bad_embeddings_are_generation_errors(pair, value, message):
    _, ours = pair
    with pytest.raises(GenerationError, match=message):
        generate(ours, None, {"max_length": 2}, inputs_embeds=value)


def test_ids_and_embeddings_together_is_an_error(pair, embeds):
    _, ours = pair
    with pytest.raises(GenerationError, match="not both"):
        generate(ours, [1, 2], {"max_length": 2}, inputs_embeds=embeds)
