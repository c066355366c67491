"""Extra special forms of LispE: compound assignment on places, infix expressions, defpred, set@@.

Loaded by `compiler` after `forms`, so the registrations here complete (and for `+=` `-=` `*=` `/=`
wrap) the ones of `forms`: a plain variable still goes through the fast path of `forms`.

- `(+= (@ d "a") 1)`: every `op=` form of LispE also updates a place written `(@ container k...)`:
  a list element, a dictionary value (a missing key starts at 0) or a nested element `(@ m i j)`.
- `(defpred name (patterns) test...)`: clauses whose instructions are tests, with backtracking.
- `(set@@ s from to value)` on a string variable rebinds it (strings are immutable here).
- `(• 1 + 2 * 3)` / `(infix ...)` reads an infix expression into prefix form at compile time, with
  LispE's operator grouping (see `infix_to_prefix`).
"""
from __future__ import annotations

from typing import Any, Callable

from .builtins.arith import add2, div2, mul2, sub2
from .builtins.registry import REGISTRY
from .compiler import SPECIAL_FORMS, Compiler, Node, Scope, err_at, special
from .errors import LispEError
from .values import Symbol, type_name

_AT_NAMES = ("@", "at")


def _fail(c: Compiler, message: str) -> LispEError:
    return err_at(LispEError(message), c.pos)


def _registry_op(name: str) -> Callable[[Any, Any], Any]:
    """The binary operation of builtin `name`, looked up when first used."""
    def op(a: Any, b: Any) -> Any:
        entry = REGISTRY.get(name)
        if entry is None:
            raise LispEError(f"unknown function: '{name}'")
        return entry.fn(a, b)
    return op


# name of the op= form -> (binary operation, name of the operator it applies)
_OPS: dict[str, tuple[Callable[[Any, Any], Any], str]] = {
    "+=": (add2, "+"),
    "-=": (sub2, "-"),
    "*=": (mul2, "*"),
    "/=": (div2, "/"),
    "%=": (_registry_op("%"), "%"),
    "^^=": (_registry_op("^^"), "^^"),
    "<<=": (_registry_op("<<"), "<<"),
    ">>=": (_registry_op(">>"), ">>"),
    "&=": (_registry_op("&"), "&"),
    "|=": (_registry_op("|"), "|"),
    "^=": (_registry_op("^"), "^"),
    "&~=": (_registry_op("&~"), "&~"),
}


def _place_parts(c: Compiler, name: str, place: list, scope: Scope) -> tuple[Node, list[Node]]:
    if len(place) < 3:
        raise _fail(c, f"{name}: a place is written (@ container key...)")
    return c.comp(place[1], scope, False), [c.comp(k, scope, False) for k in place[2:]]


def _get_slot(name: str, target: Any, k: Any, start: Any) -> tuple[Any, Any]:
    """(storage key, current value) of element `k` of `target`; a missing dictionary key is `start`."""
    from .builtins._common import dict_key, to_index
    if isinstance(target, list):
        i = to_index(name, k, len(target))
        return i, target[i]
    if isinstance(target, dict):
        key = dict_key(target, k)
        return key, target.get(key, start)
    if isinstance(target, str):
        raise LispEError(f"{name}: strings cannot be modified in place")
    from .builtins._common import fail
    raise fail(name, "a list or a dictionary as the place's container", target)


def _store(name: str, target: Any, key: Any, value: Any) -> None:
    from .builtins._common import fit
    from .builtins.lists import _dict_set
    if isinstance(target, list):
        target[key] = fit(name, target, value)
    else:
        _dict_set(name, target, key, value)


def _compile_place_update(c: Compiler, form: list, scope: Scope, name: str,
                          op: Callable[[Any, Any], Any]) -> Node:
    container, keys = _place_parts(c, name, form[1], scope)
    values = [c.comp(x, scope, False) for x in form[2:]]
    pos = c.pos
    from .builtins.lists import _at_one

    def update_place(f: list) -> Any:
        try:
            target = container(f)
            ks = [k(f) for k in keys]
            vals = [v(f) for v in values]
            for k in ks[:-1]:
                target = _at_one(target, k)
            start = "" if isinstance(vals[0], str) else 0
            key, current = _get_slot(name, target, ks[-1], start)
            for v in vals:
                current = op(current, v)
            _store(name, target, key, current)
            return current
        except LispEError as exc:
            raise err_at(exc, pos)
    return update_place


def _compile_var_update(c: Compiler, form: list, scope: Scope, name: str,
                        op: Callable[[Any, Any], Any]) -> Node:
    var = form[1]
    read = c.comp(var, scope, False)
    setv = _existing_setter(c, var.name, scope)
    values = [c.comp(x, scope, False) for x in form[2:]]
    pos = c.pos

    def update_var(f: list) -> Any:
        try:
            v = read(f)
            for x in values:
                v = op(v, x(f))
        except LispEError as exc:
            raise err_at(exc, pos)
        setv(f, v)
        return v
    return update_var


def _existing_setter(c: Compiler, name: str, scope: Scope) -> Callable[[list, Any], None]:
    """A setter for the variable `name` reads: its local if it has one, else the global."""
    if c.resolve(name, scope) is not None or scope.function_scope() is None:
        return c.setter(name, scope)
    cell = c.globals.cell(name)

    def set_global(f: list, v: Any) -> None:
        cell.v = v
    return set_global


def _make_update(name: str, op: Callable[[Any, Any], Any], opname: str) -> None:
    fast = SPECIAL_FORMS.get(Symbol(name))

    def update(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
        if len(form) < 3:
            raise _fail(c, f"Wrong number of arguments in call to: '{name}'")
        target = form[1]
        if isinstance(target, Symbol):
            if target.name in ("nil", "true", "false", "_"):
                raise _fail(c, f"{name}: cannot assign to {target.name}")
            if fast is not None and len(form) == 3:
                return fast(c, form, scope, tail)
            return _compile_var_update(c, form, scope, name, op)
        if isinstance(target, list) and target and isinstance(target[0], Symbol) \
                and target[0].name in _AT_NAMES:
            return _compile_place_update(c, form, scope, name, op)
        raise _fail(c, f"{name}: the first argument must be a variable or a place (@ container key...)")

    update.__doc__ = (f"({name} x 2) sets x to ({opname} x 2) and returns the new value.\n\n"
                      f"The target may be a place: ({name} (@ l 1) 2) on a list element, ({name} (@ d \"k\") 2)\n"
                      f"on a dictionary value (a missing key starts at 0, or \"\" for a string), "
                      f"({name} (@ m i j) 2)\non a nested element. Several values apply in turn: "
                      f"({name} x 2 3).")
    special(name, wraps=True)(update)  # the plain-variable case stays the fast form of forms.py


for _name, (_op, _opname) in _OPS.items():
    _make_update(_name, _op, _opname)


# --- infix expressions ---------------------------------------------------------------------------

_MATH_OPS = {"~", "&", "&~", "|", "^", "+", "-+", "-", "*", "/", "%", "^^", "<<", ">>", "&=", "|=", "^=",
             "+=", "-=", "*=", "/=", "%=", "^^=", "<<=", ">>=", "&&&", "|||", "^^^", "**"}
_COMPARATORS = {"=", "==", "!=", "<", ">=<", ">", "<=", ">=", ","}
_LOGICALS = {"or", "and", "xor"}
_ASSIGNORS = {"=", "&=", "|=", "^=", "+=", "-=", "*=", "/=", "%=", "^^=", "<<=", ">>="}
_OPERATORS = _MATH_OPS | _COMPARATORS | _LOGICALS | {"@", "at"}


def _grouping(op: str, root: str) -> int:
    """-1: same operator, extend the list; 1: op binds looser than root, wrap; 0: op binds tighter."""
    if op == root:
        return -1 if op in _OPERATORS else 0
    if root in _ASSIGNORS:
        return 0
    if root in _LOGICALS:
        return int(op in _LOGICALS)
    if root in _COMPARATORS:
        return int(op in _COMPARATORS or op in _LOGICALS)
    return int(op in ("+", "-") or op in _COMPARATORS or op in _LOGICALS)


def _is_infix_list(x: list) -> bool:
    return len(x) >= 3 and len(x) % 2 == 1 and all(
        isinstance(x[k], Symbol) and x[k].name in _OPERATORS for k in range(1, len(x), 2))


def _infix_operand(x: Any, what: str) -> Any:
    """An operand of an infix expression, as LispE's List::eval_infix reads it: a parenthesized
    `value op value ...` is an infix sub-expression, `(1 + 2) * 3` is 9; a call keeps its head and
    its arguments are read the same way, `(f (1 + 2))`; a quoted list stays data."""
    if not isinstance(x, list) or len(x) < 2:
        return x
    head = x[0]
    if isinstance(head, Symbol) and head.name in ("quote", "•", "infix", "§"):
        return x
    if _is_infix_list(x) or not isinstance(head, Symbol) or (
            isinstance(x[1], Symbol) and x[1].name in _OPERATORS and head.name not in _OPERATORS):
        return infix_to_prefix(list(x), what)  # a malformed one, (1 +), is an error
    return [head] + [_infix_operand(a, what) for a in x[1:]]


def infix_to_prefix(items: list, what: str = "infix") -> Any:
    """`x op y op z...` as a prefix expression, grouped as LispE does.

    A run of the same operator makes one call: `1 + 2 + 3` is `(+ 1 2 3)`. A following operator that
    binds looser (`+`/`-` after `*`, comparisons after arithmetic, `and`/`or` after comparisons)
    wraps everything so far; one that binds tighter takes the last operand: `1 + 2 * 3` is
    `(+ 1 (* 2 3))`. After `=` everything groups to the right. Operators are compared by name.
    """
    n = len(items) + 1  # LispE counts the head of the form
    if n % 2:
        raise LispEError(f"{what}: malformed infix expression (expected value op value ... value)")
    for k in range(1, len(items), 2):
        if not isinstance(items[k], Symbol):
            raise LispEError(f"{what}: expected an operator in this infix expression, got {type_name(items[k])}")
    liste = [None] + [_infix_operand(x, what) if k % 2 == 0 else x for k, x in enumerate(items)]
    op = liste[2]
    root: list = [op]
    operations = root
    iop, ival = 4, 1
    while ival < n:
        while iop < n - 1:
            if liste[iop] != op:
                op = liste[iop]
                break
            iop += 2
        while ival < iop:
            operations.append(liste[ival])
            ival += 2
        if iop < n - 1:
            comp = _grouping(op.name, root[0].name)
            if comp == -1:
                operations = root
                iop += 2
                continue
            if comp:
                root = [op, root]
                operations = root
            else:
                inter = [op, operations.pop()]
                operations.append(inter)
                operations = inter
        iop += 2
    return root


@special("•")
def _infix(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(• 1 + 2 * 3) reads an infix expression: (+ 1 (* 2 3)), 7; infix is the same form.

    Operators alternate with operands; a run of one operator is one call, * / % ^^ bind tighter than
    + -, comparisons looser, and/or/xor loosest. A parenthesized operand is an infix expression too:
    (• (1 + 2) * 3) is 9, and the arguments of a call are read the same way: (• (sqrt (8 * 2)) + 1)
    is 5. (• expr) with one argument evaluates it: a list value is read as an infix expression and run.
    """
    if len(form) == 2 and isinstance(form[1], list) and _is_infix_list(form[1]):
        try:  # (• (1 + 2)): one parenthesized infix expression
            prefix = infix_to_prefix(list(form[1]), form[0].name)
        except LispEError as exc:
            raise err_at(exc, c.pos)
        return c.comp(prefix, scope, tail)
    if len(form) == 2 and isinstance(form[1], list) and len(form[1]) == 2 and form[1][0] is Symbol("quote") \
            and isinstance(form[1][1], list) and form[1][1]:
        # LispE's List::eval_infix reads (quote (...)) as the infix expression `quote (...)`: two
        # operands in a row
        raise err_at(LispEError(f"{form[0].name}: malformed infix expression (a quoted list is data, not an "
                                f"infix expression: write ({form[0].name} a + b) or pass the list in a variable)"),
                     c.pos)
    if len(form) == 2:
        value = c.comp(form[1], scope, False)
        interp, pos = c.interp, c.pos

        def infix_value(f: list) -> Any:
            v = value(f)
            if not isinstance(v, list) or len(v) < 3:
                return v
            try:
                return interp._eval_data(infix_to_prefix(v, form[0].name))
            except LispEError as exc:
                raise err_at(exc, pos)
        return infix_value
    if len(form) < 2:
        raise _fail(c, f"Wrong number of arguments in call to: '{form[0].name}'")
    try:
        prefix = infix_to_prefix(list(form[1:]), form[0].name)
    except LispEError as exc:
        raise err_at(exc, c.pos)
    return c.comp(prefix, scope, tail)


@special("infix")
def _infix_named(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(infix 2 * 3 + 1) reads an infix expression like •: (+ (* 2 3) 1), 7."""
    return _infix(c, form, scope, tail)


# --- set@@ on a string variable ------------------------------------------------------------------

@special("set@@")
def _set_range(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(set@@ s 0 3 "abc") replaces elements 0..2 of s; a string variable is rebound to the new string.

    LispE's set@@ is its setrange: lists change in place (a list value puts its elements in place of
    the range). LispE strings change in place too; here strings are immutable, so when the first
    argument is a variable holding a string the variable is set to the result. The end may be a
    string: the range stops before its next occurrence. Returns the new container.
    """
    if len(form) != 5:
        raise _fail(c, "Wrong number of arguments in call to: 'set@@'")
    from .builtins.lang_extras import set_range

    container = c.comp(form[1], scope, False)
    args = [c.comp(x, scope, False) for x in form[2:]]
    setv = _existing_setter(c, form[1].name, scope) if isinstance(form[1], Symbol) else None
    pos = c.pos

    def set_range_node(f: list) -> Any:
        target = container(f)
        try:
            result = set_range(target, *(a(f) for a in args))
        except LispEError as exc:
            raise err_at(exc, pos)
        if setv is not None and isinstance(target, str):
            setv(f, result)
        return result
    return set_range_node


# --- defpred -------------------------------------------------------------------------------------

_PRINTERS = ("print", "println", "printerr", "printerrln")


class PredicateFunction:
    """A `defpred` function: clauses with patterns whose body instructions are all tests.

    A call tries the clauses in definition order. In a clause whose patterns match, the instructions
    run in turn; the first false value (or an error) makes the clause fail and the search goes on
    with the next clauses. The value of the first clause that succeeds is returned. As in LispE, when
    no further clause matches the call gives nil, and when the last clause fails it is an error.
    """

    lisp_type = "predicate_"

    def __init__(self, name: str, rt: Any):
        self.name = name
        self.clauses: list[tuple[Any, Any]] = []
        self.keys: list[str] = []
        self.rt = rt

    def add_clause(self, key: str, match: Any, fn: Any) -> None:
        # clauses with the same patterns are all kept, in order: each is one more alternative
        # (LispE appends every body to the function's list; the wiki's non_unif example needs it)
        self.keys.append(key)
        self.clauses.append((match, fn))

    def invoke(self, args: list) -> Any:
        from .values import truthy

        clauses = self.clauses
        rt = self.rt
        last_error: LispEError | None = None
        i, n = 0, len(clauses)
        while i < n:
            while i < n:
                bound = clauses[i][0](args, clauses[i][1].env)
                if bound is not None:
                    break
                i += 1
            else:
                return None
            fn = clauses[i][1]
            missing = getattr(fn, "nslots", 0) - len(bound)
            if missing > 0:  # variables a matched branch did not reach
                from .runtime import UNSET
                bound = bound + [UNSET] * missing
            frame = [fn.env, *bound]
            frame += fn.pad
            depth = rt.depth
            try:
                r = rt.run(fn.body, frame)
            except LispEError as exc:  # an error fails the clause, as in LispE
                rt.depth, r, last_error = depth, None, exc
            except RecursionError:
                rt.depth, r, last_error = depth, None, rt.overflow()
            if r is not None and r is not False and truthy(r):
                return r
            i += 1
        cause = None
        if last_error is not None:  # a nested predicate's failure passes on its first cause, if any
            cause = getattr(last_error, "predicate_cause", last_error.message)
        why = f" (the last one failed with: {cause})" if cause else ""
        err = LispEError(f"no clause of the predicate '{self.name}' succeeded{why}")
        err.predicate_cause = cause  # type: ignore[attr-defined]  # the first error, not a chain of them
        raise err

    def __call__(self, *args: Any) -> Any:
        return self.invoke(list(args))

    def __repr__(self) -> str:
        return f"#<defpred {self.name}>"


def _test_instruction(x: Any) -> Any:
    """A print instruction counts as a successful test (LispE's print functions return true)."""
    if isinstance(x, list) and x and isinstance(x[0], Symbol) and x[0].name in _PRINTERS:
        return [Symbol("block"), x, Symbol("true")]
    return x


def _copying_matcher(match: Any, patterns: list) -> Any:
    """defpred/defprol run each clause on copies of the list and dictionary arguments, so that a
    clause that fails leaves them as they were for the next one (LispE unifies a fullcopy of each
    argument); a parameter written `name@` is not unifiable: it gets the caller's value itself."""
    from .compiler import _copy_data

    shared = {i for i, p in enumerate(patterns)
              if isinstance(p, Symbol) and len(p.name) > 1 and p.name.endswith("@")}

    def match_copies(args: list, env: Any) -> Any:
        return match([a if i in shared or not isinstance(a, (list, dict)) else _copy_data(a)
                      for i, a in enumerate(args)], env)
    return match_copies


def _pattern_matcher(c: Compiler, name: str, patterns: list, scope: Scope) -> tuple[Any, list[str]]:
    """defpat's matcher for a clause's patterns: `match(args, env) -> bound values | None`, slot names."""
    try:
        from .patterns import PatternSet  # type: ignore[import-not-found]  # defpat's pattern compiler
    except ImportError:
        from .forms import _compile_patterns

        slots: list[str] = []
        match1 = _compile_patterns(c, patterns, slots)
        return (lambda args, env: match1(args)), slots
    ps = PatternSet(c, name)
    match = ps.compile(patterns)
    ps.finish(scope)
    return match, ps.slots


@special("defpred")
def _defpred(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(defpred small ((integer_ x)) (< x 10) (println x)) adds a clause to a predicate function.

    Patterns are those of defpat. Each body instruction is a test: when one is false (or fails
    with an error) the clause fails and the next matching clause is tried. The call returns the
    value of the first clause whose tests all succeed; nil when no further clause matches; an
    error when the last clause fails. Print instructions count as true.
    """
    def body(tests: list) -> Any:
        return tests[-1] if len(tests) == 1 else [Symbol("if"), [Symbol("and"), *tests[:-1]], tests[-1]]
    return _clause_definition(c, form, scope, "defpred", "test", PredicateFunction, body)


def _clause_definition(c: Compiler, form: list, scope: Scope, word: str, what: str, cls: type,
                       body_of: Callable[[list], Any]) -> Node:
    """`(WORD name (patterns...) instruction...)` for defpred and defprol: compiles one clause (its
    instructions as tests, combined by `body_of`) and adds it to the `cls` function named `name`."""
    from .compiler import to_data
    from .printer import repr_string
    from .runtime import Lambda

    if len(form) < 4:
        raise _fail(c, f"Wrong number of arguments in call to: '{word}'")
    name, patterns = form[1], form[2]
    if not isinstance(name, Symbol) or not isinstance(patterns, list):
        raise _fail(c, f"{word}: write ({word} name (patterns...) {what}...)")
    match, slots = _pattern_matcher(c, name.name, list(patterns), scope)
    match = _copying_matcher(match, list(patterns))
    body = body_of([_test_instruction(x) for x in form[3:]])
    code = c.compile_function(name.name, None, [body], scope, "fn", form, pattern_slots=slots)
    cell = c.globals.cell(name.name)
    rt = c.rt
    key = repr_string(to_data(patterns))

    def define(f: list) -> Any:
        pf = cell.v
        if not isinstance(pf, cls):
            pf = cls(name.name, rt)
            cell.v = pf
        pf.add_clause(key, match, Lambda(code, f, self_value=pf))
        return pf
    return define


# --- defprol -------------------------------------------------------------------------------------

_CUT = Symbol("cut_")


class PrologFunction(PredicateFunction):
    """A `defprol` function: like defpred, but every clause whose patterns match runs, and the call
    returns the list of the values of the clauses whose instructions all succeeded (LispE's
    List_prolog_eval). An instruction `cut_` stops the search after the current clause; `fail_` is
    nil, so it fails the clause. An error fails the clause. No clause succeeding gives ()."""

    lisp_type = "prolog_"

    def invoke(self, args: list) -> Any:
        rt = self.rt
        results: list = []
        for match, fn in list(self.clauses):
            bound = match(args, fn.env)
            if bound is None:
                continue
            missing = getattr(fn, "nslots", 0) - len(bound)
            if missing > 0:
                from .runtime import UNSET
                bound = bound + [UNSET] * missing
            frame = [fn.env, *bound]
            frame += fn.pad
            depth = rt.depth
            try:
                ok, value, cut = rt.run(fn.body, frame)
            except LispEError:
                rt.depth = depth
                continue
            except RecursionError:
                rt.depth = depth
                raise rt.overflow() from None
            if ok:
                results.append(value)
            if cut:
                break
        return results

    def __repr__(self) -> str:
        return f"#<defprol {self.name}>"


@special("%prolog_body")
def _prolog_body(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(%prolog_body instruction...) is the body defprol builds for a clause (internal).

    The instructions run in turn until one is false; `cut_` marks the clause as the last one tried.
    Gives (succeeded, last value, cut) to the defprol function.
    """
    from .values import truthy

    items = form[1:]
    single = len(items) == 1
    nodes = [None if (not single and isinstance(x, Symbol) and x.name == "cut_") else c.comp(x, scope, False)
             for x in items]

    def prolog_body(f: list) -> Any:
        cut = False
        value: Any = True
        for node in nodes:
            if node is None:
                cut, value = True, _CUT
                continue
            value = node(f)
            if value is None or value is False or not truthy(value):
                return False, value, cut
        return True, value, cut
    return prolog_body


@special("defprol")
def _defprol(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(defprol name (patterns) instruction...) adds a clause to a Prolog-like function.

    Patterns are those of defpat. A call runs every clause whose patterns match, in definition
    order; a clause succeeds when none of its instructions is false (or fails with an error), and
    the call returns the list of the last values of the clauses that succeeded. `cut_` among the
    instructions stops the search after this clause; `fail_` (nil) fails the clause.
    (defprol t (a b) (< a b) (+ a b)) (defprol t (a b) (> b 0) (* a b)) then (t 2 3) is (5 6).
    """
    return _clause_definition(c, form, scope, "defprol", "instruction", PrologFunction,
                              lambda tests: [Symbol("%prolog_body"), *tests])


@special("§")
def _infix_section(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(§ 2 * 3 + 1) reads an infix expression like • (LispE's other spelling of infix): 7."""
    return _infix(c, form, scope, tail)


@special("/\\")
def _infix_wedge(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(/\\ 2 * 3 + 1) reads an infix expression like • (LispE's other spelling of infix): 7."""
    return _infix(c, form, scope, tail)
