"""Each logits processor against its transformers class on random scores: same masks, same values."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
tlp = pytest.importorskip("transformers.generation.logits_process")

from lispe_py.generation import GenerationConfig, GenerationError  # noqa: E402
from lispe_py.generation import processors as P  # noqa: E402

V = 97
B = 5


def _scores(seed: int, ties: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, V, generator=g) * 3
    if ties:  # quantise so that many scores are equal, including around the k-th largest
        s = torch.round(s)
    return s


def _ids(seed: int, length: int = 12, vocab: int = 10) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (B, length), generator=g)


def assert_same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs)), "masks differ"
    finite = ~torch.isinf(theirs)
    assert torch.allclose(ours[finite], theirs[finite], atol=1e-6, rtol=0)


SEEDS = range(4)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("penalty", [0.5, 1.3, 2.0])
def test_repetition_penalty(seed, penalty):
    ids, s = _ids(seed, vocab=V), _scores(seed)
    assert_same(P.RepetitionPenalty(penalty)(ids, s),
                tlp.RepetitionPenaltyLogitsProcessor(penalty)(ids, s.clone()))


def test_repetition_penalty_ignores_left_padding():
    ids = torch.tensor([[7, 7, 3, 4], [1, 2, 3, 4]])
    s = torch.ones(2, 10)
    out = P.RepetitionPenalty(2.0, ignore_lengths=torch.tensor([2, 0]))(ids, s)
    assert out[0, 7] == 1.0 and out[0, 3] == 0.5          # 7 is padding in row 0
    assert out[1, 1] == 0.5 and out[1, 7] == 1.0
    theirs = tlp.RepetitionPenaltyLogitsProcessor(2.0, prompt_ignore_length=torch.tensor([2, 0]))
    assert_same(out, theirs(ids, s.clone()))


def test_repetition_penalty_ignores_out_of_vocab_ids():
    ids = torch.tensor([[3, 50257, 4]])
    out = P.RepetitionPenalty(2.0)(ids, torch.ones(1, 10))
    assert out[0, 3] == 0.5 and out[0, 4] == 0.5 and out[0, 5] == 1.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 5, 40, V, V + 10])
def test_top_k_with_ties(seed, k):
    s = _scores(seed, ties=True)
    ours = P.TopK(k)(None, s)
    assert_same(ours, tlp.TopKLogitsWarper(k)(None, s.clone()))
    kept = (~torch.isinf(ours)).sum(-1)
    assert (kept >= min(k, V)).all()


def test_top_k_keeps_ties_at_the_boundary():
    s = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0]])
    out = P.TopK(2)(None, s)
    assert torch.isinf(out).tolist() == [[False, False, False, False, True]]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p", [0.05, 0.3, 0.7, 0.95, 1.0])
def test_top_p(seed, p):
    s = _scores(seed)
    assert_same(P.TopP(p)(None, s), tlp.TopPLogitsWarper(p)(None, s.clone()))


def test_top_p_keeps_the_crossing_token_and_at_least_one():
    s = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert (~torch.isinf(P.TopP(0.6)(None, s))).sum() == 2      # 0.5 < 0.6, 0.5 + 0.3 crosses
    assert (~torch.isinf(P.TopP(0.5)(None, s))).sum() == 1
    assert (~torch.isinf(P.TopP(1e-9)(None, s))).sum() == 1


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p", [0.0, 0.05, 0.2, 0.9, 1.0])
def test_min_p(seed, p):
    s = _scores(seed)
    assert_same(P.MinP(p)(None, s), tlp.MinPLogitsWarper(p)(None, s.clone()))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mass", [0.1, 0.5, 0.9, 0.99])
def test_typical_p(seed, mass):
    s = _scores(seed)
    assert_same(P.TypicalP(mass)(None, s), tlp.TypicalLogitsWarper(mass)(None, s.clone()))


@pytest.mark.parametrize("t", [0.3, 0.7, 1.5])
def test_temperature(t):
    s = _scores(1)
    assert_same(P.Temperature(t)(None, s), tlp.TemperatureLogitsWarper(t)(None, s.clone()))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram(seed, n):
    ids, s = _ids(seed, length=20, vocab=6), _scores(seed)
    ours = P.NoRepeatNGram(n)(ids, s)
    assert_same(ours, tlp.NoRepeatNGramLogitsProcessor(n)(ids, s.clone()))
    if n <= 2:
        assert torch.isinf(ours).any()   # with 6 symbols and 20 tokens some n-gram must repeat


def test_no_repeat_ngram_ignores_padding_windows():
    # row 0: left padding "5 6" then "5"; the bigram (5 6) lies in the padding only
    ids = torch.tensor([[5, 6, 5], [5, 6, 5]])
    out = P.NoRepeatNGram(2, ignore_lengths=torch.tensor([2, 0]))(ids, torch.zeros(2, 8))
    assert not torch.isinf(out[0]).any()
    assert torch.isinf(out[1, 6])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cur_new", [0, 2, 3, 5])
def test_min_new_tokens(seed, cur_new):
    prompt_len, eos = 7, [3, 11]
    ids = _ids(seed, length=prompt_len + cur_new, vocab=V)
    s = _scores(seed)
    ours = P.MinNewTokens(3, prompt_len, eos)(ids, s)
    theirs = tlp.MinNewTokensLengthLogitsProcessor(prompt_len, 3, eos)(ids, s.clone())
    assert_same(ours, theirs)
    assert torch.isinf(ours[:, eos]).all() == (cur_new < 3)


@pytest.mark.parametrize("seed", SEEDS)
def test_bad_words(seed):
    ids = _ids(seed, length=10, vocab=4)
    bad = [[5], [17], [1, 2], [3, 0], [0, 1, 2], [2, 2], [6, 2], [4], [90, 91, 92]]
    s = _scores(seed)
    ours = P.BadWords(bad, eos_token_ids=[4])(ids, s)
    theirs = tlp.NoBadWordsLogitsProcessor(bad, eos_token_id=[4])(ids, s.clone())
    assert_same(ours, theirs)
    assert torch.isinf(ours[:, [5, 17]]).all()
    assert not torch.isinf(ours[:, 4]).any()     # [eos] is dropped


def test_bad_words_outside_vocab_is_an_error():
    with pytest.raises(GenerationError, match="outside the vocabulary"):
        P.BadWords([[V + 3]])(_ids(0), _scores(0))


@pytest.mark.parametrize("presence, frequency", [(0.5, 0.0), (0.0, 0.7), (1.0, -0.25)])
def test_presence_frequency_penalty(presence, frequency):
    ids = torch.tensor([[1, 1, 2, 3, 3, 3, 4]])      # prompt = first 3 tokens
    s = torch.zeros(1, 6)
    out = P.PresenceFrequencyPenalty(presence, frequency, prompt_length=3)(ids, s)
    counts = torch.tensor([0, 0, 0, 3, 1, 0], dtype=torch.float)
    expected = -presence * (counts > 0).float() - frequency * counts
    assert torch.allclose(out[0], expected)


def test_user_processor_checks_shape_and_result():
    s = _scores(0)
    ban3 = P.UserProcessor(lambda ids, sc: sc.index_fill(1, torch.tensor([3]), -float("inf")))
    assert torch.isinf(ban3(None, s)[:, 3]).all()
    assert not torch.isinf(s).any()       # the caller's scores are untouched
    with pytest.raises(GenerationError, match="shape"):
        P.UserProcessor(lambda ids, sc: sc[:, :3])(None, s)
    with pytest.raises(GenerationError, match="nil"):
        P.UserProcessor(lambda ids, sc: None)(None, s)


def test_chain_order_and_description():
    def my_rule(ids, sc):
        return sc
    cfg = GenerationConfig.from_dict({
        "strategy": "sample", "temperature": 0.7, "top_k": 40, "top_p": 0.9, "min_p": 0.05,
        "typical_p": 0.95, "repetition_penalty": 1.2, "presence_penalty": 0.1,
        "no_repeat_ngram_size": 3, "bad_words": [5, [6, 7]], "min_new_tokens": 2,
        "logits_processor": my_rule})
    chain = P.build_chain(cfg, prompt_length=4, eos_token_ids=[2])
    assert [p.name for p in chain] == [
        "repetition_penalty", "presence_frequency_penalty", "no_repeat_ngram_size", "bad_words",
        "min_new_tokens", "logits_processor", "temperature", "top_k", "top_p", "min_p", "typical_p"]
    assert chain.describe() == (
        "(chain (repetition_penalty 1.2) (presence_frequency_penalty 0.1 0.0) "
        "(no_repeat_ngram_size 3) (bad_words 5 (6 7)) (min_new_tokens 2) (logits_processor my_rule) "
        "(temperature 0.7) (top_k 40) (top_p 0.9) (min_p 0.05) (typical_p 0.95))")


@pytest.mark.parametrize("strategy, names", [
    ("greedy", ["repetition_penalty"]),
    ("beam_search", ["repetition_penalty"]),
    ("top_k", ["repetition_penalty", "temperature", "top_k"]),
    ("top_p", ["repetition_penalty", "temperature", "top_p"]),
    ("sample", ["repetition_penalty", "temperature", "top_k", "top_p"]),
])
def test_chain_per_strategy(strategy, names):
    cfg = GenerationConfig.from_dict({"strategy": strategy, "repetition_penalty": 1.1,
                                      "temperature": 0.5, "top_p": 0.8})
    assert [p.name for p in P.build_chain(cfg, prompt_length=1)] == names


def test_temperature_zero_means_no_sampling_filters():
    cfg = GenerationConfig.from_dict({"strategy": "sample", "temperature": 0})
    assert len(P.build_chain(cfg, prompt_length=1)) == 0


def test_chain_matches_transformers_list():
    s, ids = _scores(3), _ids(3, vocab=V)
    cfg = GenerationConfig.from_dict({"strategy": "sample", "repetition_penalty": 1.3,
                                      "temperature": 0.8, "top_k": 30, "top_p": 0.7})
    ours = P.build_chain(cfg, prompt_length=4)(ids, s)
    theirs = tlp.LogitsProcessorList([
        tlp.RepetitionPenaltyLogitsProcessor(1.3), tlp.TemperatureLogitsWarper(0.8),
        tlp.TopKLogitsWarper(30), tlp.TopPLogitsWarper(0.7)])(ids, s.clone())
    assert_same(ours, theirs)


def test_processors_are_vectorised_over_the_batch():
    """Each row processed in a batch equals that row processed alone."""
    ids, s = _ids(5, length=15, vocab=6), _scores(5)
    for proc in [P.RepetitionPenalty(1.5), P.NoRepeatNGram(2), P.TopK(7), P.TopP(0.5),
                 P.MinP(0.1), P.TypicalP(0.6), P.BadWords([[1, 2], [3]]),
                 P.PresenceFrequencyPenalty(0.2, 0.3, 5)]:
        batch = proc(ids, s)
        for r in range(B):
            assert_same(batch[r:r + 1], proc(ids[r:r + 1], s[r:r + 1]))
