"""Generation metrics (issue 7, part 3) against transformers on a tiny random Llama: per-token raw and
processed log-probabilities, top-N alternatives, sequence scores, perplexity and evaluate, from Python
and from Lisp."""
from __future__ import annotations

import math
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from lispe_py import Interpreter, LispEError  # noqa: E402
from lispe_py.generation import GenerationError, evaluate, generate_scored, perplexity  # noqa: E402
from lispe_py.models import model_from_hf  # noqa: E402
from test_generation import PAD, _tiny_llama, pair  # noqa: E402,F401  (pair: the shared tiny model)

TEXTS = ["the cat sat on the mat.", "a stop here: END. then more words", "é è ü 東京 is a city"]




@pytest.fixture
def lisp(pair) -> Interpreter:
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.globals["model"] = pair[1]
    interp.eval('(setq generator (torch_generator_create model "cpu"))')
    return interp


def _hf_logprobs(hf, ids: list[int]) -> torch.Tensor:
    """log p(token i | tokens < i) for i >= 1, by transformers."""
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


# ------------------------------------------------------------------------------------ scored generation
def test_greedy_scores_match_transformers_raw_and_processed(pair):
    hf, ours = pair
    ids = ours.tokenizer.encode("the dog ate")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = hf.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, repetition_penalty=1.3,
                          eos_token_id=299, pad_token_id=PAD, output_scores=True, output_logits=True,
                          return_dict_in_generate=True)
    theirs = ref.sequences[0, len(ids):].tolist()
    r = generate_scored(ours, ids, max_length=8, repetition_penalty=1.3, eos_token_id=299, top_n=4)
    assert r["ids"] == theirs and len(r["tokens"]) == 8
    for i, (t, tok) in enumerate(zip(r["tokens"], theirs)):
        processed = torch.log_softmax(ref.scores[i][0].float(), -1)
        raw = torch.log_softmax(ref.logits[i][0].float(), -1)
        assert t["id"] == tok
        assert t["logprob"] == pytest.approx(float(processed[tok]), abs=1e-5)
        assert t["raw_logprob"] == pytest.approx(float(raw[tok]), abs=1e-5)
        assert [a[0] for a in t["top"]] == torch.topk(processed, 4).indices.tolist()
        assert [a[0] for a in t["raw_top"]] == torch.topk(raw, 4).indices.tolist()
        assert [a[2] for a in t["top"]] == pytest.approx(torch.topk(processed, 4).values.tolist(), abs=1e-5)
        assert t["top"][0][1] == ours.tokenizer.decode([t["top"][0][0]])
    # the penalty makes processed and raw differ (otherwise the test would not tell them apart)
    assert any(abs(t["logprob"] - t["raw_logprob"]) > 1e-3 for t in r["tokens"])
    assert r["sequence_logprob"] == pytest.approx(sum(t["logprob"] for t in r["tokens"]))
    assert r["raw_sequence_logprob"] == pytest.approx(sum(t["raw_logprob"] for t in r["tokens"]))
    assert r["perplexity"] == pytest.approx(math.exp(-r["raw_sequence_logprob"] / 8))
    # the text leaves out a character the last ids cut in half (this random model ends on lone bytes)
    assert r["text"] == ours.tokenizer.decode(theirs, skip_special_tokens=True).rstrip("\ufffd")


def test_sampled_scores_match_the_model_and_the_filtered_distribution(pair):
    hf, ours = pair
    ids = ours.tokenizer.encode("a stop here")
    r = generate_scored(ours, ids, strategy="sample", temperature=0.7, top_k=20, top_p=0.9, seed=5,
                        max_length=10, eos_token_id=299, top_n=3)
    new = r["ids"]
    full = ids + new
    raw = _hf_logprobs(hf, full)[len(ids) - 1:]
    with torch.no_grad():
        logits = hf(torch.tensor([full])).logits[0, len(ids) - 1:-1].float()
    warpers = transformers.LogitsProcessorList([transformers.TemperatureLogitsWarper(0.7),
                                                transformers.TopKLogitsWarper(20),
                                                transformers.TopPLogitsWarper(0.9)])
    for i, t in enumerate(r["tokens"]):
        assert t["raw_logprob"] == pytest.approx(float(raw[i]), abs=1e-5)
        processed = torch.log_softmax(warpers(torch.tensor([full[:len(ids) + i]]), logits[i:i + 1]), -1)[0]
        assert t["logprob"] == pytest.approx(float(processed[new[i]]), abs=1e-5)
        # alternatives cut by the filters are not listed
        assert all(math.isfinite(a[2]) for a in t["top"])
    assert r["sequence_logprob"] > r["raw_sequence_logprob"]     # filtering concentrates the mass


def test_scored_generation_bad_input(pair):
    _, ours = pair
    with pytest.raises(GenerationError, match="not beam_search"):
        generate_scored(ours, "the", strategy="beam_search")
    with pytest.raises(GenerationError, match="top_n must be an integer >= 0"):
        generate_scored(ours, "the", top_n=-1)
    with pytest.raises(GenerationError, match="expected a string or a list of token ids"):
        generate_scored(ours, 3.5)


# ------------------------------------------------------------------------------------ perplexity
def test_perplexity_matches_transformers(pair):
    hf, ours = pair
    for text in TEXTS:
        ids = ours.tokenizer.encode(text)
        with torch.no_grad():
            loss = hf(torch.tensor([ids]), labels=torch.tensor([ids])).loss
        assert perplexity(ours, text) == pytest.approx(math.exp(float(loss)), rel=1e-4)
        assert perplexity(ours, ids) == pytest.approx(perplexity(ours, text), rel=1e-12)


def test_evaluate_is_token_weighted_and_matches_transformers(pair):
    hf, ours = pair
    r = evaluate(ours, TEXTS)
    total, count = 0.0, 0
    for entry, text in zip(r["texts"], TEXTS):
        lp = _hf_logprobs(hf, ours.tokenizer.encode(text))
        assert entry["tokens"] == len(lp)
        assert entry["logprob"] == pytest.approx(float(lp.sum()), rel=1e-5)
        assert entry["perplexity"] == pytest.approx(math.exp(-float(lp.mean())), rel=1e-4)
        total += float(lp.sum())
        count += len(lp)
    assert r["tokens"] == count
    assert r["perplexity"] == pytest.approx(math.exp(-total / count), rel=1e-4)
    assert r["mean_logprob"] == pytest.approx(total / count, rel=1e-5)
    # token-weighted, not the mean of the per-text perplexities
    mean_ppl = sum(e["perplexity"] for e in r["texts"]) / len(TEXTS)
    assert abs(r["perplexity"] - mean_ppl) > 1e-3 * r["perplexity"]


def test_perplexity_and_evaluate_errors(pair):
    _, ours = pair
    with pytest.raises(GenerationError, match="at least two tokens"):
        perplexity(ours, [5])
    with pytest.raises(GenerationError, match="text 1: evaluate: a text needs at least two tokens"):
        evaluate(ours, ["the cat sat", [7]])
    with pytest.raises(GenerationError, match="non-empty list of texts"):
        evaluate(ours, "the cat")
    bare = model_from_hf(_tiny_llama(0))
    with pytest.raises(GenerationError, match="a text needs the model's tokenizer"):
        perplexity(bare, "the cat")


# ------------------------------------------------------------------------------------ from Lisp
def test_lisp_perplexity_and_evaluate(lisp, pair):
    _, ours = pair
    assert lisp.eval('(torch_perplexity model "the cat sat on the mat.")') == perplexity(ours, TEXTS[0])
    assert lisp.eval('(torch_perplexity generator (tokenizer_encode generator "the cat sat on the mat."))') \
        == perplexity(ours, TEXTS[0])
    lisp.globals["texts"] = list(TEXTS)
    r = lisp.eval("(torch_evaluate model texts)")
    py = evaluate(ours, TEXTS)
    assert r["perplexity"] == py["perplexity"] and r["tokens"] == py["tokens"]
    assert lisp.eval('(@ (@ (@ (torch_evaluate model texts) "texts") 2) "tokens")') == py["texts"][2]["tokens"]


def test_lisp_generate_scored(lisp, pair):
    _, ours = pair
    r = lisp.eval('(torch_generate_scored generator "the dog ate" {"max_length":5 "eos_token_id":299 '
                  '"strategy":"top_k" "top_k":10 "seed":2} 3)')
    py = generate_scored(ours, "the dog ate", max_length=5, eos_token_id=299, strategy="top_k", top_k=10,
                         seed=2, top_n=3)
    assert list(r["ids"]) == py["ids"] and r["text"] == py["text"]
    assert [t["logprob"] for t in r["tokens"]] == [t["logprob"] for t in py["tokens"]]
    assert [list(a) for a in r["tokens"][0]["top"]] == [list(a) for a in py["tokens"][0]["top"]]
    assert r["sequence_logprob"] == py["sequence_logprob"]
    assert lisp.eval('(size (@ (@ (@ (torch_generate_scored generator "the" {"max_length":2} 0) "tokens") 0) "text"))') >= 0
    assert "top" not in lisp.eval('(@ (@ (torch_generate_scored generator "the" {"max_length":2} 0) "tokens") 0)')


@pytest.mark.parametrize("code, message", [
    ('(torch_perplexity 42 "text")', "torch_perplexity: argument 'model': expected a model"),
    ('(torch_perplexity model 3.5)', "torch_perplexity: argument 'text': expected token ids"),
    ('(torch_perplexity model "a")', "torch_perplexity: perplexity: a text needs at least two tokens"),
    ('(torch_evaluate model "the cat")', "torch_evaluate: argument 'texts': expected a non-empty list"),
    ('(torch_evaluate model (list "the cat sat" 4.5))', "torch_evaluate: argument 'texts': expected token ids"),
    ('(torch_generate_scored generator "the" {"max_length":2} -1)', "torch_generate_scored: argument 'top_n' must be >= 0"),
    ('(torch_generate_scored generator "the" {"strategy":"beam_search"})', "torch_generate_scored: scores are reported for the greedy and sampling strategies"),
    ('(torch_generate_scored generator (list (integers 1 2) (integers 3 4)))', "torch_generate_scored: argument 'prompt': one prompt"),
    ('(torch_generate_scored model "the")', "torch_generate_scored: argument 'generator': expected a generator"),
])
def test_lisp_metrics_bad_arguments(lisp, code, message):
    with pytest.raises(LispEError) as err:
        lisp.eval(code)
    assert message in err.value.message


def test_scored_generation_streams_through_the_callback(pair):
    _, ours = pair
    seen = []
    r = generate_scored(ours, "the dog ate", max_length=6, eos_token_id=299, top_n=0,
                        callback=lambda tok, piece: seen.append((tok, piece)))
    assert [t for t, _ in seen] == r["ids"] and "".join(p for _, p in seen) == r["text"]
    assert all("top" not in t for t in r["tokens"])
