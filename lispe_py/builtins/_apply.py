"""How the higher-order builtins apply their functional argument to each element, as LispE does.

LispE has two conventions, and a builtin follows the one its C++ implementation uses:

- composed functions (`map`, `filter`, `takewhile`, `dropwhile`, `for`, folds and scans) build code
  around the element x (composing.cxx):
    * a bare operator ('+ '* '- ...) given to `map` receives the element twice: (+ x x);
      any other bare function receives it once: (f x);
    * a partial call '(op v) whose first element is an operator (a comparator for the filtering
      functions) puts the element first: (op x v); '(v op) puts it last: (op v x);
- direct calls (`maplist`/`mapcar`, `filterlist`, `takelist`, `droplist`, ...) fill the slot `_`
  of a partial call, or append the element at the end: '(< 10) is (< 10 x), '(< _ 10) is (< x 10).

A lambda, as a value or as a quoted '(lambda (x) ...) list, is always called with the element.
"""
from __future__ import annotations

from typing import Any, Callable

from ..values import Symbol
from .registry import Builtin

# operators[] and comparators[] of Delegation::initialisation (lispe.cxx)
MATH_OPERATORS = frozenset("~ & &~ | ^ + -+ - * / % ^^ ** << >> &= |= ^= += -= *= /= %= ^^= **= <<= >>= "
                           "&&& ||| ^^^".split())
COMPARATORS = frozenset("= == != < >=< > <= >= ,".split())
OPERATORS = MATH_OPERATORS | COMPARATORS | frozenset(("or", "and", "xor", "at", "@"))

_UNDERSCORE = Symbol("_")
_LAMBDA_HEADS = frozenset(("lambda", "λ", "\\", "defun"))


def op_name(fn: Any) -> str | None:
    """The name of a function given as a symbol or a builtin value, else None."""
    if isinstance(fn, Symbol):
        return fn.name
    if isinstance(fn, Builtin):
        return fn.name
    return None


def _is_lambda_list(fn: Any) -> bool:
    return isinstance(fn, list) and bool(fn) and isinstance(fn[0], Symbol) and fn[0].name in _LAMBDA_HEADS


def _variable_value(ctx: Any, item: Any) -> Any:
    """A symbol of a partial call that names a variable holding an operator stands for it, as
    LispE evaluates the atoms of '(10 a) after (setq a '<=); anything else is kept as written."""
    if isinstance(item, Symbol) and item.name not in OPERATORS:
        cell = ctx.globals.cells.get(item.name)
        if cell is not None and op_name(cell.v) in OPERATORS:
            return cell.v
    return item


def composed(ctx: Any, fn: Any, *, action: bool) -> Callable[[Any], Any]:
    """The one-argument function a composed builtin applies: `action` for map/for (operators
    double the element), not for the filtering ones (filter, takewhile, dropwhile)."""
    if isinstance(fn, list) and fn and not _is_lambda_list(fn):
        if len(fn) == 2 and _UNDERSCORE not in fn:
            kinds = OPERATORS if action else COMPARATORS
            fn = [_variable_value(ctx, fn[0]), _variable_value(ctx, fn[1])]
            first, second = op_name(fn[0]), op_name(fn[1])
            if first in kinds:
                return lambda x: ctx.apply(fn, [x])  # (op x v): the element first
            if second in kinds:
                swapped = [fn[1], fn[0], _UNDERSCORE]
                return lambda x: ctx.apply(swapped, [x])  # (op v x)
        return lambda x: ctx.apply(fn, [x])
    if action and op_name(fn) in OPERATORS:
        return lambda x: ctx.apply(fn, [x, x])
    return lambda x: ctx.apply(fn, [x])


def slotted(ctx: Any, fn: Any) -> Callable[[Any], Any]:
    """The one-argument function of maplist/filterlist/takelist/droplist: a partial call gets the
    element at its `_` slot, or appended at its end."""
    if isinstance(fn, list) and fn and not _is_lambda_list(fn):
        call = list(fn) if _UNDERSCORE in fn[1:] else [*fn, _UNDERSCORE]
        return lambda x: ctx.apply(call, [x])
    return lambda x: ctx.apply(fn, [x])
