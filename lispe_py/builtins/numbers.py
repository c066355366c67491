"""Numbers and math beyond the four operations: power, equality, three-way comparison, math
functions, conversions, random numbers and bit operations (LispE names).

Math functions (`sqrt`, `exp`, `log`, `sin`...) return floats; `floor`, `ceil`, `round` and `trunc`
return integers (LispE returns a float with an integral value, which prints the same).
Domain errors (`(sqrt -1)`, `(log 0)`) are LispE errors naming the builtin rather than NaN.
"""
from __future__ import annotations

import math
import random as _random
import threading
from typing import Any, Callable

from ..errors import LispEError
from ..printer import str_to_int
from ..values import Float, Floats, Integers, Numbers, TYPED_LISTS
from ._common import (describe, expect_int, expect_number, is_int, is_number, lisp_equal, show,
                      show_quoted)
from .registry import builtin

G = "numbers"


_combining = threading.local()  # (id, id) pairs being combined element-wise, per thread


def _elementwise(name: str, op: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    """Apply a binary numeric op to numbers, or element-wise to lists (list/list or list/scalar)."""
    if isinstance(a, list) or isinstance(b, list):
        active = getattr(_combining, "ids", None)
        if active is None:
            active = _combining.ids = set()
        key = (id(a), id(b))  # met again inside itself: a list that contains itself
        if key in active:
            raise LispEError(f"{name}: a list that contains itself (a cycle) cannot be combined "
                             f"element-wise")
        active.add(key)
        try:
            if isinstance(a, list) and isinstance(b, list):
                if len(a) != len(b):
                    raise LispEError(f"{name}: the lists must have the same size")
                items = [_elementwise(name, op, x, y) for x, y in zip(a, b)]
            elif isinstance(a, list):
                items = [_elementwise(name, op, x, b) for x in a]
            else:
                items = [_elementwise(name, op, a, y) for y in b]
        finally:
            active.discard(key)
        src = a if isinstance(a, list) else b
        if type(src) in TYPED_LISTS:
            if all(is_int(x) for x in items) and type(src) is Integers:
                return Integers(items)
            if type(src) is Floats:
                return Floats(Float(x) for x in items)
            return Numbers(float(x) for x in items)
        return items
    expect_number(name, a)
    expect_number(name, b)
    return op(a, b)


def _power(a: int | float, b: int | float) -> int | float:
    if is_int(a) and is_int(b) and b >= 0:
        if abs(a) > 1 and b * a.bit_length() > 10_000_000:  # over ~3 million digits
            raise LispEError("^^: result too large")
        return a ** b
    try:
        if a == 0 and b < 0:
            raise LispEError("division by zero")
        r = math.pow(a, b)
    except OverflowError:
        raise LispEError("^^: result too large") from None
    except ValueError:
        raise LispEError(f"^^: undefined result for {show(a)} ^^ {show(b)}") from None
    return Float(r) if isinstance(a, Float) else r


@builtin("^^", "**", group=G, min_args=2, max_args=None)
def power(first: Any, *rest: Any) -> Any:
    """(^^ 2 10) raises a number to a power: 1024; (** 2 0.5) is the same operator; 2.0 ** -1 gives 0.5.

    Several exponents apply left to right; a list is raised element-wise.
    """
    acc = first
    for b in rest:
        acc = _elementwise("^^", _power, acc, b)
    return acc


@builtin("eq", group=G, min_args=2, max_args=None)
def eq(first: Any, *rest: Any) -> Any:
    """(eq 'a 'a) is true when all its arguments are equal: atoms, numbers, strings, lists."""
    return True if all(lisp_equal(first, x) for x in rest) else None


@builtin("neq", group=G, min_args=2, max_args=None)
def neq(first: Any, *rest: Any) -> Any:
    """(neq 'a 'b) is true when no later argument equals the first one."""
    return True if all(not lisp_equal(first, x) for x in rest) else None


@builtin(">=<", group=G)
def compare(a: Any, b: Any) -> int:
    """(>=< 1 2) compares two numbers or two strings: -1 when smaller, 0 when equal, 1 when greater."""
    if not ((is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise LispEError(f">=<: cannot compare {describe(a)} and {describe(b)}")
    return -1 if a < b else (1 if a > b else 0)


# ---------------------------------------------------------------- math functions

def _math1(name: str, fn: Callable[[float], float], domain: Callable[[float], bool] | None,
           domain_msg: str, doc: str, *aliases: str) -> None:
    def f(x: Any) -> float:
        v = expect_number(name, x)
        if domain is not None and not domain(v):
            raise LispEError(f"{name}: {domain_msg}, got {show(v)}")
        try:
            return float(fn(v))
        except OverflowError:
            raise LispEError(f"{name}: result too large") from None
        except ValueError:
            raise LispEError(f"{name}: undefined for {show(v)}") from None

    f.__name__ = name
    f.__doc__ = doc
    builtin(name, *aliases, group=G)(f)


_math1("sqrt", math.sqrt, lambda v: v >= 0, "expected a non-negative number",
       "(sqrt 16) returns the square root of a number: 4.", "√")
_math1("exp", math.exp, None, "", "(exp 1) returns e raised to a power: 2.71828.")
_math1("log", math.log, lambda v: v > 0, "expected a positive number",
       "(log _e) returns the natural logarithm of a positive number: 1.")
_math1("log2", math.log2, lambda v: v > 0, "expected a positive number",
       "(log2 8) returns the base-2 logarithm of a positive number: 3.")
_math1("log10", math.log10, lambda v: v > 0, "expected a positive number",
       "(log10 1000) returns the base-10 logarithm of a positive number: 3.")
_math1("sin", math.sin, None, "", "(sin (/ _pi 2)) returns the sine of an angle in radians: 1.")
_math1("cos", math.cos, None, "", "(cos 0) returns the cosine of an angle in radians: 1.")
_math1("tan", math.tan, None, "", "(tan 0) returns the tangent of an angle in radians: 0.")
_math1("asin", math.asin, lambda v: -1 <= v <= 1, "expected a number between -1 and 1",
       "(asin 1) returns the arc sine in radians: 1.5708.")
_math1("acos", math.acos, lambda v: -1 <= v <= 1, "expected a number between -1 and 1",
       "(acos 1) returns the arc cosine in radians: 0.")
_math1("atan", math.atan, None, "", "(atan 1) returns the arc tangent in radians: 0.785398.")
_math1("sinh", math.sinh, None, "", "(sinh 0) returns the hyperbolic sine: 0.")
_math1("cosh", math.cosh, None, "", "(cosh 0) returns the hyperbolic cosine: 1.")
_math1("tanh", math.tanh, None, "", "(tanh 0) returns the hyperbolic tangent: 0.")

# the rest of LispE's math module (src/maths.cxx, moduleMaths); each returns a float as upstream
_math1("asinh", math.asinh, None, "", "(asinh 0) returns the hyperbolic arc sine: 0.")
_math1("acosh", math.acosh, lambda v: v >= 1, "expected a number of at least 1",
       "(acosh 1) returns the hyperbolic arc cosine: 0.")
_math1("atanh", math.atanh, lambda v: -1 < v < 1, "expected a number between -1 and 1 (excluded)",
       "(atanh 0) returns the hyperbolic arc tangent: 0.")


def _cbrt(v: float) -> float:
    r = abs(v) ** (1.0 / 3.0)
    if round(r) ** 3 == abs(v):  # exact cubes give exact roots, as C's cbrt
        r = round(r)
    return math.copysign(r, v)


_math1("cbrt", _cbrt, None, "", "(cbrt 27) returns the cube root of a number: 3; (cbrt -8) gives -2.", "∛")
_math1("erf", math.erf, None, "", "(erf 0) returns the error function: 0.")
_math1("erfc", math.erfc, None, "", "(erfc 0) returns the complementary error function: 1.")
_math1("exp2", lambda v: 2.0 ** v, None, "", "(exp2 10) returns 2 raised to a power: 1024.")
_math1("expm1", math.expm1, None, "", "(expm1 0) returns e raised to a power, minus 1: 0.")
_math1("lgamma", math.lgamma, lambda v: not (v <= 0 and v == int(v)), "undefined for zero and negative integers",
       "(lgamma 5) returns the logarithm of the absolute value of the gamma function: 3.17805.")
_math1("tgamma", math.gamma, lambda v: not (v <= 0 and v == int(v)), "undefined for zero and negative integers",
       "(tgamma 5) returns the gamma function: 24.")
_math1("log1p", math.log1p, lambda v: v > -1, "expected a number above -1",
       "(log1p 0) returns the natural logarithm of 1 plus a number: 0.")
_math1("logb", lambda v: math.frexp(v)[1] - 1, lambda v: v != 0 and not math.isinf(v),
       "expected a finite non-zero number", "(logb 8) returns the binary exponent of a number: 3.")
_math1("nearbyint", round, None, "", "(nearbyint 2.5) rounds to the nearest integer, halves to even: 2.")
_math1("rint", round, None, "", "(rint 3.5) rounds to the nearest integer, halves to even: 4.")
_math1("radian", math.radians, None, "", "(radian 180) converts degrees to radians: 3.14159.")
_math1("degree", math.degrees, None, "", "(degree _pi) converts radians to degrees: 180.")


@builtin("gcd", "hcf", group=G)
def gcd(a: Any, b: Any) -> int:
    """(gcd 12 18) returns the greatest common divisor of two integers: 6 (hcf is another name)."""
    return math.gcd(expect_int("gcd", a), expect_int("gcd", b))


@builtin("abs", group=G)
def abs_(x: Any) -> Any:
    """(abs -3) returns the absolute value of a number: 3 (an integer stays an integer)."""
    return abs(expect_number("abs", x))


def _to_int(name: str, fn: Callable[[float], int], x: Any) -> int:
    v = expect_number(name, x)
    if is_int(v):
        return v
    if math.isnan(v) or math.isinf(v):
        raise LispEError(f"{name}: cannot convert {show(v)} to an integer")
    return int(fn(v))


@builtin("floor", group=G)
def floor(x: Any) -> int:
    """(floor 3.7) returns the largest integer not above a number: 3; (floor -3.2) gives -4."""
    return _to_int("floor", math.floor, x)


@builtin("ceil", group=G)
def ceil(x: Any) -> int:
    """(ceil 3.2) returns the smallest integer not below a number: 4."""
    return _to_int("ceil", math.ceil, x)


@builtin("trunc", group=G)
def trunc(x: Any) -> int:
    """(trunc -3.7) drops the fractional part of a number: -3."""
    return _to_int("trunc", math.trunc, x)


def _round_half_away(v: float) -> float:
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


@builtin("round", group=G, min_args=1, max_args=2)
def round_(x: Any, digits: Any = None) -> Any:
    """(round 2.5) rounds to the nearest integer, halves away from zero: 3; (round 3.14159 2) gives 3.14."""
    if digits is None:
        return _to_int("round", _round_half_away, x)
    v = expect_number("round", x)
    d = expect_int("round", digits, "an integer number of digits")
    scale = 10.0 ** d
    return _round_half_away(v * scale) / scale


# ---------------------------------------------------------------- conversions

def _parse_number(name: str, s: str) -> int | float:
    text = s.strip().replace("_", "")
    try:
        low = text.lower().lstrip("+-")
        if low.startswith(("0x", "0b", "0o")):
            return int(text, 0)
        return str_to_int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise LispEError(f"{name}: cannot convert the string {show_quoted(s)} to a number") from None


@builtin("integer", group=G)
def integer(x: Any) -> int:
    """(integer "42") converts a number or a string to an integer: 42; (integer 3.9) gives 3.

    As LispE, true is 1 and nil is 0: (integer (> 2 1)) is 1.
    """
    if x is True:
        return 1
    if x is None or x is False:
        return 0
    if isinstance(x, str):
        x = _parse_number("integer", x)
    return _to_int("integer", math.trunc, x)


@builtin("float", group=G)
def float_(x: Any) -> Float:
    """(float 3) converts a number or a string to a float (type float_): 3; (float "2.5") gives 2.5."""
    if isinstance(x, str):
        x = _parse_number("float", x)
    return Float(expect_number("float", x))


@builtin("number", group=G)
def number(x: Any) -> float:
    """(number "2.5") converts a number or a string to a number (a double, type number_): 2.5."""
    if isinstance(x, str):
        x = _parse_number("number", x)
    return float(expect_number("number", x))


def interp_random(ctx: Any) -> _random.Random:
    """The random generator of the interpreter running `ctx` (every builtin that draws random
    numbers uses it): each `Interpreter` has its own, so seeding one never changes another's stream
    and the host program's `random` module is left alone."""
    interp = ctx.interp
    gen = interp.__dict__.get("_random_generator")
    if gen is None:
        gen = interp.__dict__.setdefault("_random_generator", _random.Random())
    return gen


@builtin("random", group=G, min_args=0, max_args=1, ctx=True)
def random(ctx: Any, limit: Any = 1.0) -> float:
    """(random 10) returns a random float between 0 (included) and a limit (excluded, default 1)."""
    v = expect_number("random", limit)
    return interp_random(ctx).random() * v


@builtin("random_seed", group=G, ctx=True)
def random_seed(ctx: Any, seed: Any) -> Any:
    """(random_seed 42) seeds this interpreter's random generator, so later (random) calls repeat; returns true."""
    interp_random(ctx).seed(expect_int("random_seed", seed))
    return True


# ---------------------------------------------------------------- bit operations

def _bits(name: str, op: Callable[[int, int], int], args: tuple) -> Any:
    acc = args[0]
    if not isinstance(acc, list):
        acc = expect_int(name, acc)
    for b in args[1:]:
        acc = _bits2(name, op, acc, b)
    return acc


def _bits2(name: str, op: Callable[[int, int], int], a: Any, b: Any) -> Any:
    """One bitwise step; lists (vectors, matrices) go element by element, as LispE's list
    operators: a list and a number pair each element with the number; two lists pair up their
    elements (of the same size)."""
    la, lb = isinstance(a, list), isinstance(b, list)
    if not la and not lb:
        return op(expect_int(name, a), expect_int(name, b))
    if la and lb:
        if len(a) != len(b):
            raise LispEError(f"{name}: the lists must have the same size ({len(a)} and {len(b)})")
        out = [_bits2(name, op, x, y) for x, y in zip(a, b)]
    elif la:
        out = [_bits2(name, op, x, b) for x in a]
    else:
        out = [_bits2(name, op, a, y) for y in b]
    return Integers(out) if all(type(x) is int for x in out) else out


@builtin("&", group=G, min_args=2, max_args=None)
def bitand(*args: Any) -> Any:
    """(& 12 10) is the bitwise and of integers: 8.

    On lists it works element by element: (& '(12 1) 10) pairs each element with 10, and two
    lists or matrices of the same shape pair up their elements."""
    return _bits("&", lambda a, b: a & b, args)


@builtin("|", group=G, min_args=2, max_args=None)
def bitor(*args: Any) -> Any:
    """(| 12 10) is the bitwise or of integers: 14.

    On lists it works element by element: (| '(12 1) 10) pairs each element with 10, and two
    lists or matrices of the same shape pair up their elements."""
    return _bits("|", lambda a, b: a | b, args)


@builtin("^", group=G, min_args=2, max_args=None)
def bitxor(*args: Any) -> Any:
    """(^ 12 10) is the bitwise exclusive or of integers: 6.

    On lists it works element by element: (^ '(12 1) 10) pairs each element with 10, and two
    lists or matrices of the same shape pair up their elements."""
    return _bits("^", lambda a, b: a ^ b, args)


@builtin("~", group=G)
def bitnot(x: Any) -> int:
    """(~ 5) is the bitwise complement of an integer: -6."""
    return ~expect_int("~", x)


def _shift_count(name: str, n: Any) -> int:
    k = expect_int(name, n)
    if k < 0:
        raise LispEError(f"{name}: negative shift count {k}")
    if k > 4096:
        raise LispEError(f"{name}: shift count too large")
    return k


@builtin("<<", group=G)
def lshift(x: Any, n: Any) -> int:
    """(<< 1 4) shifts an integer's bits left: 16."""
    return expect_int("<<", x) << _shift_count("<<", n)


@builtin(">>", group=G)
def rshift(x: Any, n: Any) -> int:
    """(>> 16 2) shifts an integer's bits right: 4."""
    return expect_int(">>", x) >> _shift_count(">>", n)

