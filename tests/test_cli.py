"""The `lispe` command as a user runs it: real subprocesses, exit codes, output streams, startup cost."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # like an installed package
ENV["PYTHONPATH"] = str(ROOT) + os.pathsep + ENV.get("PYTHONPATH", "")
LISPE = [sys.executable, "-m", "lispe_py"]


def run(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LISPE, *args], input=stdin, capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=60)


@pytest.fixture
def script(tmp_path: Path):
    def make(text: str, name: str = "prog.lisp") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return make


def test_script_output_and_exit_0(script):
    p = script('(println "hello" (+ 1 2))\n(+ 40 2)\n')
    r = run(str(p))
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello 3\n", "")


def test_print_result_prints_the_last_value(script):
    p = script('(println "x")\n(+ 40 2)\n')
    r = run("--print-result", str(p))
    assert (r.returncode, r.stdout) == (0, "x\n42\n")


def test_script_arguments_go_to_args(script):
    p = script("(println _args (size _args))")
    r = run(str(p), "one", "--two", "3")
    assert r.stdout == '("one" "--two" "3") 3\n'


def test_error_exits_1_keeps_earlier_output(script):
    p = script('(println "before")\n(println (/ 1 0))\n(println "after")\n')
    r = run(str(p))
    assert r.returncode == 1
    assert r.stdout == "before\n"
    assert r.stderr.startswith("Error: division by zero\n")
    assert f"{p}:2:10" in r.stderr
    assert "Traceback" not in r.stderr


def test_parse_error_exits_1(script):
    p = script("(println 1\n")
    r = run(str(p))
    assert r.returncode == 1
    assert "parentheses do not balance" in r.stderr


def test_eval_prints_value_of_last_form():
    assert run("-e", "(+ 1 2)").stdout == "3\n"
    assert run("-e", '(list "a" 1)').stdout == '("a" 1)\n'
    assert run("-e", '"raw"').stdout == "raw\n"
    r = run("-e", '(println "only this")')
    assert (r.returncode, r.stdout) == (0, "only this\n")


def test_eval_prints_an_integer_of_5000_digits():
    # A fresh process: Python's default int->str limit (4,300 digits) is in force until lispe lifts it.
    r = run("-e", "(string (^^ 10 5000))")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "1" + "0" * 5000 + "\n"


def test_eval_error_exits_1():
    r = run("-e", "(car 1 2 3)")
    assert r.returncode == 1
    assert r.stderr.startswith("Error: Wrong number of arguments in call to: 'car'")


def test_stdin_program():
    r = run(stdin='(println "from stdin")\n(setq x 5)\n')
    assert (r.returncode, r.stdout) == (0, "from stdin\n")
    r = run("-", "arg1", stdin="(println _args)")
    assert r.stdout == '("arg1")\n'
    r = run("--print-result", "-", stdin="(* 6 7)")
    assert r.stdout == "42\n"


def test_usage_errors_exit_2(tmp_path):
    r = run("--no-such-option")
    assert r.returncode == 2 and "usage:" in r.stderr
    r = run(str(tmp_path / "missing.lisp"))
    assert r.returncode == 2 and "cannot open" in r.stderr
    assert run("-e").returncode == 2


def test_version_and_help():
    from lispe_py import __version__

    r = run("--version")
    assert (r.returncode, r.stdout) == (0, f"lispe_py {__version__}\n")
    r = run("--help")
    assert r.returncode == 0 and "--sandbox" in r.stdout and "-e" in r.stdout and "--vi" in r.stdout


def test_vi_flag_is_an_option_not_a_file():
    from lispe_py.cli import _parse

    assert _parse(["--vi"])["vi"] is True and _parse([])["vi"] is False
    assert _parse(["--vi", "prog.lisp", "x"])["file"] == "prog.lisp"


def test_sandbox_refuses_load_outside_the_script_folder(tmp_path):
    folder = tmp_path / "scripts"
    folder.mkdir()
    (tmp_path / "secret.lisp").write_text("(println 'secret)")
    (folder / "ok.lisp").write_text("(println 'ok)")
    main = folder / "main.lisp"
    main.write_text('(load "ok.lisp")\n(load "../secret.lisp")\n')
    r = run("--sandbox", str(main))
    assert r.returncode == 1
    assert r.stdout == "ok\n"
    assert "sandbox" in r.stderr
    r = run(str(main))
    assert (r.returncode, r.stdout) == (0, "ok\nsecret\n")


def test_relative_load_is_relative_to_the_script(tmp_path):
    (tmp_path / "helper.lisp").write_text("(defun helper () 'helped)")
    main = tmp_path / "main.lisp"
    main.write_text('(load "helper.lisp")\n(println (helper))\n')
    r = run(str(main), cwd=ROOT)
    assert r.stdout == "helped\n"


def _cpu_seconds(cmd: list[str], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, stdout=subprocess.DEVNULL, env=ENV, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return best


@pytest.mark.slow
def test_startup_is_cheap():
    """`lispe -e` costs at most 2x `python -c "import lark"`, the one dependency every run needs
    (CPU time: stable on a busy machine). A bare `python -c pass` is no reference: its cost swings
    tenfold between a clean venv and a site-packages full of .pth files."""
    run("-e", "1")  # write the bytecode caches once, as an installed package has them
    base = _cpu_seconds([sys.executable, "-c", "import lark"])
    lispe = _cpu_seconds([*LISPE, "-e", "(+ 1 2)"])
    assert lispe <= 2 * base, f"lispe -e: {lispe:.3f}s CPU vs python -c 'import lark': {base:.3f}s"


def test_plain_scripts_do_not_import_torch():
    code = ("import sys\nfrom lispe_py import Interpreter\n"
            "i = Interpreter()\n"
            "i.eval('(defun f (x) (* x 2)) (println (f 21) (map f (integers 1 2)))')\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert 'numpy' not in sys.modules, 'numpy imported'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "42 (2 4)\n"


def _interrupt(cmd: list[str], stdin: int | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Start `cmd`, wait for its first output line, send SIGINT as Ctrl-C does; (result, seconds)."""
    import signal
    import time

    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    try:
        assert proc.stdout.readline() == "started\n"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, err = proc.communicate(timeout=20)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err), time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_ctrl_c_stops_a_running_script_with_status_130(script):
    path = script('(println "started")\n(setq n 0)\n(while true (setq n (+ n 1)))\n')
    r, seconds = _interrupt([*LISPE, str(path)])
    assert r.returncode == 130
    assert r.stderr == "Interrupted\n"  # a short message, no traceback
    assert seconds < 5


def test_ctrl_c_while_a_script_waits_for_input_exits_promptly(script):
    path = script('(println "started")\n(input "name? ")\n(println "not reached")\n')
    read_end, write_end = os.pipe()  # stdin stays open: the read blocks
    try:
        r, seconds = _interrupt([*LISPE, str(path)], stdin=read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert r.returncode == 130 and r.stderr == "Interrupted\n"
    assert "not reached" not in r.stdout
    assert seconds < 8
