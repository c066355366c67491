"""Hostile input and embedding hygiene (issue 21): bounded work on cyclic values, long lines, NUL
bytes and invalid UTF-8; the host process's settings left alone (int/str digit limit, `random`);
the `lispe` command on a closed or broken output and under a second Ctrl-C."""
from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lispe_py import Interpreter, LispEError

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
LISPE = [sys.executable, "-m", "lispe_py"]

CYCLES = ('(setq c (list 1 2)) (push c c) (setq c2 (list 1 2)) (push c2 c2) '
          '(setq d {"a":1}) (set@ d "me" d) (setq d2 {"a":1}) (set@ d2 "me" d2)')


def _timed(interp: Interpreter, src: str) -> tuple[object, float]:
    out = io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stdout(out):
        try:
            value = interp.eval(src)
        except LispEError as exc:
            value = exc
    seconds = time.monotonic() - start
    return (out.getvalue() if out.getvalue() else value), seconds


# ------------------------------------------------------------------------------- cyclic values

@pytest.mark.parametrize("src, expected", [
    ("(println c)", "#1=(1 2 #1#)\n"),
    ("(string c)", "#1=(1 2 #1#)"),
    ("(println d)", '#1={"a":1 "me":#1#}\n'),
    ("(string d)", '#1={"a":1 "me":#1#}'),
    ("(= c c2)", True), ("(eq c c2)", True), ("(!= c c2)", None),
    ("(= d d2)", True), ("(eq d d2)", True), ("(!= d d2)", None),
    ("(flatten c)", "flatten: the list contains itself (a cycle): it has no flat form"),
    ("(json c)", "json: a list that contains itself (a cycle) has no JSON form"),
    ("(json d)", "json: a dictionary that contains itself (a cycle) has no JSON form"),
    ("(+ c 1)", "+: a list that contains itself (a cycle) cannot be combined element-wise"),
    ("(* c c2)", "*: a list that contains itself (a cycle) cannot be combined element-wise"),
    ("(^^ c 2)", "^^: a list that contains itself (a cycle) cannot be combined element-wise"),
])
def test_cyclic_values_end_within_2_seconds(src: str, expected: object) -> None:
    interp = Interpreter()
    interp.eval(CYCLES)
    value, seconds = _timed(interp, src)
    if isinstance(value, LispEError):
        value = value.message
    assert value == expected
    assert seconds < 2


def test_cycles_that_differ_compare_unequal() -> None:
    interp = Interpreter()
    interp.eval(CYCLES + " (setq c3 (list 1 3)) (push c3 c3)")
    assert interp.eval("(= c c3)") is None
    assert interp.eval("(eq c c3)") is None
    assert interp.eval("(!= c c3)") is True


def test_deep_nesting_compares_and_prints_without_recursion() -> None:
    interp = Interpreter()
    src = "(setq x '" + "(" * 50000 + "1" + ")" * 50000 + ")"
    interp.eval(src + " " + src.replace("setq x", "setq y"))
    assert interp.eval("(= x y)") is True
    assert interp.eval("(eq x y)") is True
    assert interp.eval("(size (string x))") == 2 * 50000 + 1


def test_element_wise_arithmetic_on_shared_lists_is_not_a_cycle() -> None:
    interp = Interpreter()
    interp.eval("(setq e (list 1 2))")
    assert interp.eval("(+ (list e e) e)") == [[2, 3], [3, 4]]
    assert interp.eval("(* (list e e) (list e e))") == [[1, 4], [1, 4]]


def test_printing_shared_acyclic_parts_in_full() -> None:
    interp = Interpreter()
    assert interp.eval("(setq e (list 1)) (string (list e e {\"k\":e}))") == '((1) (1) {"k":(1)})'


# ------------------------------------------------------------------ long lines, NUL, bad UTF-8

def test_ten_megabyte_line_gives_a_short_message(tmp_path: Path) -> None:
    path = tmp_path / "long.lisp"
    path.write_text('(setq s "' + "a" * 10_000_000 + '") (car 5)\n')
    with pytest.raises(LispEError) as info:
        Interpreter().run_file(str(path))
    text = info.value.format()
    assert len(text) < 1024
    assert info.value.line == 1 and info.value.column == 10_000_013
    lines = text.splitlines()
    assert lines[2].startswith("  ...") and lines[2].endswith("(car 5)")
    assert lines[3].index("^") == lines[2].index("(car 5)")  # the caret under the failing form


def test_ten_megabyte_symbol_gives_a_short_message() -> None:
    with pytest.raises(LispEError) as info:
        Interpreter().eval("(" + "a" * 10_000_000 + " 1)")
    assert len(info.value.format()) < 1024


def test_nul_byte_outside_a_string_is_an_error_at_its_position() -> None:
    with pytest.raises(LispEError) as info:
        Interpreter().eval('(println 1)\n(setq x "a\x00b")\n(setq ab\x00c 1)', "nul.lisp")
    exc = info.value
    assert exc.message == "a NUL byte (\\0) outside a string"
    assert (exc.filename, exc.line, exc.column) == ("nul.lisp", 3, 9)
    with pytest.raises(LispEError) as info:
        Interpreter().eval("\x00")
    assert (info.value.line, info.value.column) == (1, 1)


def test_nul_byte_inside_a_string_is_data_and_its_printed_form_reads_back() -> None:
    interp = Interpreter()
    assert interp.eval('(size "a\x00b")') == 3
    printed = interp.eval('(string (list "a\x00b"))')
    assert interp.eval(f"(car '{printed})") == "a\x00b"


def test_invalid_utf8_is_an_error_at_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.lisp"
    path.write_bytes(b'(println "ok")\n(println "caf\xe9")\n')
    with pytest.raises(LispEError) as info:
        Interpreter().run_file(str(path))
    exc = info.value
    assert exc.message == "invalid UTF-8 (byte 0xe9 at byte offset 28)"
    assert (exc.filename, exc.line, exc.column) == (str(path), 2, 14)
    r = subprocess.run([*LISPE, str(path)], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("Error: invalid UTF-8 (byte 0xe9 at byte offset 28)\n"
                               f"  at {path}:2:14\n")


def test_run_file_and_eval_on_bad_input() -> None:
    interp = Interpreter()
    with pytest.raises(LispEError, match="cannot read"):
        interp.run_file("/nonexistent/prog.lisp")
    for bad in (None, 5, b"(+ 1 2)"):
        with pytest.raises(TypeError, match=r"Interpreter.eval\(\) takes LispE source text"):
            interp.eval(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        interp.run_source(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- embedding hygiene

def test_int_digit_limit_is_left_alone_and_big_integers_still_print(capsys) -> None:
    if not hasattr(sys, "get_int_max_str_digits"):
        pytest.skip("Python without an int/str digit limit")
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(4300)
    try:
        interp = Interpreter()
        assert sys.get_int_max_str_digits() == 4300
        interp.eval("(println (^^ 10 5000))")
        assert capsys.readouterr().out == "1" + "0" * 5000 + "\n"
        big = "7" * 6000
        assert interp.eval(f"(= {big} (integer \"{big}\"))") is True  # read and converted back
        assert interp.eval(f"(size (string (* {big} 1)))") == 6000
        assert interp.eval(f"(json_parse (json (list {big})))") == [int(big[:4000]) * 10 ** 2000
                                                                   + int(big[4000:])]
        assert sys.get_int_max_str_digits() == 4300
    finally:
        sys.set_int_max_str_digits(before)


def test_big_integer_printing_is_not_quadratic() -> None:
    interp = Interpreter()
    start = time.process_time()
    assert interp.eval("(size (string (^^ 7 1000000)))") == 845099
    assert time.process_time() - start < 10


def test_each_interpreter_has_its_own_random_stream() -> None:
    a, b = Interpreter(), Interpreter()
    a.eval("(random_seed 42)")
    first = [a.eval("(random)") for _ in range(3)]
    a.eval("(random_seed 42)")
    b.eval("(random_seed 7)")
    interleaved = []
    for _ in range(3):
        interleaved.append(a.eval("(random)"))
        b.eval("(random)")  # draws from b do not move a's stream
    assert interleaved == first
    b.eval("(random_seed 42)")  # seeding b does not reset a
    assert a.eval("(random)") != first[0] or a.eval("(random)") != first[1]


def test_interpreter_random_leaves_the_host_random_module_alone() -> None:
    random.seed(1234)
    expected = [random.random() for _ in range(3)]
    random.seed(1234)
    interp = Interpreter()
    interp.eval("(random_seed 5) (random) (random)")
    assert [random.random() for _ in range(3)] == expected


def test_interp_random_is_the_generator_builtins_share() -> None:
    from lispe_py.builtins.numbers import interp_random

    interp = Interpreter()
    interp.eval("(random_seed 99)")
    expected = interp_random(interp.ctx).random() * 10
    interp.eval("(random_seed 99)")
    assert interp.eval("(random 10)") == expected


# ----------------------------------------------------------------------------- the lispe command

def _script(tmp_path: Path, text: str) -> str:
    path = tmp_path / "prog.lisp"
    path.write_text(text)
    return str(path)


def test_closed_stdout_exits_1_with_one_line(tmp_path: Path) -> None:
    path = _script(tmp_path, '(println "hello")\n(println "not reached")\n')
    r = subprocess.run([*LISPE, path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       env=ENV, timeout=60, preexec_fn=lambda: os.close(1))
    assert r.returncode == 1
    assert r.stderr == "lispe: standard output is closed\n"


def test_closed_stdout_is_fine_when_nothing_is_printed(tmp_path: Path) -> None:
    path = _script(tmp_path, "(setq x (+ 1 2))\n")
    r = subprocess.run([*LISPE, path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       env=ENV, timeout=60, preexec_fn=lambda: os.close(1))
    assert (r.returncode, r.stderr) == (0, "")


def test_catch_cannot_swallow_a_closed_output(tmp_path: Path) -> None:
    path = _script(tmp_path, '(catch (println "x"))\n(printerrln "went on")\n')
    r = subprocess.run([*LISPE, path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       env=ENV, timeout=60, preexec_fn=lambda: os.close(1))
    assert (r.returncode, r.stderr) == (1, "lispe: standard output is closed\n")


def test_full_disk_on_stdout_exits_1_with_one_line(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        r = subprocess.run([*LISPE, "-e", '(println "x")'], stdout=full, stderr=subprocess.PIPE,
                           text=True, env=ENV, timeout=60)
    assert r.returncode == 1
    assert r.stderr == "lispe: cannot write to standard output: No space left on device\n"


def test_broken_pipe_exits_141_quietly(tmp_path: Path) -> None:
    path = _script(tmp_path, "(loop i (iota 2000000) (println i))\n")
    proc = subprocess.Popen([*LISPE, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    first = proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does once it has its line
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert first == b"1\n"
    assert proc.returncode == 141
    assert err == b""


def _ctrl_c_twice(cmd: list[str], gap: float, stdin: int | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    try:
        assert proc.stdout.readline() == "started\n"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        time.sleep(gap)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("gap", [0.0, 0.3])
def test_second_ctrl_c_during_a_long_loop_exits_130(tmp_path: Path, gap: float) -> None:
    path = _script(tmp_path, '(println "started")\n(setq n 0)\n(while true (setq n (+ n 1)))\n')
    r = _ctrl_c_twice([*LISPE, path], gap)
    assert r.returncode == 130
    assert r.stderr == "Interrupted\n"


@pytest.mark.parametrize("gap", [0.0, 0.3])
def test_second_ctrl_c_while_blocked_in_a_long_call_exits_130(tmp_path: Path, gap: float) -> None:
    """The worker is stuck in a call that returns late (a read here, a torch generation in life):
    the first Ctrl-C waits for it; the second exits at once, with 130 and no traceback."""
    path = _script(tmp_path, '(println "started")\n(input "name? ")\n(println "not reached")\n')
    read_end, write_end = os.pipe()
    try:
        start = time.monotonic()
        r = _ctrl_c_twice([*LISPE, path], gap, stdin=read_end)
        assert time.monotonic() - start < 10
    finally:
        os.close(read_end)
        os.close(write_end)
    assert r.returncode == 130
    assert r.stderr == "Interrupted\n"
    assert "not reached" not in r.stdout


# ------------------------------------------------------------------------- error wording, bounded

def test_host_function_python_errors_speak_lispe_but_own_messages_pass() -> None:
    interp = Interpreter()
    interp.define("inc", lambda x: x + 1)

    def refuse(x):
        raise ValueError(f"the host refuses {x}")

    interp.define("refuse", refuse)
    with pytest.raises(LispEError) as info:
        interp.eval('(inc "a")')
    assert info.value.message == 'inc: cannot apply to string_ "a"'
    with pytest.raises(LispEError) as info:
        interp.eval("(refuse 4)")
    assert info.value.message == "refuse: the host refuses 4"


def test_error_messages_show_a_bounded_preview_of_huge_or_cyclic_values() -> None:
    interp = Interpreter()
    interp.eval("(setq big (iota 5000000)) (setq c (list 1 2)) (push c c)")
    for src in ("(car 5 big)", "(+ 'a big)", "(key big 1)", "(integer c)"):
        start = time.monotonic()
        with pytest.raises(LispEError) as info:
            interp.eval(src)
        assert time.monotonic() - start < 2, src
        assert len(info.value.message) < 400, info.value.message
    with pytest.raises(LispEError) as info:
        interp.eval("(integer c)")
    assert "list_ (1 2 ...)" in info.value.message


def test_load_of_invalid_utf8_names_the_file_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "bad.lisp").write_bytes(b'(setq x 1)\n(println "\xff")\n')
    with pytest.raises(LispEError) as info:
        Interpreter(script_dir=str(tmp_path)).eval('(load "bad.lisp")')
    exc = info.value
    assert exc.message == "invalid UTF-8 (byte 0xff at byte offset 21)"
    assert (exc.filename, exc.line, exc.column) == ("bad.lisp", 2, 11)


def test_many_cycles_print_in_linear_time() -> None:
    from lispe_py.printer import to_string

    many = []
    for i in range(50000):
        x = [i]
        x.append(x)
        many.append(x)
    start = time.process_time()
    text = to_string(many)
    assert time.process_time() - start < 2
    assert text.startswith("(#1=(0 #1#) #2=(1 #2#) ") and text.endswith(" #50000=(49999 #50000#))")
