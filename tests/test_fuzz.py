"""Fuzzing: whatever text goes through `Interpreter.eval`, the result is a value or a LispEError
whose message speaks LispE, never Python (no operand type lists, `NoneType`, quoted Python class
names or exception class names).

Three sources of programs: random bytes, random text over LispE's syntax characters, and random
well-formed s-expressions whose heads are special forms and builtins (loops, input and file builtins
left out so that a case cannot hang or touch the disk). Then every registered builtin is called
with each argument list of 0 to 2 values from a wide set (numbers, huge integers, strings, lists,
dictionaries, nil, true, atoms, lambdas, builtins, typed lists; tensors for lispe_torch's tensor
builtins).
"""
from __future__ import annotations

import contextlib
import copy
import io
import itertools
import re

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


_PY_CLASSES = ("Lambda|PatternFunction|Builtin|Symbol|list|dict|str|int|float|bool|tuple|set|bytes|"
               "NoneType|function|method|object|Integers|Floats|Numbers|Strings|Tensor|_Void")
PYTHON_WORDING = re.compile(
    r"NoneType|unsupported operand|not supported between instances|object is not|has no attribute"
    r"|positional argument|keyword argument|not subscriptable|not iterable|object at 0x"
    rf"|'(?:{_PY_CLASSES})' (?:object|and)\b|\b(?:of|and|not|type) '(?:{_PY_CLASSES})'"
    r"|\b[A-Z][A-Za-z]*(?:Error|Exception)\b|Traceback")


def python_wording(message: str) -> str | None:
    """The Python phrase a LispE error message carries, or None. The builtin's usage line and a
    quoted builtin name (`call to: 'float'`) are left out: they are LispE's own words."""
    text = re.sub(r"\(usage: .*", "", message, flags=re.S)
    m = PYTHON_WORDING.search(text)
    return m.group(0) if m else None


def test_python_wording_detector() -> None:
    """The detector catches the phrases the attack run found, and passes LispE's own messages."""
    for bad in ("%: unsupported operand type(s) for %: 'NoneType' and 'Lambda'",
                "internal error: OverflowError: int too big to convert",
                "<: '<' not supported between instances of 'int' and 'Symbol'",
                "car: 'list' object has no attribute 'x'", "f: expected str, not NoneType"):
        assert python_wording(bad), bad
    for good in ("+: cannot apply to integer_ 3 and lambda_ (lambda (x) x) (usage: (+ 1 2) adds)",
                 "Wrong number of arguments in call to: 'float'", "unknown function: 'lst'",
                 "car: expected a list, got integer_ 5"):
        assert python_wording(good) is None, good


def _check_message(exc: LispEError, src: str) -> None:
    assert exc.message
    assert not exc.message.startswith("internal error"), (src, exc.message)
    found = python_wording(exc.message)
    assert found is None, f"{src!r} gave Python wording {found!r}: {exc.message}"
    exc.format()


def _eval(src: str) -> None:
    interp = Interpreter(max_depth=300)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            interp.eval(src)
    except LispEError as exc:
        _check_message(exc, src)


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


# ------------------------------------------------------------ every builtin, a wide set of values

#: Builtins left out: they read the terminal or files, or write to the disk.
UNSAFE_BUILTINS = {"input", "fread", "fwrite", "fappend", "json_read", "load"}
#: Argument values (source text): every LispE value kind, and integers past 64 bits.
VALUES = ["3", "-1", "0", "2.5", '"a"', "'(1 2)", '{"a":1}', "nil", "true", "'a",
          "(lambda (x) x)", "(integers 1 2)", "+", "9223372036854775808", "1e300", "'()"]
TENSOR_VALUES = ["T", "F", "2", "-1", "0", "2.5", '"a"', "'(1 2)", "nil", "'a", "(lambda (x) x)",
                 "9223372036854775808"]
#: lispe_torch builtins that only compute on tensors (no model, file or device).
TENSOR_BUILTINS = ("tensor_", "torch_sort", "torch_topk", "torch_multinomial", "torch_manual_seed")


def _calls(interp: Interpreter, names: list[str], values: list[str]) -> int:
    """Call each builtin with every list of 0 to 2 of `values` (fresh copies each time, since some
    builtins change their arguments) through the runtime's builtin call; check each error."""
    from lispe_py.builtins.registry import REGISTRY
    from lispe_py.runtime import call_builtin, run_with_big_stack

    templates = [interp.run_source(v) for v in values]

    def fresh(v):
        return copy.deepcopy(v) if isinstance(v, (list, dict)) else v

    def run() -> int:
        n = 0
        for name in names:
            entry = REGISTRY[name]
            for k in range(3):
                for combo in itertools.product(templates, repeat=k):
                    n += 1
                    try:
                        with contextlib.redirect_stdout(io.StringIO()):
                            call_builtin(entry, [fresh(v) for v in combo], interp.ctx)
                    except LispEError as exc:
                        _check_message(exc, f"({name} {' '.join(map(repr, combo))})")
        return n

    return run_with_big_stack(run)


def _compiled_calls(interp: Interpreter, names: list[str], values: list[str]) -> None:
    """The same through source text, for the compiler's own builtin calls and inlined operators."""
    for name in names:
        for combo in itertools.product(values, repeat=2):
            src = f"({name} {' '.join(combo)})"
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    interp.eval(src)
            except LispEError as exc:
                _check_message(exc, src)


def test_every_builtin_errors_in_lispe_words() -> None:
    """Each core builtin, with every list of up to two values: a value, or a LispE-worded error."""
    from lispe_py.builtins.registry import REGISTRY

    interp = Interpreter(max_depth=300)
    names = sorted({e.name for e in REGISTRY.values()
                    if e.library is None and e.group != "user" and e.name not in UNSAFE_BUILTINS})
    assert len(names) > 150
    assert _calls(interp, names, VALUES) > 150 * len(VALUES) ** 2
    _compiled_calls(interp, ["+", "-", "*", "/", "%", "<", ">=", "=", "!=", "^^", "at", "car", "key"],
                    VALUES)


def test_tensor_builtins_error_in_lispe_words() -> None:
    """lispe_torch's tensor builtins and tensor arithmetic, with tensors and integers past 2^63."""
    pytest.importorskip("torch")
    from lispe_py.builtins.registry import REGISTRY

    interp = Interpreter(max_depth=300)
    interp.eval("(use 'lispe_torch) (setq T (tensor_create (integers 1 2))) "
                "(setq F (tensor_create (floats 1.5 2.5)))")
    names = sorted({e.name for e in REGISTRY.values()
                    if e.library == "lispe_torch" and e.name.startswith(TENSOR_BUILTINS)})
    assert len(names) > 25
    _calls(interp, names, TENSOR_VALUES)
    _compiled_calls(interp, ["+", "-", "*", "/", "%", "<", "="], TENSOR_VALUES)
    with pytest.raises(LispEError, match=r"\+: the integer 9223372036854775808 does not fit a tensor"):
        interp.eval("(+ T 9223372036854775808)")
    with pytest.raises(LispEError, match=r"\*: the integer 1267650600228229401496703205376 does not"):
        interp.eval("(* (^^ 2 100) F)")


def test_arithmetic_type_error_names_lispe_types_and_usage() -> None:
    interp = Interpreter()
    with pytest.raises(LispEError) as info:
        interp.eval("(% 3 (lambda (x) x))")
    msg = info.value.message
    assert msg.startswith("%: cannot apply to integer_ 3 and lambda_ (lambda (x) x)"), msg
    assert "(usage: (% " in msg
    with pytest.raises(LispEError) as info:
        interp.eval("(< 3 'a)")
    assert info.value.message.startswith("<: cannot apply to integer_ 3 and atom_ a (usage: (< ")
