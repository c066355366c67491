"""Helpers of the sandbox tests (imported by name: a bare `conftest` import would find another folder's conftest): a project folder with a script, a secret outside it, and one way to run
a script as the `lispe` command (a real subprocess) or through `Interpreter` (the API), from the
script folder or from another working directory."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lispe_py import Interpreter, LispEError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "TOP-SECRET-7f3a9c"  # appears in no file inside a project folder


@dataclass
class Result:
    ok: bool
    out: str  # what the program printed
    err: str  # the error message ("" when ok)

    @property
    def everything(self) -> str:
        return self.out + self.err


@dataclass
class Project:
    root: Path  # tmp_path: holds home/, outside/, proj/, elsewhere/
    proj: Path  # the script folder
    outside: Path  # a folder next to it, with secret.txt / secret.json / evil.lisp
    home: Path  # $HOME in the runs, with secret.txt
    elsewhere: Path  # another working directory

    def script(self, text: str, name: str = "main.lisp") -> Path:
        path = self.proj / name
        path.write_text(text, encoding="utf-8")
        return path


def cli_env(project: Project) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["HOME"] = str(project.home)
    return env


def run_cli(project: Project, script: Path, flags: list[str] = (), cwd: Path | None = None,
            timeout: float = 120) -> Result:
    """`python -m lispe_py FLAGS script` (the path as seen from `cwd`)."""
    cwd = cwd or project.proj
    r = subprocess.run([sys.executable, "-m", "lispe_py", *flags, os.path.relpath(script, cwd)],
                       capture_output=True, text=True, env=cli_env(project), cwd=cwd, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return Result(r.returncode == 0, r.stdout, r.stderr)


def run_api(project: Project, script: Path, monkeypatch: pytest.MonkeyPatch, cwd: Path | None = None,
            **options) -> Result:
    """Interpreter(sandbox=True, **options).run_file(script), run from `cwd`, $HOME = project.home."""
    monkeypatch.setenv("HOME", str(project.home))
    monkeypatch.chdir(cwd or project.proj)
    options.setdefault("sandbox", True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            Interpreter(**options).run_file(os.path.relpath(script))
        except LispEError as exc:
            return Result(False, out.getvalue(), exc.format())
    return Result(True, out.getvalue(), "")


MODES = ["cli-in-script-folder", "cli-elsewhere", "api-in-script-folder", "api-elsewhere"]


def refused(result: Result, *words: str) -> None:
    """The run failed with a LispE error whose message names the sandbox (or has all the `words`), and
    the secret never showed."""
    assert not result.ok, result
    assert SECRET not in result.everything, result
    message = [line for line in result.err.splitlines() if line.startswith("Error: ")]
    assert message, result.err
    for word in words or ("sandbox",):
        assert word in message[0], result.err
