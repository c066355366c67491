"""LispE extras that golden files cannot show: the fast path of `+=` on a variable, the compiled
shape of infix expressions, and error cases."""
from __future__ import annotations

import pytest

from lispe_py import Interpreter, LispEError
from lispe_py.forms_extra import infix_to_prefix
from lispe_py.reader import read
from lispe_py.values import Symbol


def test_plus_equal_on_a_variable_keeps_the_fast_form() -> None:
    """`(+= x v)` on a variable is compiled by forms.py's form; places and several values by forms_extra."""
    from lispe_py import forms  # noqa: F401
    from lispe_py.compiler import SPECIAL_FORMS

    wrapper = SPECIAL_FORMS[Symbol("+=")]
    assert wrapper.__module__ == "lispe_py.forms_extra"
    it = Interpreter()
    assert it.eval("(setq x 1) (defun f (n) (setq t 0) (loop i (range 0 n 1) (+= t i)) t) (f 5)") == 10
    assert it.eval("(+= x 2) x") == 3


@pytest.mark.parametrize("text, prefix", [
    ("1 + 2 * 3", "(+ 1 (* 2 3))"),
    ("2 * 3 + 1", "(+ (* 2 3) 1)"),
    ("1 + 2 + 3 - 4", "(- (+ 1 2 3) 4)"),
    ("a = b + c", "(= a (+ b c))"),
    ("x < 1 or y > 2 and z", "(and (or (< x 1) (> y 2)) z)"),
])
def test_infix_grouping(text: str, prefix: str) -> None:
    from lispe_py.printer import repr_string

    assert repr_string(infix_to_prefix(read(text))) == prefix


@pytest.mark.parametrize("code, message", [
    ("(• 1 +)", "malformed infix expression"),
    ("(• 1 2 3)", "expected an operator"),
    ("(• '(1 + 2))", "a quoted list is data, not an infix expression"),
    ("(• (1 +) * 3)", "malformed infix expression"),
    ("(• 2 * (1 2))", "malformed infix expression"),
    ("(defpred p 3 true)", "defpred: write"),
    ("(set@@ '(1 2) 0)", "Wrong number of arguments"),
    ("(+= (@ '(1)) 1)", "a place is written"),
    ("(link 'a 'sum)", "link: expected a string"),
    ("(link \"s\" \"sum\")", "must be an atom"),
    ("(deaccentuate 5)", "deaccentuate: expected a string"),
    ("(set@@ \"abc\" 0 \"z\" \"x\")", "does not occur"),
    ("(segment 5)", "segment: expected a string"),
])
def test_errors_name_the_form(code: str, message: str) -> None:
    with pytest.raises(LispEError) as info:
        Interpreter().eval(code)
    assert message in str(info.value)


def test_tokenizer_rules_is_lispe_s_string_tokenizer_not_a_lispe_torch_function() -> None:
    it = Interpreter()
    assert it.eval('(tokenize_rules (tokenizer_rules) "a<=b")') == ["a", "<=", "b"]
    with pytest.raises(LispEError) as info:
        it.eval("(set_tokenizer_rules (tokenizer_rules) (list))")
    assert "custom tokenizer rules are not supported" in str(info.value)
    assert "lispe_torch" not in str(info.value)


def test_a_variable_holding_an_operator_heads_a_partial_call() -> None:
    it = Interpreter()
    assert it.eval("(setq a '<) (filter '(a 10) '(1 30 5))") == [1, 5]
    with pytest.raises(LispEError):  # a cycle of names is an unknown function, not a Python recursion
        it.eval("(setq p 'q) (setq q 'p) (filter '(p 10) '(1))")


def test_a_failing_predicate_names_the_first_error_once() -> None:
    it = Interpreter()
    it.eval("(defpred q (x) (car x)) (defpred r (x) (q x)) (defpred s (x) (r x))")
    with pytest.raises(LispEError) as info:
        it.eval("(s 5)")
    message = str(info.value)
    assert "no clause of the predicate 's' succeeded (the last one failed with: car: expected a list" in message
    assert message.count("no clause") == 1
    assert it.eval("(defpred t (x) (< x 0)) (catch (t 5))") is not None


@pytest.mark.parametrize("code, message", [
    ("(class@ B (x) (from@ Nowhere))", "unknown class 'Nowhere' in (from@ Nowhere)"),
    ("(class@ B (x) (from@ 3))", "write (from@ Parent)"),
    ("(from@ A (m))", "from@: used outside a class@ method"),
    ("(class@ A (x) (defun m () x)) (class@ B (y) (from@ A) (defun k () (from@ A (nope))))",
     "'nope' is not a method of a class 'A'"),
    ("(class@ A (x) (defun m () x)) (class@ B (y) (defun k () (from@ A (m))))",
     "'m' is not a method of a class 'A'"),
])
def test_class_inheritance_errors_name_the_cause(code: str, message: str) -> None:
    with pytest.raises(LispEError) as exc:
        Interpreter().eval(code)
    assert message in str(exc.value)


def test_an_inherited_method_calls_the_methods_of_the_class_that_wrote_it() -> None:
    """As in LispE, where a call inside a method is bound when that method is compiled, in its class's
    space: an inherited method keeps calling its own class's versions, not the redefinitions."""
    it = Interpreter()
    code = """(class@ A (x) (defun name () "A") (defun hello () (+ "I am " (name))))
              (class@ B (from@ A) (defun name () "B"))
              (list ((A 1) (hello)) ((B 1) (hello)) (@ (B 7) 'x))"""
    assert it.eval(code) == ["I am A", "I am A", 7]
