"""The model sizes people run: a Llama-3.2-1B-shaped model (random weights) as a Q4_K_M-style GGUF and
as Q4_1, greedy batch 1, our int4 engine against llama.cpp on the same file in the same run.

    python bench/models.py                      # build the files once (cached), then measure
    python bench/models.py --new-tokens 16 --prompt-tokens 16 --engines ours,llama.cpp
    python bench/models.py --layers 4           # a smaller model of the same widths (quick check)

Engines: "ours" (int4 from the file's blocks; the int4 and K-quant layers round their inputs to 16
bits), "ours-a8" (the same with activations "int8": 8-bit inputs as llama.cpp's own arithmetic) and
"llama.cpp".

Each engine runs in a fresh process (so each one's peak resident memory is its own: /proc VmHWM),
one after the other, on the same file: load time (file to a model ready to run), time to first token
(prefill of the prompt + the first token), decode speed (tokens/s over the remaining new tokens),
peak resident memory and its ratio to the file size, whole and above the process's resident memory
before the load (the interpreter and its libraries: ~220 MB for Python + torch, less for llama.cpp). llama.cpp runs through llama-cpp-python, in
this interpreter if it has it, else in `--llama-python` (default: $LLAMA_PYTHON, then
/work/scratch/llamavenv/bin/python when it exists). Threads: torch's count for both.

The weights are random (normal, std 0.02) and quantized by `lispe_py.models.kquants` (Q4_K/Q6_K,
llama.cpp's Q4_K_M mix: `gguf_writer.mix_type`) or gguf's Q4_1; the vocabulary is a placeholder
(`gguf_writer.placeholder_vocab`). Prompt ids are fixed token ids, so both engines run the same tokens.
Timings on a shared machine are noisy: compare the two engines of one run, not runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LLAMA_3_2_1B = {"arch": "llama", "vocab_size": 128256, "hidden_size": 2048, "num_layers": 16, "num_heads": 32,
                "num_kv_heads": 8, "head_dim": 64, "intermediate_size": 8192, "max_position_embeddings": 2048,
                "rope_theta": 500000.0, "norm_eps": 1e-5, "tie_word_embeddings": True}
FILE_TYPES = ("Q4_K_M", "Q4_1")
OURS = {"ours": None, "ours-a8": "int8"}  # our engines: their activations


def build_file(folder: Path, file_type: str, layers: int) -> Path:
    """The GGUF of the benchmark model in `file_type` (written once, then reused)."""
    import torch

    from lispe_py.models.config import ModelConfig
    from lispe_py.models.gguf_writer import write_llama_gguf

    config = ModelConfig.from_dict({**LLAMA_3_2_1B, "num_layers": layers})
    path = folder / f"llama-3.2-1b-shape-{layers}l-{file_type}.gguf"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    c = config
    q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    shapes = {"attn_q": (q, c.hidden_size), "attn_k": (kv, c.hidden_size), "attn_v": (kv, c.hidden_size),
              "attn_output": (c.hidden_size, q), "ffn_gate": (c.intermediate_size, c.hidden_size),
              "ffn_up": (c.intermediate_size, c.hidden_size), "ffn_down": (c.hidden_size, c.intermediate_size)}

    def weights(name: str) -> torch.Tensor:
        gen = torch.Generator().manual_seed(sum(map(ord, name)) * 7919 + len(name))
        if name.endswith("norm.weight"):
            return 1.0 + 0.1 * torch.randn(c.hidden_size, generator=gen)
        if name == "token_embd.weight":
            return torch.randn(c.vocab_size, c.hidden_size, generator=gen) * 0.02
        return torch.randn(*shapes[name.split(".")[2]], generator=gen) * 0.02

    start = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    write_llama_gguf(tmp, config, file_type, weights=weights, tied=True, vocab=True)
    tmp.rename(path)
    print(f"wrote {path.name} ({path.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    return path


def _status_mb(field: str = "VmHWM") -> float:
    """VmHWM (peak), VmRSS (now) or RssAnon (now, the process's own memory: not file pages) of this
    process, MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


_hwm_mb = _status_mb


def _speeds(stamps: list[float]) -> dict:
    """Decode speed from the new tokens' times: mean over the steps, and 1 / the median step (a
    shared machine's bursts of other work move the mean; the median step is the engine's own pace)."""
    steps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
    return {"decode_tok_s": len(steps) / (stamps[-1] - stamps[0]), "median_tok_s": 1.0 / steps[len(steps) // 2]}


def run_ours(path: str, prompt: list[int], new_tokens: int, activations: str | None = None) -> dict:
    """One engine run in this (fresh) process: ours, int4 straight from the file's blocks."""
    import torch

    from lispe_py.generation import generate
    from lispe_py.models import load_model
    from lispe_py.models.memory import memory_report

    before = _status_mb("VmRSS")
    start = time.perf_counter()
    model = load_model(path, quantize="int4", activations=activations)
    load_s = time.perf_counter() - start
    stamps: list[float] = []
    config = {"strategy": "greedy", "max_length": new_tokens, "min_new_tokens": new_tokens,
              "callback": lambda tok, piece: stamps.append(time.perf_counter())}
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = generate(model, prompt, config)
    mem = memory_report(model)
    return {"load_s": load_s, "ttft_s": stamps[0] - t0, **_speeds(stamps),
            "tokens": out[len(prompt):].tolist(), "peak_mb": _hwm_mb(), "start_mb": before,
            "weights_mb": mem["weights_bytes"] / 2**20, "anon_mb": _status_mb("RssAnon"),
            "threads": torch.get_num_threads(), "layers": sorted({type(m).__name__ for m in model.modules()
                                                                  if type(m).__name__.endswith("Linear")})}


def run_llama_cpp(path: str, prompt: list[int], new_tokens: int, threads: int) -> dict:
    from llama_cpp import Llama

    before = _status_mb("VmRSS")
    start = time.perf_counter()
    model = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=256, verbose=False)
    load_s = time.perf_counter() - start
    stamps, out = [], []
    t0 = time.perf_counter()
    for tok in model.generate(prompt, temp=0.0, top_k=1, reset=True):
        stamps.append(time.perf_counter())
        out.append(tok)
        if len(out) == new_tokens:
            break
    return {"load_s": load_s, "ttft_s": stamps[0] - t0, **_speeds(stamps),
            "tokens": out, "peak_mb": _hwm_mb(), "start_mb": before, "threads": threads}


def _llama_python() -> str | None:
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is not None:
        return sys.executable
    for candidate in (os.environ.get("LLAMA_PYTHON"), "/work/scratch/llamavenv/bin/python"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def child(engine: str, path: str, prompt: list[int], new_tokens: int, threads: int, python: str) -> dict:
    code = ("import json, sys; sys.path.insert(0, %r); from bench.models import run_ours, run_llama_cpp; "
            "import torch; torch.set_num_threads(%d); " % (str(ROOT), threads))
    if engine in OURS:
        code += "print(json.dumps(run_ours(%r, %r, %d, %r)))" % (path, prompt, new_tokens, OURS[engine])
    else:
        code = ("import json, sys; sys.path.insert(0, %r); import importlib.util as u; "
                "spec = u.spec_from_file_location('m', %r); m = u.module_from_spec(spec); spec.loader.exec_module(m); "
                "print(json.dumps(m.run_llama_cpp(%r, %r, %d, %d)))"
                % (str(ROOT), __file__, path, prompt, new_tokens, threads))
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    if out.returncode:
        raise RuntimeError(f"{engine} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", default=os.environ.get("LISPE_BENCH_MODELS", "/tmp/lispe-bench-models"))
    ap.add_argument("--layers", type=int, default=LLAMA_3_2_1B["num_layers"])
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--file-types", default=",".join(FILE_TYPES))
    ap.add_argument("--engines", default="ours,ours-a8,llama.cpp")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--llama-python", default=None)
    ap.add_argument("--repeats", type=int, default=1,
                    help="run the engines this many times, alternating; each engine's fastest run is kept")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    prompt = [(1000 + 37 * i) % LLAMA_3_2_1B["vocab_size"] for i in range(args.prompt_tokens)]
    engines = args.engines.split(",")
    llama_python = args.llama_python or _llama_python()
    if "llama.cpp" in engines and llama_python is None:
        print("llama.cpp: llama-cpp-python not found (pip install llama-cpp-python, or --llama-python)", file=sys.stderr)
        engines.remove("llama.cpp")
    results = []
    for file_type in args.file_types.split(","):
        path = build_file(Path(args.folder), file_type, args.layers)
        size_mb = path.stat().st_size / 2**20
        row = {"file_type": file_type, "file_mb": size_mb, "layers": args.layers}
        for _ in range(args.repeats):
            for engine in engines:
                r = child(engine, str(path), prompt, args.new_tokens, args.threads,
                          llama_python if engine == "llama.cpp" else sys.executable)
                r["peak_over_file"] = r["peak_mb"] / size_mb
                r["model_over_file"] = (r["peak_mb"] - r["start_mb"]) / size_mb
                if engine not in row or r["median_tok_s"] > row[engine]["median_tok_s"]:
                    row[engine] = r
        for ours in OURS:
            if ours in row and "llama.cpp" in row:
                row.setdefault("ratios", {})[ours] = _compare(row[ours], row["llama.cpp"])
        results.append(row)
        print(_table_row(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def _compare(ours: dict, theirs: dict) -> dict:
    """Decode speed ratios (whole run and median steps) and how many greedy ids agree."""
    a, b = ours["tokens"], theirs["tokens"]
    return {"speed_ratio": ours["decode_tok_s"] / theirs["decode_tok_s"],
            "median_speed_ratio": ours["median_tok_s"] / theirs["median_tok_s"],
            "same_tokens": next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))}


def _table_row(row: dict) -> str:
    parts = [f"{row['file_type']} ({row['file_mb']:.0f} MB, {row['layers']} layers):"]
    for engine in (*OURS, "llama.cpp"):
        if engine in row:
            r = row[engine]
            parts.append(f"{engine}: load {r['load_s']:.2f} s, TTFT {r['ttft_s']:.2f} s, "
                         f"{r['decode_tok_s']:.2f} tok/s (median step {r['median_tok_s']:.2f}), peak RSS {r['peak_mb']:.0f} MB "
                         f"({r['peak_over_file']:.2f}x file; {r['peak_mb'] - r['start_mb']:.0f} MB above the "
                         f"process before the load: {r['model_over_file']:.2f}x)"
                         + (f", anonymous {r['anon_mb']:.0f} MB" if "anon_mb" in r else ""))
    for ours, r in row.get("ratios", {}).items():
        parts.append(f"{ours}/llama.cpp decode speed {r['speed_ratio']:.2f}x (median steps "
                     f"{r['median_speed_ratio']:.2f}x); greedy ids agree for {r['same_tokens']} tokens")
    return "\n  ".join(parts)


if __name__ == "__main__":
    main()
