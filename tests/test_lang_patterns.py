"""defpat patterns, data@, class@, macro clauses and limits, top-level return, maybe with a handler.

The golden files tests/golden/lispe_*.lisp hold the printed behaviour; these tests check what a
golden file cannot: time limits, the embedding API and error wording.
"""
from __future__ import annotations

import time

import pytest

from lispe_py import Interpreter, LispEError
from lispe_py.printer import repr_string


def run(code: str) -> str:
    return repr_string(Interpreter().eval(code))


def test_guard_subpattern_binds_and_tests() -> None:
    code = """(defun ev (x) (eq 0 (% x 2)))
              (defpat f ((integer_ (ev x))) 'even)
              (defpat f (x) x)
              (list (f 4) (f 5) (f "a"))"""
    assert run(code) == '(even 5 "a")'


def test_predicate_patterns_match() -> None:
    assert run("(defpat g ((integer_ x) (numberp y)) (+ x y)) (g 1 2)") == "3"


def test_error_in_a_guard_means_no_match() -> None:
    code = "(defpat h ((< 0 (car x))) 'pos) (defpat h (x) 'other) (list (h '(1)) (h 5))"
    assert run(code) == "(pos other)"


def test_predicate_without_variable_is_a_clear_error() -> None:
    with pytest.raises(LispEError, match="has no variable to bind"):
        Interpreter().eval("(defpat k ((< 1 2)) 'x)")


def test_dictionary_pattern_backtracks_over_keys() -> None:
    code = "(defpat same ({a:v b:v $:_}) (list a b v)) (same {\"x\":1 \"y\":2 \"z\":1})"
    assert run(code) == '("x" "z" 1)'


def test_data_constructor_errors_name_the_structure() -> None:
    interp = Interpreter()
    interp.eval("(data@ (Point integer_ integer_))")
    with pytest.raises(LispEError, match=r"Mismatch on argument: 1 \(integer_ required\) in 'Point'"):
        interp.eval('(Point "a" 2)')
    with pytest.raises(LispEError, match="Size mismatch"):
        interp.eval("(Point 1 2 3)")
    assert repr_string(interp.eval("(Point 1 2)")) == "(Point 1 2)"


def test_data_unknown_field_type_is_an_error() -> None:
    with pytest.raises(LispEError, match="unknown field type 'color'"):
        Interpreter().eval("(data@ (Pen color)) (Pen 1)")


def test_class_instance_and_methods() -> None:
    interp = Interpreter()
    interp.eval("(class@ Acc ((total 0)) (defun add (n) (setqi total (+ total n)) total))")
    interp.eval("(setq a (Acc))")
    assert interp.eval("(a (add 2) (add 3))") == 5
    assert repr_string(interp.eval("a")) == '(Acc "total":5)'
    interp.eval("(class@ Other () (defun nope () 1))")
    with pytest.raises(LispEError, match="'nope' is not a method of the class 'Acc'"):
        interp.eval("(a (add 1) (nope))")
    with pytest.raises(LispEError, match="mismatch between class instance"):
        interp.eval("(a Other (nope))")


def test_method_call_shape_on_unknown_function_keeps_unknown_function_error() -> None:
    interp = Interpreter()
    interp.eval("(class@ C (x) (defun get () x)) (defun get () 1)")
    with pytest.raises(LispEError, match="unknown function: 'undefined_fn'"):
        interp.eval("(undefined_fn (get))")


def test_setqi_outside_a_method_is_an_error() -> None:
    with pytest.raises(LispEError, match="setqi: used outside a class@ method"):
        Interpreter().eval("(setqi x 1)")


def test_exponential_macro_stops_quickly_naming_the_macro() -> None:
    interp = Interpreter()
    interp.eval("(defmacro dup (x) (list x x))")
    code = "(dup " * 40 + "1" + ")" * 40
    start = time.process_time()
    with pytest.raises(LispEError, match="macro 'dup'"):
        interp.eval(code)
    assert time.process_time() - start < 2.0


def test_macro_growing_without_end_stops_quickly() -> None:
    interp = Interpreter()
    start = time.process_time()
    with pytest.raises(LispEError, match="macro 'grow'"):
        interp.eval("(defmacro grow (x) (grow (x x))) (grow 1)")
    with pytest.raises(LispEError, match="macro 'loopy' expands without end"):
        interp.eval("(defmacro loopy (x) (loopy x)) (loopy 1)")
    assert time.process_time() - start < 2.0


def test_macro_clauses_are_chosen_by_pattern() -> None:
    code = """(defmacro op ('add a b) (+ a b))
              (defmacro op ('mul a b) (* a b))
              (list (op add 2 3) (op mul 2 3))"""
    assert run(code) == "(5 6)"
    with pytest.raises(LispEError, match="no definition of the macro 'op' matches"):
        Interpreter().eval("(defmacro op ('add a b) (+ a b)) (defmacro op ('mul a b) (* a b)) (op sub 1 2)")


def test_toplevel_return_ends_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    interp = Interpreter()
    value = interp.run_source('(println "a") (setq i 0) (while true (+= i 1) (if (> i 4) (return i))) '
                              '(println "b")')
    assert value == 5
    assert capsys.readouterr().out == "a\n"
    # the interpreter is still usable afterwards
    assert interp.eval("(+ i 1)") == 6


def test_return_inside_function_still_returns_from_function() -> None:
    assert run("(defun f (x) (if (> x 0) (return 'pos)) 'neg) (list (f 1) (f -1))") == "(pos neg)"


def test_maybe_calls_a_function_fallback_with_the_error() -> None:
    assert run('(maybe (/ 1 0) (lambda (e) (+ "got " e)))') == '"got division by zero"'
    assert run("(defun h (e) 'handled) (maybe (car 1) h)") == "handled"
    assert run('(maybe (+ 1 1) (lambda (e) "never"))') == "2"
