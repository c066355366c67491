"""Compile Lisp data into Python closures, once per form.

`Compiler.compile_toplevel(form)` returns `(node, nslots)`: run it with a fresh top frame. Every
compiled node is `node(frame) -> value` (see `runtime` for frames, cells and tail calls).

What happens at compile time: special forms are dispatched through `SPECIAL_FORMS`; macros are
expanded; variables resolve to frame slots (params, `let`, locals found by pre-scanning a function
body for `setq`/loop variables) or to global cells; calls are specialised by arity; `+ - * < ...`
on two operands are inlined for ints when the name is not rebound; tail positions (end of a body,
`if`/`cond`/`block`/`check`... branches) build `TailCall`s instead of calling.

Hot node shapes (binary operators, `if`, calls) are generated from small Python source templates
(`_Template`), compiled once per shape and instantiated with `exec` into a namespace holding the
constants, sub-nodes and cells: this is what makes a Lisp call cost a few Python calls.
"""
from __future__ import annotations

from typing import Any, Callable

from .builtins.arith import COMPARISONS, INLINE_BINARY
from .builtins.registry import Builtin, lookup
from .errors import LispEError
from .reader import DICT_COMMAS_HINT, DictForm, Form, atom_position, compose_dots
from .runtime import (UNSET, Cell, FunctionCode, Lambda, PatternFunction, ReturnSignal, RuntimeState,
                      Signal, TailCall, call_builtin, is_function, unknown_function, wrap_exception)
from .values import Symbol, truthy, type_name

Node = Callable[[list], Any]

S = Symbol
_QUOTE, _DOLLAR, _UNDERSCORE, _INTO = S("quote"), S("$"), S("_"), S("into")
# builtins taking a partial call '(op v) whose atoms name variables (see _partial_with_locals); those
# of SLOT_CALL_BUILTINS are left to _inline_builtin, which makes their partial call a lambda
_PARTIAL_TAKERS = frozenset(("map", "↑↑", "↑", "¨", "filter", "takecar", "takewhile", "dropwhile"))
_LAMBDA_WORDS = frozenset(("lambda", "λ", "\\", "defun"))
_NIL_SYMBOLS = {"nil": None, "false": None, "fail_": None, "_": None, "true": True}


def err_at(exc: LispEError, pos: Any) -> LispEError:
    """Give `exc` the position `pos` (source, line, column) unless it has one."""
    if pos is not None and exc.line is None:
        src = pos[0]
        exc.with_position(src.name if src else None, pos[1], pos[2], src.line(pos[1]) if src else None)
    return exc


def form_pos(form: Any) -> Any:
    line = getattr(form, "line", None)
    if line is None:
        return None
    return (form.source, line, form.column)


# --- scopes --------------------------------------------------------------------------------------

class Scope:
    """Compile-time view of one frame: which names live in which slot.

    kind: "top" (a top-level form's frame: unknown names are globals), "fn" (defun/defpat body: a
    `setq` of a new name makes a local) or "lambda" (a `setq` of a name bound in an enclosing frame
    updates it there).
    """

    __slots__ = ("parent", "kind", "names", "sure", "nslots", "self_index", "has_return", "name",
                 "nparams", "refs", "passes")

    def __init__(self, parent: "Scope | None", kind: str, name: str = ""):
        self.parent = parent
        self.kind = kind
        self.names: dict[str, int] = {}
        self.sure: set[int] = set()  # slots always bound when read (params, let variables)
        self.nslots = 1  # slot 0: the enclosing frame
        self.self_index = -1
        self.has_return = False
        self.name = name
        self.nparams = 0  # a function scope: its parameters are slots 1..nparams
        self.refs: dict[int, int] = {}  # parameter slot -> slot keeping what op= gave it
        self.passes: dict[int, str] = {}  # parameters passed on to a call (slot -> name)

    def new_slot(self, name: str | None, sure: bool = False) -> int:
        i = self.nslots
        self.nslots += 1
        if name is not None:
            self.names[name] = i
        if sure:
            self.sure.add(i)
        return i

    def function_scope(self) -> "Scope | None":
        s: Scope | None = self
        while s is not None and s.kind == "top":
            s = s.parent
        return s


# --- code templates ------------------------------------------------------------------------------

_code_cache: dict[str, Any] = {}


def _instantiate(src: str, ns: dict[str, Any]) -> Node:
    """Turn template source defining `node` into a function whose globals are `ns`."""
    code = _code_cache.get(src)
    if code is None:
        code = _code_cache[src] = compile(src, "<lispe>", "exec")
    exec(code, ns)
    return ns["node"]


class _Operand:
    """How an operand is fetched inside a template: an inline expression or a sub-node call."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any):
        self.kind = kind  # "const" | "slot" | "node" | "global"
        self.value = value

    def fetch(self, var: str, key: str, ns: dict[str, Any], indent: str) -> str:
        """Python lines assigning the operand to `var`, registering what they need in `ns`."""
        if self.kind == "const":
            ns[key] = self.value
            return f"{indent}{var} = {key}\n"
        if self.kind == "slot":
            return f"{indent}{var} = f[{self.value}]\n"
        if self.kind == "global":
            cell, missing = self.value
            ns[key] = cell
            ns[key + "_M"] = missing
            return (f"{indent}{var} = {key}.v\n"
                    f"{indent}if {var} is UNSET:\n{indent}    {var} = {key}_M()\n")
        if self.kind == "binop":
            return _binop_lines(self.value, var, key, ns, indent)
        ns[key] = self.value
        return f"{indent}{var} = {key}(f)\n"

    def expr(self, key: str, ns: dict[str, Any]) -> str | None:
        """An inline expression for the operand, if it has one (constants and bound slots)."""
        if self.kind == "const":
            ns[key] = self.value
            return key
        if self.kind == "slot":
            return f"f[{self.value}]"
        return None

    def is_int_const(self) -> bool:
        return self.kind == "const" and self.value.__class__ is int


def _binop_lines(parts: tuple, var: str, key: str, ns: dict[str, Any], indent: str) -> str:
    """Inline code computing `(op a b)` into `var`: Python's operator on ints, else the slow path."""
    name, a, b, slow = parts
    pyop = INLINE_BINARY[name][0]
    x, y = var + "x", var + "y"
    ns[key + "_S"] = slow
    src = a.fetch(x, key + "X", ns, indent) + b.fetch(y, key + "Y", ns, indent)
    checks = [f"{v}.__class__ is int" for v, op in ((x, a), (y, b)) if not op.is_int_const()]
    guard = " and ".join(checks) if checks else "True"
    result = f"(True if {x} {pyop} {y} else None)" if name in COMPARISONS else f"{x} {pyop} {y}"
    return (src + f"{indent}if {guard}:\n{indent}    {var} = {result}\n"
            f"{indent}else:\n{indent}    {var} = {key}_S({x}, {y})\n")


_BASE_NS = {"UNSET": UNSET, "TailCall": TailCall, "Lambda": Lambda, "truthy": truthy,
            "LispEError": LispEError, "Signal": Signal, "Builtin": Builtin}


def _ns(**extra: Any) -> dict[str, Any]:
    ns = dict(_BASE_NS)
    ns.update(extra)
    return ns


# --- the compiler --------------------------------------------------------------------------------

SPECIAL_FORMS: dict[Symbol, Callable[..., Node]] = {}

# builtins whose first argument, an unquoted call `(op v)`, is a partial call that is not evaluated
# (List_maplist_eval, List_filterlist_eval, List_takelist_eval, List_droplist_eval in LispE)
SLOT_CALL_BUILTINS = frozenset(("maplist", "mapcar", "filterlist", "filtercar", "takelist",
                                "droplist", "dropcar"))
_LAMBDA_SYM = Symbol("lambda")
_SLOT_PARAM = Symbol("%slot")  # not a name a program can write as a variable
_NOT_PARTIAL_HEADS = frozenset(("quote", "lambda", "λ", "\\", "defun", "function"))


def _is_partial_call(x: Any) -> bool:
    return (isinstance(x, list) and bool(x) and x[0].__class__ is Symbol
            and x[0].name not in _NOT_PARTIAL_HEADS)


def special(*names: str, wraps: bool = False) -> Callable[[Callable[..., Node]], Callable[..., Node]]:
    """Register a method as the compiler of special forms `names`. A name registered twice is an
    error (two modules silently replacing each other's form), unless `wraps`: the new compiler
    extends the one it replaces and calls it itself."""

    def reg(fn: Callable[..., Node]) -> Callable[..., Node]:
        for n in names:
            known = SPECIAL_FORMS.get(Symbol(n))
            if known is not None and not wraps and (known.__module__, known.__qualname__) != (fn.__module__, fn.__qualname__):
                raise RuntimeError(f"special form '{n}' registered twice ({known.__module__}, {fn.__module__})")
            SPECIAL_FORMS[Symbol(n)] = fn
        return fn

    return reg


class Macro:
    """A `defmacro`: one or more clauses, each parameters (with `$ rest`, quoted literals, nested
    lists) and a body template, substituted at compile time. The first clause whose parameters
    match the call's argument forms is used."""

    __slots__ = ("name", "clauses")

    def __init__(self, name: str):
        self.name = name
        self.clauses: list[tuple[str, list, Any]] = []  # (key, params, body)

    def add_clause(self, key: str, params: list, body: Any) -> None:
        """Add a clause; one with the same parameters (`key`) is replaced where it stands."""
        for k, (old, _, _) in enumerate(self.clauses):
            if old == key:
                self.clauses[k] = (key, params, body)
                return
        self.clauses.append((key, params, body))


#: Limits on macro expansion: nested expansions (a macro whose expansion calls it again without
#: end), expansions while compiling one top-level form (a macro that expands exponentially), and
#: elements in one expansion.
MAX_MACRO_NESTING = 200
MAX_MACRO_EXPANSIONS = 10000
MAX_MACRO_SIZE = 200000



class _Back:
    """Writes a parameter's new value (from += and the like) to the variable the caller passed."""

    __slots__ = ("setter", "frame")

    def __init__(self, setter: Callable[[list, Any], None], frame: list):
        self.setter = setter
        self.frame = frame

    def __call__(self, v: Any) -> None:
        self.setter(self.frame, v)


def _chain_back(set_var: Callable[[list, Any], None], where: tuple | None) -> Callable[[list, Any], None]:
    """A setter that also passes the value on through the hidden slot at `where` (depth, slot)."""
    if where is None:
        return set_var
    depth, slot, _sure = where

    def set_and_pass(f: list, v: Any) -> None:
        set_var(f, v)
        fr = f
        for _ in range(depth):
            fr = fr[0]
        back = fr[slot]
        if back.__class__ is _Back:
            back(v)
    return set_and_pass

class Compiler:
    """Compiles forms for one interpreter (its globals, macros, libraries and runtime state)."""

    def __init__(self, interp: Any):
        self.interp = interp
        self.globals = interp.globals
        self.rt: RuntimeState = interp._rt
        self.ctx = interp.ctx
        self.macros: dict[str, Macro] = {}
        self.data_defs: dict[str, Any] = {}  # data@ structures by name (lispe_py.data.DataDef)
        self.classes: dict[str, Any] = {}  # class@ definitions by name (lispe_py.data.ClassDef)
        self.method_names: set[str] = set()  # every class@ method name, for (obj (method ...))
        self.class_stack: list[Scope] = []  # class@ scopes being compiled (for setqi)
        self.declared_functions: set[str] = set()  # defun/defpat names of the files being run

    def declare_functions(self, forms: list) -> None:
        """Note the names top-level defun/defpat forms define, so that a defpat predicate pattern
        may call a function defined further down the file."""
        for form in forms:
            if (isinstance(form, list) and len(form) > 1 and form[0].__class__ is Symbol
                    and form[0].name in ("defun", "defpat") and form[1].__class__ is Symbol):
                self.declared_functions.add(form[1].name)
        self.pos: Any = None  # position of the innermost form being compiled
        self.form: Any = None  # that form (`atom_position` finds a symbol in its source text)
        self._expanding = 0  # nested macro expansions being compiled
        self._expansions = 0  # macro expansions while compiling the current top-level form
        self._inline_depth = 0

    # entry points ----------------------------------------------------------------------------

    def compile_toplevel(self, form: Any) -> tuple[Node, int]:
        """Compile one top-level form; returns the node and the size of its frame."""
        scope = Scope(None, "top")
        self.pos = form_pos(form)
        self.form = form if self.pos is not None else None
        self._expansions = 0
        node = self.comp(form, scope, False)
        # a (return v) outside any function is not caught here: it ends the whole script (or eval'd
        # text) with the value v, as LispE's root block does (see Interpreter._run_forms)
        return node, scope.nslots

    # dispatch --------------------------------------------------------------------------------

    def comp(self, x: Any, scope: Scope, tail: bool) -> Node:
        """Compile any Lisp datum as code."""
        cls = x.__class__
        if cls is Symbol:
            return self.comp_symbol(x, scope)
        if isinstance(x, list):
            if not x:
                return lambda f: []
            outer, outer_form = self.pos, self.form
            p = form_pos(x)
            if p is not None:
                self.pos, self.form = p, x
            try:
                return self.comp_list(x, scope, tail)
            finally:
                self.pos, self.form = outer, outer_form
        if cls is DictForm:
            outer_form = self.form
            self.form = x
            try:
                return self.comp_dict(x, scope)
            finally:
                self.form = outer_form
        return _const(x)

    def operand(self, x: Any, scope: Scope) -> _Operand:
        """Compile an operand, keeping constants and bound local slots inlinable."""
        cls = x.__class__
        if cls is int or cls is float or cls is str:
            return _Operand("const", x)
        if cls is Symbol:
            name = x.name
            if name in _NIL_SYMBOLS:
                return _Operand("const", _NIL_SYMBOLS[name])
            found = self.resolve(name, scope)
            if found is not None and found[0] == 0 and found[2]:
                return _Operand("slot", found[1])
            if found is None:
                return _Operand("global", (self.globals.cell(name), self._missing_global(name, scope)))
        parts = self.binop_parts(x, scope)
        if parts is not None:
            return _Operand("binop", parts)
        return _Operand("node", self.comp(x, scope, False))

    def binop_parts(self, x: Any, scope: Scope) -> tuple | None:
        """(name, operand a, operand b, slow path) if `x` is an inlinable `(op a b)`, else None."""
        if not (isinstance(x, list) and len(x) == 3 and x[0].__class__ is Symbol):
            return None
        name = x[0].name
        if name not in INLINE_BINARY or name in self.macros or self.resolve(name, scope) is not None:
            return None
        cell = self.globals.cell(name)
        if cell.v is not UNSET or lookup(name, self.interp.libraries) is None:
            return None
        if self._inline_depth >= 3:  # deeper nesting stays separate nodes: templates stay small
            return None
        outer, outer_form = self.pos, self.form
        p = form_pos(x)
        if p is not None:
            self.pos, self.form = p, x
        self._inline_depth += 1
        try:
            a = self.operand(x[1], scope)
            b = self.operand(x[2], scope)
            return (name, a, b, self._slow_binop(name))
        finally:
            self._inline_depth -= 1
            self.pos, self.form = outer, outer_form

    def _slow_binop(self, name: str) -> Callable[[Any, Any], Any]:
        slow = INLINE_BINARY[name][1]
        pos = self.pos

        def slow_at(x: Any, y: Any) -> Any:
            try:
                return slow(x, y)
            except LispEError as exc:
                raise err_at(exc, pos)

        return slow_at

    # symbols ---------------------------------------------------------------------------------

    def resolve(self, name: str, scope: Scope) -> tuple[int, int, bool] | None:
        """(frame depth, slot, always-bound) of a lexical variable, or None for a global."""
        depth = 0
        s: Scope | None = scope
        while s is not None:
            i = s.names.get(name)
            if i is not None:
                return depth, i, i in s.sure
            s = s.parent
            depth += 1
        return None

    def _missing_global(self, name: str, scope: Scope) -> Callable[[], Any]:
        """What reading an unbound global does: a builtin of that name as a value, else an error at
        the symbol itself, naming the closest visible variable or builtin."""
        interp, pos, form = self.interp, self.pos, self.form
        local_names = _visible_locals(scope)  # now: a `let` forgets its names once compiled

        def missing() -> Any:
            b = lookup(name, interp.libraries)
            if b is not None:
                return b
            raise err_at(unbound_error(name, local_names, interp, form), _atom_pos(form, name) or pos)

        return missing

    def comp_symbol(self, sym: Symbol, scope: Scope) -> Node:
        name = sym.name
        if name in _NIL_SYMBOLS:
            return _const(_NIL_SYMBOLS[name])
        found = self.resolve(name, scope)
        if found is None:
            cell = self.globals.cell(name)
            missing = self._missing_global(name, scope)

            def read_global(f: list) -> Any:
                v = cell.v
                if v is UNSET:
                    return missing()
                return v

            return read_global
        depth, i, sure = found
        if depth == 0 and sure:
            return lambda f: f[i]
        cell = self.globals.cell(name)
        missing = self._missing_global(name, scope)

        def read_local(f: list) -> Any:
            for _ in range(depth):
                f = f[0]
            v = f[i]
            if v is UNSET:
                v = cell.v
                if v is UNSET:
                    return missing()
            return v

        if depth == 0:
            def read_local0(f: list) -> Any:
                v = f[i]
                if v is UNSET:
                    v = cell.v
                    if v is UNSET:
                        return missing()
                return v

            return read_local0
        return read_local

    def setter(self, name: str, scope: Scope) -> Callable[[list, Any], None]:
        """A function `set(frame, value)` implementing `setq name` in this scope (language.md)."""
        found = self.resolve(name, scope)
        fscope = scope.function_scope()
        if found is not None:
            depth, i, sure = found
            owner = scope
            for _ in range(depth):
                owner = owner.parent
            if not sure and owner.kind == "lambda" and _reaches_top(owner):
                return self._lambda_setter(name, depth, i)
            if depth == 0:
                def set0(f: list, v: Any) -> None:
                    f[i] = v
                set0.slot = i  # type: ignore[attr-defined]
                return set0

            def set_up(f: list, v: Any) -> None:
                for _ in range(depth):
                    f = f[0]
                f[i] = v
            return set_up
        if fscope is None:  # top level: a global
            cell = self.globals.cell(name)

            def set_global(f: list, v: Any) -> None:
                cell.v = v
            set_global.cell = cell  # type: ignore[attr-defined]
            return set_global
        # a new name inside a function: a local of this function (a lambda reaching the top level
        # without an enclosing function updates an existing global instead, as LispE's lambdas do)
        i = fscope.new_slot(name)
        depth = 0
        s = scope
        while s is not fscope:
            s = s.parent
            depth += 1
        if fscope.kind == "lambda" and _reaches_top(fscope):
            return self._lambda_setter(name, depth, i)
        if depth == 0:
            def set_new0(f: list, v: Any) -> None:
                f[i] = v
            set_new0.slot = i  # type: ignore[attr-defined]
            return set_new0

        def set_new(f: list, v: Any) -> None:
            for _ in range(depth):
                f = f[0]
            f[i] = v
        return set_new

    def _lambda_setter(self, name: str, depth: int, i: int) -> Callable[[list, Any], None]:
        """setq in a lambda not inside any function: an existing global is updated, else a local."""
        cell = self.globals.cell(name)

        def set_lambda(f: list, v: Any) -> None:
            if cell.v is not UNSET:
                cell.v = v
                return
            for _ in range(depth):
                f = f[0]
            f[i] = v
        return set_lambda

    # lists -----------------------------------------------------------------------------------

    def comp_list(self, form: list, scope: Scope, tail: bool) -> Node:
        try:
            composed = compose_dots(form)  # `(f . g x)` is `(f (g x))`
        except LispEError as exc:
            raise err_at(exc, self.pos) from None
        if composed is not None:
            form = composed
        head = form[0]
        hcls = head.__class__
        if hcls is Symbol:
            sf = SPECIAL_FORMS.get(head)
            if sf is not None and self.resolve(head.name, scope) is None:
                return sf(self, form, scope, tail)
            macro = self.macros.get(head.name)
            if macro is not None and self.resolve(head.name, scope) is None:
                expanded = self.expand_macro(macro, form)
                self._expanding += 1
                try:
                    return self.comp(expanded, scope, tail)
                finally:
                    self._expanding -= 1
            if self.method_names and len(form) > 1 and self._looks_like_method_calls(form):
                from .data import instance_call

                return instance_call(self, form, scope, tail)
            return self.comp_call(form, scope, tail)
        if _is_literal(head) or (isinstance(head, list) and head and _is_literal(head[0])):
            return self.comp_data_list(form, scope)
        if self.method_names and len(form) > 1 and self._looks_like_method_calls(form):
            from .data import instance_call

            return instance_call(self, form, scope, tail)
        return self.comp_call(form, scope, tail)

    def _looks_like_method_calls(self, form: list) -> bool:
        """`(obj (m args)...)` where every m is a class@ method name (a class name may come first)."""
        seen = False
        for k, x in enumerate(form[1:]):
            if isinstance(x, list) and x and x[0].__class__ is Symbol and x[0].name in self.method_names:
                seen = True
            elif not (k == 0 and x.__class__ is Symbol and x.name in self.classes):
                return False
        return seen

    def comp_data_list(self, form: list, scope: Scope) -> Node:
        """Decision "literal data lists": `(1 2 (+ 1 2))` is the list of its evaluated elements."""
        nodes = [self.comp(x, scope, False) for x in form]
        if all(getattr(n, "const", False) for n in nodes):
            values = [n.value for n in nodes]
            return lambda f: _copy_data(values)
        return lambda f: [n(f) for n in nodes]

    def comp_dict(self, d: DictForm, scope: Scope) -> Node:
        pairs = [(self.comp(k, scope, False), self.comp(v, scope, False)) for k, v in d.pairs]
        pos = form_pos(d)

        def make_dict(f: list) -> dict:
            items = [(k(f), v(f)) for k, v in pairs]
            return _dict_from_items(items, pos)

        return make_dict

    # calls -----------------------------------------------------------------------------------

    def comp_call(self, form: list, scope: Scope, tail: bool, head_node: Node | None = None) -> Node:
        head = form[0]
        args = form[1:]
        pos = self.pos
        if any(a.__class__ is Form and len(a) == 3 and a[0].__class__ is Symbol and a[0].name == "?"
               and a[1].__class__ is Symbol for a in args):
            return self._named_call(form, scope, head_node)
        name = head.name if head.__class__ is Symbol and head_node is None else None
        if name in _PARTIAL_TAKERS and scope.function_scope() is not None:
            args = [self._partial_with_locals(a, scope) for a in args]
        ns = _ns(RT=self.rt, OVER=self._overflow(pos))
        n = len(args)
        if name is not None and self.resolve(name, scope) is None:
            cell = self.globals.cell(name)
            b = lookup(name, self.interp.libraries)
            if b is not None and cell.v is UNSET:
                inline = self._inline_builtin(name, b, args, scope, cell)
                if inline is not None:
                    return inline
            ns["CELL"] = cell
            head_code = "    fn = CELL.v\n"
        else:
            ns["H"] = head_node if head_node is not None else self.comp(head, scope, False)
            head_code = "    fn = H(f)\n"
        refs = None if name is not None and lookup(name, self.interp.libraries) is not None \
            else self._ref_setters(args, scope)
        ns["SLOW"] = self._slow_call(name, pos, tail, refs)
        ops = [self.operand(a, scope) for a in args]
        if n > 4:
            nodes = [self.comp(a, scope, False) for a in args]
            ns["ARGS"] = nodes
            fetch = "    args = [a(f) for a in ARGS]\n"
            frame = "[fn.env, *args]"
            arglist = "args"
        else:
            fetch = "".join(op.fetch(f"a{k}", f"A{k}", ns, "    ") for k, op in enumerate(ops))
            names = ", ".join(f"a{k}" for k in range(n))
            frame = f"[fn.env{', ' if n else ''}{names}]"
            arglist = f"[{names}]"
        if tail:
            run = ("        return TailCall(fn, fr)\n")
        else:
            run = ("        d = RT.depth + 1\n"
                   "        if d > RT.max_depth:\n"
                   "            raise OVER()\n"
                   "        RT.depth = d\n"
                   "        r = fn.body(fr)\n"
                   "        while r.__class__ is TailCall:\n"
                   "            r = r.fn.body(r.frame)\n"
                   "        RT.depth = d - 1\n"
                   "        return r\n")
        src = ("def node(f):\n" + head_code + fetch
               + f"    if fn.__class__ is Lambda and fn.nfast == {n}:\n"
               + f"        fr = {frame}\n"
               + "        p = fn.pad\n"
               + "        if p:\n"
               + "            fr += p\n"
               + run
               + f"    return SLOW(fn, {arglist}, f)\n")
        return _instantiate(src, ns)

    def _partial_with_locals(self, arg: Any, scope: Scope) -> Any:
        """'(< v) given to filter/map... inside a function, where v is a local variable: LispE
        evaluates the atoms of a partial call where it runs, so it becomes (list '< v); a quoted
        list naming no local stays the constant it was."""
        if not (isinstance(arg, list) and len(arg) == 2 and arg[0] is _QUOTE):
            return arg
        lst = arg[1]
        if not (isinstance(lst, list) and lst) or (lst[0].__class__ is Symbol and lst[0].name in _LAMBDA_WORDS):
            return arg
        if not any(x.__class__ is Symbol and x is not _UNDERSCORE and self.resolve(x.name, scope) is not None
                   for x in lst):
            return arg
        return [S("list")] + [x if x.__class__ is Symbol and x is not _UNDERSCORE
                              and self.resolve(x.name, scope) is not None else [_QUOTE, x] for x in lst]

    def _named_call(self, form: list, scope: Scope, head_node: Node | None) -> Node:
        """A call with arguments given by name, `(f 10 (? d 4))` (LispE's `?`): the named values go
        to the parameters (or class@ fields) of that name; skipped optional ones take their default."""
        from .runtime import bind_named

        head = form[0]
        pos = self.pos
        if head_node is not None:
            hnode = head_node
        elif head.__class__ is Symbol and self.resolve(head.name, scope) is None:
            cell = self.globals.cell(head.name)

            def hnode(f: list) -> Any:
                return cell.v
        else:
            hnode = self.comp(head, scope, False)
        positional: list[Node] = []
        named: list[tuple[str, Node]] = []
        for a in form[1:]:
            if a.__class__ is Form and len(a) == 3 and a[0].__class__ is Symbol and a[0].name == "?" \
                    and a[1].__class__ is Symbol:
                if any(n == a[1].name for n, _ in named):
                    raise err_at(LispEError(f"'?': the argument '{a[1].name}' is given twice"), pos)
                named.append((a[1].name, self.comp(a[2], scope, False)))
            elif named:
                raise err_at(LispEError("'?': arguments given by name come after the positional ones"), pos)
            else:
                positional.append(self.comp(a, scope, False))
        name = head.name if head.__class__ is Symbol else "function"

        def named_call(f: list) -> Any:
            fn = hnode(f)
            vals = [a(f) for a in positional]
            kw = {k: v(f) for k, v in named}
            try:
                return bind_named(fn, name, vals, kw)
            except LispEError as exc:
                raise err_at(exc, pos)
        return named_call

    def _overflow(self, pos: Any) -> Callable[[], LispEError]:
        rt = self.rt

        def over() -> LispEError:
            return err_at(rt.overflow(), pos)

        return over

    def _ref_setters(self, args: list, scope: Scope) -> list | None:  # noqa: C901
        """For each argument that is a variable, a function making its setter (else None): a
        function whose parameter is changed by += and the like gives the new value back to it."""
        if not any(a.__class__ is Symbol for a in args):
            return None
        made: dict[int, Any] = {}
        fs = scope.function_scope()
        for a in args:  # a parameter of this function passed on: keep what comes back for it
            if a.__class__ is Symbol and fs is not None and fs.kind in ("fn", "lambda"):
                found = self.resolve(a.name, scope)
                if found is not None and 1 <= found[1] <= fs.nparams and fs.names.get(a.name) == found[1]:
                    owner = scope
                    for _ in range(found[0]):
                        owner = owner.parent
                    if owner is fs:
                        fs.passes[found[1]] = a.name

        def setter_for(k: int) -> Any:
            if k not in made:
                a = args[k] if k < len(args) else None
                s = None
                if a.__class__ is Symbol and not a.name.startswith(("_", "&")) and a.name not in (
                        "nil", "true", "false") and not a.name.isdigit():
                    if self.resolve(a.name, scope) is not None or scope.function_scope() is None:
                        s = self.setter(a.name, scope)
                        if ("\x00ref " + a.name) in (fs.names if fs is not None else ()):
                            # the variable is itself a parameter passed by reference: pass it on
                            s = _chain_back(s, self.resolve("\x00ref " + a.name, scope))
                    else:
                        from .forms import _setter_existing
                        s = _setter_existing(self, a.name, scope)
                made[k] = s
            return made[k]
        return [setter_for]

    def _slow_call(self, name: str | None, pos: Any, tail: bool,
                   refs: list | None = None) -> Callable[..., Any]:
        """The general call path: builtins, defaults/rest, defpat, Python callables, errors.

        refs (from _ref_setters): when a function changes a parameter with `+=` and the like, LispE
        changes the number object the caller's variable holds; here the new frame gets, in that
        parameter's hidden slot, a `_Back` that writes each new value to the caller's variable
        (and on up, when that variable is itself such a parameter); tail calls keep the chain."""
        interp, ctx, rt = self.interp, self.ctx, self.rt
        setter_for = refs[0] if refs else None

        def slow(fn: Any, args: list, f: list | None = None) -> Any:
            try:
                if fn is UNSET:
                    b = lookup(name, interp.libraries) if name is not None else None
                    if b is None:
                        raise unknown_function(name, interp)
                    fn = b
                cls = fn.__class__
                if cls is Builtin:
                    return call_builtin(fn, args, ctx)
                if cls is Lambda:
                    if setter_for is not None and fn.code.refs and f is not None:
                        fr = fn.make_frame(args)
                        for k, slot in fn.code.refs:
                            s = setter_for(k)
                            if s is not None:  # += on that parameter writes through to the variable
                                fr[slot] = _Back(s, f)
                        if tail:
                            return TailCall(fn, fr)
                        return rt.run(fn.body, fr)
                    if tail:
                        return TailCall(fn, fn.make_frame(args))
                    return fn.invoke(args)
                if cls is PatternFunction:
                    if tail:
                        f2, fr = fn.select(args)
                        return TailCall(f2, fr)
                    return fn.invoke(args)
                if name is not None and not is_function(fn):
                    b = lookup(name, interp.libraries)
                    if b is not None:  # a variable named like a builtin does not hide the builtin
                        return call_builtin(b, args, ctx)
                    from .printer import repr_string

                    raise LispEError(f"'{name}' is not a function: {type_name(fn)} {repr_string(fn)[:40]}")
                return ctx.apply(fn, args)
            except LispEError as exc:
                raise err_at(exc, pos)
            except RecursionError:
                raise err_at(rt.overflow(), pos) from None

        return slow

    def _inline_builtin(self, name: str, b: Builtin, args: list, scope: Scope, cell: Cell) -> Node | None:
        """Calls to a builtin whose name is not rebound: inline arithmetic, else a direct call."""
        pos = self.pos
        n = len(args)
        if name in SLOT_CALL_BUILTINS and args and isinstance(args[0], list) and len(args[0]) == 2 \
                and args[0][0] == _QUOTE and _is_partial_call(args[0][1]):
            # '(count x): upstream evaluates a quoted call the same way, x read where maplist runs
            args = [args[0][1], *args[1:]]
        if name in SLOT_CALL_BUILTINS and args and _is_partial_call(args[0]):
            # (maplist (- 10) l): upstream does not evaluate an unquoted call given as the
            # function; it is a call whose arguments are evaluated for each element, the element
            # filling its `_` slot or added at its end (List_maplist_eval): (lambda (x) (- 10 x))
            call = args[0]
            if _UNDERSCORE in call[1:]:
                call = [call[0], *(_SLOT_PARAM if a == _UNDERSCORE else a for a in call[1:])]
            else:
                call = [*call, _SLOT_PARAM]
            args = [[_LAMBDA_SYM, [_SLOT_PARAM], call], *args[1:]]
        if n == 2 and name in INLINE_BINARY:
            return self.binop(name, self.operand(args[0], scope), self.operand(args[1], scope), cell)
        try:
            b.check_arity(n)
        except LispEError as exc:
            message = exc.message
            nodes = [self.comp(a, scope, False) for a in args]

            def bad_arity(f: list) -> Any:
                for a in nodes:
                    a(f)
                raise err_at(LispEError(message), pos)

            return bad_arity
        ops = [self.operand(a, scope) for a in args]
        ns = _ns(CELL=cell, BFN=b.fn, CTX=self.ctx, SLOW=self._slow_call(name, pos, False),
                 WRAP=self._wrap_builtin_error(b.name, pos, b.group == "user"))
        prefix = "CTX, " if b.ctx else ""
        if n > 4:
            ns["ARGS"] = [self.comp(a, scope, False) for a in args]
            fetch = "    args = [a(f) for a in ARGS]\n"
            call = f"BFN({prefix}*args)"
            arglist = "args"
        else:
            fetch = "".join(op.fetch(f"a{k}", f"A{k}", ns, "    ") for k, op in enumerate(ops))
            names = ", ".join(f"a{k}" for k in range(n))
            call = f"BFN({prefix}{names})"
            arglist = f"[{names}]"
        src = ("def node(f):\n" + fetch
               + "    if CELL.v is UNSET:\n"
               + "        try:\n"
               + f"            return {call}\n"
               + "        except BaseException as e:\n"
               + f"            raise WRAP(e, {arglist})\n"
               + f"    return SLOW(CELL.v, {arglist})\n")
        return _instantiate(src, ns)

    def _wrap_builtin_error(self, name: str, pos: Any,
                            host: bool = False) -> Callable[..., BaseException]:
        rt = self.rt

        def wrap(e: BaseException, args: Any = None) -> BaseException:
            if isinstance(e, LispEError):
                return err_at(e, pos)
            if isinstance(e, (Signal, KeyboardInterrupt, SystemExit, GeneratorExit)):
                return e
            if isinstance(e, RecursionError):
                return err_at(rt.overflow(), pos)
            if isinstance(e, Exception):
                return err_at(wrap_exception(name, e, args, host), pos)
            return e

        return wrap

    def binop(self, name: str, a: _Operand, b: _Operand, cell: Cell | None) -> Node:
        """Inline `(op a b)`: Python's operator when both are ints, the builtin's semantics else."""
        slow_at = self._slow_binop(name)
        ns = _ns()
        src = "def node(f):\n" + _binop_lines((name, a, b, slow_at), "r", "R", ns, "    ") + "    return r\n"
        node = _instantiate(src, ns)
        node.boolean = name in COMPARISONS  # type: ignore[attr-defined]
        node.inline = (name, a, b, slow_at)  # type: ignore[attr-defined]
        return node

    # macros ----------------------------------------------------------------------------------

    def expand_macro(self, macro: Macro, form: list) -> Any:
        """Substitute the call's argument forms into the body of the first matching clause (LispE
        macros are templates)."""
        name = macro.name
        if self._expanding >= MAX_MACRO_NESTING:
            raise err_at(LispEError(f"macro '{name}' expands without end ({MAX_MACRO_NESTING} nested "
                                    "expansions)"), self.pos)
        self._expansions += 1
        if self._expansions > MAX_MACRO_EXPANSIONS:
            raise err_at(LispEError(f"macro '{name}': more than {MAX_MACRO_EXPANSIONS} macro expansions "
                                    "in one top-level form (a macro that grows without end?)"), self.pos)
        args = list(form[1:])
        for _, params, body in macro.clauses:
            binding: dict[Symbol, Any] = {}
            if _bind_macro(params, args, binding):
                out = _substitute(body, binding, form)
                if _tree_size(out, MAX_MACRO_SIZE) > MAX_MACRO_SIZE:
                    raise err_at(LispEError(f"macro '{name}': the expansion has more than {MAX_MACRO_SIZE} "
                                            "elements"), self.pos)
                return out
        from .printer import repr_string

        if len(macro.clauses) == 1 and not _arity_fits(macro.clauses[0][1], len(args)):
            params = macro.clauses[0][1]
            n = params.index(_DOLLAR) if _DOLLAR in params else len(params)
            count = f"{'at least ' if _DOLLAR in params else ''}{n} argument{'' if n == 1 else 's'}"
            raise err_at(LispEError(f"Wrong number of arguments in call to: '{name}': expects {count} "
                                    f"{repr_string(params)}, got {len(args)}"), self.pos)

        raise err_at(LispEError(f"no definition of the macro '{name}' matches: "
                                f"{repr_string(to_data(form))[:80]}"), self.pos)

    # functions -------------------------------------------------------------------------------

    def compile_function(self, name: str, params: Any, body: list, parent: Scope, kind: str,
                         source: Any, pattern_slots: list[str] | None = None) -> FunctionCode:
        """Compile a lambda/defun body once into a FunctionCode."""
        fs = Scope(parent, "lambda" if kind == "lambda" else "fn", name)
        code = FunctionCode(name, self.rt, source, "lambda_" if kind == "lambda" else "function_")
        code.params = params
        defaults: list[Any] = []
        if pattern_slots is not None:
            for pname in pattern_slots:
                fs.new_slot(pname, sure=True)
            code.nreq = len(pattern_slots)
        else:
            self._parse_params(name, params, fs, code, defaults)
        code.nparams = fs.nparams = fs.nslots - 1
        for pname in self._prescan(body):
            if pname in fs.names:
                continue
            if kind == "lambda" and self.resolve(pname, parent) is not None:
                continue  # a lambda's setq updates the enclosing frame's binding
            fs.new_slot(pname)
        code.defaults = [self.comp(d, fs, False) for d in defaults]
        body_node = self.comp_body(body, fs, True)
        if fs.has_return:
            body_node = _catch_return(body_node)
        code.body = body_node
        if fs.refs:  # a parameter it passes on may come back changed: hand that back too
            for slot, pname in fs.passes.items():
                if slot not in fs.refs:
                    fs.refs[slot] = fs.new_slot("\x00ref " + pname)
        code.refs = tuple((slot - 1, kept) for slot, kept in fs.refs.items())
        code.nextra = fs.nslots - 1 - code.nparams
        code.self_index = fs.self_index
        return code

    def _parse_params(self, name: str, params: Any, fs: Scope, code: FunctionCode,
                      defaults: list[Any]) -> None:
        if params is None or (isinstance(params, Symbol) and params.name == "nil"):
            params = []
        if not isinstance(params, list):
            raise err_at(LispEError(f"'{name}': the parameters must be a list"), self.pos)
        i = 0
        while i < len(params):
            p = params[i]
            if p is _DOLLAR and i + 1 < len(params) and isinstance(params[i + 1], Symbol):
                fs.new_slot(params[i + 1].name, sure=True)
                code.rest = True
                i += 2
                continue
            if isinstance(p, Symbol):
                if code.nopt or code.rest:
                    raise err_at(LispEError(f"'{name}': a required parameter follows an optional one"),
                                 self.pos)
                fs.new_slot(p.name, sure=True)
                code.nreq += 1
            elif isinstance(p, list) and len(p) == 2 and isinstance(p[1], Symbol) and (
                    (isinstance(p[0], list) and not p[0]) or p[0] is None
                    or (isinstance(p[0], Symbol) and p[0].name == "nil")):
                fs.new_slot(p[1].name, sure=True)
                code.rest = True
            elif isinstance(p, list) and 1 <= len(p) <= 2 and isinstance(p[0], Symbol):
                if code.rest:
                    raise err_at(LispEError(f"'{name}': a parameter follows the rest parameter"), self.pos)
                fs.new_slot(p[0].name, sure=True)
                code.nopt += 1
                defaults.append(p[1] if len(p) == 2 else None)
            else:
                from .printer import repr_string

                raise err_at(LispEError(f"'{name}': bad parameter {repr_string(p)}"), self.pos)
            i += 1

    def _prescan(self, body: list) -> list[str]:
        """Names a function body assigns with setq or binds as loop variables (its locals)."""
        found: list[str] = []
        seen: set[str] = set()
        stack = list(reversed(body))
        budget = 100000
        while stack and budget:
            budget -= 1
            x = stack.pop()
            if not isinstance(x, list) or not x:
                continue
            head = x[0]
            if head.__class__ is Symbol:
                hn = head.name
                if hn in ("quote", "lambda", "λ", "\\", "defun", "defpat", "defmacro", "dethread"):
                    continue
                target = None
                if hn in ("setq", "setqv", "loop", "for") and len(x) > 1:
                    target = x[1]
                elif hn == "dotimes" and len(x) > 1 and isinstance(x[1], list) and x[1]:
                    target = x[1][0]
                elif hn == "loopcount" and len(x) > 2:
                    target = x[3] if x[2] is _INTO and len(x) > 3 else x[2]
                targets = target if hn in ("setq", "setqv") and isinstance(target, list) else (target,)
                for target in targets:  # `(setq (a b) ...)` makes locals a and b
                    if isinstance(target, Symbol) and target.name not in seen and target.name not in _NIL_SYMBOLS:
                        seen.add(target.name)
                        found.append(target.name)
                macro = self.macros.get(hn)
                if macro is not None:
                    try:
                        stack.append(self.expand_macro(macro, x))
                    except LispEError:
                        pass
                    continue
            stack.extend(reversed(x))
        return found

    def comp_body(self, body: list, scope: Scope, tail: bool) -> Node:
        """A sequence of forms; the last one in tail position if `tail`."""
        if not body:
            return _const(None)
        nodes = [self.comp(x, scope, False) for x in body[:-1]]
        last = self.comp(body[-1], scope, tail)
        if not nodes:
            return last
        if len(nodes) == 1:
            n0 = nodes[0]

            def seq2(f: list) -> Any:
                n0(f)
                return last(f)
            return seq2
        if len(nodes) == 2:
            n0, n1 = nodes

            def seq3(f: list) -> Any:
                n0(f)
                n1(f)
                return last(f)
            return seq3

        def seq(f: list) -> Any:
            for n in nodes:
                n(f)
            return last(f)
        return seq

    def cond_node(self, x: Any, scope: Scope) -> tuple[str, dict[str, Any]]:
        """Template lines computing a Python bool `c` for condition `x`."""
        ns: dict[str, Any] = {}
        node = self.comp(x, scope, False)
        inline = getattr(node, "inline", None)
        if inline is not None:
            name, a, b, slow = inline
            pyop = INLINE_BINARY[name][0]
            if name in COMPARISONS:
                ns["CSLOW"] = slow
                src = a.fetch("x", "CA", ns, "    ") + b.fetch("y", "CB", ns, "    ")
                checks = [f"{v}.__class__ is int" for v, op in (("x", a), ("y", b)) if not op.is_int_const()]
                guard = " and ".join(checks) if checks else "True"
                src += (f"    if {guard}:\n        c = x {pyop} y\n"
                        f"    else:\n        c = CSLOW(x, y)\n"
                        f"        c = c is True or (c is not None and truthy(c))\n")
                return src, ns
        ns["C"] = node
        if getattr(node, "boolean", False):
            return "    c = C(f)\n", ns
        return ("    c = C(f)\n"
                "    if c is not True:\n"
                "        c = c is not None and c is not False and truthy(c)\n"), ns


# --- helpers -------------------------------------------------------------------------------------

def _reaches_top(scope: Scope) -> bool:
    """Whether a lambda scope sits (through other lambdas) directly in top-level code."""
    s = scope.parent
    while s is not None:
        if s.kind == "fn":
            return False
        s = s.parent
    return True


def _const(v: Any) -> Node:
    def node(f: list) -> Any:
        return v
    node.const = True  # type: ignore[attr-defined]
    node.value = v  # type: ignore[attr-defined]
    return node


def _catch_return(inner: Node) -> Node:
    def body(f: list) -> Any:
        try:
            return inner(f)
        except ReturnSignal as s:
            return s.value
    return body


def _is_literal(x: Any) -> bool:
    cls = x.__class__
    return cls is int or cls is float or cls is str


def _copy_data(v: Any) -> Any:
    """A fresh copy of constant list/dict data, so destructive builtins cannot change the code."""
    if isinstance(v, list):
        return v.__class__(_copy_data(x) for x in v) if v.__class__ is not list else [
            _copy_data(x) if isinstance(x, (list, dict)) else x for x in v]
    if isinstance(v, dict):
        return {k: _copy_data(x) for k, x in v.items()}
    return v


def to_data(x: Any) -> Any:
    """Quoted code as plain data: lists without positions, `nil`/`true` as values, dicts built."""
    cls = x.__class__
    if cls is Symbol:
        n = x.name
        if n in ("nil", "false"):
            return None
        if n == "true":
            return True
        return x
    if cls is Form or cls is list:
        return [to_data(e) for e in x]
    if cls is DictForm:
        return _dict_from_items([(to_data(k), to_data(v)) for k, v in x.pairs], form_pos(x))
    return x


def _dict_from_items(items: list, pos: Any) -> dict:
    """A dictionary: numeric keys stay numbers when all keys are numbers, else keys become strings."""
    from .printer import to_string

    if items and all(isinstance(k, (int, float)) and not isinstance(k, bool) for k, _ in items):
        return dict(items)
    out = {}
    for k, v in items:
        if isinstance(k, Symbol):
            k = k.name
        elif not isinstance(k, str):
            k = to_string(k)
        out[k] = v
    return out


def _bind_macro(params: list, args: list, binding: dict) -> bool:
    """Match a macro clause's parameters against the argument forms, filling `binding`.

    A symbol binds the form (a second occurrence must be the same form); _ takes any form; $ rest
    takes the remaining forms; 'x and literals must appear as such; a list destructures a list."""
    i = 0
    for k, p in enumerate(params):
        if p is _DOLLAR:
            if k + 1 < len(params) and isinstance(params[k + 1], Symbol):
                binding[params[k + 1]] = _Splice(args[i:])
                return True
            return False
        if i >= len(args):
            return False
        a = args[i]
        if isinstance(p, Symbol):
            if p is not _UNDERSCORE:
                if p in binding:
                    if not _same_form(binding[p], a):
                        return False
                else:
                    binding[p] = a
        elif isinstance(p, list) and len(p) == 2 and p[0] is _QUOTE:
            if not _same_form(p[1], a):
                return False
        elif isinstance(p, list):
            if not isinstance(a, list) or not _bind_macro(p, list(a), binding):
                return False
        elif not _same_form(p, a):
            return False
        i += 1
    return i == len(args)


def _atom_pos(form: Any, name: str) -> Any:
    """(source, line, column) of the symbol `name` as read in `form`, or None."""
    where = atom_position(form, name)
    return None if where is None else (form.source, where[0], where[1])


def _visible_locals(scope: Scope | None) -> tuple[str, ...]:
    """The names of the lexical variables visible from `scope` (parameters, let, locals)."""
    names: list[str] = []
    while scope is not None:
        names.extend(n for n in scope.names if not n.startswith("\x00"))
        scope = scope.parent
    return tuple(names)


def unbound_error(name: str, local_names: Any, interp: Any, form: Any = None) -> LispEError:
    """`Unbound atom: 'x'`, with the closest name among the lexical variables `local_names`, the
    globals and the builtins, or a hint when the atom ends with a comma (JSON-style separators)."""
    from .builtins.registry import REGISTRY, visible_names
    from .hints import did_you_mean

    msg = f"Unbound atom: '{name}'"
    if name.endswith(",") and len(name) > 1:
        return LispEError(msg + comma_hint(form))
    names: set[str] = set(local_names)
    names.update(n for n, c in interp.globals.cells.items() if c.v is not UNSET)
    hint = did_you_mean(name, names)
    if not hint:  # a builtin only when it is a close match: 'factr' is not a misspelt 'float'
        builtins = (n for n in visible_names(interp.libraries) if REGISTRY[n].group != "unsupported")
        hint = did_you_mean(name, builtins, cutoff=0.75)
    return LispEError(msg + hint)


def comma_hint(form: Any) -> str:
    """What to say about a comma glued to an atom: in a dictionary literal, JSON's separators."""
    if isinstance(form, DictForm):
        return f" ({DICT_COMMAS_HINT})"
    return " (LispE separates items with spaces, not commas)"


def _arity_fits(params: list, n: int) -> bool:
    """Whether `n` argument forms fit the number of a macro clause's parameters."""
    if _DOLLAR in params:
        return n >= params.index(_DOLLAR)
    return n == len(params)


def _same_form(x: Any, y: Any) -> bool:
    """Structural equality of two code forms (symbols by identity, atoms by class and value)."""
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_same_form(a, b) for a, b in zip(x, y))
    if isinstance(x, _Splice) or isinstance(y, _Splice):
        return False
    return x.__class__ is y.__class__ and (x is y or x == y)


def _tree_size(x: Any, cap: int) -> int:
    """Elements of a form counted as a tree (shared parts as often as they appear), up to `cap`+1."""
    n = 0
    stack = [x]
    while stack:
        y = stack.pop()
        n += 1
        if n > cap:
            break
        if isinstance(y, list):
            stack.extend(y)
    return n


class _Splice:
    __slots__ = ("items",)

    def __init__(self, items: list):
        self.items = items


def _substitute(body: Any, binding: dict, call: Any) -> Any:
    if body.__class__ is Symbol:
        v = binding.get(body)
        if v is None:
            return body
        return Form(v.items, getattr(call, "source", None), getattr(call, "line", None),
                    getattr(call, "column", None)) if isinstance(v, _Splice) else v
    if isinstance(body, list):
        out = Form((), getattr(call, "source", None), getattr(call, "line", None),
                   getattr(call, "column", None))
        k = 0
        while k < len(body):
            e = body[k]
            if e is _DOLLAR and k + 1 < len(body) and isinstance(binding.get(body[k + 1]), _Splice):
                out.extend(binding[body[k + 1]].items)
                k += 2
                continue
            out.append(_substitute(e, binding, call))
            k += 1
        return out
    if body.__class__ is DictForm:
        return DictForm([(_substitute(k, binding, call), _substitute(v, binding, call)) for k, v in body.pairs],
                        body.source, body.line, body.column)
    return body


from . import forms  # noqa: E402,F401  (registers the special forms)
from . import forms_extra  # noqa: E402,F401  (op= on places, lloop, infix)
from . import data  # noqa: E402,F401  (data@, class@, setqi)
