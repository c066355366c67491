"""Special forms of LispE's vocabulary that need their arguments unevaluated: `flip` (swaps the first
two arguments of a call), `andvalue` (an `and` returning its last value), `elapse` (times a
body), `¬` (LispE's sign for `not`) and the updating operators `&= |= ^= &~= %= ^^= **= <<= >>=`.

They register into the compiler's SPECIAL_FORMS when this module is imported (with the other
builtin groups), through the same `special` decorator as lispe_py/forms.py.
"""
from __future__ import annotations

import time
from typing import Any

from ..compiler import SPECIAL_FORMS, special
from ..values import Symbol
from .registry import REGISTRY


def _forms() -> Any:
    from .. import forms

    return forms


# flip is a special form of lispe_py/data.py (defpat guards use it too)


@special("andvalue")
def _andvalue(c: Any, form: list, scope: Any, tail: bool) -> Any:
    """(andvalue (< 1 2) (> 3 2) 21) is the last value when every argument is true, else nil: 21."""
    f = _forms()
    f._need(c, form, 2)
    nodes = [c.comp(x, scope, False) for x in form[1:]]

    def andvalue(fr: list) -> Any:
        v: Any = None
        for n in nodes:
            v = n(fr)
            if v is None or v is False:
                return None
        return v
    return andvalue


@special("elapse")
def _elapse(c: Any, form: list, scope: Any, tail: bool) -> Any:
    """(elapse (fib 20)) runs its body and returns the time it took, in milliseconds (a float)."""
    body = c.comp_body(form[1:], scope, False)

    def elapse(fr: list) -> Any:
        t0 = time.perf_counter()
        body(fr)
        return (time.perf_counter() - t0) * 1000.0
    return elapse


@special("¬")
def _not_sign(c: Any, form: list, scope: Any, tail: bool) -> Any:
    """(¬ (> x 0)) is LispE's sign for not: true when its argument is false, nil otherwise."""
    return SPECIAL_FORMS[Symbol("not")](c, form, scope, tail)


def _operator(name: str) -> Any:
    def op(a: Any, b: Any) -> Any:
        return REGISTRY[name].fn(a, b)
    return op


_UPDATES = {"&=": ("&", "keeps the bits of x also set in 2"),
            "|=": ("|", "sets in x the bits of 2"),
            "^=": ("^", "flips in x the bits of 2"),
            "&~=": ("&~", "clears in x the bits of 2"),
            "%=": ("%", "replaces x with the remainder of x by 2"),
            "^^=": ("^^", "raises the variable x to the power 2"),
            "**=": ("^^", "raises the variable x to the power 2"),
            "<<=": ("<<", "shifts the bits of x left by 2"),
            ">>=": (">>", "shifts the bits of x right by 2")}


def _register_updates() -> None:
    f = _forms()
    for name, (op, verb) in _UPDATES.items():
        if Symbol(name) not in SPECIAL_FORMS:
            f._update(_operator(op), name, verb)


_register_updates()


def _parallel(kind: str) -> Any:
    def compile_(c: Any, form: list, scope: Any, tail: bool) -> Any:
        f = _forms()
        f._need(c, form, 2)
        names = form[1]
        if not (isinstance(names, list) and names and all(isinstance(v, Symbol) for v in names)):
            raise f._fail(c, f"{kind}: the first argument must be a list of variables")
        if len(form) < 2 + len(names):
            raise f._fail(c, f"{kind}: expected one container for each of the {len(names)} variables")
        seqs = [c.comp(x, scope, False) for x in form[2:2 + len(names)]]
        setters = [c.setter(v.name, scope) for v in names]
        body = c.comp_body(form[2 + len(names):], scope, False)
        pos = c.pos

        def items(v: Any) -> list:
            if kind in ("mloop", "loop") and isinstance(v, dict):
                from .dicts import values

                return list(values(v))  # in key order, as values@ and the printer
            return list(f._iterable(pos, v, kind))

        def run(fr: list) -> Any:
            lists = [items(s(fr)) for s in seqs]
            if kind == "lloop" and len({len(x) for x in lists}) > 1:
                raise f.err_at(f.LispEError(f"{kind}: the lists must have the same size"), pos)
            r = None
            try:
                for values in zip(*lists):
                    for setv, v in zip(setters, values):
                        setv(fr, v)
                    r = body(fr)
            except f.BreakSignal:
                return None  # as every LispE loop: (break) gives nil
            return r
        return run
    return compile_


_lloop = special("lloop")(_parallel("lloop"))
_lloop.__doc__ = ("(lloop (x y) '(1 2) '(10 20) (println (+ x y))) loops over several lists in step.\n\n"
                  "The lists must have the same size; (break) leaves the loop.")
_mloop = _parallel("mloop")
_mloop.__doc__ = ("(mloop (x y) '(1 2) {\"a\":10 \"b\":20} (println (+ x y))) loops over several containers in step.\n\n"
                  "A dictionary gives its values in key order; the loop stops with the shortest container.")
special("mloop")(_mloop)


@special("whilein")
def _whilein(c: Any, form: list, scope: Any, tail: bool) -> Any:
    """(whilein x (iota 10) (< x 4) (print x)) loops over a list as long as a condition holds.

    The condition is checked with the variable bound to each element before the body runs.
    """
    f = _forms()
    f._need(c, form, 3)
    var = form[1]
    if not isinstance(var, Symbol):
        raise f._fail(c, "whilein: the loop variable must be a symbol")
    seq = c.comp(form[2], scope, False)
    setv = c.setter(var.name, scope)
    test = f._truth(c.comp(form[3], scope, False))
    body = c.comp_body(form[4:], scope, False)
    pos = c.pos

    def whilein(fr: list) -> Any:
        r = None
        try:
            for x in f._iterable(pos, seq(fr), "whilein"):
                setv(fr, x)
                if not test(fr):
                    break
                r = body(fr)
        except f.BreakSignal:
            return None  # List_whilein_eval: isBreak → null_
        return r
    return whilein
