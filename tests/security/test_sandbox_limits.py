"""--max-seconds / --max-memory and Interpreter(max_seconds=..., max_memory=...): a program past its limit
stops with "time limit exceeded (N s)" / "memory limit exceeded (N MB)"; no Lisp handler stops the
limit; the CLI's kernel backstops (SIGALRM, RLIMIT_DATA) hold where the watchdog cannot act."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from sandbox_support import cli_env

from lispe_py import Interpreter, LispEError
from lispe_py.cli import ALARM_MARGIN
from lispe_py.runtime import resident_bytes

BUSY = "(setq n 0) (while true (+= n 1))"
GROW = '(setq s "x") (while true (setq s (+ s s)))'  # doubles a string: hundreds of MB in a blink


def lispe(project, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "lispe_py", *args], capture_output=True, text=True,
                       env=cli_env(project), cwd=project.proj, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r, time.monotonic() - start


# --- time ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [BUSY, f"(catch {BUSY})", f"(maybe {BUSY} 'caught)",
                                  "(defun f (x) (f (+ x 1))) (f 0)"])
def test_cli_time_limit(project, code: str) -> None:
    script = project.script('(println "started")\n' + code + '\n(println "after")\n')
    r, took = lispe(project, "--max-seconds", "1", str(script))
    assert r.returncode == 1, r
    assert r.stdout == "started\n"
    assert r.stderr.startswith("Error: time limit exceeded (1 s)"), r.stderr
    assert 1 <= took < 8, took


def test_cli_time_limit_with_fractions_and_eval(project) -> None:
    r, took = lispe(project, "--max-seconds=0.5", "-e", BUSY)
    assert (r.returncode, r.stderr.splitlines()[0]) == (1, "Error: time limit exceeded (0.5 s)"), r
    assert took < 8


def test_cli_alarm_ends_a_native_call_that_never_yields(project) -> None:
    """Squaring a huge integer holds the interpreter lock for seconds: the watchdog cannot raise into
    it, SIGALRM ends the process ALARM_MARGIN seconds after the limit."""
    r, took = lispe(project, "--max-seconds", "1", "-e", "(setq x 7) (while true (setq x (* x x)))")
    assert r.returncode in (-signal.SIGALRM, 1), r  # 1 when a squaring happened to end in time
    assert took < 1 + ALARM_MARGIN + 6, took


def test_cli_program_within_its_limits_runs(project) -> None:
    r, _ = lispe(project, "--max-seconds", "60", "--max-memory", "2000", "-e", "(+ 40 2)")
    assert (r.returncode, r.stdout, r.stderr) == (0, "42\n", "")


# --- memory -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [GROW, f"(catch {GROW})", "(setq l ()) (while true (push l (range 0 1000 1)))"])
def test_cli_memory_limit(project, code: str) -> None:
    r, _ = lispe(project, "--max-memory", "150", "-e", code)
    assert r.returncode == 1, r
    assert r.stderr.startswith("Error: memory limit exceeded (150 MB)") \
        or r.stderr.startswith("Error: ") and "out of memory" in r.stderr.splitlines()[0], r.stderr


def test_cli_memory_limit_leaves_room_for_torch(project) -> None:
    pytest.importorskip("torch")
    r, _ = lispe(project, "--max-memory", "1500", "-e",
                 "(use 'lispe_torch) (tensor_ones (integers 2 2))", timeout=120)
    assert r.returncode == 0, r


# --- bad limits -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--max-seconds", "0"], ["--max-seconds", "abc"], ["--max-memory=-5"],
                                  ["--max-seconds"], ["--allow-read="], ["--allow-net"], ["--max-memory", "1"],
                                  ["--max-seconds", "inf"]])
def test_cli_bad_limit_values_are_usage_errors(project, args) -> None:
    r, _ = lispe(project, *args, "-e", "(+ 1 2)")
    assert r.returncode == 2 and r.stdout == "", r
    assert r.stderr.startswith("lispe: "), r.stderr


def test_cli_help_lists_the_flags(project) -> None:
    r, _ = lispe(project, "--help")
    for flag in ("--sandbox", "--allow-read", "--allow-write", "--allow-net", "--max-seconds", "--max-memory"):
        assert flag in r.stdout


# --- the API --------------------------------------------------------------------------------------------

def test_api_time_limit_per_evaluation() -> None:
    interp = Interpreter(max_seconds=0.5)
    for code in (BUSY, f"(catch {BUSY})"):
        start = time.monotonic()
        with pytest.raises(LispEError, match=r"time limit exceeded \(0\.5 s\)$"):
            interp.eval(code)
        assert time.monotonic() - start < 3
    assert interp.eval("(+ 1 2)") == 3  # a fresh deadline for each evaluation
    interp.eval("(defun spin () (while true (+= n 1)))")
    with pytest.raises(LispEError, match="time limit exceeded"):
        interp.call("spin")


def test_api_memory_limit() -> None:
    limit = resident_bytes() // 2**20 + 100  # the process's resident memory (this one runs pytest)
    interp = Interpreter(max_memory=limit)
    with pytest.raises(LispEError, match=rf"memory limit exceeded \({limit} MB\)|out of memory"):
        interp.eval(GROW)
    interp.eval("(setq s nil)")
    assert interp.eval("(+ 1 2)") == 3


def test_api_without_limits_has_none() -> None:
    assert Interpreter().limits() is None
    assert Interpreter(max_seconds=2).limits().max_seconds == 2
