"""Start to first generated token: `lispe` running the quick start on the embedded SmolLM2, against
`python -c "import torch"` measured in the same run.

Each timed run is a fresh process, `lispe FILE`, where FILE holds examples/quickstart.lisp's lines up to
its first `torch_generate` with the generation length set to one new token, then prints a line; the time
is taken from the process start to that line on its stdout (the process's exit is not counted). The
runs alternate, round after round, between:

- `torch`: `python -c "import torch; print(...)"` to its line, the floor for any PyTorch program here;
- `warm`: the model cache (lispe_py/models/model_cache.py) holds the model, as at every start after
  the first: the weights are memory-mapped, already laid out for decoding;
- `cold`: an empty model cache, as at the first start on a machine: the GGUF's Q4_1 blocks are
  dequantized, the tokenizer built from the GGUF metadata, and the entry written;
- `off`: `LISPE_MODEL_CACHE=0`, the load without any cache.

Reported: best and median per engine, and each one's ratio and difference to `import torch` (best
against best). The children run without PYTHONDONTWRITEBYTECODE, as a user's Python does, so they
read compiled bytecode like any installed program.

    python bench/startup.py                 # 5 rounds
    python bench/startup.py --rounds 9 --engines torch,warm
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart.lisp"
MARKER = "first token:"
ENGINES = ("torch", "warm", "cold", "off")


def first_token_script() -> str:
    """The quick start's lines up to its first generation, with one new token, then the marker line."""
    lines = QUICKSTART.read_text(encoding="utf-8").splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("(setq result (torch_generate "))
    body = "\n".join(lines[: end + 1])
    if "(torch_set_generation_params generator 24 nil nil nil)" not in body:
        raise SystemExit("bench/startup.py: examples/quickstart.lisp no longer sets 24 new tokens; update the bench")
    body = body.replace("(torch_set_generation_params generator 24 nil nil nil)",
                        "(torch_set_generation_params generator 1 nil nil nil)")
    return body + f'\n(println "{MARKER}" (at (tensor_to_list result) -1))\n'


def lispe_command() -> list[str]:
    exe = shutil.which("lispe")
    return [exe] if exe else [sys.executable, "-m", "lispe_py"]


def timed(command: list[str], env: dict[str, str], marker: str) -> tuple[float, str]:
    """Seconds from the start of `command` to the line holding `marker` on its stdout, and that line."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    found, line = None, ""
    for line in proc.stdout:
        if marker in line:
            found = time.perf_counter() - start
            break
    out, err = proc.communicate()
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"bench/startup.py: {' '.join(command)} failed ({proc.returncode}):\n{out}\n{err}")
    return found, line.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}")
    args = ap.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        raise SystemExit(f"bench/startup.py: unknown engine(s) {', '.join(unknown)}; known: {', '.join(ENGINES)}")

    work = Path(tempfile.mkdtemp(prefix="lispe-startup-"))
    try:
        script = work / "first_token.lisp"
        script.write_text(first_token_script(), encoding="utf-8")
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        base["LISPE_TORCH_PROGRESS"] = "0"
        warm_cache = work / "warm-cache"
        lispe = lispe_command() + [str(script)]
        reference = [sys.executable, "-c", f"import torch; print('{MARKER}', flush=True)"]
        # Untimed: compile bytecode, build the native kernels if needed, fill the warm cache.
        timed(lispe, {**base, "LISPE_MODEL_CACHE": str(warm_cache)}, MARKER)
        times: dict[str, list[float]] = {e: [] for e in engines}
        answers = set()
        for r in range(args.rounds):
            for engine in engines:
                env = dict(base)
                cold = work / f"cold-{r}"
                env["LISPE_MODEL_CACHE"] = {"warm": str(warm_cache), "cold": str(cold), "off": "0"}.get(engine, "0")
                seconds, line = timed(reference if engine == "torch" else lispe, env, MARKER)
                shutil.rmtree(cold, ignore_errors=True)
                times[engine].append(seconds)
                if engine != "torch":
                    answers.add(line)
            print(f"round {r + 1}: " + ", ".join(f"{e} {times[e][-1]:.2f} s" for e in engines), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nstart to first token, {args.rounds} rounds, {os.cpu_count()} CPUs "
          f"(the quick start's lines with 1 new token; every lispe run printed {' / '.join(sorted(answers))}):")
    floor = min(times["torch"]) if "torch" in times else None
    print(f"{'engine':<10}{'best s':>9}{'median s':>10}   vs import torch (best)")
    for engine in engines:
        best, median = min(times[engine]), statistics.median(times[engine])
        versus = "" if floor is None or engine == "torch" else f"   {best / floor:.2f}x, {best - floor:+.2f} s"
        print(f"{engine:<10}{best:>9.2f}{median:>10.2f}{versus}")


if __name__ == "__main__":
    main()
