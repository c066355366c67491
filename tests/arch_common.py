"""Shared checks of tests/test_arch_*.py: a tiny random model of a family built from transformers' own
config class, saved as a Hugging Face folder (safetensors + config.json) and loaded by our loader, then
compared with transformers: logits (full and through the static KV cache, prefill then decode steps),
greedy and beam-4 ids, batch rows against rows alone, and int8/int4 quantized models."""
from __future__ import annotations

import warnings

import torch
import transformers

from lispe_py.generation import generate
from lispe_py.models import load_model
from lispe_py.models.quantize import quantize_model, quantized_layers

torch.set_flush_denormal(True)
TOL = 1e-4
VOCAB = 160
PAD = 3


def build(config_cls, model_cls, seed: int = 0, std: float = 0.15, **kw):
    """A transformers model of the family with random float32 weights (norm weights included, so a
    wrong norm formula shows)."""
    base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                bos_token_id=1, eos_token_id=2, pad_token_id=PAD)
    base.update(kw)
    config = config_cls(**base)
    config._attn_implementation = "eager" if getattr(config, "attn_logit_softcapping", None) else "sdpa"
    torch.manual_seed(seed)
    hf = model_cls(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name and p.dim() == 1:
                p.uniform_(0.6, 1.4) if p.abs().max() > 0.5 else p.uniform_(-0.4, 0.4)
            else:
                p.normal_(0.0, std)
    return hf


def save_and_load(hf, folder, **kw):
    hf.save_pretrained(folder)
    return load_model(folder, **kw)


def prompts(n: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (n, length), generator=g)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def check_logits(hf, ours, length: int = 20, seed: int = 7) -> None:
    """Full-sequence logits, and the same through the KV cache: a prefill of part of the prompt, then
    one decode step per token (sliding windows shorter than `length` are crossed)."""
    ids = prompts(2, length, seed)
    with torch.inference_mode():  # as generate runs (the cache may hold inference tensors from it)
        ref = hf(ids).logits
        assert max_diff(ours.forward_full(ids), ref) <= TOL
        ours.setup_cache(2, length)
        first = 5
        assert max_diff(ours.prefill(ids[:, :first]), ref[:, first - 1]) <= TOL
        for t in range(first, length):
            assert max_diff(ours.decode(ids[:, t], t), ref[:, t]) <= TOL, f"decode step at slot {t}"


def hf_generate(hf, ids, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf.generate(ids, pad_token_id=PAD, **kw)


def check_generation(hf, ours, new: int = 12, seeds=(1, 2)) -> None:
    """Greedy and beam-4 ids identical to transformers.generate."""
    for seed in seeds:
        ids = prompts(1, 6, seed)
        theirs = hf_generate(hf, ids, max_new_tokens=new, do_sample=False, eos_token_id=2)
        mine = generate(ours, ids, max_length=new, eos_token_id=2, pad_token_id=PAD)
        assert mine.tolist() == theirs.tolist(), f"greedy, seed {seed}"
        theirs = hf_generate(hf, ids, max_new_tokens=new, do_sample=False, num_beams=4, eos_token_id=2)
        mine = generate(ours, ids, max_length=new, strategy="beam_search", num_beams=4, eos_token_id=2,
                        pad_token_id=PAD)
        assert mine.tolist() == theirs.tolist(), f"beam-4, seed {seed}"


def check_batch_rows(ours, new: int = 10) -> None:
    """A ragged (left-padded) batch gives each row what the row gives alone."""
    rows = [prompts(1, n, 30 + n)[0].tolist() for n in (3, 9, 6)]
    batch = generate(ours, rows, max_length=new, eos_token_id=2, pad_token_id=PAD)
    width = max(len(r) for r in rows)
    for out, row in zip(batch.tolist(), rows):
        alone = generate(ours, row, max_length=new, eos_token_id=2, pad_token_id=PAD).tolist()
        got = out[width - len(row):]
        got = got[:len(alone)]
        assert got == alone


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def check_quantized(folder, ours, int8_tol: float = 0.05, int4_tol: float = 0.5) -> None:
    """int8 and int4 quantized copies run the family's computation on the quantized weights: their
    logits equal (to the kernels' rounding) those of the float model given the dequantized weights, and
    stay close to the float model's (random tiny models amplify 4-bit rounding more than trained ones);
    a generation runs through the cache."""
    ids = prompts(1, 12, 5)
    with torch.no_grad():
        ref = ours.forward_full(ids)
        for mode, tol in (("int8", int8_tol), ("int4", int4_tol)):
            q = quantize_model(load_model(folder), mode)
            same = load_model(folder)
            for name, layer in quantized_layers(q):
                same.get_submodule(name).weight = torch.nn.Parameter(layer.dequantized_weight().float())
            logits = q.forward_full(ids)
            assert rel(logits, same.forward_full(ids)) < 2e-3, (mode, rel(logits, same.forward_full(ids)))
            assert rel(logits, ref) < tol, (mode, rel(logits, ref))
            out = generate(q, ids, max_length=6, eos_token_id=2, pad_token_id=PAD)
            assert out.shape[0] == 1 and 13 <= out.shape[1] <= 18


def check_padded_batch(hf, ours, new: int = 10) -> None:
    """A left-padded batch with its attention mask: the same ids as transformers.generate."""
    a, b = prompts(1, 7, 40)[0].tolist(), prompts(1, 3, 41)[0].tolist()
    ids = torch.tensor([a, [PAD] * 4 + b])
    mask = torch.tensor([[1] * 7, [0] * 4 + [1] * 3])
    theirs = hf_generate(hf, ids, attention_mask=mask, max_new_tokens=new, do_sample=False, eos_token_id=2)
    mine = generate(ours, ids, attention_mask=mask, max_length=new, eos_token_id=2, pad_token_id=PAD)
    assert mine.tolist() == theirs.tolist()


def check_bf16(hf, folder, slack: float = 2.0) -> None:
    """bfloat16: our logits are as close to the float32 reference as transformers' own bfloat16 model's
    (within `slack` times its error)."""
    import copy

    ids = prompts(2, 16, 8)
    with torch.no_grad():
        ref = hf(ids).logits
        theirs = copy.deepcopy(hf).to(torch.bfloat16)(ids).logits.float()
        ours = load_model(folder, dtype="bfloat16").forward_full(ids)
    err_theirs, err_ours = rel(theirs, ref), rel(ours, ref)
    assert err_ours <= slack * err_theirs + 1e-3, (err_ours, err_theirs)


def check_traced_decode(hf, ours, length: int = 16) -> None:
    """A single row's decode steps as the CPU trace runs them (where it applies: no sliding window, not
    MoE) give transformers' logits, and the trace was really made."""
    ids = prompts(1, length, 11)
    with torch.inference_mode():  # as generate runs (the cache may hold inference tensors from it)
        ref = hf(ids).logits
        ours.setup_cache(1, length)
        ours.prefill(ids[:, :4])
        for t in range(4, length):
            assert max_diff(ours.decode(ids[:, t], t), ref[:, t]) <= TOL, f"traced step at slot {t}"
    assert ours._has_trace() == ours._trace_applies(1, None, None)
