"""The one registry every builtin enters through.

    @builtin("key", "key@", group="dictionaries", min_args=2, max_args=3)
    def key(d, k, default=None):
        '''(key {"a":1} "a") returns the value stored under a key.'''

The REPL's completion, the builtin reference and the "did you mean" suggestions all read `REGISTRY`.
A builtin receives its evaluated arguments as Python values (see `lispe_py.values`). With `ctx=True`
it also receives the runtime context first, to call Lisp functions: `ctx.call(fn, *args)`.
Builtins of a library (`library="lispe_torch"`) are visible only after `(use 'lispe_torch)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import LispEError


@dataclass
class Builtin:
    """A Python function callable from Lisp, with its arity and documentation."""

    name: str
    fn: Callable[..., Any]
    aliases: tuple[str, ...] = ()
    group: str = "misc"
    min_args: int = 0
    max_args: int | None = None  # None: variadic
    ctx: bool = False
    library: str | None = None
    doc: str = ""
    names: tuple[str, ...] = field(default=())

    lisp_type = "function_"

    @property
    def usage(self) -> str:
        """First line of the docstring: a usage example."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def check_arity(self, n: int) -> None:
        if n < self.min_args or (self.max_args is not None and n > self.max_args):
            raise LispEError(f"Wrong number of arguments in call to: '{self.name}'"
                             + (f" (usage: {self.usage})" if self.usage else ""))

    def __repr__(self) -> str:
        return f"#<builtin {self.name}>"


REGISTRY: dict[str, Builtin] = {}


def builtin(name: str, *aliases: str, group: str = "misc", min_args: int | None = None,
            max_args: int | None | type(...) = ..., ctx: bool = False,
            library: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn` under `name` and its aliases. Arity defaults to the Python signature's."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        import inspect

        lo, hi = min_args, max_args
        if lo is None or hi is ...:
            params = list(inspect.signature(fn).parameters.values())
            if ctx:
                params = params[1:]
            req = sum(1 for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
            var = any(p.kind == p.VAR_POSITIONAL for p in params)
            tot = sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
            if lo is None:
                lo = req
            if hi is ...:
                hi = None if var else tot
        entry = Builtin(name=name, fn=fn, aliases=tuple(aliases), group=group, min_args=lo,
                        max_args=hi, ctx=ctx, library=library, doc=inspect.getdoc(fn) or "",
                        names=(name, *aliases))
        for n in entry.names:
            if n in REGISTRY and REGISTRY[n].fn is not fn:
                raise RuntimeError(f"builtin {n!r} registered twice")
            REGISTRY[n] = entry
        fn.builtin = entry  # type: ignore[attr-defined]
        return fn

    return register


#: Exceptions that come from Python itself (a wrong type, a missing attribute...), never from a
#: host function's own message: always worded in LispE terms.
PYTHON_LANGUAGE_ERRORS = (TypeError, AttributeError, NameError, LookupError, ArithmeticError,
                          MemoryError, UnicodeError, AssertionError, SystemError, RecursionError)


def python_error_message(name: str, exc: BaseException, args: Any = None, host: bool = False) -> str:
    """The LispE wording for a Python exception that escaped builtin `name` called with `args`:
    what went wrong in LispE terms, the LispE types and values of the arguments and the builtin's
    usage line, never Python's own text (operand type lists, class names).

    An exception of a class defined outside Python's builtins (the library's GenerationError,
    ModelError...) keeps its text: `name: <message>`, written for users. `host`: `name` is a
    function of the host program (`Interpreter.define`): an exception it raises itself (a
    ValueError("bad value 7")) keeps its text too: `name: bad value 7`.
    """
    from ._common import describe

    own_class = type(exc).__module__ != "builtins"  # GenerationError, a host's exception class...
    if str(exc) and (own_class or host and not isinstance(exc, PYTHON_LANGUAGE_ERRORS)):
        return f"{name}: {exc}"
    if isinstance(exc, ZeroDivisionError):
        text = f"{name}: division by zero"
    elif isinstance(exc, MemoryError):
        text = f"{name}: out of memory"
    else:
        what = "number out of range with" if isinstance(exc, OverflowError) else "cannot apply to"
        if args is None:
            text = f"{name}: {what} these arguments"
        else:
            args = list(args)
            shown = [describe(a) for a in args[:4]] + (["..."] if len(args) > 4 else [])
            if not shown:
                listed = "no arguments"
            elif len(shown) == 1:
                listed = shown[0]
            else:
                listed = ", ".join(shown[:-1]) + " and " + shown[-1]
            text = f"{name}: {what} {listed}"
    entry = REGISTRY.get(name)
    if entry is not None and entry.usage:
        text += f" (usage: {entry.usage})"
    return text


def lookup(name: str, libraries: set[str] | frozenset[str] = frozenset()) -> Builtin | None:
    """The builtin called `name` if its library (if any) is among the loaded `libraries`."""
    entry = REGISTRY.get(name)
    if entry is None or (entry.library is not None and entry.library not in libraries):
        return None
    return entry


def visible_names(libraries: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Every builtin name visible with these libraries loaded (for completion and suggestions)."""
    return sorted(n for n, e in REGISTRY.items() if e.library is None or e.library in libraries)
