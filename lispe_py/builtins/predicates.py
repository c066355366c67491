"""Type and state predicates. Each returns `true` or `nil` (Python True / None), never raises on a
value of the "wrong" type: asking is the point. LispE's `null?`-style spellings are aliases.
"""
from __future__ import annotations

from typing import Any

from ..values import VOID, Symbol
from ._common import is_int, is_number
from .registry import builtin

G = "predicates"


def _b(flag: bool) -> Any:
    return True if flag else None


@builtin("nullp", "null?", group=G)
def nullp(x: Any) -> Any:
    """(nullp nil) is true for nil (and false); every other value, () included, gives nil."""
    return _b(x is None or x is False or x is VOID)


@builtin("numberp", "number?", group=G)
def numberp(x: Any) -> Any:
    """(numberp 3.5) is true for integers and floats."""
    return _b(is_number(x))


@builtin("integerp", "integer?", group=G)
def integerp(x: Any) -> Any:
    """(integerp 3) is true for integers only: (integerp 3.0) is nil."""
    return _b(is_int(x))


@builtin("floatp", "float?", group=G)
def floatp(x: Any) -> Any:
    """(floatp 3.5) is true for floating-point numbers (number_ and float_)."""
    return _b(isinstance(x, float))


@builtin("stringp", "string?", group=G)
def stringp(x: Any) -> Any:
    """(stringp "a") is true for strings."""
    return _b(isinstance(x, str))


@builtin("atomp", "atom?", group=G)
def atomp(x: Any) -> Any:
    """(atomp 'a) is true for anything that is not a non-empty list or a dictionary."""
    if isinstance(x, list):
        return _b(not x)
    return _b(not isinstance(x, dict))


@builtin("listp", "list?", group=G)
def listp(x: Any) -> Any:
    """(listp '(1 2)) is true for lists (typed containers included), the empty list and nil."""
    return _b(isinstance(x, list) or x is None or x is False)


@builtin("consp", "cons?", group=G)
def consp(x: Any) -> Any:
    """(consp '(1 2)) is true for non-empty lists; (consp ()) is nil."""
    return _b(isinstance(x, list) and len(x) > 0)


@builtin("dictionaryp", "dictionary?", group=G)
def dictionaryp(x: Any) -> Any:
    """(dictionaryp {"a":1}) is true for dictionaries."""
    return _b(isinstance(x, dict))


@builtin("symbolp", "symbol?", group=G)
def symbolp(x: Any) -> Any:
    """(symbolp 'abc) is true for symbols (atoms such as 'abc), nil for numbers and strings."""
    return _b(isinstance(x, Symbol))


@builtin("zerop", "zero?", group=G)
def zerop(x: Any) -> Any:
    """(zerop 0) is true for the number zero (0 or 0.0); nil for anything else."""
    return _b(is_number(x) and x == 0)


@builtin("emptyp", "empty?", group=G)
def emptyp(x: Any) -> Any:
    """(emptyp ()) is true for nil, an empty list, an empty string or an empty dictionary."""
    if x is None or x is False or x is VOID:
        return True
    if isinstance(x, (list, str, dict)):
        return _b(len(x) == 0)
    return None


@builtin("negativep", "negative?", group=G)
def negativep(x: Any) -> Any:
    """(negativep -2) is true for numbers below zero."""
    return _b(is_number(x) and x < 0)


@builtin("positivep", "positive?", group=G)
def positivep(x: Any) -> Any:
    """(positivep 2) is true for numbers above zero."""
    return _b(is_number(x) and x > 0)


@builtin("functionp", "function?", group=G)
def functionp(x: Any) -> Any:
    """(functionp (lambda (x) x)) is true for functions: builtins, defun functions and lambdas."""
    from ..values import type_name

    return _b(type_name(x) in ("function_", "lambda_", "pattern_", "library_function_"))
