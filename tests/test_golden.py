"""Golden tests: every tests/golden/NAME.lisp runs and its output must equal NAME.out exactly.

Format of NAME.out:
  - exactly what the script printed on stdout (print/println...);
  - then, if the script stops on an error, `LispEError.format()` followed by a newline, with the
    file name shown as the script's basename (`  at NAME.lisp:LINE:COLUMN`, source line, caret).
If NAME.err exists, it must equal what the script wrote on stderr (printerr/printerrln); otherwise
stderr is not checked.

Each script runs in-process in a fresh `Interpreter()` whose script folder is tests/golden (so
`_current`, `load` and file builtins see that folder), with no arguments.

To write a new case: create NAME.lisp, run
    python tests/test_golden.py NAME          # prints the actual output
check it by hand, and save it as NAME.out.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.lisp"))


def run_golden(name: str) -> tuple[str, str]:
    """Run tests/golden/NAME.lisp; return (stdout + formatted error, stderr)."""
    from lispe_py import Interpreter, LispEError

    path = GOLDEN / f"{name}.lisp"
    out, err = io.StringIO(), io.StringIO()
    interp = Interpreter(script_dir=str(GOLDEN))
    cwd = os.getcwd()
    try:
        os.chdir(GOLDEN)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                interp.run_file(str(path))
            except LispEError as exc:
                if exc.filename:
                    exc.filename = os.path.basename(exc.filename)
                out.write(exc.format() + "\n")
    finally:
        os.chdir(cwd)
    return out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    expected_path = GOLDEN / f"{name}.out"
    assert expected_path.exists(), f"{name}.lisp has no {name}.out beside it"
    actual, stderr = run_golden(name)
    assert actual == expected_path.read_text(encoding="utf-8")
    err_path = GOLDEN / f"{name}.err"
    if err_path.exists():
        assert stderr == err_path.read_text(encoding="utf-8")


if __name__ == "__main__":
    for case in sys.argv[1:]:
        stdout, stderr = run_golden(case.removesuffix(".lisp"))
        sys.stdout.write(stdout)
        if stderr:
            sys.stderr.write(stderr)
