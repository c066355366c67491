"""Fuzzing: whatever text goes through `Interpreter.eval`, the result is a value or a LispEError.

Three sources of programs: random bytes, random text over LispE's syntax characters, and random
well-formed s-expressions whose heads are special forms and builtins (loops, input and file builtins
left out so that a case cannot hang or touch the disk).
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lispe_py import Interpreter, LispEError

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)

SAFE_HEADS = [
    "quote", "if", "ife", "cond", "check", "ncheck", "block", "and", "or", "not", "xor", "switch",
    "select", "maybe", "catch", "throw", "eval", "apply", "setq", "setg", "setqv", "let", "defun",
    "defmacro", "defpat", "lambda", "return", "self", "+=", "-=", "+", "-", "*", "/", "%", "<", ">",
    "<=", ">=", "=", "!=", "list", "cons", "car", "cdr", "nth", "at", "size", "reverse", "append",
    "push", "pop", "string", "integers", "floats", "strings", "numbers", "type", "println", "print",
    "key", "keys", "values", "dictionary", "map", "filter", "foldl", "zip", "sort", "sum", "max",
    "min", "abs", "sqrt", "upper", "lower", "split", "join", "trim", "replace", "flatten", "last",
    "in", "find", "range", "integer", "float", "nullp", "numberp", "stringp", "listp", "emptyp",
]
SYMBOLS = ["x", "y", "f", "n", "lst", "_", "nil", "true", "$", "rest", "k"]

atoms = st.one_of(
    st.integers(min_value=-5, max_value=20),
    st.sampled_from(["0.5", "-1.5", "2e3", "0xF", "0b11", '"a"', '"b c"', '""', "`raw`"]),
    st.sampled_from(SYMBOLS),
)


def _render(x) -> str:
    if isinstance(x, list):
        return "(" + " ".join(_render(e) for e in x) + ")"
    if isinstance(x, tuple):  # quote / dictionary wrappers
        kind, body = x
        if kind == "quote":
            return "'" + _render(body)
        return "{" + " ".join(f"{_render(k)}:{_render(v)}" for k, v in body) + "}"
    return str(x)


forms = st.recursive(
    atoms,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda xs: xs),
        st.tuples(st.sampled_from(SAFE_HEADS), st.lists(children, max_size=4)).map(
            lambda t: [t[0], *t[1]]),
        st.tuples(st.just("quote"), children),
        st.tuples(st.just("dict"), st.lists(st.tuples(atoms, children), max_size=3)),
    ),
    max_leaves=25,
)

SYNTAX_CHARS = "()[]{}'\";: \n\t`\\$_-+*/.0123456789abcxyzλ#!"


def _eval(src: str) -> None:
    interp = Interpreter(max_depth=300)
    try:
        interp.eval(src)
    except LispEError as exc:
        assert exc.message
        assert not exc.message.startswith("internal error"), exc.message
        exc.format()


@settings(max_examples=800, **SETTINGS)
@given(st.binary(max_size=120))
def test_random_bytes(data: bytes) -> None:
    _eval(data.decode("utf-8", errors="replace"))


@settings(max_examples=1000, **SETTINGS)
@given(st.text(alphabet=SYNTAX_CHARS, max_size=80))
def test_random_syntax(text: str) -> None:
    _eval(text)


@settings(max_examples=1500, **SETTINGS)
@given(st.lists(forms, min_size=1, max_size=4))
def test_random_forms(program: list) -> None:
    _eval("\n".join(_render(f) for f in program))


@pytest.mark.parametrize("src", [
    "(defun)", "(defun f)", "(defun 1 2)", "(lambda)", "(lambda 5)", "(let 5)", "(let ((1 2)) 3)",
    "(setq)", "(setq 1 2)", "(setq x)", "(cond 1)", "(switch)", "(defpat f 1)", "(defmacro m)",
    "(self)", "(return 1 2)", "(+= 1 2)", "(loop 1 2)", "(dotimes 3)", "(apply + 1)", "(eval)",
    "(quote)", "(use)", "(use 1)", "(load 3)", "(throw)", "((1 2) 3)", "(\"a\" 1)", "(nil 1)",
    "((lambda (x) x))", "(maybe)", "(catch)", "(ife)", "({} 1)", "(1.5 'a)",
    "(defmacro m ($ x) (block $ x)) (m 1 2)", "(defmacro r (x) (r x)) (r 1)",
])
def test_malformed_forms(src: str) -> None:
    _eval(src)
