"""Helpers shared by the library builtins: argument checks with LispE-style messages, equality,
typed-container preservation.

Every check raises `LispEError("<builtin>: expected ..., got <type> <value>")`, so a user always sees
which builtin refused which value.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from ..errors import LispEError
from ..values import (Float, Floats, Integers, Numbers, Strings, Symbol, TYPED_LISTS, VOID, type_name)


def show(value: Any) -> str:
    """The printed form of a value (strings raw), through the project's printer."""
    from .. import printer

    return printer.to_string(value)


def show_quoted(value: Any) -> str:
    """The printed form of a value as it appears inside a container (strings quoted)."""
    from .. import printer

    return printer.repr_string(value)


def describe(value: Any) -> str:
    """`integer_ 3`, `string_ "abc"`: a value's type and a short printed form, for error messages."""
    from ..printer import preview

    try:
        text = preview(value, 40)  # bounded work, whatever the value's size (or cycles)
    except Exception:  # a broken library printer must not hide the real error
        text = "?"
    return f"{type_name(value)} {text}"


def fail(name: str, what: str, value: Any) -> LispEError:
    """The error for a wrongly typed argument: `name: expected what, got type value`."""
    return LispEError(f"{name}: expected {what}, got {describe(value)}")


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def expect_list(name: str, x: Any, what: str = "a list") -> list:
    if isinstance(x, list):
        return x
    raise fail(name, what, x)


def expect_str(name: str, x: Any, what: str = "a string") -> str:
    if isinstance(x, str):
        return x
    raise fail(name, what, x)


def expect_int(name: str, x: Any, what: str = "an integer") -> int:
    """An int, or a float with an integral value (LispE converts numbers to indexes freely)."""
    if is_int(x):
        return x
    if isinstance(x, float) and not isinstance(x, bool) and x.is_integer():
        return int(x)
    raise fail(name, what, x)


def expect_number(name: str, x: Any, what: str = "a number") -> int | float:
    if is_number(x):
        return x
    raise fail(name, what, x)


def expect_dict(name: str, x: Any, what: str = "a dictionary") -> dict:
    if isinstance(x, dict):
        return x
    raise fail(name, what, x)


def lisp_equal(a: Any, b: Any) -> bool:
    """LispE value equality: numbers by value (1 = 1.0), strings, symbols, lists element-wise,
    dictionaries key-wise; nil and true never equal a number (Python's True == 1 does not leak)."""
    if a is b:
        return True
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or a is VOID or b is VOID:
        na = a is None or a is False or a is VOID
        nb = b is None or b is False or b is VOID
        if na or nb:
            return na and nb
        return a is True and b is True
    if is_number(a) and is_number(b):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list) or isinstance(a, dict) and isinstance(b, dict):
        return equal_structures(a, b, lisp_equal)
    if isinstance(a, Symbol) or isinstance(b, Symbol):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


def _container_pairs(a: Any, b: Any) -> Iterable[tuple[Any, Any]] | None:
    """The pairs of elements to compare in two lists (or two dictionaries), None if their sizes
    (or keys) differ."""
    if isinstance(a, list):
        return zip(a, b) if len(a) == len(b) else None
    if a.keys() != b.keys():
        return None
    return ((a[k], b[k]) for k in a)


def equal_structures(a: Any, b: Any, leaf: Any) -> bool:
    """Two lists (or two dictionaries) are equal element-wise: `leaf(x, y)` compares elements that
    are not both lists or both dictionaries; those are compared here, without Python recursion.

    Cyclic values compare as R7RS Scheme's `equal?` does: a pair of containers met again while
    still being compared counts as equal (nothing seen so far tells them apart), so comparing a
    list that contains itself ends, and deep nesting costs no Python stack."""
    pairs = _container_pairs(a, b)
    if pairs is None:
        return False
    stack = [iter(pairs)]
    key = (id(a), id(b))
    active = {key}
    keys = [key]
    while stack:
        for x, y in stack[-1]:
            if isinstance(x, list) and isinstance(y, list) or isinstance(x, dict) and isinstance(y, dict):
                if x is y:
                    continue
                key = (id(x), id(y))
                if key in active:
                    continue
                pairs = _container_pairs(x, y)
                if pairs is None:
                    return False
                active.add(key)
                keys.append(key)
                stack.append(iter(pairs))
                break
            if not leaf(x, y):
                return False
        else:
            stack.pop()
            active.discard(keys.pop())
    return True


def _fits(cls: type, x: Any) -> bool:
    if cls is Integers:
        return is_int(x)
    if cls is Strings:
        return isinstance(x, str)
    return is_number(x)


def like(src: Any, items: Iterable[Any]) -> list:
    """A new container of `items`, of `src`'s typed class when every item fits it, else a list."""
    items = list(items)
    cls = type(src)
    if cls in TYPED_LISTS and all(_fits(cls, x) for x in items):
        if cls in (Floats, Numbers):
            conv = Float if cls is Floats else float
            return cls(conv(x) for x in items)
        return cls(items)
    return items


def fit(name: str, container: list, value: Any) -> Any:
    """`value` converted for storage in `container`: a typed container accepts only its kind
    (integers: integers; floats/numbers: numbers, stored as floats); strings store any value as
    its text, as LispE does: (push (strings) 2) holds "2"."""
    cls = type(container)
    if cls not in TYPED_LISTS:
        return value
    if cls is Integers and is_int(value):
        return value
    if cls is Integers and type(value) is float and value.is_integer():
        return int(value)  # a number with an integral value (from a matrix of numbers) fits
    if cls is Strings:  # as LispE's strings container, any value is stored as its text
        if isinstance(value, str):
            return value
        from ..printer import to_string
        return to_string(value)
    if cls in (Floats, Numbers) and is_number(value):
        return Float(value) if cls is Floats else float(value)
    raise LispEError(f"{name}: cannot put {describe(value)} into {cls.lisp_type[:-1]} "
                     f"(a typed container)")


def typed_from(items: list) -> list:
    """Integers / Numbers / Strings when all items share that kind, else the plain list."""
    if not items:
        return items
    if all(is_int(x) for x in items):
        return Integers(items)
    if all(isinstance(x, float) and not isinstance(x, Float) for x in items):
        return Numbers(items)
    if all(isinstance(x, str) for x in items):
        return Strings(items)
    return items


MAX_ELEMENTS = 20_000_000


def check_size(name: str, n: float) -> None:
    """Refuse to build a list or string of more than MAX_ELEMENTS elements (a typo such as
    `(iota 1e12)` must give an error, not exhaust the machine's memory)."""
    if n > MAX_ELEMENTS:
        raise LispEError(f"{name}: result too large ({int(n)} elements, limit {MAX_ELEMENTS})")


def to_index(name: str, idx: Any, size: int, *, allow_end: bool = False) -> int:
    """A list/string position: negative counts from the end; out of range is an error. A float
    position is truncated, as LispE's checkInteger does: (@ l (/ 5 2)) reads position 2."""
    if isinstance(idx, float) and math.isfinite(idx):
        idx = int(idx)
    i = expect_int(name, idx, "an integer index")
    if i < 0:
        i += size
    limit = size + 1 if allow_end else size
    if not 0 <= i < limit:
        raise LispEError(f"{name}: index out of bounds: {idx} (size {size})")
    return i


_ABSENT = object()


def dict_key(d: dict, k: Any) -> Any:
    """The key under which `k` is stored in `d` (str keys accept numbers as their printed form and
    atoms as their name, numeric keys accept numeric strings), or `k` itself when absent. A value that cannot be a key
    (a list, a dictionary, nil, true) gives a marker that is never present."""
    if isinstance(k, (list, dict, bool)) or k is None:
        return _ABSENT
    try:
        if k in d:
            return k
    except TypeError:  # an unhashable library value
        return _ABSENT
    if k.__class__ is Symbol:  # an atom reads the key of its name, as LispE's asUString
        return k.name
    if is_number(k):
        s = show(k)
        if s in d:
            return s
    if isinstance(k, str):
        try:
            n = float(k) if any(c in k for c in ".eE") else int(k)
        except ValueError:
            return k
        if n in d:
            return n
    return k


def normalize_key(name: str, k: Any) -> Any:
    """A value usable as a dictionary key: strings and numbers as they are, anything else as its
    printed form (LispE dictionaries have string or numeric keys)."""
    if isinstance(k, str) or is_number(k):
        if isinstance(k, float) and math.isnan(k):
            raise LispEError(f"{name}: NaN cannot be a dictionary key")
        return k
    if k is None or isinstance(k, (list, dict)):
        raise fail(name, "a string or number key", k)
    return show(k)
