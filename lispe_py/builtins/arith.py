"""Arithmetic and comparison: `+ - * / %` and `< > <= >= = !=`.

Numbers follow language.md: int/float promotion, `/` of two ints is an int when exact, `+` with a
string first concatenates printed forms, division by zero is an error. Lists (typed or not) are
combined element-wise, a scalar is broadcast. Any other value (a torch tensor, ...) falls back to the
Python operator, so library values keep their own arithmetic.
The compiler inlines the int-int case of these operators and calls the `*2` functions here otherwise.
"""
from __future__ import annotations

import operator
import re
import threading
from typing import Any, Callable

from ..errors import LispEError
from ..values import Floats, Integers, Numbers, Strings
from .registry import builtin


def _describe(x: Any) -> str:
    from ._common import describe

    return describe(x)


def _is_num(x: Any) -> bool:
    return (x.__class__ is int or isinstance(x, (int, float))) and x is not True and x is not False


def _typed_result(a: Any, b: Any, items: list) -> list:
    """Keep a typed container's type when the element-wise result still fits it."""
    kinds = {type(a), type(b)}
    if Floats in kinds:
        return Floats(float(x) for x in items)
    if Numbers in kinds or Integers in kinds:
        if all(x.__class__ is int for x in items):
            return Integers(items) if Numbers not in kinds else Numbers(items)
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
            return Numbers(items)
        return list(items)
    if Strings in kinds and all(isinstance(x, str) for x in items):
        return Strings(items)
    return list(items)


_combining = threading.local()  # (id, id) pairs being combined element-wise, per thread


def _elementwise(name: str, op: Callable[[Any, Any], Any], a: Any, b: Any) -> list:
    active = getattr(_combining, "ids", None)
    if active is None:
        active = _combining.ids = set()
    key = (id(a), id(b))  # met again inside itself: a list that contains itself
    if key in active:
        raise LispEError(f"{name}: a list that contains itself (a cycle) cannot be combined element-wise")
    active.add(key)
    try:
        if isinstance(a, list) and isinstance(b, list):
            # as LispE (Integers::plus_direct...): the result has the first list's size, its
            # elements past the end of the second one are kept as they are
            items = [op(x, y) for x, y in zip(a, b)] + list(a[len(b):])
        elif isinstance(a, list):
            items = [op(x, b) for x in a]
        else:
            items = [op(a, y) for y in b]
    finally:
        active.discard(key)
    return _typed_result(a, b, items)


def _library_op(name: str, pyop: Callable[[Any, Any], Any], v: Any, a: Any, b: Any) -> Any:
    """`pyop(a, b)` where `v` (a or b) is a library value (a tensor...): the value's own Python
    operator, after its `lisp_operand_check(name, a, b)` hook if it has one; a failure is a LispE
    error naming the operator and the operands' LispE types, never Python's message."""
    check = getattr(v, "lisp_operand_check", None)
    if check is not None:
        check(name, a, b)
    try:
        return pyop(a, b)
    except LispEError:
        raise
    except RuntimeError as exc:  # e.g. torch's shape mismatch: its message is the useful part
        from ._common import describe

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if first.startswith("ZeroDivisionError"):
            raise LispEError(f"{name}: division by zero") from None
        if re.match(r"[A-Z]\w*(Error|Exception)\b", first):  # a Python exception's name: no help
            first = ""
        raise LispEError(f"{name}: cannot apply to {describe(a)} and {describe(b)}"
                         + (f": {first}" if first else "")) from None
    except Exception as exc:
        from .registry import python_error_message

        raise LispEError(python_error_message(name, exc, (a, b))) from None


def _fallback(name: str, pyop: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    """Library values (tensors...) use their own Python operators."""
    for v in (a, b):
        if not (_is_num(v) or isinstance(v, (str, list, dict)) or v is None or v is True or v is False):
            return _library_op(name, pyop, v, a, b)
    bad = b if _is_num(a) else a
    raise LispEError(f"{name}: expected numbers, got {_describe(bad)}")


def add2(a: Any, b: Any) -> Any:
    """Binary `+`."""
    if _is_num(a) and _is_num(b):
        return a + b
    if isinstance(a, str):
        from ..printer import to_string

        return a + (b if isinstance(b, str) else to_string(b))
    if isinstance(a, list) or isinstance(b, list):
        return _elementwise("+", add2, a, b)
    return _fallback("+", operator.add, a, b)


def sub2(a: Any, b: Any) -> Any:
    """Binary `-`."""
    if _is_num(a) and _is_num(b):
        return a - b
    if isinstance(a, list) or isinstance(b, list):
        return _elementwise("-", sub2, a, b)
    return _fallback("-", operator.sub, a, b)


def mul2(a: Any, b: Any) -> Any:
    """Binary `*`."""
    if _is_num(a) and _is_num(b):
        return a * b
    if isinstance(a, list) or isinstance(b, list):
        return _elementwise("*", mul2, a, b)
    return _fallback("*", operator.mul, a, b)


def div2(a: Any, b: Any) -> Any:
    """Binary `/`: an int when both are ints and the division is exact, else a float."""
    if _is_num(a) and _is_num(b):
        if b == 0:
            raise LispEError("division by zero")
        if a.__class__ is int and b.__class__ is int or (isinstance(a, int) and isinstance(b, int)):
            q, r = divmod(a, b)
            return q if r == 0 else a / b
        return a / b
    if isinstance(a, list) or isinstance(b, list):
        return _elementwise("/", div2, a, b)
    return _fallback("/", operator.truediv, a, b)


def mod2(a: Any, b: Any) -> Any:
    """Binary `%`: remainder."""
    if _is_num(a) and _is_num(b):
        if b == 0:
            raise LispEError("division by zero")
        if isinstance(a, int) and isinstance(b, int):
            r = abs(a) % abs(b)  # C semantics: the sign of the dividend
            return -r if a < 0 else r
        import math

        return math.fmod(a, b)
    if isinstance(a, list) or isinstance(b, list):
        return _elementwise("%", mod2, a, b)
    return _fallback("%", operator.mod, a, b)


def _fold(name: str, op: Callable[[Any, Any], Any], args: tuple) -> Any:
    acc = args[0]
    for x in args[1:]:
        acc = op(acc, x)
    return acc


def _reducible(a: Any) -> bool:
    """One list argument of + - * / whose elements are numbers or lists: LispE reduces it with the
    operator, (- '(10 2 3)) is 5 and (+ '((1 2) (3 4))) adds the rows element-wise: (4 6)."""
    return isinstance(a, list) and bool(a) and all(_is_num(x) or isinstance(x, list) for x in a)


@builtin("+", group="numbers", min_args=1)
def plus(*args: Any) -> Any:
    """(+ 1 2 3) adds numbers (promoting to float), concatenates when the first is a string,
    and works element-wise on lists: (+ (integers 1 2) (integers 3 4)) gives (4 6)."""
    if len(args) == 1:
        a = args[0]
        if _reducible(a):
            return _fold("+", add2, a)  # LispE: (+ '(1 2 3)) sums a list, (+ m) adds its rows
        return a
    return _fold("+", add2, args)


@builtin("-", group="numbers", min_args=1)
def minus(*args: Any) -> Any:
    """(- 10 2 3) subtracts left to right; (- 5) negates; (- '(10 2 3)) reduces a list: 5."""
    if len(args) == 1:
        a = args[0]
        if _reducible(a):
            return _fold("-", sub2, a)  # LispE: one list argument is reduced, as for +
        return sub2(0, args[0]) if _is_num(args[0]) else _fallback("-", operator.sub, 0, args[0])
    return _fold("-", sub2, args)


@builtin("*", group="numbers", min_args=1)
def times(*args: Any) -> Any:
    """(* 2 3 4) multiplies; element-wise on lists."""
    if len(args) == 1:
        a = args[0]
        if _reducible(a):
            return _fold("*", mul2, a)
        return a
    return _fold("*", mul2, args)


@builtin("/", group="numbers", min_args=1)
def divide(*args: Any) -> Any:
    """(/ 10 4) divides: 2.5; (/ 10 5) is the int 2; (/ 1 0) is an error; (/ '(20 2 5)) reduces
    a list: 2."""
    if len(args) == 1:
        a = args[0]
        if _reducible(a):
            return _fold("/", div2, a)  # LispE: one list argument is reduced, as for +
        return div2(1, args[0])
    return _fold("/", div2, args)


@builtin("%", group="numbers", min_args=2)
def modulo(*args: Any) -> Any:
    """(% 10 3) is the remainder 1."""
    return _fold("%", mod2, args)


# --- comparisons --------------------------------------------------------------------------------

def _cmp_values(name: str, pyop: Callable[[Any, Any], bool], a: Any, b: Any) -> Any:
    if _is_num(a) and _is_num(b) or (isinstance(a, str) and isinstance(b, str)):
        return pyop(a, b)
    if isinstance(a, list) and isinstance(b, list):
        try:
            return pyop(a, b)
        except TypeError:
            raise LispEError(f"{name}: cannot compare {_describe(a)} with {_describe(b)}") from None
    for v in (a, b):
        if not (_is_num(v) or isinstance(v, (str, list, dict)) or v is None or v is True or v is False):
            return _library_op(name, pyop, v, a, b)  # a tensor comparison gives a tensor
    raise LispEError(f"{name}: cannot compare {_describe(a)} with {_describe(b)}")


def _bool(r: Any) -> Any:
    if r is True or r is False:
        return True if r else None
    return r  # e.g. an element-wise tensor result


def lt2(a: Any, b: Any) -> Any:
    """Binary `<`: true or nil."""
    return _bool(_cmp_values("<", operator.lt, a, b))


def gt2(a: Any, b: Any) -> Any:
    """Binary `>`."""
    return _bool(_cmp_values(">", operator.gt, a, b))


def le2(a: Any, b: Any) -> Any:
    """Binary `<=`."""
    return _bool(_cmp_values("<=", operator.le, a, b))


def ge2(a: Any, b: Any) -> Any:
    """Binary `>=`."""
    return _bool(_cmp_values(">=", operator.ge, a, b))


def equal_values(a: Any, b: Any) -> bool:
    """LispE `=`: numbers by value (1 = 1.0), strings, lists and dictionaries structurally."""
    if _is_num(a) and _is_num(b):
        return a == b
    if a is None or a is False:
        return b is None or b is False or (isinstance(b, list) and not b)
    if b is None or b is False:
        return isinstance(a, list) and not a
    if isinstance(a, list) and isinstance(b, list) or isinstance(a, dict) and isinstance(b, dict):
        from ._common import equal_structures  # iterative; ends on cyclic values

        return equal_structures(a, b, equal_values)
    if (a is True) != (b is True):
        return False
    try:
        r = a == b
        return bool(r) if isinstance(r, bool) else bool(r.all()) if hasattr(r, "all") else bool(r)
    except Exception:
        return a is b


def eq2(a: Any, b: Any) -> Any:
    """Binary `=`."""
    return True if equal_values(a, b) else None


def ne2(a: Any, b: Any) -> Any:
    """Binary `!=`."""
    return None if equal_values(a, b) else True


def _chain(op: Callable[[Any, Any], Any], args: tuple) -> Any:
    for i in range(len(args) - 1):
        r = op(args[i], args[i + 1])
        if r is None:
            return None
        if r is not True:
            return r if len(args) == 2 else (True if r else None)
    return True


@builtin("<", group="numbers", min_args=2)
def less(*args: Any) -> Any:
    """(< 1 2 3) is true when each argument is smaller than the next (numbers or strings)."""
    return _chain(lt2, args)


@builtin(">", group="numbers", min_args=2)
def greater(*args: Any) -> Any:
    """(> 3 2) is true when each argument is greater than the next."""
    return _chain(gt2, args)


@builtin("<=", group="numbers", min_args=2)
def less_equal(*args: Any) -> Any:
    """(<= 1 1 2) is true when the arguments never decrease."""
    return _chain(le2, args)


@builtin(">=", group="numbers", min_args=2)
def greater_equal(*args: Any) -> Any:
    """(>= 3 3 1) is true when the arguments never increase."""
    return _chain(ge2, args)


@builtin("=", group="numbers", min_args=2)
def equal(*args: Any) -> Any:
    """(= 1 1.0) is true: numbers by value, strings, lists and dictionaries by content."""
    return _chain(eq2, args)


@builtin("!=", group="numbers", min_args=2)
def not_equal(*args: Any) -> Any:
    """(!= 1 2) is true when two values differ."""
    if len(args) == 2:
        return ne2(args[0], args[1])
    return None if all(equal_values(args[0], x) for x in args[1:]) else True


# Binary forms the compiler inlines: name -> (python operator text, slow path)
INLINE_BINARY: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "+": ("+", add2), "-": ("-", sub2), "*": ("*", mul2),
    "<": ("<", lt2), ">": (">", gt2), "<=": ("<=", le2), ">=": (">=", ge2),
    "=": ("==", eq2), "!=": ("!=", ne2),
}
COMPARISONS = frozenset({"<", ">", "<=", ">=", "=", "!="})
