"""The decode loops against transformers' generate() on tiny random Llama models, plus the behaviours
generation.md asks for (ragged batches, seeds, stop strings, streaming, errors)."""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from lispe_py.generation import (GenerationConfig, GenerationError, build_chain,  # noqa: E402
                                 generate, generate_batch, generate_text, sequence_logprobs, stream)
from lispe_py.models import model_from_hf  # noqa: E402

VOCAB = 300
EOS = 2
PAD = 3   # not 0: transformers' beam search fills with EOS when pad is 0 (`pad or eos`)


class ByteBPE:
    """A real byte-level BPE tokenizer (tokenizers library) trained on a few sentences, with the
    methods the generation layer uses (those of lispe_py.models.tokenizer.Tokenizer)."""

    def __init__(self) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<pad>", "<s>", "</s>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        text = ["the cat sat on the mat. the dog ate the bone; é è ü 東京 is a city.",
                "a stop here: END. then more words follow the stop, and the end."] * 20
        tok.train_from_iterator(text, trainer)
        self.tok = tok
        self.vocab_size = tok.get_vocab_size()

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)


def _tiny_llama(seed: int, eos: int = EOS, layers: int = 2):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=1, eos_token_id=eos, pad_token_id=PAD)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    # larger logits than the default init, so that EOS and repeats actually happen
    with torch.no_grad():
        hf.lm_head.weight.mul_(8)
    return hf



@pytest.fixture(scope="module")
def pair():
    hf = _tiny_llama(0)
    ours = model_from_hf(hf)
    ours.tokenizer = ByteBPE()
    return hf, ours


def _frequent_token(hf, prompt) -> int:
    """A token greedy decoding produces a few steps in: used as EOS so that rows really finish."""
    out = hf.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=PAD)
    return int(out[0, prompt.shape[1] + 4])


def _prompts(n: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (n, length), generator=g)


def _hf_generate(hf, ids, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf.generate(ids, pad_token_id=PAD, **kw)


# ------------------------------------------------------------------------- greedy vs transformers
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("extra", [
    {},
    {"repetition_penalty": 1.5},
    {"no_repeat_ngram_size": 2},
    {"min_new_tokens": 10},
])
def test_greedy_matches_transformers(pair, seed, extra):
    hf, ours = pair
    ids = _prompts(1, 6, seed)
    eos = _frequent_token(hf, ids)
    theirs = _hf_generate(hf, ids, max_new_tokens=16, do_sample=False, eos_token_id=eos, **extra)
    mine = generate(ours, ids, max_length=16, eos_token_id=eos, pad_token_id=PAD, **extra)
    assert mine.tolist() == theirs.tolist()


def test_greedy_stops_at_eos_and_keeps_it(pair):
    hf, ours = pair
    ids = _prompts(1, 6, 1)
    eos = _frequent_token(hf, ids)
    out = generate(ours, ids[0], max_length=30, eos_token_id=eos)
    assert out.dim() == 1 and int(out[-1]) == eos and len(out) <= 6 + 5


def test_greedy_bad_words_matches_transformers(pair):
    hf, ours = pair
    ids = _prompts(1, 6, 4)
    free = _hf_generate(hf, ids, max_new_tokens=12, do_sample=False)[0, 6:].tolist()
    bad = [[free[0]], [free[2], free[3]]]
    theirs = _hf_generate(hf, ids, max_new_tokens=12, do_sample=False, bad_words_ids=bad)
    mine = generate(ours, ids, max_length=12, bad_words=[free[0], [free[2], free[3]]], pad_token_id=PAD)
    assert mine.tolist() == theirs.tolist()
    assert free[0] not in mine[0, 6:].tolist()


def test_temperature_zero_and_do_sample_false_are_greedy(pair):
    _, ours = pair
    ids = _prompts(1, 5, 7)
    greedy = generate(ours, ids, max_length=10)
    assert torch.equal(generate(ours, ids, max_length=10, strategy="sample", temperature=0), greedy)
    assert torch.equal(generate(ours, ids, max_length=10, strategy="top_k", do_sample=False), greedy)


def test_do_sample_false_is_argmax_of_filtered_scores(pair):
    """typical_p can drop the most likely token: argmax must then come from the filtered scores."""
    _, ours = pair
    ids = _prompts(1, 5, 8)
    cfg = GenerationConfig.from_dict({"strategy": "sample", "typical_p": 0.2, "top_k": 0,
                                      "do_sample": False, "max_length": 1, "eos_token_id": 299})
    out = generate(ours, ids, cfg)
    with torch.no_grad():
        logits = ours.forward_full(ids)[:, -1]
    chain = build_chain(cfg, prompt_length=5, sampling=True)
    assert int(out[0, -1]) == int(chain(ids, logits).argmax())


# ------------------------------------------------------------------------- beam search vs transformers
BEAM_CASES = [
    (2, 1.0, False, 1),
    (2, 0.6, True, 2),
    (4, 1.0, False, 4),
    (4, 2.0, "never", 2),
    (4, -0.5, True, 1),
    (4, 0.0, "never", 3),
    (3, 1.5, False, 2),
]


@pytest.mark.parametrize("num_beams, length_penalty, early_stopping, nrs", BEAM_CASES)
@pytest.mark.parametrize("seed", [1, 5])
def test_beam_search_matches_transformers(pair, num_beams, length_penalty, early_stopping, nrs, seed):
    hf, ours = pair
    ids = _prompts(1, 6, seed)
    eos = _frequent_token(hf, ids)
    kw = dict(num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping,
              num_return_sequences=nrs, eos_token_id=eos)
    theirs = _hf_generate(hf, ids, max_new_tokens=14, do_sample=False, **kw)
    mine = generate(ours, ids, max_length=14, strategy="beam_search", pad_token_id=PAD, **kw)
    assert mine.tolist() == theirs.tolist()


def test_beam_search_batch_and_processors_match_transformers(pair):
    hf, ours = pair
    ids = _prompts(3, 5, 11)
    eos = _frequent_token(hf, ids[:1])
    kw = dict(num_beams=4, length_penalty=1.3, repetition_penalty=1.3, no_repeat_ngram_size=3,
              min_new_tokens=3, eos_token_id=eos, num_return_sequences=2)
    theirs = _hf_generate(hf, ids, max_new_tokens=12, do_sample=False, **kw)
    mine = generate(ours, ids, max_length=12, strategy="beam_search", pad_token_id=PAD, **kw)
    assert mine.tolist() == theirs.tolist()


def test_beam_search_ragged_batch_matches_transformers(pair):
    hf, ours = pair
    a, b = _prompts(1, 7, 12)[0].tolist(), _prompts(1, 3, 13)[0].tolist()
    ids = torch.tensor([a, [PAD] * 4 + b])
    mask = torch.tensor([[1] * 7, [0] * 4 + [1] * 3])
    theirs = _hf_generate(hf, ids, attention_mask=mask, max_new_tokens=10, do_sample=False, num_beams=3)
    mine = generate(ours, [a, b], max_length=10, strategy="beam_search", num_beams=3, pad_token_id=PAD)
    assert mine.tolist() == theirs.tolist()


# ------------------------------------------------------------------------- batches
def test_ragged_batch_rows_equal_rows_alone(pair):
    hf, ours = pair
    prompts = [_prompts(1, n, 20 + n)[0].tolist() for n in (3, 8, 5, 1)]
    eos = _frequent_token(hf, torch.tensor([prompts[1]]))
    batch = generate(ours, prompts, max_length=12, eos_token_id=eos, pad_token_id=PAD,
                     repetition_penalty=1.2, no_repeat_ngram_size=3)
    width = max(len(p) for p in prompts)
    finished_early = False
    for row, p in zip(batch.tolist(), prompts):
        alone = generate(ours, p, max_length=12, eos_token_id=eos, pad_token_id=PAD,
                         repetition_penalty=1.2, no_repeat_ngram_size=3).tolist()
        new = row[width:]
        assert row[:width] == [PAD] * (width - len(p)) + p          # left padding in the output
        assert new[:len(alone) - len(p)] == alone[len(p):]
        rest = new[len(alone) - len(p):]
        assert rest == [PAD] * len(rest)                                # finished rows padded
        finished_early |= bool(rest)
    assert finished_early


def test_ragged_batch_matches_transformers_with_attention_mask(pair):
    hf, ours = pair
    a, b = _prompts(1, 6, 30)[0].tolist(), _prompts(1, 2, 31)[0].tolist()
    ids = torch.tensor([a, [PAD] * 4 + b])
    mask = torch.tensor([[1] * 6, [0] * 4 + [1] * 2])
    theirs = _hf_generate(hf, ids, attention_mask=mask, max_new_tokens=10, do_sample=False)
    assert generate(ours, ids, attention_mask=mask, max_length=10, pad_token_id=PAD).tolist() == theirs.tolist()
    # without a mask, leading pad ids of a 2-D tensor are taken as left padding
    assert generate(ours, ids, max_length=10, pad_token_id=PAD).tolist() == theirs.tolist()


def test_out_of_vocabulary_eos_and_pad_warn_and_still_pad_the_output(pair):
    _, ours = pair
    prompts = [[5, 6, 7], [8]]
    with pytest.warns(UserWarning, match="50256"):
        out = generate(ours, prompts, max_length=4, eos_token_id=50256, pad_token_id=50257)
    assert out.shape == (2, 7)
    assert out[1, :2].tolist() == [50257, 50257] and 50257 not in out[:, 3:].tolist()


# ------------------------------------------------------------------------- sampling
def test_seed_reproduces_and_is_the_same_alone_or_in_a_batch(pair):
    _, ours = pair
    cfg = GenerationConfig.from_dict({"strategy": "sample", "temperature": 1.3, "top_k": 0,
                                      "max_length": 15, "seed": 1234, "eos_token_id": 299})
    p1, p2 = [5, 9, 11, 40], [7, 8]
    alone = generate(ours, p1, cfg)
    assert torch.equal(alone, generate(ours, p1, cfg))
    batch = generate(ours, [p2, p1, p1], cfg)
    assert batch[1].tolist() == alone.tolist() == batch[2].tolist()
    assert not torch.equal(generate(ours, p1, cfg, seed=99), alone)
    # several return sequences: copy j uses seed + j, copy 0 is the single-sequence result
    multi = generate(ours, p1, cfg, num_return_sequences=3)
    assert multi.shape[0] == 3 and multi[0].tolist() == alone.tolist()
    assert multi[1].tolist() == generate(ours, p1, cfg, seed=1235).tolist()


def _chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    n = counts.sum()
    keep = probs > 0
    expected = probs[keep] * n
    stat = float(((counts[keep] - expected) ** 2 / expected).sum())
    dof = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64),
                                         torch.tensor(stat / 2.0, dtype=torch.float64)))


@pytest.mark.parametrize("settings", [
    {"strategy": "sample", "temperature": 0.7, "top_k": 8, "top_p": 0.9},
    {"strategy": "top_p", "temperature": 1.5, "top_p": 0.6},
    {"strategy": "sample", "top_k": 0, "min_p": 0.05, "repetition_penalty": 1.4},
])
def test_first_token_distribution_matches_filtered_softmax(pair, settings):
    _, ours = pair
    prompt = [17, 42, 42, 99, 7]
    cfg = GenerationConfig.from_dict({**settings, "max_length": 1, "eos_token_id": 299})
    n = 4000
    torch.manual_seed(0)        # rows without a seed draw from the global generator: fix it
    out = generate(ours, [prompt] * n, cfg)
    counts = torch.bincount(out[:, -1], minlength=VOCAB).double()
    with torch.no_grad():
        logits = ours.forward_full(torch.tensor([prompt]))[:, -1]
    probs = torch.softmax(build_chain(cfg, prompt_length=5)(torch.tensor([prompt]), logits), -1)[0].double()
    assert counts[probs == 0].sum() == 0, "a filtered token was sampled"
    assert _chi_square_p(counts, probs) > 1e-3
    assert int((probs > 0).sum()) > 1


def test_chi_square_detects_a_wrong_distribution(pair):
    """The statistic has power: sampling without the temperature is rejected."""
    _, ours = pair
    prompt = [17, 42, 42, 99, 7]
    torch.manual_seed(0)
    out = generate(ours, [prompt] * 4000, strategy="sample", top_k=8, max_length=1, eos_token_id=299)
    counts = torch.bincount(out[:, -1], minlength=VOCAB).double()
    with torch.no_grad():
        logits = ours.forward_full(torch.tensor([prompt]))[:, -1]
    cfg = GenerationConfig.from_dict({"strategy": "sample", "top_k": 8, "temperature": 0.5})
    probs = torch.softmax(build_chain(cfg, prompt_length=5)(None, logits), -1)[0].double()
    assert _chi_square_p(counts, probs) < 1e-6


# ------------------------------------------------------------------------- text, stop strings, streaming
def test_stop_string_ends_the_row_and_cuts_the_text(pair):
    _, ours = pair
    tok = ours.tokenizer
    prompt = tok.encode("the cat sat")
    free = generate_text(ours, "the cat sat", max_length=20, eos_token_id=299)
    assert len(free) > 4
    stop = free[2:4]
    out = generate(ours, prompt, max_length=20, stop=[stop, "zzzz"], eos_token_id=299)
    text = generate_text(ours, "the cat sat", max_length=20, stop=[stop], eos_token_id=299)
    assert text == free[:free.index(stop) + len(stop)]
    new = tok.decode(out[len(prompt):].tolist())
    assert stop in new and stop not in tok.decode(out[len(prompt):-1].tolist())


def test_stop_string_in_a_batch_pads_only_that_row(pair):
    _, ours = pair
    prompts = ["the cat sat", "a stop here"]
    free = generate_batch(ours, prompts, max_length=16, eos_token_id=299)
    stop = free[0][1:3]
    texts = generate_batch(ours, prompts, max_length=16, eos_token_id=299, stop=[stop])
    assert texts[0] == free[0][:free[0].index(stop) + 2]
    if stop not in free[1]:
        assert texts[1] == free[1]


def test_stream_pieces_concatenate_to_the_text(pair):
    _, ours = pair
    for prompt in ["the cat sat", "東京 is", "é"]:
        for extra in ({}, {"strategy": "sample", "seed": 3}, {"strategy": "beam_search"}):
            events = list(stream(ours, ours.tokenizer.encode(prompt), max_length=25, eos_token_id=299, **extra))
            text = generate_text(ours, prompt, max_length=25, eos_token_id=299, **extra)
            assert "".join(p for _, p in events) == text
            out = generate(ours, ours.tokenizer.encode(prompt), max_length=25, eos_token_id=299, **extra)
            assert [t for t, _ in events] == out[len(ours.tokenizer.encode(prompt)):].tolist()


def test_callback_sees_every_token(pair):
    _, ours = pair
    seen = []
    out = generate(ours, [5, 6, 7], max_length=9, eos_token_id=299, callback=lambda t, p: seen.append((t, p)))
    assert [t for t, _ in seen] == out[3:].tolist()
    assert "".join(p for _, p in seen) == generate_text(ours, [5, 6, 7], max_length=9, eos_token_id=299)


def test_generate_batch_equals_generate_text_per_prompt(pair):
    _, ours = pair
    prompts = ["the cat", "a stop here: END. then", "the"]
    texts = generate_batch(ours, prompts, max_length=10, eos_token_id=299, repetition_penalty=1.3)
    assert texts == [generate_text(ours, p, max_length=10, eos_token_id=299, repetition_penalty=1.3)
                     for p in prompts]


def test_bad_words_as_strings(pair):
    _, ours = pair
    tok = ours.tokenizer
    prompt = tok.encode("the dog")
    free = generate(ours, prompt, max_length=20, eos_token_id=299)[len(prompt):].tolist()
    words = [tok.decode([t]).strip() for t in free]
    word = next(w for w in words if w.isalpha() and len(tok.encode(w, add_special_tokens=False)) == 1)
    banned = {ids[0] for ids in (tok.encode(w, add_special_tokens=False) for w in (word, " " + word))
              if len(ids) == 1}
    out = generate(ours, prompt, max_length=20, eos_token_id=299, bad_words=[word])
    assert not banned & set(out[len(prompt):].tolist())
    assert banned & set(free)


# ------------------------------------------------------------------------- logprobs
def test_sequence_logprobs_match_transformers(pair):
    hf, ours = pair
    ids = _prompts(2, 9, 40)
    with torch.no_grad():
        ref = torch.log_softmax(hf(ids).logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    assert torch.allclose(sequence_logprobs(ours, ids), ref, atol=1e-4)
    assert torch.allclose(sequence_logprobs(ours, ids[0].tolist()), ref[0], atol=1e-4)


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize("args, kwargs, message", [
    ([[5, VOCAB]], {}, "outside the vocabulary"),
    ([[5, -1]], {}, "outside the vocabulary"),
    ([[[1, 2], [3, 4000]]], {}, "outside the vocabulary"),
    ([list(range(3, 100))], {"max_length": 40}, "exceeds the model's context"),
    ([[5, 6]], {"top_p": 1.5}, "top_p"),
    ([[5, 6]], {"temperature": -1}, "temperature"),
    ([[5, 6]], {"top_k": -3}, "top_k"),
    ([[5, 6]], {"strategy": "nucleus"}, "unknown strategy"),
    ([[5, 6]], {"top_q": 3}, "unknown generation config key 'top_q'"),
    ([[5, 6]], {"strategy": "beam_search", "num_beams": 2, "num_return_sequences": 3}, "num_beams"),
    ([[5.0, 6.0]], {}, "integers"),
    ([torch.tensor([[1.0, 2.0]])], {}, "integer token ids"),
    ([torch.zeros(1, 2, 3, dtype=torch.long)], {}, "1-D or 2-D"),
    (["hello"], {}, "tensor or a list"),
    ([[5, 6]], {"bad_words": [[5, 4000]]}, "outside the vocabulary"),
])
def test_bad_inputs_raise_generation_error(pair, args, kwargs, message):
    _, ours = pair
    with pytest.raises(GenerationError, match=message):
        generate(ours, *args, **kwargs)


def test_empty_prompt_starts_from_bos(pair):
    _, ours = pair
    assert generate(ours, [], max_length=3)[0] == 1
    saved = dict(ours.special_tokens)
    try:
        ours.special_tokens["bos_token_id"] = None
        with pytest.raises(GenerationError, match="empty"):
            generate(ours, [], max_length=3)
    finally:
        ours.special_tokens.update(saved)


def test_stream_needs_a_single_prompt(pair):
    _, ours = pair
    with pytest.raises(GenerationError, match="single prompt"):
        stream(ours, [[1, 2], [3, 4]])
    with pytest.raises(GenerationError, match="single prompt"):
        generate(ours, [[1, 2], [3, 4]], callback=print)


def test_logits_processor_is_applied_in_every_strategy(pair):
    _, ours = pair

    def ban(ids, scores):
        assert ids.dim() == 2 and scores.shape[-1] == VOCAB
        s = scores.clone()
        s[:, 10:] = -float("inf")
        return s
    for strategy in ("greedy", "sample", "beam_search", "top_k", "top_p"):
        out = generate(ours, [50, 60], max_length=6, strategy=strategy, logits_processor=ban,
                       eos_token_id=299)
        assert (out.view(-1)[2:] < 10).all(), strategy


def test_extra_processors_and_stop_criteria_compose_with_every_strategy(pair):
    """The hooks guided generation builds on: a processor allowing only a few ids, and a criterion
    ending a row once it produced id 7."""
    from lispe_py.generation.processors import LogitsProcessor

    class OnlyFew(LogitsProcessor):
        name = "only_few"

        def __call__(self, ids, scores):
            allowed = torch.full_like(scores, -float("inf"))
            allowed[:, 5:9] = 0
            return scores + allowed

    def ends_at_7(ids, new_tokens):
        return new_tokens == 7

    for strategy in ("greedy", "sample", "beam_search"):
        out = generate(ours_of(pair), [[50, 60], [70]], max_length=12, strategy=strategy, seed=1,
                       eos_token_id=299, processors=[OnlyFew()], stopping=[ends_at_7])
        for row in out[:, 2:].tolist():
            new = [t for t in row if t != PAD]
            assert all(5 <= t < 9 for t in new), strategy
            assert 7 not in new[:-1] and (new[-1] == 7 or len(new) == 12)


def ours_of(pair):
    return pair[1]


def test_active_chain_is_printable(pair):
    from lispe_py.generation import active_chain
    _, ours = pair
    chain = active_chain(ours, {"strategy": "top_p", "top_p": 0.8, "temperature": 0.5,
                                "repetition_penalty": 1.2, "min_new_tokens": 2})
    assert chain.describe() == ("(chain (repetition_penalty 1.2) (min_new_tokens 2) (temperature 0.5) "
                                "(top_p 0.8))")
