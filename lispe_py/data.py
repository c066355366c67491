"""User data types: `data@` structures and `class@` classes.

data@ (upstream: the data_pool, List_data_eval, check_match): `(data@ (Point integer_ integer_)
(Circle (Point _ _) _))` declares constructors. `(Point 1 2)` checks its arguments against the
declaration and returns the plain list `(Point 1 2)`, whose first element is the atom Point: car,
size, printing and equality are those of lists; defpat patterns `(Point x y)` match it. `(data@ Shape
(Triangle _) (Square _))` gives both structures the ancestor Shape: a pattern `(Shape x)` matches
either. Declarations are registered when the form is compiled (and hoisted) so that patterns compiled
later see them.

class@ (upstream: List_class_definition, List_class_eval, List_instance_eval): `(class@ Name (x y
(z 1)) (defun method (u) ...)...)`. `(Name 1 2)` makes an instance; a field with a default may be left
out; `(obj (method 3) (other))` runs method calls on the instance and returns the last value. In a
method the fields are variables; `(setqi field v)` sets a field (a name not among the fields becomes
a new one); methods call each other by name. An instance prints as `(Name "x":1 "y":2 "z":1)`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .compiler import Compiler, Node, Scope, _const, err_at, special
from .errors import LispEError
from .patterns import TYPE_NAMES, _is_kind, type_matches
from .runtime import UNSET, Lambda
from .values import Symbol, register_type

_DOLLAR = Symbol("$")


# --- data@ ---------------------------------------------------------------------------------------

class DataDef:
    """One data@ structure: its name, field specifications (as written) and ancestor name."""

    __slots__ = ("name", "fields", "parent")

    def __init__(self, name: str, fields: list, parent: str | None):
        self.name = name
        self.fields = fields
        self.parent = parent


class DataConstructor:
    """The function a data@ name denotes: checks its arguments, returns `[Symbol(name), *args]`."""

    __slots__ = ("definition", "defs", "__name__")

    def __init__(self, definition: DataDef, defs: dict):
        self.definition = definition
        self.defs = defs
        self.__name__ = definition.name

    def __call__(self, *args: Any) -> list:
        d = self.definition
        if len(args) != len(d.fields):
            raise LispEError(f"Size mismatch between argument list and data structure definition "
                             f"'{d.name}' ({len(d.fields)} fields, {len(args)} arguments)")
        for i, (spec, v) in enumerate(zip(d.fields, args), start=1):
            if not _check_field(self.defs, spec, v):
                raise LispEError(f"Mismatch on argument: {i} ({_spec_name(spec)} required) in '{d.name}'")
        return [Symbol(d.name), *args]


register_type(DataConstructor, "data_", lambda d: d.definition.name)


def _spec_name(spec: Any) -> str:
    if isinstance(spec, Symbol):
        return spec.name
    if isinstance(spec, list) and spec and isinstance(spec[0], Symbol):
        return spec[0].name
    from .printer import repr_string

    return repr_string(spec)


def _check_field(defs: dict, spec: Any, v: Any) -> bool:
    if spec is None:
        return True
    if isinstance(spec, Symbol):
        n = spec.name
        if n in ("_", "nil"):
            return True
        if n in TYPE_NAMES:
            return type_matches(n, v)
        if n in defs:
            return isinstance(v, list) and bool(v) and isinstance(v[0], Symbol) and _is_kind(defs, v[0].name, n)
        raise LispEError(f"data@: unknown field type '{n}' (a type like integer_, _, or a data@ name)")
    if isinstance(spec, list) and spec and isinstance(spec[0], Symbol):
        n = spec[0].name
        if n in TYPE_NAMES:
            return type_matches(n, v)
        if n in defs:
            if not (isinstance(v, list) and len(v) == len(spec) and isinstance(v[0], Symbol)
                    and _is_kind(defs, v[0].name, n)):
                return False
            return all(_check_field(defs, s, x) for s, x in zip(spec[1:], v[1:]))
        raise LispEError(f"data@: unknown field type '{n}' (a type like integer_, _, or a data@ name)")
    from .builtins.arith import equal_values

    return equal_values(spec, v)


@special("data@")
def _data(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(data@ (Point integer_ integer_) (Circle (Point _ _) _)) declares data structures.

    (Point 1 2) then checks its arguments and returns the list (Point 1 2); defpat patterns like
    (Point x y) match it. (data@ Shape (Triangle _) (Square _)) names a common ancestor: the pattern
    (Shape x) matches (Triangle 3). A field is _ or nil (anything), a type (integer_, string_...) or
    another structure ((Point _ _) or Point). Hoisted; returns true.
    """
    from .compiler import to_data

    items = list(form[1:])
    parent = None
    if items and isinstance(items[0], Symbol):
        parent = items.pop(0).name
    if not items:
        raise err_at(LispEError("data@: write (data@ (Name field...) ...), e.g. (data@ (Point _ _))"), c.pos)
    for item in items:
        if not (isinstance(item, list) and item and isinstance(item[0], Symbol)):
            raise err_at(LispEError("data@: each structure is (Name field...), e.g. (Point integer_ integer_)"),
                         c.pos)
        name = item[0].name
        if name in TYPE_NAMES or name in ("_", "nil", "true", "$"):
            raise err_at(LispEError(f"data@: '{name}' cannot name a data structure"), c.pos)
        d = DataDef(name, [to_data(x) for x in item[1:]], parent)
        c.data_defs[name] = d
        c.globals.cell(name).v = DataConstructor(d, c.data_defs)
    if parent is not None and parent not in c.data_defs:
        c.data_defs[parent] = DataDef(parent, [], None)
    return _const(True)


@special("data")
def _data_old_name(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(data (Point _ _) (Circle _)) is data@ under its older name (upstream examples use both)."""
    return _data(c, form, scope, tail)


# --- class@ --------------------------------------------------------------------------------------

class ClassDef:
    """A class@: fields (with default nodes), extra fields set by setqi, methods, frame layout."""

    def __init__(self, name: str):
        self.name = name
        self.fields: list[str] = []
        self.defaults: list[Any] = []  # None: required; a node: default value
        self.extras: list[str] = []
        self.methods: dict[str, int] = {}  # method name -> frame slot
        self.codes: list[tuple[int, Any]] = []  # (slot, FunctionCode)
        self.nslots = 1
        self.scope: Scope | None = None
        # what a class deriving from this one with (from@ Name) takes over
        self.param_forms: list = []
        # (name, defun form, class whose definition holds it): the visible methods, then the
        # "Parent::method" versions that (from@ Parent (method)) calls
        self.method_forms: list[tuple[str, list, str]] = []
        self.hidden_forms: list[tuple[str, list, str]] = []


class Instance:
    """An instance of a class@: its class and its frame (fields, extra fields, bound methods)."""

    __slots__ = ("cls", "frame")

    def __init__(self, cls: ClassDef, frame: list):
        self.cls = cls
        self.frame = frame

    @property
    def lisp_type(self) -> str:
        return self.cls.name

    def _slot(self, name: str, idx: Any) -> int:
        cls = self.cls
        key = idx.name if isinstance(idx, Symbol) else idx
        if isinstance(key, str):
            if key in cls.fields:
                return 1 + cls.fields.index(key)
            if key in cls.extras:
                slot = 1 + len(cls.fields) + cls.extras.index(key)
                if self.frame[slot] is not UNSET:
                    return slot
            raise LispEError(f"{name}: '{key}' is not a field of the class '{cls.name}'")
        if isinstance(key, int) and not isinstance(key, bool):
            names = [n for n, _v in self.field_items()]
            i = key + len(names) if key < 0 else key
            if 0 <= i < len(names):
                return self._slot(name, names[i])
            raise LispEError(f"{name}: field position {key} out of range ({len(names)} fields)")
        raise LispEError(f"{name}: a field of the class '{cls.name}' is named by an atom, a string "
                         f"or its position")

    def lisp_at(self, idx: Any) -> Any:
        """(@ obj 'x) reads a field by name (atom or string) or by position."""
        return self.frame[self._slot("at", idx)]

    def lisp_set_at(self, idx: Any, value: Any) -> None:
        """(set@ obj 'x v) sets a field by name or position."""
        self.frame[self._slot("set@", idx)] = value

    def field_items(self) -> list[tuple[str, Any]]:
        cls, fr = self.cls, self.frame
        out = [(n, fr[1 + i]) for i, n in enumerate(cls.fields)]
        base = 1 + len(cls.fields)
        out += [(n, fr[base + i]) for i, n in enumerate(cls.extras) if fr[base + i] is not UNSET]
        return out


def _print_instance(inst: Instance) -> str:
    from .printer import repr_string

    parts = [inst.cls.name] + [f'"{n}":{repr_string(v)}' for n, v in inst.field_items()]
    return "(" + " ".join(parts) + ")"


register_type(Instance, "instance_", _print_instance)


class ClassConstructor:
    """The function a class@ name denotes: `(Name args...)` makes an instance."""

    __slots__ = ("cls", "env", "__name__")

    def __init__(self, cls: ClassDef, env: list):
        self.cls = cls
        self.env = env
        self.__name__ = cls.name

    def __call__(self, *args: Any) -> Instance:
        return self.call_named(args, {})

    def call_named(self, args: Sequence[Any], named: dict) -> Instance:
        """`(Name 10 (? z 2))`: fields given in order, then by name; the others take their default."""
        cls = self.cls
        nf = len(cls.fields)
        if len(args) > nf:
            raise LispEError(f"'{cls.name}': {len(args)} arguments for {nf} fields")
        frame = [self.env, *args] + [UNSET] * (cls.nslots - 1 - len(args))
        for k, v in named.items():
            if k not in cls.fields:
                raise LispEError(f"'{cls.name}' has no field named '{k}'")
            i = cls.fields.index(k)
            if i < len(args):
                raise LispEError(f"'{cls.name}': the field '{k}' is given twice")
            frame[1 + i] = v
        for i in range(len(args), nf):
            if frame[1 + i] is UNSET:
                d = cls.defaults[i]
                if d is None:
                    raise LispEError(f"'{cls.name}': missing argument for the field '{cls.fields[i]}'")
                frame[1 + i] = d(frame)
        for slot, code in cls.codes:
            frame[slot] = Lambda(code, frame)
        return Instance(cls, frame)


register_type(ClassConstructor, "class_", lambda k: k.cls.name)


def _setqi_targets(body: list) -> list[str]:
    found: list[str] = []
    stack = list(body)
    budget = 100000
    while stack and budget:
        budget -= 1
        x = stack.pop()
        if isinstance(x, list) and x:
            if x[0] is Symbol("setqi") and len(x) > 1 and isinstance(x[1], Symbol) and x[1].name not in found:
                found.append(x[1].name)
            stack.extend(x)
    return found


@special("class@")
def _class(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(class@ Counter (start (step 1)) (defun next () (setqi start (+ start step)) start)) defines a class.

    (setq k (Counter 10)) makes an instance (step defaults to 1); (k (next) (next)) calls methods
    on it and returns the last value: 12. In methods the fields are variables; (setqi f v) sets a
    field (a new name adds one). An instance prints as (Counter "start":12 "step":1). Hoisted.
    """
    if len(form) < 3 or not isinstance(form[1], Symbol) or not isinstance(form[2], list):
        raise err_at(LispEError("class@: write (class@ Name (fields...) (defun method (params) body)...)"), c.pos)
    name = form[1].name
    cls = ClassDef(name)
    cs = Scope(scope, "fn", name)
    params, body, parent = list(form[2]), list(form[3:]), None
    if _is_from(form[2]):
        parent = _parent_class(c, name, form[2])
        params = list(parent.param_forms)
    elif len(form) > 3 and _is_from(form[3]):
        parent = _parent_class(c, name, form[3])
        params = list(form[2]) + list(parent.param_forms)
        body = list(form[4:])
    default_forms = []
    for p in params:
        if isinstance(p, Symbol):
            cls.fields.append(p.name)
            default_forms.append(None)
        elif isinstance(p, list) and 1 <= len(p) <= 2 and isinstance(p[0], Symbol):
            cls.fields.append(p[0].name)
            default_forms.append(p[1] if len(p) == 2 else Symbol("nil"))
        else:
            from .compiler import to_data
            from .printer import repr_string

            raise err_at(LispEError(f"class@ '{name}': bad field {repr_string(to_data(p))}"), c.pos)
        cs.new_slot(cls.fields[-1])
    own = []
    for m in body:
        if not (isinstance(m, list) and len(m) >= 3 and m[0] is Symbol("defun") and isinstance(m[1], Symbol)):
            raise err_at(LispEError(f"class@ '{name}': the body holds method definitions (defun name (params) ...)"),
                         c.pos)
        own.append((m[1].name, m, name))
    hidden: list[tuple[str, list, str]] = []
    visible = own
    if parent is not None:  # the parent's methods the class does not redefine, then its own
        names = {n for n, _m, _o in own}
        visible = [e for e in parent.method_forms if e[0] not in names] + own
        hidden = list(parent.hidden_forms) + [(f"{parent.name}::{n}", m, o) for n, m, o in parent.method_forms]
    cls.param_forms, cls.method_forms, cls.hidden_forms = params, visible, hidden
    every = visible + hidden
    for extra in _setqi_targets([m for _n, m, _o in every]):
        if extra not in cls.fields:
            cls.extras.append(extra)
            cs.new_slot(extra)
    slots = []
    for n, _m, _o in visible:
        cls.methods[n] = cs.new_slot(n)
        slots.append(cls.methods[n])
    for n, _m, _o in hidden:
        slots.append(cs.new_slot(n))
    c.classes[name] = cls
    c.method_names.update(cls.methods)
    cls.defaults = [None if d is None else c.comp(d, cs, False) for d in default_forms]
    c.class_stack.append(cs)
    own_names = dict(cs.names)
    try:
        for slot, (_n, m, owner) in zip(slots, every):
            # as in LispE, a method calls the methods its own class saw when it was defined: an
            # inherited one is bound to the versions of the class that wrote it, not to redefinitions
            cs.names = own_names if owner == name else _owner_view(c, cs, own_names, owner)
            code = c.compile_function(m[1].name, m[2], list(m[3:]), cs, "fn", m)
            cls.codes.append((slot, code))
    finally:
        cs.names = own_names
        c.class_stack.pop()
    cls.nslots = cs.nslots
    cls.scope = cs
    cell = c.globals.cell(name)

    def define(f: list) -> Any:
        cell.v = ClassConstructor(cls, f)
        return cell.v
    return define


def _is_from(x: Any) -> bool:
    return isinstance(x, list) and len(x) >= 1 and x[0] is Symbol("from@")


def _parent_class(c: Compiler, name: str, spec: list) -> ClassDef:
    """The class a (from@ Parent) in class@ Name's definition derives from (defined before it)."""
    if len(spec) != 2 or not isinstance(spec[1], Symbol):
        raise err_at(LispEError(f"class@ '{name}': write (from@ Parent) with the name of a class@ class"), c.pos)
    parent = c.classes.get(spec[1].name)
    if parent is None:
        raise err_at(LispEError(f"class@ '{name}': unknown class '{spec[1].name}' in (from@ {spec[1].name})"),
                     c.pos)
    return parent


def _owner_view(c: Compiler, cs: Scope, names: dict[str, int], owner: str) -> dict[str, int]:
    """The class scope's names with each method of `owner` (an ancestor) bound to owner's version."""
    view = dict(names)
    for n, _m, _o in c.classes[owner].method_forms:
        slot = names.get(f"{owner}::{n}")
        if slot is not None:
            view[n] = slot
    return view


@special("from@")
def _from(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(from@ Person (greet)) inside a method of a class deriving from Person calls Person's greet.

    The call runs on the same instance, even when the deriving class redefines greet; with several
    calls (from@ Person (m1) (m2 x)) the value is the last one's. In a class@ header, (from@ Person)
    makes the class derive from Person: it takes Person's fields (after its own) and methods.
    """
    if len(form) < 3 or not isinstance(form[1], Symbol):
        raise err_at(LispEError("from@: write (from@ Parent (method args...)) inside a class@ method"), c.pos)
    if not c.class_stack:
        raise err_at(LispEError("from@: used outside a class@ method"), c.pos)
    cs = c.class_stack[-1]
    depth = 0
    s: Scope | None = scope
    while s is not None and s is not cs:
        s = s.parent
        depth += 1
    pname = form[1].name
    calls = []
    for sub in form[2:]:
        if not (isinstance(sub, list) and sub and isinstance(sub[0], Symbol)):
            raise err_at(LispEError(f"from@: write (from@ {pname} (method args...))"), c.pos)
        slot = cs.names.get(f"{pname}::{sub[0].name}")
        if slot is None or s is None:
            raise err_at(LispEError(f"from@: '{sub[0].name}' is not a method of a class '{pname}' this class "
                                    f"derives from"), c.pos)
        calls.append((slot, [c.comp(a, scope, False) for a in sub[1:]]))
    ctx, pos = c.ctx, c.pos

    def from_parent(f: list) -> Any:
        fr = f
        for _ in range(depth):
            fr = fr[0]
        r = None
        for slot, args in calls:
            vals = [a(f) for a in args]
            try:
                r = ctx.apply(fr[slot], vals)
            except LispEError as exc:
                raise err_at(exc, pos)
        return r
    return from_parent


@special("setqi")
def _setqi(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(setqi field 10) sets a field of the instance a class@ method runs on; returns true."""
    if len(form) != 3 or not isinstance(form[1], Symbol):
        raise err_at(LispEError("setqi: write (setqi field value) inside a class@ method"), c.pos)
    if not c.class_stack:
        raise err_at(LispEError("setqi: used outside a class@ method"), c.pos)
    cs = c.class_stack[-1]
    slot = cs.names.get(form[1].name)
    depth = 0
    s: Scope | None = scope
    while s is not None and s is not cs:
        s = s.parent
        depth += 1
    if slot is None or s is None:
        raise err_at(LispEError(f"setqi: '{form[1].name}' is not a field"), c.pos)
    value = c.comp(form[2], scope, False)

    def setqi(f: list) -> Any:
        v = value(f)
        fr = f
        for _ in range(depth):
            fr = fr[0]
        fr[slot] = v
        return True
    return setqi


def instance_call(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """`(obj (method args)...)`: method calls when obj is an instance, else an ordinary call."""
    plain = c.comp_call(form, scope, tail)
    if form[0].__class__ is not Symbol or c.resolve(form[0].name, scope) is not None:
        head = c.comp(form[0], scope, False)
    else:  # a global: an unbound name is left to the ordinary call (unknown function error)
        cell = c.globals.cell(form[0].name)

        def head(f: list) -> Any:
            return cell.v
    pos = c.pos
    klass = None
    calls = []
    for sub in form[1:]:
        if isinstance(sub, Symbol):
            klass = sub.name
            continue
        calls.append((sub[0].name, [c.comp(a, scope, False) for a in sub[1:]]))
    ctx = c.ctx

    def node(f: list) -> Any:
        obj = head(f)
        if obj.__class__ is not Instance:
            return plain(f)
        cls = obj.cls
        if klass is not None and cls.name != klass:
            raise err_at(LispEError(f"mismatch between class instance ({cls.name}) and class definition ({klass})"),
                         pos)
        r = None
        for mname, args in calls:
            slot = cls.methods.get(mname)
            if slot is None:
                raise err_at(LispEError(f"'{mname}' is not a method of the class '{cls.name}'"), pos)
            vals = [a(f) for a in args]
            try:
                r = ctx.apply(obj.frame[slot], vals)
            except LispEError as exc:
                raise err_at(exc, pos)
        return r
    return node


# --- flip (defpat guards use it to reorder a call's arguments) ----------------------------------

@special("flip")
def _flip(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(flip (- 10 2)) calls the function with its first two arguments swapped: -8.

    A defpat guard uses it to put the pattern variable last: (string_ (flip (in 'word s))). Given a
    value instead of a call: a list comes back with its first two elements swapped, a dictionary with
    its keys and values exchanged.
    """
    if len(form) != 2:
        raise err_at(LispEError("Wrong number of arguments in call to: 'flip'"), c.pos)
    arg = form[1]
    if isinstance(arg, list) and len(arg) >= 3 and not (isinstance(arg[0], Symbol) and arg[0].name == "quote"):
        from .reader import Form

        call = Form([arg[0], arg[2], arg[1], *arg[3:]], getattr(arg, "source", None),
                    getattr(arg, "line", None), getattr(arg, "column", None))
        return c.comp(call, scope, tail)
    value = c.comp(arg, scope, False)
    pos = c.pos

    def flip(f: list) -> Any:
        from .compiler import _dict_from_items
        from .values import type_name

        v = value(f)
        if isinstance(v, list):
            if len(v) < 2:
                return v
            return [v[1], v[0], *v[2:]]
        if isinstance(v, dict):
            return _dict_from_items([(x, k) for k, x in v.items()], pos)
        raise err_at(LispEError(f"flip: expected a call, a list or a dictionary, got {type_name(v)}"), pos)
    return flip
