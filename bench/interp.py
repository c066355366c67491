"""Interpreter benchmarks, each as a ratio to the same algorithm in CPython, measured in this run.

    python bench/interp.py            # prints a table (best of 5, Lisp and Python alternating)

  fib(25)        naive doubly-recursive Fibonacci
  loopcount      1,000,000 iterations of `(setq x (+ x (* i 2)))`-style arithmetic
  parse 1 MB     reading a generated 1 MB .lisp file into Lisp data (CPython: `ast.parse` of the
                 same data written as Python list literals)
"""
from __future__ import annotations

import ast
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lispe_py import Interpreter  # noqa: E402
from lispe_py.reader import read  # noqa: E402
from lispe_py.runtime import run_with_big_stack  # noqa: E402


def _once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def paired(lisp, python, repeat: int = 5) -> tuple[float, float]:
    """Best time of each, measured alternately so that a busy machine slows both alike."""
    a, b = [], []
    for _ in range(repeat):
        a.append(_once(lisp))
        b.append(_once(python))
    return min(a), min(b)


def py_fib(n: int) -> int:
    return n if n < 2 else py_fib(n - 1) + py_fib(n - 2)


def py_loop() -> int:
    x = 0
    for i in range(1000000):
        x = x + i * 2 - 1
    return x


def make_source(size: int) -> tuple[str, str]:
    """A ~size-byte LispE file of nested lists, and the same data as Python literals."""
    rng = random.Random(1)
    lisp, py = [], []
    total = 0
    while total < size:
        items = [rng.choice([str(rng.randint(0, 10000)), f'"s{rng.randint(0, 99)}"', "1.5"]) for _ in range(8)]
        inner = "(" + " ".join(items[:4]) + ")"
        line = f"(setq v{total % 97} ({inner} {' '.join(items[4:])}))\n"
        lisp.append(line)
        py.append(f"v{total % 97} = [[{', '.join(items[:4])}], {', '.join(items[4:])}]\n")
        total += len(line)
    return "".join(lisp), "".join(py)


def main() -> None:
    interp = Interpreter()
    interp.eval("(defun fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))")
    rows = []

    assert interp.eval("(fib 25)") == py_fib(25)
    rows.append(("fib(25)", *paired(lambda: interp.eval("(fib 25)"), lambda: py_fib(25))))

    loop_src = "(setq x 0) (loopcount 1000000 i (setq x (- (+ x (* i 2)) 1))) x"
    assert interp.eval(loop_src) == py_loop()
    rows.append(("loopcount 1e6", *paired(lambda: interp.eval(loop_src), py_loop)))

    lisp_text, py_text = make_source(1_000_000)
    rows.append((f"parse {len(lisp_text) / 1e6:.1f} MB",
                 *paired(lambda: run_with_big_stack(lambda: read(lisp_text, "bench.lisp")),
                         lambda: ast.parse(py_text), repeat=2)))

    print(f"{'benchmark':<16}{'lispe_py (s)':>14}{'CPython (s)':>14}{'ratio':>9}")
    for name, a, b in rows:
        print(f"{name:<16}{a:>14.3f}{b:>14.4f}{a / b:>8.1f}x")


if __name__ == "__main__":
    main()
