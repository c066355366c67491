"""Name spaces: `defspace`, `space`, `(load file spacename)`, and the thread space of `threadspace`.

A space is a separate set of global cells for the functions defined in it. While the compiler works
on the body of `(defspace name ...)` or `(space name ...)`, or on a file loaded into a space, its
`globals` is a `SpaceView`: a name the space defines resolves to the space's cell, any other name to
the interpreter's globals. Compiled code keeps the cells it resolved, so a function defined in a
space calls the space's functions wherever it is called from, and code outside the space never
sees them: `(space name (f 1))` is how the rest of a program calls them (LispE's semantics).

The names a space defines are found before its body is compiled (the `defun`, `defpat` and
`dethread` forms at the top of the body or file), as LispE records them while it reads the code.
`mainspace_` names the interpreter's own globals. The space `thread` holds the variables `seth`
creates; `threadspace` (or `space thread`) runs its body in it, holding the thread space's lock.
"""
from __future__ import annotations

import threading
from typing import Any

from .compiler import Compiler, Node, Scope, err_at, special
from .errors import LispEError
from .runtime import Cell, GlobalEnv
from .values import Symbol

MAIN_SPACE = "mainspace_"
THREAD_SPACE = "thread"
_DEFINERS = ("defun", "defpat", "dethread")
_state_lock = threading.Lock()


class Space:
    """One name space: its own cells, created for the names it defines."""

    __slots__ = ("name", "cells", "lock")

    def __init__(self, name: str):
        self.name = name
        self.cells: dict[str, Cell] = {}
        self.lock = threading.RLock()  # held by `threadspace` bodies (the thread space only)

    def define(self, name: str) -> Cell:
        """The space's cell for `name`, created unbound if new."""
        c = self.cells.get(name)
        if c is None:
            c = self.cells[name] = Cell(name)
        return c


class SpaceView:
    """What the compiler resolves globals through inside a space (see the module docstring)."""

    __slots__ = ("main", "space")

    def __init__(self, main: GlobalEnv, space: Space):
        self.main = main
        self.space = space

    def cell(self, name: str) -> Cell:
        c = self.space.cells.get(name)
        return c if c is not None else self.main.cell(name)


def spaces_of(interp: Any) -> dict[str, Space]:
    """The interpreter's spaces by name (made on first use)."""
    spaces = getattr(interp, "_lispe_spaces", None)
    if spaces is None:
        with _state_lock:
            spaces = getattr(interp, "_lispe_spaces", None)
            if spaces is None:
                spaces = {THREAD_SPACE: Space(THREAD_SPACE)}
                interp._lispe_spaces = spaces
    return spaces


def predefine(space: Space, forms: list) -> None:
    """Create the space's cells for the functions `forms` define (`(defun name ...)` and kin)."""
    for f in forms:
        if (isinstance(f, list) and len(f) > 1 and isinstance(f[0], Symbol) and f[0].name in _DEFINERS
                and isinstance(f[1], Symbol)):
            space.define(f[1].name)


def _view(interp: Any, name: str) -> Any:
    """The globals to compile with in space `name`; a LispEError if no such space exists."""
    if name == MAIN_SPACE:
        return interp.globals
    space = spaces_of(interp).get(name)
    if space is None:
        raise LispEError(f"space: unknown space '{name}' (defspace it, or load a file into it, first)")
    return SpaceView(interp.globals, space)


def compile_in(c: Compiler, view: Any, fn: Any) -> Any:
    """Run `fn()` (which compiles) with `c.globals` set to `view`."""
    saved = c.globals
    c.globals = view
    try:
        return fn()
    finally:
        c.globals = saved


def run_forms_in_space(interp: Any, forms: list, name: str) -> Any:
    """`(load file name)`: run `forms` with their definitions going into space `name`."""
    if name == MAIN_SPACE:
        return interp._run_forms(forms)
    spaces = spaces_of(interp)
    with _state_lock:
        space = spaces.get(name) or spaces.setdefault(name, Space(name))
    predefine(space, forms)
    return compile_in(interp._compiler, SpaceView(interp.globals, space), lambda: interp._run_forms(forms))


def _space_name(c: Compiler, x: Any, what: str) -> str:
    if not isinstance(x, Symbol) or x.name in ("nil", "true", "false", "_"):
        raise err_at(LispEError(f"{what}: the space name must be an atom, as in ({what} name ...)"), c.pos)
    return x.name


@special("defspace")
def _defspace(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(defspace geometry (defun area (r) (* 3 r r))) defines functions in the space geometry.

    They are reached only through (space geometry (area 2)); a same-named function outside the space
    is another function. The body's forms run in order, in the space; the value is the space name.
    """
    if len(form) < 2:
        raise err_at(LispEError("Wrong number of arguments in call to: 'defspace'"), c.pos)
    name = _space_name(c, form[1], "defspace")
    if name in (MAIN_SPACE, THREAD_SPACE):
        raise err_at(LispEError(f"defspace: '{name}' is a reserved space"), c.pos)
    spaces = spaces_of(c.interp)
    with _state_lock:
        space = spaces.get(name) or spaces.setdefault(name, Space(name))
    body = list(form[2:])
    predefine(space, body)
    node = compile_in(c, SpaceView(c.interp.globals, space), lambda: c.comp_body(body, scope, False))
    result = form[1]

    def defspace(f: list) -> Any:
        node(f)
        return result
    return defspace


@special("space")
def _space(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(space geometry (area 2)) runs its forms with the functions of the space geometry; like block.

    (space mainspace_ ...) reaches the program's own functions from inside another space; (space
    thread ...) is threadspace.
    """
    if len(form) < 2:
        raise err_at(LispEError("Wrong number of arguments in call to: 'space'"), c.pos)
    name = _space_name(c, form[1], "space")
    if name == THREAD_SPACE:
        return _threadspace_body(c, list(form[2:]), scope)
    try:
        view = _view(c.interp, name)
    except LispEError as exc:
        raise err_at(exc, c.pos) from None
    return compile_in(c, view, lambda: c.comp_body(list(form[2:]), scope, False))


def _threadspace_body(c: Compiler, body: list, scope: Scope) -> Node:
    space = spaces_of(c.interp)[THREAD_SPACE]
    node = compile_in(c, SpaceView(c.interp.globals, space), lambda: c.comp_body(body, scope, False))
    lock = space.lock

    def threadspace(f: list) -> Any:
        with lock:
            return node(f)
    return threadspace


@special("threadspace")
def _threadspace(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(threadspace (seth total 0)) runs its forms in the thread space, where seth variables live.

    The forms run holding the thread space's lock, so (threadspace (+= total 1)) from several
    threads loses no update. Outside threadspace the variables seth made are not visible.
    """
    return _threadspace_body(c, list(form[1:]), scope)


@special("seth")
def _seth(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(seth total 0) sets a variable of the thread space (see threadspace); returns true.

    (seth (a b) '(1 2)) sets several from a list of the same size.
    """
    if len(form) != 3:
        raise err_at(LispEError("Wrong number of arguments in call to: 'seth'"), c.pos)
    space = spaces_of(c.interp)[THREAD_SPACE]
    target = form[1]
    names = target if isinstance(target, list) else [target]
    for var in names:
        if not isinstance(var, Symbol) or var.name in ("nil", "true", "false", "_"):
            from .printer import repr_string

            raise err_at(LispEError(f"seth: cannot assign to {repr_string(var)}"), c.pos)
    cells = [space.define(v.name) for v in names]  # at compile time: later code resolves to them
    value = c.comp(form[2], scope, False)
    lock, pos, many = space.lock, c.pos, isinstance(target, list)

    def seth(f: list) -> Any:
        v = value(f)
        with lock:
            if not many:
                cells[0].v = v
                return True
            if not isinstance(v, list) or len(v) != len(cells):
                got = f"{len(v)} values" if isinstance(v, list) else "no list"
                raise err_at(LispEError(f"seth: {len(cells)} variables but {got}"), pos)
            for cell, x in zip(cells, v):
                cell.v = x
        return True
    return seth


from . import threads  # noqa: E402,F401  (registers dethread, wait, lock...)
