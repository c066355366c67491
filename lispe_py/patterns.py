"""defpat parameter patterns compiled into matchers (LispE's `unify` on pattern arguments).

A matcher is `m(value, out, st) -> bool`: it tests one argument and appends the values of the
variables it binds to `out` (slot order = order of first appearance in the patterns). `st` is the
clause's closure frame, which predicate patterns need to run their call.

Pattern kinds (upstream: List::transformargument and the unify methods):
  literal / 'quoted        equal value
  _                        anything
  x                        binds x (a second x must be equal)
  (type_ p)                value of that type, then p must match it: (integer_ x), (integer_ (even x))
  (Name p...)              a data@ structure Name (or a child of Name) whose fields match p...
  (fn a... x)              a predicate: x (the last variable of the call, searched as LispE does)
                           is bound to the value, then (fn a... x) runs and must be true; an error
                           in the call means no match
  (p... $ rest)            a list; rest gets the remaining elements (_ ignores them)
  ((< x 10)+ y* z%)        Kleene operators in a list: see PatternSet._kleene_seq
  {k:v "key":p $:rest}     a dictionary: literal keys must be present; a symbol key binds a key
                           (_ any key); $:rest gets the dictionary of the keys left
"""
from __future__ import annotations

from typing import Any, Callable

from .builtins.arith import equal_values
from .builtins.registry import lookup
from .errors import LispEError
from .reader import DictForm
from .runtime import UNSET
from .values import Symbol, type_name

Matcher = Callable[[Any, list, Any], bool]

_DOLLAR = Symbol("$")
_QUOTE = Symbol("quote")

TYPE_NAMES = {"integer_", "number_", "float_", "string_", "list_", "integers_", "floats_", "numbers_",
              "strings_", "dictionary_", "dictionary_n_", "atom_", "nil_", "true_", "lambda_",
              "function_", "maybe_", "tensor_"}


def type_matches(tname: str, v: Any) -> bool:
    """Whether value `v` has LispE type `tname` (number_ also takes integers, list_ typed lists)."""
    t = type_name(v)
    return t == tname or (tname == "number_" and t in ("integer_", "float_")) or (
        tname == "list_" and isinstance(v, list)) or (tname == "float_" and t == "number_")


class PatternSet:
    """Compiles the parameter patterns of one defpat clause.

    `slots` receives the variable names in frame order. Predicate calls are compiled by `finish`,
    once all the clause's variables are known, in a scope holding them.
    """

    def __init__(self, c: Any, name: str):
        self.c = c
        self.name = name
        self.slots: list[str] = []
        self._preds: list[list] = []  # [form, node]
        self.frame_size = 1

    # building ---------------------------------------------------------------------------------

    def compile(self, patterns: list) -> Callable[[list, Any], list | None]:
        patterns = list(patterns)
        if _DOLLAR not in patterns:  # the common case, without the generic sequence matcher
            items = [self._one(p) for p in patterns]
            n = len(items)
            if n == 1:
                m0 = items[0]

                def match1(args: list, env: Any) -> list | None:
                    if len(args) != 1:
                        return None
                    out: list = []
                    return out if m0(args[0], out, env) else None
                return match1

            def matchn(args: list, env: Any) -> list | None:
                if len(args) != n:
                    return None
                out: list = []
                for m, v in zip(items, args):
                    if not m(v, out, env):
                        return None
                return out
            return matchn
        seq = self._seq(patterns)

        def match(args: list, env: Any) -> list | None:
            out: list = []
            return out if seq(args, out, env) else None
        return match

    def finish(self, parent_scope: Any) -> None:
        """Compile the predicate calls in a scope where the pattern variables are slots 1..n."""
        if not self._preds:
            return
        from .compiler import Scope

        ps = Scope(parent_scope, "fn", self.name)
        for n in self.slots:
            ps.new_slot(n)
        for entry in self._preds:
            entry[1] = self.c.comp(entry[0], ps, False)
        self.frame_size = ps.nslots

    def _fail(self, message: str) -> LispEError:
        from .compiler import err_at

        return err_at(LispEError(message), self.c.pos)

    def _seq(self, patterns: list) -> Matcher:
        if any(_kleene_op(p) is not None for p in patterns):
            return self._kleene_seq(patterns)
        items: list[Matcher] = []
        rest: Matcher | None = None
        k = 0
        while k < len(patterns):
            p = patterns[k]
            if p is _DOLLAR and k + 1 < len(patterns):
                if k + 2 != len(patterns):
                    raise self._fail(f"defpat '{self.name}': $ must come just before the last pattern")
                rest = self._one(patterns[k + 1])
                break
            items.append(self._one(p))
            k += 1
        n = len(items)

        def seq(values: Any, out: list, env: Any) -> bool:
            if not isinstance(values, list):
                return False
            if len(values) < n or (rest is None and len(values) != n):
                return False
            for m, v in zip(items, values):
                if not m(v, out, env):
                    return False
            if rest is not None:
                return rest(list(values[n:]), out, env)
            return True
        return seq

    def _kleene_var(self, p: Any) -> str | None:
        """The variable a Kleene operator collects into: that of (type_ x) or of a predicate call."""
        if isinstance(p, list) and p and isinstance(p[0], Symbol):
            if p[0].name in TYPE_NAMES:
                sub = p[-1]
                if isinstance(sub, Symbol):
                    return sub.name
                return self._kleene_var(sub)
            if self._is_function(p[0].name):
                return self._pred_var(p)
        return None

    def _kleene_seq(self, patterns: list) -> Matcher:
        """A list pattern with Kleene operators (upstream Listkleene / Atomekleene): (pattern)+ (one
        or more), (pattern)* (any number), (pattern)% (optional) collect, greedily and without going
        back, the values of the pattern's variable into a list (nil for an absent %); x+ x* x% take
        the elements up to the first one the next pattern matches (all the rest when last)."""
        entries: list[tuple] = []  # ("one", m) | ("list", m, op, idx) | ("atom", op, idx)
        rest: Matcher | None = None
        k = 0
        while k < len(patterns):
            p = patterns[k]
            if p is _DOLLAR and k + 1 < len(patterns):
                if k + 2 != len(patterns):
                    raise self._fail(f"defpat '{self.name}': $ must come just before the last pattern")
                rest = self._one(patterns[k + 1])
                break
            op = _kleene_op(p)
            if op is not None and isinstance(p, Symbol) and len(p.name) == 1:
                raise self._fail(f"defpat '{self.name}': the Kleene operator {p.name} must follow a pattern "
                                 "with a variable, like (< x 10)+ or (integer_ x)*")
            if op is not None:  # x+ x* x%
                self._var(p.name[:-1])
                entries.append(("atom", op, self.slots.index(p.name[:-1])))
                k += 1
                continue
            nxt = patterns[k + 1] if k + 1 < len(patterns) else None
            if isinstance(nxt, Symbol) and nxt.name in ("+", "*", "%"):
                var = self._kleene_var(p)
                if var is None:
                    raise self._fail(f"defpat '{self.name}': the Kleene operator {nxt.name} must follow a "
                                     "pattern with a variable, like (< x 10)+ or (integer_ x)*")
                m = self._one(p)
                entries.append(("list", m, nxt.name, self.slots.index(var)))
                k += 2
                continue
            entries.append(("one", self._one(p)))
            k += 1

        def put(out: list, idx: int, v: Any) -> None:
            while len(out) <= idx:
                out.append(UNSET)
            out[idx] = v

        def seq(values: Any, out: list, env: Any) -> bool:
            if not isinstance(values, list):
                return False
            i, n = 0, len(values)
            for e, entry in enumerate(entries):
                kind = entry[0]
                if kind == "one":
                    if i >= n or not entry[1](values[i], out, env):
                        return False
                    i += 1
                elif kind == "list":
                    _, m, op, idx = entry
                    if op == "%":
                        scratch = out[:]
                        if i < n and m(values[i], scratch, env):
                            out[:] = scratch
                            i += 1
                        else:
                            put(out, idx, None)
                        continue
                    got = []
                    while i < n:
                        scratch = out[:]
                        if not m(values[i], scratch, env):
                            break
                        got.append(scratch[idx])
                        i += 1
                    if op == "+" and not got:
                        return False
                    put(out, idx, got)
                else:
                    _, op, idx = entry
                    last = e == len(entries) - 1 and rest is None
                    nm = None if last or e + 1 >= len(entries) or entries[e + 1][0] != "one" else entries[e + 1][1]
                    if last:
                        j = n
                    else:
                        j = i
                        while j < n and not (nm is not None and nm(values[j], out[:], env)):
                            j += 1
                        if nm is not None and j >= n:
                            return False
                    if op == "%":
                        if j - i > 1:
                            return False
                        put(out, idx, values[i] if j > i else None)
                    else:
                        if op == "+" and j == i:
                            return False
                        put(out, idx, list(values[i:j]))
                    i = j
            if rest is not None:
                return rest(list(values[i:]), out, env)
            return i == n
        return seq

    def _var(self, name: str) -> Matcher:
        if name in self.slots:
            idx = self.slots.index(name)
            return lambda v, out, env: idx < len(out) and out[idx] is not UNSET and equal_values(out[idx], v)
        self.slots.append(name)
        idx = len(self.slots) - 1

        def bind(v: Any, out: list, env: Any) -> bool:
            n = len(out)
            if n == idx:
                out.append(v)
                return True
            while n < idx:
                out.append(UNSET)
                n += 1
            if n == idx:
                out.append(v)
            else:
                out[idx] = v
            return True
        return bind

    def _one(self, p: Any) -> Matcher:
        if isinstance(p, Symbol):
            n = p.name
            if n == "_":
                return lambda v, out, env: True
            if n in ("nil", "false"):
                return lambda v, out, env: v is None or v is False or (isinstance(v, list) and not v)
            if n == "true":
                # true is an atom in LispE: as a parameter it unifies with any argument
                # (Atome::unify records it), so (defpat f (true) ...) is a catch-all clause
                return lambda v, out, env: True
            if len(n) > 1 and n.endswith("@"):
                # defpred's non-unifiable parameter `b@` binds b (the caller's value, not a copy)
                return self._var(n[:-1])
            return self._var(n)
        if isinstance(p, DictForm):
            return self._dict(p)
        if isinstance(p, list):
            if not p:  # LispE's List::unify: () matches anything of size 0, nil included
                return lambda v, out, env: v is None or (isinstance(v, list) and not v)
            head = p[0]
            if head is _QUOTE and len(p) == 2:
                from .compiler import to_data

                lit = to_data(p[1])
                return lambda v, out, env: equal_values(lit, v)
            if isinstance(head, Symbol):
                if head.name in TYPE_NAMES:
                    return self._typed(head.name, p)
                data = self.c.data_defs.get(head.name)
                if data is not None:
                    return self._data(head.name, p)
                if head.name in getattr(self.c, "classes", {}):
                    return self._instance(head.name, p)
                if self._is_function(head.name):
                    return self._predicate(p)
            return self._seq(list(p))
        pc = p.__class__
        if pc is int or pc is str:
            return lambda v, out, env: (v == p) if v.__class__ is pc else equal_values(p, v)
        return lambda v, out, env: equal_values(p, v)

    def _typed(self, tname: str, p: list) -> Matcher:
        if len(p) < 2:
            raise self._fail(f"defpat '{self.name}': write ({tname} pattern), a pattern after the type")
        sub = self._one(p[-1])  # upstream Listargumentlabel unifies the last element

        def typed(v: Any, out: list, env: Any) -> bool:
            return type_matches(tname, v) and sub(v, out, env)
        return typed

    def _data(self, dname: str, p: list) -> Matcher:
        fields = [self._one(x) for x in p[1:]]
        n = len(fields) + 1
        defs = self.c.data_defs

        def data(v: Any, out: list, env: Any) -> bool:
            if not isinstance(v, list) or len(v) != n:
                return False
            h = v[0]
            if h.__class__ is not Symbol or not _is_kind(defs, h.name, dname):
                return False
            for m, x in zip(fields, v[1:]):
                if not m(x, out, env):
                    return False
            return True
        return data

    def _instance(self, cname: str, p: list) -> Matcher:
        """[Name x y z] matches an instance of the class@ Name: its field values, in order (the
        fields a setqi added come last), one pattern each."""
        fields = [self._one(x) for x in p[1:]]
        n = len(fields)

        def instance(v: Any, out: list, env: Any) -> bool:
            cls = getattr(v, "cls", None)
            if cls is None or getattr(cls, "name", None) != cname or not hasattr(v, "field_items"):
                return False
            values = [x for _k, x in v.field_items()]
            if len(values) != n:
                return False
            for m, x in zip(fields, values):
                if not m(x, out, env):
                    return False
            return True
        return instance

    def _is_function(self, name: str) -> bool:
        from .compiler import SPECIAL_FORMS

        c = self.c
        if name in c.macros or Symbol(name) in SPECIAL_FORMS:
            return True
        if lookup(name, c.interp.libraries) is not None:
            return True
        cell = c.globals.cells.get(name)
        if cell is not None and cell.v is not UNSET:
            from .runtime import is_function

            return is_function(cell.v)
        return name in c.declared_functions

    def _pred_var(self, p: list) -> str | None:
        """The variable of a predicate call: its last element, through nested calls, else the last
        symbol among its arguments (LispE: the variable is ALWAYS the last one)."""
        last = p[-1]
        if isinstance(last, list) and last and isinstance(last[0], Symbol) and self._is_function(last[0].name):
            return self._pred_var(last)
        if isinstance(last, Symbol) and last.name not in ("nil", "true", "false", "_"):
            return last.name
        for x in reversed(p[1:-1]):
            if isinstance(x, Symbol) and x.name not in ("nil", "true", "false", "_"):
                return x.name
        # beyond upstream (which stops here): the variable of a nested call, (= (% x 15) 0) -> x
        for x in reversed(p[1:]):
            if isinstance(x, list) and x and isinstance(x[0], Symbol) and self._is_function(x[0].name):
                v = self._pred_var(x)
                if v is not None:
                    return v
        return None

    def _predicate(self, p: list) -> Matcher:
        from .printer import repr_string
        from .compiler import to_data

        var = self._pred_var(p)
        if var is None:
            raise self._fail(f"defpat '{self.name}': the predicate pattern {repr_string(to_data(p))} "
                             "has no variable to bind")
        bind = self._var(var)
        entry: list = [p, None]
        self._preds.append(entry)
        owner = self
        rt = self.c.rt

        def predicate(v: Any, out: list, env: Any) -> bool:
            if not bind(v, out, env):
                return False
            frame = [env, *out]
            missing = owner.frame_size - len(frame)
            if missing > 0:
                frame += [UNSET] * missing
            depth = rt.depth
            try:
                r = entry[1](frame)
            except LispEError:  # as upstream: an error in the guard means no match
                rt.depth = depth
                return False
            return r is True or (r is not None and r is not False and _truthy(r))
        return predicate

    def _dict(self, d: DictForm) -> Matcher:
        fixed: list[tuple[Any, Matcher]] = []
        free: list[tuple[Matcher | None, Matcher]] = []
        rest: Matcher | None = None
        rest_given = False
        for k, v in d.pairs:
            if k is _DOLLAR:
                if rest_given:
                    raise self._fail(f"defpat '{self.name}': a dictionary pattern has one $:rest entry at most")
                rest_given = True
                rest = None if (isinstance(v, Symbol) and v.name == "_") else self._one(v)
                continue
            if rest_given:
                raise self._fail(f"defpat '{self.name}': $:rest must be the last entry of a dictionary pattern")
            if isinstance(k, Symbol):
                km = None if k.name == "_" else self._var(k.name)
                free.append((km, self._one(v)))
            elif isinstance(k, (str, int, float)):
                fixed.append((k, self._one(v)))
            else:
                raise self._fail(f"defpat '{self.name}': a dictionary pattern key must be a string, a "
                                 "number or a variable")
        nfixed, nfree = len(fixed), len(free)

        def lookup_key(dv: dict, k: Any) -> Any:
            if k in dv:
                return k
            if isinstance(k, (int, float)) and str(k) in dv:
                return str(k)
            if isinstance(k, str):
                for key in dv:
                    if not isinstance(key, str) and str(key) == k:
                        return key
            return UNSET

        def match_dict(v: Any, out: list, env: Any) -> bool:
            if not isinstance(v, dict):
                return False
            size = len(v)
            if not rest_given and size != nfixed + nfree:
                return False
            if rest_given and size < nfixed + nfree:
                return False
            used = set()
            for k, m in fixed:
                key = lookup_key(v, k)
                if key is UNSET or not m(v[key], out, env):
                    return False
                used.add(key)
            keys = sorted((key for key in v if key not in used), key=_key_order)

            def assign(i: int, taken: list) -> bool:
                if i == nfree:
                    left = [key for key in keys if key not in taken]
                    if not rest_given:
                        return not left
                    if rest is None:
                        return True
                    return rest({key: v[key] for key in left}, out, env)
                km, vm = free[i]
                for key in keys:
                    if key in taken:
                        continue
                    mark = len(out)
                    if (km is None or km(key, out, env)) and vm(v[key], out, env):
                        taken.append(key)
                        if assign(i + 1, taken):
                            return True
                        taken.pop()
                    del out[mark:]
                return False
            return assign(0, [])
        return match_dict


def clause_label(patterns: list, data_defs: dict) -> str | None:
    """The index label of a defpat clause (LispE `extractlabel` on its parameters): the type name or
    data@ name its first pattern starts with, or the type of a literal; None for anything else."""
    if not patterns:
        return None
    p = patterns[0]
    while isinstance(p, list) and not isinstance(p, DictForm):
        if not p or p[0] is _QUOTE:
            return None
        p = p[0]
    if isinstance(p, Symbol):
        return p.name if (p.name in TYPE_NAMES or p.name in data_defs) else None
    if isinstance(p, (int, float, str)) and not isinstance(p, bool):
        return type_name(p)
    return None


def data_ancestors(data_defs: dict) -> Callable[[str], list[str]]:
    """A function giving a data@ name and its ancestors ([] for a name that is not a structure)."""
    def ancestors(name: str) -> list[str]:
        out: list[str] = []
        while name is not None and name in data_defs and len(out) < 100:
            out.append(name)
            name = data_defs[name].parent
        return out
    return ancestors


def _kleene_op(p: Any) -> str | None:
    """'+' '*' or '%' for a Kleene operator symbol (alone, or ending a variable name: x+), else None."""
    if isinstance(p, Symbol):
        n = p.name
        if n in ("+", "*", "%"):
            return n
        if len(n) > 1 and n[-1] in "+*%" and (n[0].isalpha() or n[0] == "_") and n[:-1].isidentifier():
            return n[-1]
    return None


def _key_order(k: Any) -> tuple:
    if isinstance(k, (int, float)) and not isinstance(k, bool):
        return (0, k, "")
    return (1, 0, str(k))


def _truthy(v: Any) -> bool:
    from .values import truthy

    return truthy(v)


def _is_kind(defs: dict, name: str, wanted: str) -> bool:
    """Whether data structure `name` is `wanted` or has `wanted` as its ancestor."""
    seen = 0
    while name is not None and seen < 100:
        if name == wanted:
            return True
        d = defs.get(name)
        name = d.parent if d is not None else None
        seen += 1
    return False
