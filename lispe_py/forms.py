"""The special forms: how each control form of language.md compiles (registered on the Compiler).

Each `@special("name")` function receives the compiler, the whole form, the scope and whether the
form is in tail position, and returns a node `node(frame) -> value`.
"""
from __future__ import annotations

from typing import Any

from .builtins.arith import add2, div2, equal_values, mul2, sub2
from .compiler import (Compiler, Macro, Node, Scope, _const, _copy_data, _instantiate, _ns, _Operand,
                       err_at, special, to_data)
from .errors import LispEError, LispEThrow
from .reader import Form
from .runtime import BreakSignal, ErrorValue, Lambda, PatternFunction, ReturnSignal
from .values import VOID, Symbol, truthy, type_name

_DOLLAR = Symbol("$")


def _fail(c: Compiler, message: str) -> LispEError:
    return err_at(LispEError(message), c.pos)


def _need(c: Compiler, form: list, lo: int, hi: int | None = None) -> None:
    n = len(form) - 1
    if n < lo or (hi is not None and n > hi):
        name = form[0].name if isinstance(form[0], Symbol) else "form"
        raise _fail(c, f"Wrong number of arguments in call to: '{name}'")


def _truth(node: Node) -> Node:
    """A node returning a Python bool for the LispE truth of `node`'s value."""
    if getattr(node, "boolean", False):
        return node

    def t(f: list) -> Any:
        v = node(f)
        return v is True or (v is not None and v is not False and truthy(v))
    return t


def _branch(c: Compiler, x: Any, scope: Scope, tail: bool) -> _Operand:
    op = c.operand(x, scope)
    if op.kind in ("const", "slot"):
        return op
    return _Operand("node", c.comp(x, scope, tail))


# --- quoting and conditionals ----------------------------------------------------------------------

@special("quote")
def _quote(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(quote (a b)) gives its argument unevaluated: (a b); 'x is short for (quote x).

    A quoted list is copied each time it is evaluated, so a destructive builtin never changes the
    program's constant.
    """
    _need(c, form, 1, 1)
    data = to_data(form[1])
    if isinstance(data, (list, dict)):
        return lambda f: _copy_data(data)
    return _const(data)


@special("if")
def _if(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(if (> x 0) "positive" "other") evaluates the second form when the test is true, else the rest.

    With several else forms, they run in order and the last value is returned; without an else form
    the value is nil. False is nil, false, 0, 0.0, "", () and {}; everything else is true.
    """
    _need(c, form, 2)
    cond_src, ns = c.cond_node(form[1], scope)
    ns = _ns(**ns)
    src = "def node(f):\n" + cond_src
    if len(form) > 2:
        then = _branch(c, form[2], scope, tail)
        t = then.expr("T", ns) or "T(f)"
        if then.kind == "node":
            ns["T"] = then.value
        src += f"    if c:\n        return {t}\n"
    if len(form) > 3:
        rest = form[3:]
        if len(rest) == 1:
            other = _branch(c, rest[0], scope, tail)
            e = other.expr("E", ns) or "E(f)"
            if other.kind == "node":
                ns["E"] = other.value
        else:
            ns["E"] = c.comp_body(rest, scope, tail)
            e = "E(f)"
        src += f"    return {e}\n"
    else:
        src += "    return None\n"
    return _instantiate(src, ns)


@special("ife")
def _ife(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(ife (> x 0) "positive" (println "no") "other") runs the then form, or else all the others.

    When the test is false, the remaining forms run in order and the last value is returned.
    """
    _need(c, form, 2)
    test = _truth(c.comp(form[1], scope, False))
    then = c.comp(form[2], scope, tail) if len(form) > 2 else _const(None)
    other = c.comp_body(form[3:], scope, tail)
    return lambda f: then(f) if test(f) else other(f)


@special("check")
def _check(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(check (> x 0) (println "positive") x) runs the body when the test is true; nil otherwise.

    Returns the body's last value.
    """
    _need(c, form, 1)
    test = _truth(c.comp(form[1], scope, False))
    body = c.comp_body(form[2:], scope, tail)
    return lambda f: body(f) if test(f) else None


@special("ncheck")
def _ncheck(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(ncheck (> x 0) "none" (println "positive") x) gives the second form when the test is false.

    When the test is true, the body (the forms after the second) runs and its last value is returned.
    """
    _need(c, form, 2)
    test = _truth(c.comp(form[1], scope, False))
    otherwise = c.comp(form[2], scope, tail)
    body = c.comp_body(form[3:], scope, tail)
    return lambda f: body(f) if test(f) else otherwise(f)


@special("cond")
def _cond(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(cond ((< x 0) "negative") ((= x 0) "zero") (true "positive")) runs the first true clause.

    Each clause is (test body...); a clause with only a test returns the test's value. No true test:
    nil.
    """
    clauses = []
    for clause in form[1:]:
        if not isinstance(clause, list) or not clause:
            raise _fail(c, "cond: each clause is (test body...)")
        clauses.append((_truth(c.comp(clause[0], scope, False)),
                        c.comp_body(clause[1:], scope, tail) if len(clause) > 1 else c.comp(clause[0], scope, False)))

    def cond(f: list) -> Any:
        for test, body in clauses:
            if test(f):
                return body(f)
        return None
    return cond


@special("switch")
def _switch(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(switch x (1 "one") (2 "two") (true "other")) runs the clause whose value equals x.

    The clause values are not evaluated (they are compared as written, with =); a `true` clause is
    the default; no match and no default gives nil.
    """
    _need(c, form, 1)
    value = c.comp(form[1], scope, False)
    cases: list[tuple[Any, Node]] = []
    default: Node | None = None
    for clause in form[2:]:
        if not isinstance(clause, list) or not clause:
            raise _fail(c, "switch: each clause is (value body...)")
        key = clause[0]
        body = c.comp_body(clause[1:], scope, tail)
        if key is Symbol("true"):
            default = body
        else:
            cases.append((to_data(key), body))

    def switch(f: list) -> Any:
        v = value(f)
        for key, body in cases:
            if equal_values(key, v):
                return body(f)
        return default(f) if default is not None else None
    return switch


@special("select")
def _select(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(select (@ d "k") "default") returns the first argument whose value is not nil.

    The arguments after it are not evaluated.
    """
    nodes = [c.comp(x, scope, False) for x in form[1:]]

    def select(f: list) -> Any:
        for n in nodes:
            v = n(f)
            if v is not None and v is not False and v is not VOID:
                return v
        return None
    return select


@special("block")
def _block(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(block (setq x 1) (+ x 1)) runs the forms in order and returns the value of the last one: 2."""
    return c.comp_body(form[1:], scope, tail)


@special("and")
def _and(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(and (> x 0) (< x 10)) is true when every argument is true, nil otherwise.

    It stops at the first false argument.
    """
    tests = [_truth(c.comp(x, scope, False)) for x in form[1:]]

    def and_(f: list) -> Any:
        for t in tests:
            if not t(f):
                return None
        return True
    and_.boolean = True  # type: ignore[attr-defined]
    return and_


@special("or")
def _or(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(or (= x 0) (> x 10)) is true when one of the arguments is true, nil otherwise.

    It stops at the first true argument.
    """
    tests = [_truth(c.comp(x, scope, False)) for x in form[1:]]

    def or_(f: list) -> Any:
        for t in tests:
            if t(f):
                return True
        return None
    or_.boolean = True  # type: ignore[attr-defined]
    return or_


@special("not")
def _not(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(not (> x 0)) is true when its argument is false, nil otherwise: (not 0) is true."""
    _need(c, form, 1, 1)
    test = _truth(c.comp(form[1], scope, False))

    def not_(f: list) -> Any:
        return None if test(f) else True
    not_.boolean = True  # type: ignore[attr-defined]
    return not_


@special("xor")
def _xor(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(xor (> x 0) (> y 0)) is true when an odd number of its arguments are true, nil otherwise."""
    _need(c, form, 2)
    tests = [_truth(c.comp(x, scope, False)) for x in form[1:]]

    def xor(f: list) -> Any:
        return True if sum(1 for t in tests if t(f)) % 2 == 1 else None
    xor.boolean = True  # type: ignore[attr-defined]
    return xor


# --- loops ---------------------------------------------------------------------------------------

def _iterable(pos: Any, v: Any, what: str) -> Any:
    if isinstance(v, (list, str)):
        return v
    if isinstance(v, dict):
        return list(v)
    if v is None:
        return ()
    if isinstance(v, (int, float)) or v is True or isinstance(v, Symbol):
        raise err_at(LispEError(f"{what}: expected a list, got {type_name(v)}"), pos)
    try:
        return iter(v)
    except TypeError:
        raise err_at(LispEError(f"{what}: expected a list, got {type_name(v)}"), pos) from None


@special("while")
def _while(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(while (< i 3) (println i) (+= i 1)) runs the body as long as the test is true.

    Returns the body's last value; (break) leaves the loop and gives nil.
    """
    _need(c, form, 1)
    test = _truth(c.comp(form[1], scope, False))
    body = c.comp_body(form[2:], scope, False)

    def while_(f: list) -> Any:
        r = None
        try:
            while test(f):
                r = body(f)
        except BreakSignal:
            return None  # LispE: a loop left by (break) gives nil (isBreak → null_)
        return r
    return while_


@special("loop")
def _loop(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(loop x '(1 2 3) (println x)) runs the body with x bound to each element in turn.

    A string gives its characters, a dictionary its keys (in insertion order). Returns the body's
    last value; (break) leaves the loop and gives nil. At top level the variable is a global that stays bound
    after the loop. With a list of variables, (loop (x y) '(1 2 3) '(10 20) (println (+ x y)))
    walks the containers in step and stops with the shortest, as mloop (LispE's multiloop).
    """
    _need(c, form, 2)
    var = form[1]
    if isinstance(var, list) and var and form[0].name == "loop":
        from .builtins.forms_extra import _parallel

        return _parallel("loop")(c, form, scope, tail)
    if not isinstance(var, Symbol):
        raise _fail(c, f"{form[0].name}: the loop variable must be a symbol")
    seq = c.comp(form[2], scope, False)
    setv = c.setter(var.name, scope)
    body = c.comp_body(form[3:], scope, False)
    pos, what = c.pos, form[0].name

    def loop(f: list) -> Any:
        r = None
        try:
            for x in _iterable(pos, seq(f), what):
                setv(f, x)
                r = body(f)
        except BreakSignal:
            return None
        return r
    return loop


@special("for")
def _for(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(for x '(1 2 3 4) (* x x)) binds x to each element in turn and returns the list of the
    body's values: (1 4 9 16).

    As LispE's for (composing.cxx), which builds a list, unlike loop; (break) stops it and the
    values so far are returned.
    """
    _need(c, form, 2)
    var = form[1]
    if not isinstance(var, Symbol):
        raise _fail(c, "for: the loop variable must be a symbol")
    seq = c.comp(form[2], scope, False)
    setv = c.setter(var.name, scope)
    body = c.comp_body(form[3:], scope, False)
    pos = c.pos

    def for_(f: list) -> Any:
        out = []
        try:
            for x in _iterable(pos, seq(f), "for"):
                setv(f, x)
                out.append(body(f))
        except BreakSignal:
            pass
        return out
    return for_


def _count(pos: Any, v: Any, what: str) -> int:
    if v.__class__ is int:
        return v
    if isinstance(v, float) and not isinstance(v, bool):
        return int(v)
    raise err_at(LispEError(f"{what}: expected an integer, got {type_name(v)}"), pos)


@special("loopcount")
def _loopcount(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(loopcount 3 i (println i)) runs the body 3 times, with i bound to 0, 1, 2.

    The counter is optional: (loopcount 3 (println "hi")); (loopcount 3 into i ...) names it after
    the keyword into. A negative count -n runs n times counting down: i is n-1, ..., 1, 0. Returns
    the body's last value; (break) leaves the loop and gives nil.
    """
    _need(c, form, 1)
    count = c.comp(form[1], scope, False)
    setv = None
    rest = form[2:]
    var = form[2] if len(form) > 2 else None
    if var is _INTO:
        if len(form) < 4 or not isinstance(form[3], Symbol) or form[3].name in _CONSTANT_NAMES:
            raise _fail(c, "loopcount: a variable must follow 'into'")
        var, rest = form[3], form[4:]
    elif isinstance(var, Symbol) and var.name not in _CONSTANT_NAMES:
        rest = form[3:]
    else:
        var = None
    if var is not None:
        setv = c.setter(var.name, scope)
    body = c.comp_body(rest, scope, False)
    pos = c.pos
    cell = getattr(setv, "cell", None)
    slot = getattr(setv, "slot", None)

    def loopcount(f: list) -> Any:
        n = _count(pos, count(f), "loopcount")
        steps = range(-n - 1, -1, -1) if n < 0 else range(n)
        r = None
        try:
            if setv is None:
                for _ in steps:
                    r = body(f)
            elif cell is not None:
                for i in steps:
                    cell.v = i
                    r = body(f)
            elif slot is not None:
                for i in steps:
                    f[slot] = i
                    r = body(f)
            else:
                for i in steps:
                    setv(f, i)
                    r = body(f)
        except BreakSignal:
            return None
        return r
    return loopcount


_INTO = Symbol("into")
_CONSTANT_NAMES = ("nil", "true", "false", "_")


@special("dotimes")
def _dotimes(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(dotimes (i 3) (println i)) runs the body with i bound to 0, 1, 2.

    Returns the body's last value; (break) leaves the loop.
    """
    _need(c, form, 1)
    spec = form[1]
    if not (isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], Symbol)):
        raise _fail(c, "dotimes: write (dotimes (i n) body...)")
    count = c.comp(spec[1], scope, False)
    setv = c.setter(spec[0].name, scope)
    body = c.comp_body(form[2:], scope, False)
    pos = c.pos

    def dotimes(f: list) -> Any:
        r = None
        try:
            for i in range(_count(pos, count(f), "dotimes")):
                setv(f, i)
                r = body(f)
        except BreakSignal:
            pass
        return r
    return dotimes


@special("break")
def _break(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(break) leaves the innermost loop (while, loop, for, loopcount, dotimes)."""
    def break_(f: list) -> Any:
        raise BreakSignal()
    return break_


@special("return")
def _return(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(return x) leaves the current function at once, which returns x (nil without an argument).

    Outside any function (at the top level, or in a top-level while, loop or block) it ends the
    script: the remaining top-level forms do not run and x is the script's value (LispE's root).
    """
    _need(c, form, 0, 1)
    value = c.comp(form[1], scope, False) if len(form) > 1 else _const(None)
    target = scope.function_scope()
    if target is None:
        target = scope
        while target.parent is not None:
            target = target.parent
    target.has_return = True

    def return_(f: list) -> Any:
        raise ReturnSignal(value(f))
    return return_


# --- errors --------------------------------------------------------------------------------------

@special("catch")
def _catch(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(catch (car 1 2)) runs the forms and returns an error as a maybe_ value instead of stopping.

    The error value prints as its message; (maybe v) tells whether v is one. Without an error, catch
    returns the value of the last form.
    """
    body = c.comp_body(form[1:], scope, False)
    rt = c.rt

    def catch(f: list) -> Any:
        depth = rt.depth
        try:
            return body(f)
        except LispEError as exc:
            rt.depth = depth
            return ErrorValue(exc)
        except RecursionError:
            rt.depth = depth
            return ErrorValue(rt.overflow())
    return catch


@special("maybe")
def _maybe(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(maybe (/ 1 0) "fallback") returns the value of the forms, or the last argument if they fail.

    When the last argument is a function, (maybe (/ 1 0) (lambda (err) (+ "caught: " err))), it is
    called with the error (a maybe_ value printing as its message) and its value is returned. With
    one argument, (maybe v) is true when v is the error value catch returned.
    """
    _need(c, form, 1)
    if len(form) == 2:
        value = c.comp(form[1], scope, False)

        def is_error(f: list) -> Any:
            return True if isinstance(value(f), ErrorValue) else None
        return is_error
    body = c.comp_body(form[1:-1], scope, False)
    fallback = c.comp(form[-1], scope, False)
    rt = c.rt

    ctx = c.ctx

    def maybe(f: list) -> Any:
        depth = rt.depth
        try:
            return body(f)
        except LispEError as exc:
            error = exc
        except RecursionError:
            error = rt.overflow()
        rt.depth = depth
        handler = fallback(f)
        if handler.__class__ is Lambda or handler.__class__ is PatternFunction:
            return ctx.apply(handler, [ErrorValue(error)])
        return handler
    return maybe


@special("throw")
def _throw(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(throw "bad input") raises an error with that message (catch and maybe intercept it)."""
    _need(c, form, 1, 1)
    value = c.comp(form[1], scope, False)
    pos = c.pos

    def throw(f: list) -> Any:
        from .printer import to_string

        v = value(f)
        raise err_at(LispEThrow(v.error.message if isinstance(v, ErrorValue) else to_string(v)), pos)
    return throw


# --- evaluation ----------------------------------------------------------------------------------

@special("eval")
def _eval(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(eval "(+ 1 2)") runs code given as data: 3.

    A string is read and all its forms run; a list is compiled and run: (eval '(+ 1 2)).
    """
    _need(c, form, 1, 1)
    value = c.comp(form[1], scope, False)
    interp, pos = c.interp, c.pos

    def eval_(f: list) -> Any:
        try:
            return interp._eval_data(value(f))
        except ReturnSignal as s:  # (eval '(return 3)): the value of the evaluated code
            return s.value
        except LispEError as exc:
            raise err_at(exc, pos)
    return eval_


def _fstring_pieces(text: str) -> list:
    """The pieces of an f_ template: plain text (str) and the code inside each {...} (a list
    holding the form). '%{' and '%}' are a literal brace; braces nest inside a section."""
    from .reader import read, read_one

    pieces: list = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "%" and i + 1 < n and text[i + 1] in "{}":
            buf.append(text[i + 1])
            i += 2
            continue
        if ch == "{":
            depth, j = 1, i + 1
            while j < n and depth:
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                raise LispEError(f"f_: a '{{' is not closed in \"{text}\"")
            code = text[i + 1:j - 1].strip()
            if not code:
                raise LispEError(f"f_: an empty {{}} section in \"{text}\"")
            if buf:
                pieces.append("".join(buf))
                buf = []
            forms = read(code, "<f_>")
            # one element is read as it is; several are a call: {+ b 10} is (+ b 10)
            pieces.append([forms[0] if len(forms) == 1 else read_one("(" + code + ")", "<f_>")])
            i = j
            continue
        buf.append(ch)
        i += 1
    if buf:
        pieces.append("".join(buf))
    return pieces


def _fstring_join(values: list) -> str:
    from .printer import to_string

    return "".join(v if isinstance(v, str) else to_string(v) for v in values)


@special("f_")
def _f_(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(f_ "A={a} and B={+ b 10}") inserts the values of the {...} sections into a string.

    A section holding one element is that element's value ({a}); several elements are a call
    ({+ b 10} is (+ b 10)). '%{' and '%}' are literal braces: (f_ "%{{a}%}") gives "{0}" when a is 0.
    """
    _need(c, form, 1, 1)
    pos = c.pos
    if isinstance(form[1], str):
        try:
            pieces = _fstring_pieces(form[1])
        except LispEError as exc:
            raise err_at(exc, pos)
        parts = [p if isinstance(p, str) else c.comp(p[0], scope, False) for p in pieces]

        def f_(f: list) -> Any:
            return _fstring_join([p if isinstance(p, str) else p(f) for p in parts])
        return f_
    template = c.comp(form[1], scope, False)
    interp = c.interp

    def f_dynamic(f: list) -> Any:
        text = template(f)
        if not isinstance(text, str):
            raise err_at(LispEError(f"f_: expected a string, got {type_name(text)}"), pos)
        try:
            pieces = _fstring_pieces(text)
            # a template built at run time reads its sections in the global scope, as eval does
            return _fstring_join([p if isinstance(p, str) else interp._eval_data(p[0]) for p in pieces])
        except LispEError as exc:
            raise err_at(exc, pos)
    return f_dynamic


def _is_callable(v: Any) -> bool:
    from .runtime import is_function

    return is_function(v)


@special("apply")
def _apply(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(apply '+ 1 '(2 3)) calls a function with arguments taken from a list (the last argument): 6.

    (apply '* g x) with g a function is (apply '* (g x)): the call that maplist's partial call
    (maplist (apply '* g) l) makes for each element x.
    """
    _need(c, form, 2)
    fn = c.comp(form[1], scope, False)
    args = [c.comp(x, scope, False) for x in form[2:]]
    ctx, pos = c.ctx, c.pos

    def apply(f: list) -> Any:
        vals = [a(f) for a in args]
        if len(vals) >= 2 and _is_callable(vals[0]):
            # (apply '* g x ...): what maplist's partial call (maplist (apply '* g) l) builds for
            # each element; g's result is the argument list: (apply '* (g x ...))
            try:
                inner = ctx.apply(vals[0], vals[1:])
            except LispEError as exc:
                raise err_at(exc, pos)
            vals = [inner]
        last = vals.pop()
        if not isinstance(last, list):
            raise err_at(LispEError(f"apply: the last argument must be a list, got {type_name(last)}"), pos)
        try:
            return ctx.apply(fn(f), vals + list(last))
        except LispEError as exc:
            raise err_at(exc, pos)
    return apply


@special("self")
def _self(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(self (- n 1)) calls the function being defined (recursion in a lambda or a defpat clause)."""
    fscope = scope.function_scope()
    if fscope is None:
        raise _fail(c, "self: used outside a function")
    if fscope.self_index < 0:
        fscope.self_index = fscope.new_slot(None, sure=True)
    depth, s = 0, scope
    while s is not fscope:
        s = s.parent
        depth += 1
    i = fscope.self_index
    if depth == 0:
        def head(f: list) -> Any:
            return f[i]
    else:
        def head(f: list) -> Any:
            for _ in range(depth):
                f = f[0]
            return f[i]
    return c.comp_call(form, scope, tail, head_node=head)


# --- variables -----------------------------------------------------------------------------------

def _setq_pairs(c: Compiler, form: list, scope: Scope, global_: bool) -> list[tuple[Any, Node]]:
    if len(form) < 3 or len(form) % 2 == 0:
        raise _fail(c, f"Wrong number of arguments in call to: '{form[0].name}'")
    pairs = []
    for k in range(1, len(form), 2):
        var = form[k]
        if isinstance(var, list) and var and not (len(var) == 2 and var[0] is Symbol("quote")):
            pairs.append((_destructuring_setter(c, form[0].name, var, scope, global_),
                          c.comp(form[k + 1], scope, False)))
            continue
        if not isinstance(var, Symbol) or var.name in ("nil", "true", "false", "_"):
            raise _fail(c, f"{form[0].name}: cannot assign to {var!r}")
        value = c.comp(form[k + 1], scope, False)
        if global_:
            cell = c.globals.cell(var.name)

            def setg(f: list, v: Any, cell=cell) -> None:
                cell.v = v
            pairs.append((setg, value))
        else:
            pairs.append((c.setter(var.name, scope), value))
    return pairs


def _destructuring_setter(c: Compiler, what: str, names: list, scope: Scope, global_: bool) -> Any:
    """`(setq (a b c) '(1 2 3))`: a setter binding each variable to the element at its place.

    As in LispE, the variables are plain symbols and the value must be a list of the same size.
    """
    setters = []
    for var in names:
        if not isinstance(var, Symbol) or var.name in ("nil", "true", "false", "_", "$"):
            from .printer import repr_string

            raise _fail(c, f"{what}: cannot assign to {repr_string(to_data(var))}")
        if global_:
            cell = c.globals.cell(var.name)

            def setg(f: list, v: Any, cell=cell) -> None:
                cell.v = v
            setters.append(setg)
        else:
            setters.append(c.setter(var.name, scope))
    n, pos = len(setters), c.pos

    def destructure(f: list, v: Any) -> None:
        if not isinstance(v, list):
            raise err_at(LispEError(f"{what}: expected a list of {n} values, got {type_name(v)}"), pos)
        if len(v) != n:
            raise err_at(LispEError(f"{what}: {n} variables but {len(v)} values"), pos)
        for setv, x in zip(setters, v):
            setv(f, x)
    return destructure


def _assign(pairs: list[tuple[Any, Node]], result_value: bool) -> Node:
    if len(pairs) == 1:
        setv, value = pairs[0]
        if result_value:
            def setqv(f: list) -> Any:
                v = value(f)
                setv(f, v)
                return v
            return setqv

        cell = getattr(setv, "cell", None)
        slot = getattr(setv, "slot", None)
        if cell is not None:
            def setq_global(f: list) -> Any:
                cell.v = value(f)
                return True
            return setq_global
        if slot is not None:
            def setq_slot(f: list) -> Any:
                f[slot] = value(f)
                return True
            return setq_slot

        def setq(f: list) -> Any:
            setv(f, value(f))
            return True
        return setq

    def setq_many(f: list) -> Any:
        v = None
        for setv, value in pairs:
            v = value(f)
            setv(f, v)
        return v if result_value else True
    return setq_many


@special("setq")
def _setq(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(setq x 10) binds a variable: a local inside a function, else a global; returns true.

    (setq a 1 b 2) binds several. Inside a lambda it updates a variable of an enclosing function.
    """
    return _assign(_setq_pairs(c, form, scope, False), False)


@special("setqv")
def _setqv(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(setqv x 10) binds a variable like setq and returns the value: 10."""
    return _assign(_setq_pairs(c, form, scope, False), True)


@special("setg")
def _setg(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(setg total 0) sets a global variable, even inside a function; returns true."""
    return _assign(_setq_pairs(c, form, scope, True), False)


def _update(op: Any, name: str, verb: str) -> Any:
    @special(name)
    def update(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
        _need(c, form, 2, 2)
        var = form[1]
        if not isinstance(var, Symbol):
            raise _fail(c, f"{name}: the first argument must be a variable")
        read = c.comp(var, scope, False)
        setv = c.setter(var.name, scope) if c.resolve(var.name, scope) is not None or scope.function_scope() is None \
            else _setter_existing(c, var.name, scope)
        value = c.comp(form[2], scope, False)
        pos = c.pos
        keep = _param_ref(c, var.name, scope)

        def upd(f: list) -> Any:
            try:
                cur = read(f)
                v = op(cur, value(f))
            except LispEError as exc:
                raise err_at(exc, pos)
            if isinstance(cur, list) and type(v) is type(cur) and v is not cur:
                # as LispE, (-= l 1) on a list changes that list in place: every variable
                # sharing it (a caller's argument) sees the change
                cur[:] = v
                v = cur
            setv(f, v)
            if keep is not None:
                keep(f, v)
            return v
        return upd
    update.__doc__ = (f"({name} x 2) {verb} and returns the new value.\n\n"
                      "x is the function's local variable if it has one, else the global.")
    return update


def _param_ref(c: Compiler, name: str, scope: Scope) -> Any:
    """For op= on a parameter of the enclosing defun: a function passing each new value to the
    `_Back` the call site put in the parameter's hidden slot (LispE's `+=` changes the number object
    the caller's variable shares, see Compiler._slow_call); None when `name` is no such parameter."""
    fs = scope.function_scope()
    found = c.resolve(name, scope)
    if fs is None or found is None or fs.kind not in ("fn", "lambda"):
        return None
    depth, slot, _sure = found
    owner = scope
    for _ in range(depth):
        owner = owner.parent
    if owner is not fs or not 1 <= slot <= fs.nparams:
        return None
    hidden = "\x00ref " + name
    if slot not in fs.refs:
        fs.refs[slot] = fs.new_slot(hidden)
    from .compiler import _Back

    hdepth, hslot, _sure = c.resolve(hidden, scope)

    def write_through(f: list, v: Any) -> None:
        for _ in range(hdepth):
            f = f[0]
        back = f[hslot]
        if back.__class__ is _Back:
            back(v)
    return write_through


def _setter_existing(c: Compiler, name: str, scope: Scope) -> Any:
    """`+=` on a name not local to the function updates the global it reads."""
    cell = c.globals.cell(name)

    def set_global(f: list, v: Any) -> None:
        cell.v = v
    return set_global


_update(add2, "+=", "adds 2 to the variable x")
_update(sub2, "-=", "subtracts 2 from the variable x")
_update(mul2, "*=", "multiplies the variable x by 2")
_update(div2, "/=", "divides the variable x by 2")


@special("let")
def _let(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(let ((x 2) (y 3)) (* x y)) binds variables for the body only and returns its last value: 6."""
    _need(c, form, 1)
    bindings = form[1]
    if not isinstance(bindings, list):
        raise _fail(c, "let: write (let ((var value)...) body...)")
    if len(bindings) == 2 and isinstance(bindings[0], Symbol):
        bindings = [bindings]  # (let (x 1) ...)
    saved = dict(scope.names)
    steps = []
    try:
        for b in bindings:
            if isinstance(b, Symbol):
                b = [b, None]
            if not (isinstance(b, list) and len(b) in (1, 2) and isinstance(b[0], Symbol)):
                raise _fail(c, "let: each binding is (var value)")
            value = c.comp(b[1], scope, False) if len(b) == 2 else _const(None)
            steps.append((scope.new_slot(b[0].name, sure=True), value))
        body = c.comp_body(form[2:], scope, tail)
    finally:
        scope.names = saved

    def let(f: list) -> Any:
        for i, value in steps:
            f[i] = value(f)
        return body(f)
    return let


# --- definitions ---------------------------------------------------------------------------------

@special("lambda")
def _lambda(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(lambda (x) (* x x)) makes an anonymous function, a closure over the variables around it.

    Parameters as for defun: (lambda (x (y 10) (() rest)) ...) has a default and a rest parameter.
    λ is the same.
    """
    _need(c, form, 1)
    code = c.compile_function("lambda", form[1], list(form[2:]), scope, "lambda", form)

    def make_lambda(f: list) -> Any:
        return Lambda(code, f)
    return make_lambda


@special("λ")
def _lambda_symbol(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(λ (x) (* x x)) makes an anonymous function, like lambda."""
    return _lambda(c, form, scope, tail)


@special("\\")
def _lambda_backslash(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(\\ (x y) (+ x y)) makes an anonymous function, like lambda: ((\\ (x) (* x 2)) 4) is 8."""
    return _lambda(c, form, scope, tail)


@special("defun")
def _defun(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(defun square (x) (* x x)) defines a global function and returns it.

    Hoisted: it may be called above its definition. Parameters: (defun f (x (y 10) (() rest)) ...):
    y defaults to 10, rest gathers the remaining arguments in a list. (return v) leaves early.
    """
    _need(c, form, 2)
    name = form[1]
    if not isinstance(name, Symbol):
        raise _fail(c, "defun: the function name must be a symbol")
    code = c.compile_function(name.name, form[2], list(form[3:]), scope, "fn", form)
    cell = c.globals.cell(name.name)

    def defun(f: list) -> Any:
        fn = Lambda(code, f)
        cell.v = fn
        return fn
    return defun


@special("defmacro")
def _defmacro(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(defmacro twice (x) (* 2 x)) defines a macro, expanded when code is compiled.

    A call is replaced by the body, with the parameters replaced by the argument forms. ($ rest) as
    the last parameter gathers the remaining argument forms; $ rest in the body splices them.
    Parameters are patterns: a list destructures a list form, 'x and literals must appear as such.
    Several definitions with different parameters are all kept: (defmacro tang (('< x y) $ z) ...)
    and (defmacro tang (('> x y) $ z) ...); a call uses the first that matches. Hoisted like defun.
    """
    _need(c, form, 3)
    name, params = form[1], form[2]
    if not isinstance(name, Symbol) or not isinstance(params, list):
        raise _fail(c, "defmacro: write (defmacro name (params) body)")
    body = form[3] if len(form) == 4 else Form([Symbol("block"), *form[3:]], getattr(form, "source", None),
                                                getattr(form, "line", None), getattr(form, "column", None))
    from .printer import repr_string

    macro = c.macros.get(name.name)
    if macro is None:
        macro = c.macros[name.name] = Macro(name.name)
    macro.add_clause(repr_string(to_data(params)), list(params), body)
    return _const(name)


@special("defpat")
def _defpat(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(defpat fact (0) 1) adds a clause, chosen by pattern matching, to the function fact.

    With (defpat fact (n) (* n (fact (- n 1)))) too, (fact 5) is 120. Clauses are tried in
    definition order. Patterns: literals, 'sym, _ (anything), a symbol (binds), (integer_ n) (a type
    check), (integer_ (even n)) and (even n) (n is bound, then the call must be true), a data@
    structure (Point x y), lists with ($ rest), dictionaries {k:v "key":w $:rest}. Redefining a
    clause with the same patterns replaces it.
    """
    from .patterns import PatternSet, clause_label, data_ancestors

    _need(c, form, 2)
    name, patterns = form[1], form[2]
    if not isinstance(name, Symbol) or not isinstance(patterns, list):
        raise _fail(c, "defpat: write (defpat name (patterns...) body...)")
    ps = PatternSet(c, name.name)
    match = ps.compile(list(patterns))
    ps.finish(scope)
    code = c.compile_function(name.name, None, list(form[3:]), scope, "fn", form, pattern_slots=ps.slots)
    cell = c.globals.cell(name.name)
    rt = c.rt
    from .printer import repr_string

    key = repr_string(to_data(patterns))
    label = clause_label(list(patterns), c.data_defs)
    ancestors = data_ancestors(c.data_defs)

    def defpat(f: list) -> Any:
        pf = cell.v
        if not isinstance(pf, PatternFunction):
            pf = PatternFunction(name.name, rt, ancestors)
            cell.v = pf
        pf.add_clause(key, match, Lambda(code, f, self_value=pf), label)
        return pf
    return defpat


# --- libraries and files -------------------------------------------------------------------------

def _name_of(v: Any) -> str | None:
    if isinstance(v, Symbol):
        return v.name
    if isinstance(v, str):
        return v
    return None


@special("use")
def _use(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(use 'lispe_torch) loads a library: its builtins become available. Hoisted.

    A name that is not a Python library runs stdlib/NAME.lisp, once.
    """
    _need(c, form, 1)
    values = [c.comp(x, scope, False) for x in form[1:]]
    interp, pos = c.interp, c.pos

    def use(f: list) -> Any:
        for v in values:
            name = _name_of(v(f))
            if name is None:
                raise err_at(LispEError("use: expected a library name like 'lispe_torch"), pos)
            try:
                interp.use(name)
            except LispEError as exc:
                raise err_at(exc, pos)
        return True
    return use


@special("load")
def _load(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(load "lib.lisp") runs another file in this interpreter and returns its last value.

    A relative path is relative to the script's folder; sandbox rules apply. (load "lib.lisp" lib)
    puts the functions the file defines in the space lib: call them with (space lib ...).
    """
    _need(c, form, 1, 2)
    path = c.comp(form[1], scope, False)
    space = None
    if len(form) == 3:
        sp = form[2]
        space = _const(sp.name) if isinstance(sp, Symbol) else c.comp(sp, scope, False)
    interp, pos = c.interp, c.pos

    def load(f: list) -> Any:
        p = path(f)
        if not isinstance(p, str):
            raise err_at(LispEError(f"load: expected a file name, got {type_name(p)}"), pos)
        name = None
        if space is not None:
            name = _name_of(space(f))
            if not name or name in ("nil", "true", "false", "_", "thread"):
                raise err_at(LispEError("load: the space name must be an atom, as in (load \"f.lisp\" lib)"), pos)
        try:
            return interp.load(p, name) if name is not None else interp.load(p)
        except LispEError as exc:
            raise err_at(exc, pos)
    return load


from . import spaces  # noqa: E402,F401  (registers defspace, space, threadspace, dethread, wait...)
