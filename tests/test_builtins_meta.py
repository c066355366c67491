"""Registry-wide checks on the builtins.

(a) every registered builtin, and every special form, has a docstring whose first line is a Lisp
    usage example;
(b) every core builtin (not a library one such as lispe_torch) is called in some test source;
(c) every builtin of the library modules (lists, predicates, numbers, strings, dicts, io, typed)
    refuses wrong argument types and wrong argument counts with a LispEError naming it.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from lispe_py import Interpreter, LispEError
from lispe_py.builtins import dicts, io, lists, numbers, predicates, strings, typed  # noqa: F401
from lispe_py.builtins.registry import REGISTRY

TESTS = Path(__file__).resolve().parent

# The modules of the library groups (arithmetic and printing have their own tests).
LIBRARY_MODULES = tuple(m.__name__ for m in (lists, predicates, numbers, strings, dicts, io, typed))


def _entries() -> list:
    """One registry entry per builtin (aliases share their entry)."""
    Interpreter()  # make sure every core builtin module is imported
    seen: dict[int, object] = {}
    for entry in REGISTRY.values():
        seen.setdefault(id(entry), entry)
    return sorted(seen.values(), key=lambda e: e.name)


def test_every_builtin_has_a_usage_docstring() -> None:
    bad = [e.name for e in _entries() if not e.doc.strip() or not e.usage.startswith("(")]
    assert not bad, f"builtins without a usage-example docstring: {bad}"


def _test_sources() -> str:
    parts = []
    for path in sorted(TESTS.rglob("*")):
        if path.suffix in (".lisp", ".py") and path.is_file():
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def test_every_special_form_has_a_usage_docstring() -> None:
    """(help 'if), the REPL's completion menu and its usage line show a special form's first line."""
    from lispe_py.builtins.help import describe, special_forms
    from lispe_py.compiler import SPECIAL_FORMS

    Interpreter()
    forms = special_forms()
    assert len(forms) == len(SPECIAL_FORMS) >= 40
    bad = [name for name, doc in forms.items()
           if not re.match(rf"\({re.escape(name)}[ )]", doc) or len(doc.splitlines()[0]) > 110]
    assert not bad, f"special forms without a usage line '(name ...) does...': {bad}"
    for name, doc in forms.items():
        assert doc.splitlines()[0] in describe(name)
        assert "\n    " not in doc  # the docstring's source indentation is removed


def test_every_core_builtin_is_called_in_a_test() -> None:
    text = _test_sources()
    missing = []
    for entry in _entries():
        if entry.library is not None:
            continue
        names = entry.names or (entry.name,)
        if not any(re.search(r"[(\[]" + re.escape(n) + r"(?=[\s)\]])", text) for n in names):
            missing.append(entry.name)
    assert not missing, f"builtins never called as (name ...) in tests/: {missing}"


# ------------------------------------------------------------------------- (c) wrong arguments

# A call with a wrongly typed argument for every builtin of the library groups that checks types.
BAD_TYPE = {
    "cons": "(cons 1 (heap '<))", "consb": "(consb 1 2)", "last": "(last 42)", "at": "(at 42 0)",
    "set@": "(set@ 42 0 1)", "push": "(push 42 1)", "pushfirst": "(pushfirst 42 1)",
    "pop": "(pop 42)", "popfirst": "(popfirst 42)", "insert": "(insert 42 1 0)",
    "extend": "(extend 42 '(1))", "reverse": "(reverse 42)", "sort": "(sort '< 42)",
    "size": "(size 42)", "find": "(find 42 1)", "in": "(in 42 1)", "count": "(count 42 1)",
    "flatten": "(flatten 42)", "unique": "(unique 42)", "zip": "(zip 1 2)",
    "zipwith": "(zipwith '+ 1 2)", "extract": "(extract 42 0)", "range": "(range \"a\" 1 1)",
    "rangein": "(rangein \"a\" 1 1)", "irange": "(irange \"a\" 1 1)", "iota": "(iota \"a\")",
    "iota0": "(iota0 \"a\")", "replicate": "(replicate \"a\" 1)", "map": "(map 'car 42)",
    "mapcar": "(mapcar 'car 42)", "maplist": "(maplist 'car 42)", "filter": "(filter 'car 42)",
    "filterlist": "(filterlist 'car 42)", "takewhile": "(takewhile 'car 42)",
    "dropwhile": "(dropwhile 'car 42)", "foldl": "(foldl '+ 0 42)", "foldr": "(foldr '+ 0 42)",
    "scanl": "(scanl '+ 0 42)", "sum": "(sum \"a\")", "product": "(product \"a\")",
    "max": "(max 1 \"a\")", "min": "(min 1 \"a\")",
    "^^": "(^^ \"a\" 2)", ">=<": "(>=< 1 \"a\")", "abs": "(abs \"a\")", "floor": "(floor \"a\")",
    "ceil": "(ceil \"a\")", "trunc": "(trunc \"a\")", "round": "(round \"a\")",
    "integer": "(integer '(1))", "float": "(float '(1))", "number": "(number '(1))",
    "random": "(random \"a\")", "random_seed": "(random_seed \"a\")", "&": "(& 1.5 1)",
    "|": "(| 1.5 1)", "^": "(^ 1.5 1)", "~": "(~ \"a\")", "<<": "(<< \"a\" 1)", ">>": "(>> \"a\" 1)",
    "split": "(split 1)", "splite": "(splite 1)", "trim": "(trim 1)", "trimleft": "(trimleft 1)",
    "trimright": "(trimright 1)", "upper": "(upper 1)", "lower": "(lower 1)",
    "replace": "(replace 1 \"a\" \"b\")", "join": "(join 1)", "format": "(format 1)",
    "rfind": "(rfind 1 \"a\")", "startwith": "(startwith 1 \"a\")", "endwith": "(endwith 1 \"a\")",
    "atom": "(atom 1)", "atshape": "(atshape 1 '(2) 0)", "setshape": "(setshape 1 '(2) 0 5)", "ord": "(ord 1)", "chr": "(chr \"a\")",
    "left": "(left 1 2)", "right": "(right 1 2)", "middle": "(middle 1 0 1)",
    "padding": "(padding \"a\" 1 3)", "lowerp": "(lowerp 1)", "upperp": "(upperp 1)",
    "alphap": "(alphap 1)", "digitp": "(digitp 1)", "punctuationp": "(punctuationp 1)",
    "dictionary": "(dictionary \"a\")", "key": "(key 5 1)", "keys": "(keys 5)",
    "values": "(values 5)", "fread": "(fread 1)", "fwrite": "(fwrite 1 \"x\")",
    "fappend": "(fappend 1 \"x\")", "integers": "(integers \"x\")", "floats": "(floats \"x\")",
    "numbers": "(numbers \"x\")", "strings": "(strings (1) 2)",
    "take": "(take \"a\" '(1))", "drop": "(drop 1 42)", "enum": "(enum 42)", "slice": "(slice 42 2)",
    "json": "(json (lambda (x) x))", "json_parse": "(json_parse 42)", "json_read": "(json_read 42)",
    # LispE vocabulary added with the instruction-table walk (lists.py)
    "cycle": "(cycle 42)", "repeat": None, "irangein": "(irangein \"a\" 1 1)",
    "takelist": "(takelist 'car 42)", "droplist": "(droplist 'car 42)",
    "filtercar": "(filtercar 'car 42)", "takecar": "(takecar 'car 42)", "dropcar": "(dropcar 'car 42)",
    "poplast": "(poplast 42)", "pushlast": "(pushlast 42 1)", "pushtrue": "(pushtrue 42 1)",
    # the rest of LispE's string module (strings.py)
    "trim0": "(trim0 1)", "fill": "(fill 1 2)", "ngrams": "(ngrams \"ab\" \"x\")",
    "vowelp": "(vowelp 1)", "consonantp": "(consonantp 1)", "emojip": "(emojip 1)",
}
del BAD_TYPE["repeat"]
for _ops in [o for n in (2, 3, 4) for o in itertools.product("ad", repeat=n)]:
    _name = "c" + "".join(_ops) + "r"
    BAD_TYPE[_name] = f"({_name} 42)"
BAD_TYPE["car"], BAD_TYPE["cdr"] = "(car 42)", "(cdr 42)"

for _m in ("sqrt", "exp", "log", "log2", "log10", "sin", "cos", "tan", "asin", "acos", "atan",
           "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "cbrt", "erf", "erfc", "exp2", "expm1",
           "lgamma", "tgamma", "log1p", "logb", "nearbyint", "rint", "radian", "degree"):
    BAD_TYPE[_m] = f"({_m} \"a\")"
BAD_TYPE["gcd"] = "(gcd \"a\" 4)"

# Builtins that accept a value of any type: only their argument count can be wrong.
ANY_TYPE = {"repeat", "list", "clone", "eq", "neq", "string", "type", "input", "nullp", "numberp", "integerp",
            "floatp", "stringp", "atomp", "listp", "consp", "dictionaryp", "symbolp", "zerop",
            "emptyp", "negativep", "positivep", "functionp", "conspoint", "editdistance", "explode"}


def _library_entries() -> list:
    return [e for e in _entries() if e.fn.__module__ in LIBRARY_MODULES and e.library is None]


def test_every_library_builtin_has_a_bad_type_case() -> None:
    names = {e.name for e in _library_entries()}
    unlisted = sorted(names - set(BAD_TYPE) - ANY_TYPE)
    assert not unlisted, f"add a wrong-type call for: {unlisted}"
    stale = sorted((set(BAD_TYPE) | ANY_TYPE) - names)
    assert not stale, f"cases for builtins that are not registered: {stale}"


def _names_in(message: str, entry) -> bool:
    return any(n in message for n in entry.names or (entry.name,))


@pytest.mark.parametrize("name", sorted(BAD_TYPE))
def test_wrong_argument_type_names_the_builtin(name: str) -> None:
    entry = REGISTRY[name]
    with pytest.raises(LispEError) as info:
        Interpreter().eval(BAD_TYPE[name])
    assert _names_in(info.value.message, entry), info.value.message


def _arity_calls() -> list[tuple[str, str]]:
    calls = []
    for e in _library_entries():
        if e.max_args is not None:
            calls.append((e.name, f"({e.name}" + " 1" * (e.max_args + 1) + ")"))
        if e.min_args > 0:
            calls.append((e.name, f"({e.name}" + " 1" * (e.min_args - 1) + ")"))
    return calls


@pytest.mark.parametrize("name,src", _arity_calls())
def test_wrong_argument_count_names_the_builtin(name: str, src: str) -> None:
    with pytest.raises(LispEError) as info:
        Interpreter().eval(src)
    assert "Wrong number of arguments" in info.value.message, info.value.message
    assert f"'{name}'" in info.value.message
