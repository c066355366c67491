"""Typed containers `integers`, `floats`, `numbers`, `strings`, and `type`.

Decision (language.md): `(integers 1 2 3)` converts its arguments; a single list argument is
converted element by element, and a single list of lists is a matrix; with several arguments each
list argument is a row, so `(integers (10 20) (30 40))` is a 2x2 matrix: an `Integers` of `Integers`
rows (type `integers_`). Rows must have the same length. `(flatten ...)` gives LispE's flat form.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from ..errors import LispEError
from ..values import Float, Floats, Integers, Numbers, Strings, Symbol, type_name
from ._common import describe, is_number, show
from .registry import builtin

G = "typed"


def _num_from_str(name: str, s: str, what: str) -> int | float:
    from .numbers import _parse_number

    try:
        return _parse_number(name, s)
    except LispEError:
        raise LispEError(f"{name}: cannot convert {describe(s)} to {what}") from None


def _to_int(name: str, x: Any) -> int:
    if isinstance(x, str):
        x = _num_from_str(name, x, "an integer")
    if is_number(x):
        if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
            raise LispEError(f"{name}: cannot convert {describe(x)} to an integer")
        return int(x)
    raise LispEError(f"{name}: cannot convert {describe(x)} to an integer")


def _to_float(cls: Callable[[float], float], what: str) -> Callable[[str, Any], float]:
    def conv(name: str, x: Any) -> float:
        if isinstance(x, str):
            x = _num_from_str(name, x, what)
        if is_number(x):
            return cls(x)
        raise LispEError(f"{name}: cannot convert {describe(x)} to {what}")

    return conv


def _to_str(name: str, x: Any) -> str:
    return x if isinstance(x, str) else show(x)


def _build(name: str, cls: type, conv: Callable[[str, Any], Any], args: tuple) -> list:
    def row(items: Any) -> list:
        return cls(conv(name, x) for x in items)

    def matrix(rows: list) -> list:
        out = []
        for r in rows:
            if not isinstance(r, list):
                raise LispEError(f"{name}: a matrix needs lists as rows, got {describe(r)}")
            if any(isinstance(x, list) for x in r):
                raise LispEError(f"{name}: rows must be flat lists (2 dimensions at most)")
            out.append(row(r))
        if len({len(r) for r in out}) > 1:
            raise LispEError(f"{name}: all the rows of a matrix must have the same size")
        return cls(out)

    if len(args) == 1 and isinstance(args[0], list):
        lst = args[0]
        if lst and all(isinstance(x, list) for x in lst):
            return matrix(lst)
        if any(isinstance(x, list) for x in lst):
            raise LispEError(f"{name}: cannot mix lists and values in one list")
        return row(lst)
    if any(isinstance(a, list) for a in args):
        if not all(isinstance(a, list) for a in args):
            raise LispEError(f"{name}: cannot mix rows (lists) and single values")
        return matrix(list(args))
    return row(args)


@builtin("integers", group=G, min_args=0, max_args=None)
def integers(*args: Any) -> Integers:
    """(integers 15339 1332) builds a typed list of integers: (15339 1332); (integers (1 2) (3 4)) a matrix.

    A single list argument is converted: (integers '(1 3 4)); strings are parsed, floats truncated.
    """
    return _build("integers", Integers, _to_int, args)


@builtin("floats", group=G, min_args=0, max_args=None)
def floats(*args: Any) -> Floats:
    """(floats 1 2.5) builds a typed list of floats (float_ elements): (1 2.5); rows give a matrix."""
    return _build("floats", Floats, _to_float(Float, "a float"), args)


@builtin("numbers", group=G, min_args=0, max_args=None)
def numbers(*args: Any) -> Numbers:
    """(numbers 1 2.5) builds a typed list of numbers (doubles): (1 2.5); rows give a matrix."""
    return _build("numbers", Numbers, _to_float(float, "a number"), args)


@builtin("strings", group=G, min_args=0, max_args=None)
def strings(*args: Any) -> Strings:
    """(strings "a" "b") builds a typed list of strings: ("a" "b"); other values are converted."""
    return _build("strings", Strings, _to_str, args)


@builtin("type", group=G)
def type_(x: Any) -> Symbol:
    """(type 12) returns the type of a value as an atom: integer_ (string_, list_, dictionary_...)."""
    return Symbol(type_name(x))
