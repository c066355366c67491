"""The CUDA paths, on a GPU: every test here is skipped on a machine without one (CI has none).

LISPE_TEST_GPU names the device to test (default "cuda"; "mps" on Apple silicon; "cpu" runs these
tests' logic on the CPU, to check the tests themselves where no GPU is at hand).

What a user with a GPU does: `(torch_generator_create model "cuda")`, loading with {"device":"cuda"},
bfloat16/float16 on the GPU, quantized models, and the Python API on CUDA tensors. The oracles:
transformers on the same GPU (logits <= 1e-4 in float32, token-identical greedy and beam search),
and our own CPU run (the same tokens for every deterministic strategy and processor).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

GPU = os.environ.get("LISPE_TEST_GPU", "cuda")
_AVAILABLE = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available, "cpu": lambda: True}
pytestmark = pytest.mark.skipif(not _AVAILABLE[GPU.split(":")[0]](), reason=f"no {GPU} device on this machine")

from test_generation import PAD, ByteBPE, _hf_generate, _prompts, _tiny_llama  # noqa: E402
from test_models import HF_CONFIGS, _build_hf  # noqa: E402

from lispe_py import Interpreter  # noqa: E402
from lispe_py.generation import generate, generate_batch, generate_text, perplexity, stream  # noqa: E402
from lispe_py.models import load_model, model_from_hf  # noqa: E402
from lispe_py.models import native  # noqa: E402
from lispe_py.models.quantize import (Int4Linear, dequantize_int4, quantize_int4, quantize_model,  # noqa: E402
                                      quantized_layers)

CUDA = torch.device(GPU)
TOL = 1e-4
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant\n{% endif %}")


@pytest.fixture(autouse=True, scope="module")
def _exact_float32():
    """No TF32 in float32 matmuls, whatever the machine's defaults: the 1e-4 oracle needs real float32."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(scope="module")
def pair():
    """A tiny transformers Llama on the GPU and ours with the same weights (on the GPU too)."""
    hf = _tiny_llama(0).to(CUDA)
    ours = model_from_hf(hf)
    ours.tokenizer = ByteBPE()
    assert ours.device.type == CUDA.type
    return hf, ours


@pytest.fixture(scope="module")
def cpu_twin(pair):
    """The same model on the CPU: our CUDA run must give the CPU run's tokens."""
    hf_cpu = _tiny_llama(0)
    ours = model_from_hf(hf_cpu)
    ours.tokenizer = pair[1].tokenizer
    return ours


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    """A Hugging Face folder as users have them: config.json, model.safetensors, tokenizer.json,
    tokenizer_config.json with a chat template."""
    folder = tmp_path_factory.mktemp("tiny_hf")
    bpe = ByteBPE()
    hf = _tiny_llama(0)
    hf.config.bos_token_id, hf.config.eos_token_id = bpe.tok.token_to_id("<s>"), bpe.tok.token_to_id("</s>")
    hf.generation_config.bos_token_id = hf.config.bos_token_id
    hf.generation_config.eos_token_id = hf.config.eos_token_id
    hf.save_pretrained(folder, safe_serialization=True)
    bpe.tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "chat_template": TEMPLATE}))
    return folder


# ------------------------------------------------------------------------- models vs transformers
@pytest.mark.parametrize("name", sorted(HF_CONFIGS))
def test_logits_match_transformers_on_cuda(name):
    hf = _build_hf(name).to(CUDA)
    ours = model_from_hf(hf)
    assert ours.device.type == CUDA.type
    ids = torch.randint(0, hf.config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(3)).to(CUDA)
    with torch.no_grad():
        ref = hf(ids).logits
        full = ours.forward_full(ids)
        ours.setup_cache(2, 16)
        pieces = [ours(ids[:, :4], torch.arange(4, device=CUDA))]
        for i in range(4, ids.shape[1]):
            pieces.append(ours(ids[:, i:i + 1], torch.tensor([i], device=CUDA)))
    assert full.device.type == CUDA.type
    assert (ref - full).abs().max().item() <= TOL, name
    assert (ref - torch.cat(pieces, dim=1)).abs().max().item() <= TOL, name


@pytest.mark.parametrize("extra", [{}, {"repetition_penalty": 1.5}, {"no_repeat_ngram_size": 2}])
def test_greedy_matches_transformers_on_cuda(pair, extra):
    hf, ours = pair
    for seed in (1, 2):
        ids = _prompts(1, 6, seed).to(CUDA)
        theirs = _hf_generate(hf, ids, max_new_tokens=16, do_sample=False, **extra)
        mine = generate(ours, ids, max_length=16, pad_token_id=PAD, **extra)
        assert mine.device.type == CUDA.type
        assert mine.tolist() == theirs.tolist()


@pytest.mark.parametrize("beams, early", [(2, True), (4, False), (4, "never")])
def test_beam_search_matches_transformers_on_cuda(pair, beams, early):
    hf, ours = pair
    ids = _prompts(1, 6, 5).to(CUDA)
    theirs = _hf_generate(hf, ids, max_new_tokens=12, do_sample=False, num_beams=beams,
                          length_penalty=0.7, early_stopping=early, num_return_sequences=2)
    mine = generate(ours, ids, strategy="beam_search", max_length=12, num_beams=beams, length_penalty=0.7,
                    early_stopping=early, num_return_sequences=2, pad_token_id=PAD)
    assert mine.tolist() == theirs.tolist()


def test_ragged_batch_matches_transformers_on_cuda(pair):
    hf, ours = pair
    rows = [_prompts(1, n, 10 + n)[0].tolist() for n in (3, 7, 5)]
    width = max(map(len, rows))
    ids = torch.tensor([[PAD] * (width - len(r)) + r for r in rows], device=CUDA)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=CUDA)
    theirs = _hf_generate(hf, ids, attention_mask=mask, max_new_tokens=10, do_sample=False)
    mine = generate(ours, ids, attention_mask=mask, max_length=10, pad_token_id=PAD)
    assert mine.tolist() == theirs.tolist()
    for row, r in zip(mine.tolist(), rows):  # and each row equals the row alone
        assert row[width:] == generate(ours, r, max_length=10, pad_token_id=PAD).tolist()[len(r):]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_on_cuda_matches_transformers(dtype):
    hf32 = _tiny_llama(0).to(CUDA)
    ids = _prompts(1, 6, 3).to(CUDA)
    with torch.no_grad():
        exact = hf32(ids).logits
    hf = _tiny_llama(0).to(CUDA, dtype)
    ours = model_from_hf(hf)
    assert ours.dtype == dtype and ours.device.type == CUDA.type
    with torch.no_grad():
        theirs_logits = hf(ids).logits.float()
        mine_logits = ours.forward_full(ids).float()
    their_err = (theirs_logits - exact).abs().max().item()
    assert (mine_logits - exact).abs().max().item() <= 2 * their_err + 1e-3  # as close to float32 as theirs
    theirs = _hf_generate(hf, ids, max_new_tokens=12, do_sample=False)
    mine = generate(ours, ids, max_length=12, pad_token_id=PAD)
    assert mine[0, :14].tolist() == theirs[0, :14].tolist()  # the first 8 new tokens at least


# ------------------------------------------------------------------------- CUDA graphs of the decode step
def _without_graphs(model, fn):
    model.cuda_graphs = False
    try:
        return fn()
    finally:
        model.cuda_graphs = True


def test_decode_graphs_give_the_eager_tokens(pair):
    """Every decode loop (greedy, ragged batches, beams, seeded sampling) gives the same tokens with the
    step replayed as a CUDA graph as op by op; a graph is captured per batch shape and reused."""
    _, ours = pair
    rows = [_prompts(1, n, 40 + n)[0].tolist() for n in (4, 7, 5)]
    runs = [lambda: generate(ours, rows[0], max_length=20, pad_token_id=PAD).tolist(),
            lambda: generate(ours, rows, max_length=20, pad_token_id=PAD, repetition_penalty=1.2).tolist(),
            lambda: generate(ours, rows[1], strategy="beam_search", num_beams=3, max_length=12,
                             pad_token_id=PAD).tolist(),
            lambda: generate(ours, rows, strategy="sample", seed=3, max_length=16, pad_token_id=PAD).tolist()]
    eager = _without_graphs(ours, lambda: [run() for run in runs])
    ours.reset_decode_graphs()
    assert [run() for run in runs] == eager
    if CUDA.type == "cuda":
        assert {key[0] for key in ours._graphs} == {1, 3}  # one row; three rows (the beams as well)
        captured = dict(ours._graphs)
        assert [run() for run in runs] == eager  # replayed, not captured again
        assert all(ours._graphs[k] is g for k, g in captured.items())


def test_decode_graph_logits_equal_the_eager_step(pair):
    _, ours = pair
    ids = _prompts(2, 9, 50).to(CUDA)
    with torch.no_grad():
        ours.setup_cache(2, 32)
        ours.prefill(ids[:, :4])
        for i in range(4, 9):
            eager = ours(ids[:, i:i + 1], torch.tensor([i], device=CUDA), last_only=True)[:, -1]
            graphed = ours.decode(ids[:, i], i)  # rewrites slot i with the same keys and values
            assert graphed.dtype == torch.float32 and (graphed - eager).abs().max().item() <= 1e-5


def test_decode_graphs_follow_dtype_cache_and_quantization_changes():
    hf = _tiny_llama(0).to(CUDA)
    ours = model_from_hf(hf)
    prompt = _prompts(1, 6, 8)[0].tolist()
    first = generate(ours, prompt, max_length=10).tolist()
    assert generate(ours, prompt, max_length=60).tolist()[:16] == first  # a larger cache: captured again
    ours.to(torch.bfloat16)
    assert not ours._graphs
    half = generate(ours, prompt, max_length=10).tolist()
    assert half == _without_graphs(ours, lambda: generate(ours, prompt, max_length=10).tolist())
    quantize_model(ours, "int8")
    assert not ours._graphs
    assert generate(ours, prompt, max_length=10).tolist() == \
        _without_graphs(ours, lambda: generate(ours, prompt, max_length=10).tolist())


# ------------------------------------------------------------------------- CUDA vs our CPU run
CONFIGS = [
    {"strategy": "greedy", "repetition_penalty": 1.3, "min_new_tokens": 5},
    {"strategy": "greedy", "presence_penalty": 0.5, "frequency_penalty": 0.3, "no_repeat_ngram_size": 3},
    {"strategy": "greedy", "bad_words": [7, [11, 12]], "eos_token_id": 9},
    {"strategy": "beam_search", "num_beams": 3, "num_return_sequences": 2, "length_penalty": 1.3},
    {"strategy": "top_k", "do_sample": False, "top_k": 5, "temperature": 0.7},
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(sorted(c))[:40])
def test_cuda_gives_the_cpu_tokens(pair, cpu_twin, cfg):
    ids = _prompts(2, 6, 21)
    mine = generate(pair[1], ids.to(CUDA), max_length=14, pad_token_id=PAD, **cfg)
    assert mine.tolist() == generate(cpu_twin, ids, max_length=14, pad_token_id=PAD, **cfg).tolist()


def test_sampling_seeds_on_cuda(pair):
    _, ours = pair
    cfg = dict(strategy="sample", temperature=1.2, top_k=40, top_p=0.95, min_p=0.01, max_length=16)
    ids = _prompts(1, 5, 4).to(CUDA)
    a = generate(ours, ids, seed=7, **cfg)
    assert a.tolist() == generate(ours, ids, seed=7, **cfg).tolist()
    assert a.tolist() != generate(ours, ids, seed=8, **cfg).tolist()
    rows = [_prompts(1, 5, 4)[0].tolist(), _prompts(1, 3, 9)[0].tolist()]
    batch = generate(ours, rows, seed=7, pad_token_id=PAD, **cfg)  # a row in a batch samples as alone
    alone = a[0, 5:].tolist()  # fewer than 16 when it ended at the EOS; the batch row is padded after it
    assert batch[0, 5:5 + len(alone)].tolist() == alone
    assert set(batch[0, 5 + len(alone):].tolist()) <= {PAD}


def test_typical_p_and_sampling_distribution_on_cuda(pair):
    """Sampled first tokens follow the filtered softmax (the CUDA generator draws the uniforms)."""
    _, ours = pair
    ids = _prompts(1, 5, 6).to(CUDA)
    with torch.no_grad():
        probs = torch.softmax(ours.forward_full(ids)[0, -1].double() / 2.0, -1)
    firsts = [int(generate(ours, ids, strategy="sample", temperature=2.0, top_k=0, max_length=1, seed=s)[0, -1])
              for s in range(400)]
    top = probs.argmax().item()
    share = sum(t == top for t in firsts) / len(firsts)
    assert abs(share - probs[top].item()) < 4 * (probs[top].item() * (1 - probs[top].item()) / 400) ** 0.5 + 0.01
    typical = generate(ours, ids, strategy="sample", typical_p=0.5, max_length=8, seed=1)
    assert typical.shape == (1, 13)


def test_streaming_stop_strings_and_texts_on_cuda(pair, cpu_twin):
    _, ours = pair
    prompt = ours.tokenizer.encode("the cat sat")
    events = list(stream(ours, prompt, max_length=12))
    full = generate(ours, prompt, max_length=12)
    assert [t for t, _ in events] == full.tolist()[len(prompt):]
    assert "".join(p for _, p in events) == ours.tokenizer.decode(full.tolist()[len(prompt):])
    text = generate_text(ours, "the dog", max_length=20)
    assert text == generate_text(cpu_twin, "the dog", max_length=20)
    stop = text[3:6] if len(text) > 6 else None
    if stop:
        cut = generate_text(ours, "the dog", max_length=20, stop=[stop])
        assert cut == generate_text(cpu_twin, "the dog", max_length=20, stop=[stop]) and stop not in cut[:3]
    assert generate_batch(ours, ["the cat", "a stop here"], max_length=8) == \
        generate_batch(cpu_twin, ["the cat", "a stop here"], max_length=8)
    assert abs(perplexity(ours, "the cat sat on the mat.") - perplexity(cpu_twin, "the cat sat on the mat.")) < 1e-3


def test_prompt_cache_on_cuda(pair):
    _, ours = pair
    first = generate(ours, _prompts(1, 6, 2)[0].tolist(), max_length=6).tolist()
    turn2 = first + _prompts(1, 4, 3)[0].tolist()
    plain = generate(ours, turn2, max_length=6).tolist()
    ours.prompt_cache = True
    try:
        generate(ours, first[:6], max_length=6)
        assert generate(ours, turn2, max_length=6).tolist() == plain
    finally:
        ours.prompt_cache = False


def test_constraints_on_cuda(hf_folder):
    gpu = load_model(str(hf_folder), device=GPU)
    cpu = load_model(str(hf_folder))
    for key, spec in (("regex", "[a-z]{2,6} (cat|dog)"), ("choices", ["the cat", "the dog", "a bone"]),
                      ("json_schema", {"type": "object", "properties": {"ok": {"type": "boolean"}},
                                       "required": ["ok"]})):
        got = generate_text(gpu, "the", max_length=40, **{key: spec})
        assert got == generate_text(cpu, "the", max_length=40, **{key: spec}), key
        if key == "choices":
            assert got in spec
        elif key == "json_schema":
            assert isinstance(json.loads(got)["ok"], bool)


# ------------------------------------------------------------------------- quantized models
@pytest.mark.parametrize("mode, group", [("int8", 32), ("int8", -1), ("int4", 32)])
def test_quantized_models_on_cuda(mode, group):
    # int8 groups have no torch kernel: on the GPU they dequantize per call (the reference path); int8
    # per channel runs `_weight_int8pack_mm` there
    hf = _tiny_llama(0)
    float_cpu = model_from_hf(hf)
    ids = _prompts(1, 8, 1)
    with torch.no_grad():
        ref = float_cpu.forward_full(ids)
    on_cpu = quantize_model(model_from_hf(hf), mode, group_size=group)
    with torch.no_grad():
        cpu_logits = on_cpu.forward_full(ids)
    weights = {n: m.dequantized_weight() for n, m in quantized_layers(on_cpu)}
    on_cpu.to(CUDA)  # a model quantized on the CPU (CPU kernel layouts) moved to the GPU
    moved = {n: m.dequantized_weight().cpu() for n, m in quantized_layers(on_cpu)}
    for n, w in weights.items():
        assert torch.allclose(moved[n], w, atol=1e-6), n
    with torch.no_grad():
        gpu_logits = on_cpu.forward_full(ids.to(CUDA)).cpu()
    rel = ((gpu_logits - cpu_logits).norm() / cpu_logits.norm()).item()
    assert rel < 1e-2
    tokens = generate(on_cpu, ids.to(CUDA), max_length=10)
    assert tokens.device.type == CUDA.type and tokens.shape == (1, 18)
    on_cpu.to("cpu")  # and back: the CPU kernels again, the same numbers as before the trip
    with torch.no_grad():
        assert torch.equal(on_cpu.forward_full(ids), cpu_logits)
    quant_gpu = quantize_model(model_from_hf(hf.to(CUDA)), mode, group_size=group)  # quantized on the GPU
    with torch.no_grad():
        logits = quant_gpu.forward_full(ids.to(CUDA)).cpu()
    assert ((logits - ref).norm() / ref.norm()).item() < (0.03 if mode == "int8" else 0.2)


@pytest.mark.parametrize("n, k, group", [(64, 128, 32), (576, 576, 64), (1536, 576, 32), (576, 1536, 128), (24, 64, 32),
                                         (36, 64, 32)])
def test_int4_kernel_on_the_device_matches_the_reference_path(n, k, group):
    """tinygemm (`_weight_int4pack_mm`) on CUDA where the shape fits it (n % 8, k % 32), else the
    reference path; the values survive every move between layouts exactly."""
    gen = torch.Generator().manual_seed(n + k)
    w = torch.randn(n, k, generator=gen) * 0.05
    q, scale, zero = quantize_int4(w, group)
    nibbles = q[:, 0::2] | (q[:, 1::2] << 4)
    layer = Int4Linear(q.to(CUDA), scale, zero, None, group, torch.bfloat16)
    on_cpu = "native" if native.available() else ("cpu" if n % 16 == 0 else None)  # the CPU's layout
    if CUDA.type == "cuda":
        assert torch.cuda.get_device_capability(CUDA) >= (8, 0)
        expected = "cuda" if n % 8 == 0 else None
    else:
        expected = on_cpu if CUDA.type == "cpu" else None
    assert layer.layout == expected and layer.scales_and_zeros.device.type == CUDA.type
    x = torch.randn(5, k, generator=gen).to(CUDA)
    ref = x @ dequantize_int4(q, scale.bfloat16().float(), zero.bfloat16().float()).to(CUDA).t()
    y = layer(x)
    assert y.dtype == torch.float32 and ((y - ref).norm() / ref.norm()).item() < 1e-2
    assert torch.equal(layer._nibbles().cpu(), nibbles)
    layer.to("cpu")
    assert layer.layout == on_cpu and torch.equal(layer._nibbles(), nibbles)
    layer.to(CUDA)
    assert layer.layout == expected and torch.equal(layer._nibbles().cpu(), nibbles)
    assert torch.allclose(layer(x), y, atol=1e-3, rtol=1e-3)
    layer.to(torch.float16)  # no tinygemm for float16: the reference path
    assert layer.layout == (expected if CUDA.type == "cpu" else None)
    assert torch.equal(layer._nibbles().cpu(), nibbles)
    assert ((layer(x) - ref).norm() / ref.norm()).item() < 1e-2


# ------------------------------------------------------------------------- the Lisp API and the CLI
def _lisp_run(folder: Path, device: str) -> list:
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval(f'(setq model (torch_hf_load_model "{folder}"))')
    interp.eval(f'(setq generator (torch_generator_create model "{device}"))')
    interp.eval("(torch_set_generation_params generator 12 0.8 40 0.9)")
    out = [interp.eval('(torch_model_info model)')["device"],
           interp.eval('(tensor_to_list (torch_generate generator (tokenizer_encode "the cat") "greedy"))'),
           interp.eval('(torch_generate_text generator "the dog" {"strategy":"beam_search" "num_beams":3})'),
           interp.eval('(torch_generate_batch generator (strings "the cat" "a stop here") {"max_length":6})'),
           round(interp.eval('(torch_perplexity model "the cat sat on the mat.")'), 3),
           interp.eval('(torch_generate_text generator (tokenizer_chat (list (list "user" "the cat"))))')]
    interp.eval('(torch_model_to_device generator "cpu")')
    out.append(interp.eval('(torch_generate_text generator "the dog")'))
    interp.eval(f'(torch_model_to_device generator "{device}")')
    out.append(interp.eval('(torch_generate_text generator "the dog")'))
    return out


def test_lisp_generator_on_cuda_gives_the_cpu_results(hf_folder):
    gpu, cpu = _lisp_run(hf_folder, GPU), _lisp_run(hf_folder, "cpu")
    assert gpu[0].startswith(CUDA.type) and cpu[0] == "cpu"
    assert gpu[1:] == cpu[1:]


def test_lisp_loads_half_precision_and_quantized_models_on_cuda(hf_folder):
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    for cfg in (f'{{"device":"{GPU}" "dtype":"bfloat16"}}', f'{{"device":"{GPU}" "dtype":"float16"}}',
                f'{{"device":"{GPU}" "cuda_graphs":nil}}',
                f'{{"device":"{GPU}" "quantize":"int8"}}', f'{{"device":"{GPU}" "quantize":"int4"}}'):
        interp.eval(f'(setq model (torch_hf_load_model "{hf_folder}" {cfg}))')
        interp.eval('(setq generator (torch_generator_create model))')
        info = interp.eval("(torch_model_info model)")
        assert info["device"].startswith(CUDA.type), cfg
        assert info["cuda_graphs"] is (None if "cuda_graphs" in cfg else True), cfg
        text = interp.eval('(torch_generate_text generator "the cat" {"max_length":8})')
        assert isinstance(text, str), cfg
    interp.eval(f'(setq model (torch_hf_load_model "{hf_folder}"))')  # the guide's "GPU if available"
    if GPU.startswith("cuda"):
        interp.eval('(if (torch_cuda_is_available) (setq generator (torch_generator_create model "cuda")) '
                    '(setq generator (torch_generator_create model "cpu")))')
    else:
        interp.eval(f'(setq generator (torch_generator_create model "{GPU}"))')
    assert interp.eval("(torch_model_info model)")["device"].startswith(CUDA.type)
    interp.eval('(torch_model_to_dtype model "bfloat16")')
    assert isinstance(interp.eval('(torch_generate_text generator "the cat" {"max_length":8})'), str)


def test_cli_script_on_cuda(hf_folder, tmp_path):
    script = tmp_path / "gpu.lisp"
    script.write_text(f'(use \'lispe_torch)\n(setq model (torch_hf_load_model "{hf_folder}"))\n'
                      f'(setq generator (torch_generator_create model "{GPU}"))\n'
                      '(println (torch_model_info model))\n'
                      '(println (torch_generate_text generator "the cat" {"max_length":8}))\n')
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "lispe_py", str(script)], capture_output=True, text=True,
                          cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f'"device":"{CUDA.type}' in proc.stdout.replace(" ", "") and "Traceback" not in proc.stderr
