"""The interpreter core through its Python API: recursion limits, embedding, sandbox, reader, printer."""
from __future__ import annotations

import os
import sys

import pytest

from lispe_py import Interpreter, LispEError, __version__
from lispe_py.printer import repr_string, to_string
from lispe_py.reader import Form, is_complete, read
from lispe_py.values import VOID, Integers, Symbol


# --- recursion -----------------------------------------------------------------------------------

def test_million_step_tail_loop():
    interp = Interpreter()
    assert interp.eval("(defun loop1 (n) (if (> n 0) (loop1 (- n 1)) 'done)) (loop1 1000000)") is Symbol("done")


def test_tail_calls_through_cond_block_check_and_mutual_recursion():
    interp = Interpreter()
    interp.eval("""
      (defun a (n) (cond ((= n 0) 'a_done) (true (block (b (- n 1))))))
      (defun b (n) (check true (a n)))""")
    assert interp.eval("(a 300000)") is Symbol("a_done")


def test_non_tail_recursion_reaches_depth_10000():
    interp = Interpreter()
    interp.eval("(defun depth (n) (if (= n 0) 0 (+ 1 (depth (- n 1)))))")
    assert interp.eval("(depth 10000)") == 10000


def test_recursion_through_builtin_callbacks_reaches_depth_10000():
    interp = Interpreter()
    interp.eval("(defun m (n) (if (= n 0) 0 (+ 1 (car (map (lambda (x) (m (- n 1))) '(1))))))")
    assert interp.eval("(m 10000)") == 10000


def test_stack_overflow_is_a_lispe_error_and_the_interpreter_survives():
    interp = Interpreter()
    interp.eval("(defun down (n) (+ 1 (down (+ n 1))))")
    with pytest.raises(LispEError) as info:
        interp.eval("(down 0)")
    assert info.value.message.startswith("stack overflow (recursion depth")
    assert info.value.line == 1
    assert interp.eval("(+ 1 2)") == 3
    interp.eval("(defun depth (n) (if (= n 0) 0 (+ 1 (depth (- n 1)))))")
    assert interp.eval("(depth 10000)") == 10000


def test_custom_depth_limit():
    interp = Interpreter(max_depth=50)
    interp.eval("(defun depth (n) (if (= n 0) 0 (+ 1 (depth (- n 1)))))")
    assert interp.eval("(depth 40)") == 40
    with pytest.raises(LispEError, match=r"recursion depth 50"):
        interp.eval("(depth 60)")


def test_deep_nesting_parses_and_runs():
    interp = Interpreter()
    src = "(+ 1 " * 10000 + "0" + ")" * 10000
    assert interp.eval(src) == 10000
    nested = interp.eval("'" + "(" * 10000 + ")" * 10000)
    assert to_string(nested).startswith("((((")


def test_the_recursion_limit_is_restored_after_evaluation():
    before = sys.getrecursionlimit()
    Interpreter().eval("(+ 1 2)")
    assert sys.getrecursionlimit() == before


def test_ctrl_c_stops_the_lisp_code_not_only_the_wait():
    """SIGINT lands in the main thread; the evaluation thread must stop too, and the interpreter
    must be usable afterwards."""
    import signal
    import threading
    import time

    from lispe_py.runtime import EVAL_THREAD_NAME

    interp = Interpreter()
    interp.define("arm", lambda: threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start())
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        interp.eval("(setq n 0) (arm) (while true (setq n (+ n 1)))")
    assert time.monotonic() - started < 5
    count = interp.globals["n"]
    time.sleep(0.2)
    assert count > 0 and interp.globals["n"] == count  # no loop going on in the background
    assert not any(t.name == EVAL_THREAD_NAME and t.ident in sys._current_frames()
                   for t in threading.enumerate())
    assert interp.eval("(+ n 1)") == count + 1
    assert sys.getrecursionlimit() < 100_000  # the raised limit was given back


# --- embedding -----------------------------------------------------------------------------------

def test_eval_returns_python_values():
    interp = Interpreter()
    assert interp.eval("(+ 1 2)") == 3
    assert interp.eval("(/ 10 4)") == 2.5
    assert interp.eval('"abc"') == "abc"
    assert interp.eval("true") is True
    assert interp.eval("nil") is None
    assert interp.eval("'(1 2 (3))") == [1, 2, [3]]
    assert interp.eval('{"a":1}') == {"a": 1}
    assert interp.eval('(println "x")') is None  # the void value of print functions
    assert isinstance(interp.eval("(integers 1 2)"), Integers)


def test_run_source_keeps_the_void_value_and_runs_on_the_big_stack():
    interp = Interpreter()
    assert interp.run_source('(println "x")') is VOID  # eval gives None for it, like for nil
    assert interp.run_source("nil") is None
    assert interp.run_source("(setq n 4) (+ n 1)", "<mine>") == 5
    interp.run_source("(defun depth (n) (if (= n 0) 0 (+ 1 (depth (- n 1)))))")
    assert interp.run_source("(depth 10000)") == 10000
    with pytest.raises(LispEError) as info:
        interp.run_source("\n(car 1 2)", "<mine>")
    assert (info.value.filename, info.value.line) == ("<mine>", 2)


def test_interpreters_have_independent_globals():
    a, b = Interpreter(), Interpreter()
    a.eval("(setq shared 1) (defun f () 'from_a)")
    with pytest.raises(LispEError, match="Unbound atom: 'shared'"):
        b.eval("shared")
    with pytest.raises(LispEError, match="unknown function: 'f'"):
        b.eval("(f)")
    assert a.globals["shared"] == 1
    assert "shared" not in b.globals


def test_define_values_and_python_functions():
    interp = Interpreter()
    interp.define("answer", 42)
    interp.define("double", lambda x: 2 * x)
    interp.define("join3", lambda *xs: "-".join(map(str, xs)))
    assert interp.eval("(double answer)") == 84
    assert interp.eval("(map double '(1 2))") == [2, 4]
    assert interp.eval("(join3 1 2 3)") == "1-2-3"
    with pytest.raises(LispEError, match="Wrong number of arguments in call to: 'double'"):
        interp.eval("(double 1 2)")


def test_python_exception_in_defined_function_is_wrapped():
    interp = Interpreter()

    def boom(x):
        raise ValueError("bad value " + str(x))

    interp.define("boom", boom)
    with pytest.raises(LispEError) as info:
        interp.eval("(println 1)\n(boom 7)")
    assert info.value.message == "boom: bad value 7"
    assert (info.value.line, info.value.column) == (2, 1)


def test_call_lisp_functions_and_builtins_from_python():
    interp = Interpreter()
    interp.eval("(defun add (a (b 10)) (+ a b))")
    assert interp.call("add", 1) == 11
    assert interp.call("add", 1, 2) == 3
    assert interp.call("+", 1, 2, 3) == 6
    fn = interp.eval("(lambda (x) (* x x))")
    assert fn(7) == 49
    with pytest.raises(LispEError, match="unknown function: 'nope'"):
        interp.call("nope")


def test_error_positions_and_filename():
    interp = Interpreter()
    with pytest.raises(LispEError) as info:
        interp.eval("(setq a 1)\n(println (+ a\n   zzz))", filename="prog.lisp")
    err = info.value
    assert (err.filename, err.line, err.column) == ("prog.lisp", 3, 4)  # the atom, not its form
    assert err.message == "Unbound atom: 'zzz'"
    assert "^" in err.format()


def test_unknown_function_suggests_user_functions():
    interp = Interpreter()
    interp.eval("(defun compute_total (x) x)")
    with pytest.raises(LispEError, match=r"did you mean 'compute_total'"):
        interp.eval("(compute_totl 1)")


def test_ctx_call_forms():
    interp = Interpreter()
    ctx = interp.ctx
    interp.eval("(defun sq (x) (* x x))")
    assert ctx.call(Symbol("sq"), 3) == 9
    assert ctx.call(Symbol("+"), 1, 2) == 3
    assert ctx.call(interp.eval("(lambda (a b) (- a b))"), 5, 2) == 3
    assert ctx.call([Symbol("<"), 3], 1) is True          # (< 1 3)
    assert ctx.call([Symbol("<"), Symbol("_"), 3], 5) is None  # (< 5 3)
    assert ctx.call([Symbol("-"), 10, Symbol("_")], 3) == 7    # (- 10 3)
    assert ctx.call(len, [1, 2]) == 2
    assert ctx.interp is interp
    with pytest.raises(LispEError, match="not a function"):
        ctx.call(5, 1)


def test_run_file_sets_current_and_args(tmp_path):
    script = tmp_path / "s.lisp"
    script.write_text("(list _current _args)")
    interp = Interpreter(args=["a", "b"])
    current, args = interp.run_file(str(script))
    assert current == str(tmp_path) + "/"
    assert args == ["a", "b"]


def test_use_marks_library_loaded():
    interp = Interpreter()
    interp.eval("(use 'utils)")
    assert "utils" in interp.libraries
    assert interp.eval("(clamp 12 0 10)") == 10


def test_version():
    assert __version__.count(".") == 2


# --- sandbox -------------------------------------------------------------------------------------

def test_sandbox_refuses_load_outside_script_folder(tmp_path):
    inside = tmp_path / "lib.lisp"
    inside.write_text("(setq loaded 'yes)")
    outside_dir = tmp_path.parent / (tmp_path.name + "_other")
    outside_dir.mkdir()
    outside = outside_dir / "evil.lisp"
    outside.write_text("(setq loaded 'evil)")
    interp = Interpreter(sandbox=True, script_dir=str(tmp_path))
    assert interp.eval('(load "lib.lisp") loaded') is Symbol("yes")
    with pytest.raises(LispEError, match="sandbox"):
        interp.eval(f'(load "{outside}")')
    with pytest.raises(LispEError, match="sandbox"):
        interp.eval('(load "../' + outside_dir.name + '/evil.lisp")')
    with pytest.raises(LispEError, match="sandbox"):
        interp.check_file_access(str(inside), write=True)
    assert interp.check_file_access(str(inside)) == os.path.realpath(inside)


def test_no_sandbox_allows_files(tmp_path):
    other = tmp_path / "x.lisp"
    other.write_text("(+ 40 2)")
    interp = Interpreter(script_dir="/")
    assert interp.eval(f'(load "{other}")') == 42
    assert interp.check_file_access(str(other), write=True) == os.path.realpath(other)


# --- reader and printer --------------------------------------------------------------------------

def test_reader_positions():
    forms = read("(a\n  (b c)\n 'x)", "f.lisp")
    outer = forms[0]
    assert isinstance(outer, Form)
    assert (outer.line, outer.column) == (1, 1)
    assert (outer[1].line, outer[1].column) == (2, 3)
    assert outer.source.name == "f.lisp"


@pytest.mark.parametrize("text,message,line,column", [
    ("(a (b c)", "parentheses do not balance", 1, 1),
    ("(a\n  (b\n c)", "parentheses do not balance", 1, 1),
    ("(a))", "parentheses do not balance", 1, 4),
    ('(a "abc)', "missing end of string", 1, 4),
    ('(x """ab\nc', "missing end of string", 1, 4),
    ("(x `ab", "missing end of string", 1, 4),
])
def test_parse_errors_point_at_the_opening(text, message, line, column):
    with pytest.raises(LispEError) as info:
        read(text)
    assert (info.value.message, info.value.line, info.value.column) == (message, line, column)


@pytest.mark.parametrize("text,complete", [
    ("(+ 1 2)", True), ("(+ 1", False), ("(a ; )\n)", True), ('(a "(")', True),
    ('(a """ )', False), ("(a `)", False), ("(a ;; ) ;; ", False), ("(a))", True), ("", True),
    ('(a "unterminated', True),
])
def test_is_complete(text, complete):
    assert is_complete(text) is complete


def test_printer_rules():
    assert to_string(["a", 1, 2.5, None, True]) == '("a" 1 2.5 nil true)'
    assert to_string("top") == "top"
    assert repr_string("top") == '"top"'
    assert to_string({"b": 2, "a": "x"}) == '{"a":"x" "b":2}'
    assert to_string(10 / 6) == "1.66667"
    assert to_string(3.0) == "3"
    assert to_string([Symbol("quote"), Symbol("x")]) == "'x"
    assert to_string([]) == "()"
    assert to_string(VOID) == ""  # LispE's emptyatom_, the value of print functions, has an empty name


def test_integers_over_4300_digits_print_and_parse():
    """Python refuses int <-> str conversions past 4,300 digits by default; Lisp integers have no
    such limit."""
    interp = Interpreter()
    text = interp.eval("(string (^^ 10 5000))")
    assert text == "1" + "0" * 5000
    assert to_string([10 ** 5000]) == "(1" + "0" * 5000 + ")"
    assert interp.eval(f"(+ {text} 1)") == 10 ** 5000 + 1  # a literal read back
    assert interp.eval(f'(integer "{text}")') == 10 ** 5000


def test_defpat_redefinition_replaces_the_clause_with_the_same_patterns():
    interp = Interpreter()
    interp.eval('(defpat kind (0) "zero") (defpat kind (n) "other")')
    interp.eval('(defpat kind (0) "nothing")')  # e.g. fixed at the REPL
    assert interp.eval("(list (kind 0) (kind 3))") == ["nothing", "other"]
