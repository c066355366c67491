"""Array builtins in LispE's APL style, and the folds and scans without an initial value.

Conventions: a matrix is a list of rows (lists of the same size). `rho` reads and builds shapes,
`transpose` swaps rows and columns, `reduce`/`scan` (// and \\\\) fold from the left with an
operator, `backreduce`/`backscan` (⌿ -// ⍀ -\\\\) from the right, `outer` (°) builds the table of
an operator over two lists, `inner` the generalized matrix product, `&&&`/`|||`/`^^^` intersect,
unite and exclude lists or sets, and `invert`/`solve`/`determinant` work on square numeric
matrices. Operators are called like any function: '+ or a lambda of two arguments.
"""
from __future__ import annotations

import copy
from typing import Any

from ..errors import LispEError
from ..values import Integers, Numbers, TYPED_LISTS, truthy
from ._common import (check_size, expect_int, expect_list, expect_number, fail, lisp_equal, show_quoted,
                      like, typed_from)
from .registry import builtin
from .sets import Heap, LispSet

G = "apl"
_MISSING_ARG = object()


def _items(name: str, x: Any) -> list:
    if isinstance(x, list):
        return x
    if isinstance(x, (LispSet, Heap)):
        return list(x)
    if isinstance(x, str):
        return list(x)
    if x is None:
        return []
    raise fail(name, "a list", x)


# ---------------------------------------------------------------- folds and scans without seed

@builtin("foldl1", group="lists", ctx=True)
def foldl1(ctx: Any, fn: Any, lst: Any) -> Any:
    """(foldl1 '- '(10 2 3)) folds from the left, starting from the first element: 5.

    nil on an empty list.
    """
    items = _items("foldl1", lst)
    if not items:
        return None
    acc = items[0]
    for x in items[1:]:
        acc = ctx.call(fn, acc, x)
    return acc


@builtin("foldr1", group="lists", ctx=True)
def foldr1(ctx: Any, fn: Any, lst: Any) -> Any:
    """(foldr1 '- '(1 2 3)) folds from the right, starting from the last element: (- 1 (- 2 3)) = 2."""
    items = _items("foldr1", lst)
    if not items:
        return None
    acc = items[-1]
    for x in reversed(items[:-1]):
        acc = ctx.call(fn, x, acc)
    return acc


@builtin("scanl1", group="lists", ctx=True)
def scanl1(ctx: Any, fn: Any, lst: Any) -> list:
    """(scanl1 '+ '(1 2 3 4)) lists the steps of foldl1: (1 3 6 10)."""
    items = _items("scanl1", lst)
    out: list = []
    for x in items:
        out.append(x if not out else ctx.call(fn, out[-1], x))
    return typed_from(out)


@builtin("scanr", group="lists", ctx=True)
def scanr(ctx: Any, fn: Any, init: Any, lst: Any) -> list:
    """(scanr '+ 0 '(3 5 2 1)) lists the steps of a right fold, the full fold first: (11 8 3 1 0)."""
    out = [init]
    for x in reversed(_items("scanr", lst)):
        out.append(ctx.call(fn, x, out[-1]))
    return typed_from(out[::-1])


@builtin("scanr1", group="lists", ctx=True)
def scanr1(ctx: Any, fn: Any, lst: Any) -> list:
    """(scanr1 '+ '(3 5 2 1)) lists the steps of foldr1, the full fold first: (11 8 3 1)."""
    out: list = []
    for x in reversed(_items("scanr1", lst)):
        out.append(x if not out else ctx.call(fn, x, out[-1]))
    return typed_from(out[::-1])


# ---------------------------------------------------------------- reduce / scan (APL / and \)

def _counts(fn: Any) -> bool:
    # integral numbers count too: a column of a matrix of numbers (1.0 0.0 ...) is a mask
    return isinstance(fn, list) and bool(fn) and all(
        (isinstance(x, int) or (isinstance(x, float) and x.is_integer())) and not isinstance(x, bool) for x in fn)


@builtin("reduce", "//", "↗", group=G, ctx=True, min_args=1, max_args=2)
def reduce_(ctx: Any, fn: Any, lst: Any = _MISSING_ARG) -> Any:
    """(// '+ '(1 2 3 4)) reduces a list with an operator from the left: 10; (// '- '(1 2 3)) is -4.

    A lambda receives the accumulator first. (// '(1 0 2) '(1 2 3)) repeats each element as many
    times as its count: (1 3 3); (// l) alone copies the list. nil on an empty list.
    """
    if lst is _MISSING_ARG:
        return like(fn, list(_items("reduce", fn)))
    if _counts(fn):
        items = _items("reduce", lst)
        if len(fn) != len(items):
            raise LispEError("reduce: the counts and the list must have the same size")
        out: list = []
        for c, x in zip(fn, items):
            c = int(c)
            if c < 0:
                raise LispEError("reduce: a count cannot be negative")
            check_size("reduce", len(out) + c)
            out.extend([x] * c)
        return like(lst, out)
    return foldl1(ctx, fn, lst)


@builtin("backreduce", "-//", "⌿", group=G, ctx=True, min_args=1, max_args=2)
def backreduce(ctx: Any, fn: Any, lst: Any = _MISSING_ARG) -> Any:
    """(⌿ '- '(1 2 3)) reduces a list from its end: (- (- 3 2) 1) = 0; (-// l) alone reverses it."""
    if lst is _MISSING_ARG:
        return like(fn, list(_items("backreduce", fn))[::-1])
    if _counts(fn):
        raise LispEError("backreduce: a list of counts is not supported here, use reduce")
    items = _items("backreduce", lst)
    return foldl1(ctx, fn, items[::-1])


@builtin("scan", "\\\\", "↘", group=G, ctx=True)
def scan(ctx: Any, fn: Any, lst: Any) -> list:
    """(scan '+ '(1 2 3)) lists every step of a reduction from the left: (1 3 6); \\\\ is its sign.

    With a list of counts each one repeats the next element, 0 putting a 0:
    (scan '(2 0 3) '(45 26)) is (45 45 0 26 26 26).
    """
    if _counts(fn):
        items = list(_items("scan", lst))
        out: list = []
        for c in fn:
            c = int(c)
            if c < 0:
                raise LispEError("scan: a count cannot be negative")
            if c == 0:
                out.append(0)
                continue
            if not items:
                raise LispEError("scan: more counts than elements")
            check_size("scan", len(out) + c)
            out.extend([items.pop(0)] * c)
        return typed_from(out)
    return scanl1(ctx, fn, lst)


@builtin("backscan", "-\\\\", "⍀", group=G, ctx=True)
def backscan(ctx: Any, fn: Any, lst: Any) -> list:
    """(⍀ '- '(1 2 3)) lists every step of a reduction from the end: (3 1 0)."""
    if _counts(fn):
        raise LispEError("backscan: a list of counts is not supported here, use scan")
    return scanl1(ctx, fn, _items("backscan", lst)[::-1])


# ---------------------------------------------------------------- shapes

def _shape(x: Any) -> list:
    dims = []
    while isinstance(x, list):
        dims.append(len(x))
        if not x:
            break
        x = x[0]
    return dims


def _flat(x: Any, out: list) -> None:
    stack = [iter(x)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()


@builtin("rho", "ρ", "⍴", group=G, min_args=1, max_args=None)
def rho(*args: Any) -> Any:
    """(rho 2 3 (iota 6)) reshapes values into the given dimensions: ((1 2 3) (4 5 6)).

    With one list it gives its shape: (rho '((1 2 3) (4 5 6))) is (2 3). The values are read
    flattened and reused from the start when there are too few.
    """
    if len(args) == 1:
        x = args[0]
        if isinstance(x, (str, LispSet, Heap, dict)):
            return len(x)
        if not isinstance(x, list):
            raise fail("rho", "a list", x)
        return Integers(_shape(x))
    *dims_raw, values = args
    dims = [expect_int("rho", d, "an integer dimension") for d in dims_raw]
    total = 1
    for d in dims:
        if d < 0:
            raise LispEError("rho: a dimension cannot be negative")
        total *= d
    check_size("rho", total)
    flat: list = []
    if isinstance(values, list):
        _flat(values, flat)
    else:
        flat = [values]
    if not flat:
        raise LispEError("rho: no values to fill the shape")
    cells = [flat[i % len(flat)] for i in range(total)]

    def build(level: int, start: int) -> tuple[list, int]:
        if level == len(dims) - 1:
            return typed_from(cells[start:start + dims[level]]), start + dims[level]
        rows = []
        for _ in range(dims[level]):
            row, start = build(level + 1, start)
            rows.append(row)
        return rows, start

    return build(0, 0)[0]


def _rows(x: list) -> list:
    """The innermost lists of a nested list."""
    out, stack = [], [x]
    while stack:
        cur = stack.pop()
        if cur and isinstance(cur[0], list):
            stack.extend(cur)
        else:
            out.append(cur)
    return out


def _matrix(name: str, m: Any) -> list:
    expect_list(name, m, "a matrix (a list of rows)")
    if not m or not all(isinstance(r, list) for r in m):
        raise fail(name, "a matrix (a list of rows)", m)
    n = len(m[0])
    if any(len(r) != n for r in m):
        raise LispEError(f"{name}: the rows of the matrix must have the same size")
    return m


@builtin("transpose", "⍉", group=G)
def transpose(m: Any) -> list:
    """(transpose '((1 2 3) (4 5 6))) swaps rows and columns: ((1 4) (2 5) (3 6))."""
    rows = _matrix("transpose", m)
    return [like(rows[0], [r[j] for r in rows]) for j in range(len(rows[0]))]


def _typed_array(x: Any) -> bool:
    """Whether x is a matrix or tensor as rho builds it: a regular nesting of typed rows."""
    if not (isinstance(x, list) and x and isinstance(x[0], list)):
        return False
    rows = _rows(x)
    return all(type(r) in TYPED_LISTS for r in rows) and len({len(r) for r in rows}) == 1


def _rotate_seq(name: str, lst: Any, k: int) -> Any:
    if isinstance(lst, str):
        if not lst:
            return lst
        k %= len(lst)
        return lst[k:] + lst[:k]
    items = _items(name, lst)
    if not items:
        return like(lst, [])
    k %= len(items)
    return like(lst, items[k:] + items[:k])


def _rotate_last_axis(x: Any, k: int) -> Any:
    if type(x) in TYPED_LISTS:
        return _rotate_seq("rotate", x, k)
    return [_rotate_last_axis(r, k) for r in x]


@builtin("rotate", "⌽", group=G, min_args=1, max_args=3)
def rotate(lst: Any, n: Any = None, first_axis: Any = None) -> Any:
    """(rotate '(1 2 3 4 5) 2) rotates a list (or string) to the left by n: (3 4 5 1 2).

    A negative n rotates to the right: (rotate '(1 2 3 4 5) -2) is (4 5 1 2 3); without n, or with
    nil, by one to the right: (rotate "abcde") is "eabcd"; with true by one to the left. A matrix
    (as rho builds it) rotates each of its rows, as LispE's Matrice::rotate; with a third argument
    true it rotates along its first axis (its rows move, APL's ⊖):
    (rotate (rho 2 2 (iota 4)) 1 true) is ((3 4) (1 2)).
    """
    if n is None or n is False:
        k = -1
    elif n is True:
        k = 1
    else:
        k = expect_int("rotate", n, "an integer count, true or nil")
    if _typed_array(lst) and not truthy(first_axis):
        return _rotate_last_axis(lst, k)
    return _rotate_seq("rotate", lst, k)


@builtin("tally", "≢", group=G)
def tally(x: Any) -> int:
    """(tally (rho 3 4 (iota 12))) counts the numbers of a matrix or tensor: 12; of a list, its size.

    A matrix or tensor is a regular nesting of typed rows (as rho builds); any other list gives its
    size.
    """
    if isinstance(x, list):
        if x and isinstance(x[0], list):
            flat: list = []
            _flat(x, flat)
            total = 1
            for d in _shape(x):
                total *= d
            if len(flat) == total and all(type(r) in TYPED_LISTS for r in _rows(x)):
                return total
        return len(x)
    if isinstance(x, (str, dict, LispSet, Heap)):
        return len(x)
    raise fail("tally", "a list", x)


@builtin("member", "∈", group=G)
def member(lst: Any, values: Any) -> Any:
    """(member '(1 2 5) '(2 3 5)) marks with 1 the elements found in a second list: (0 1 1).

    Sub-lists are marked element by element: (∈ '((1 2) (3 4)) '(1 4)) is ((1 0) (0 1)).
    A single value (not a list) gives 1 or 0 for itself.
    """
    pool = _items("member", values) if isinstance(values, (list, LispSet, Heap)) else [values]

    def found(x: Any) -> int:
        if isinstance(values, LispSet):
            return 1 if x in values else 0
        return 1 if any(lisp_equal(x, y) for y in pool) else 0

    def mark(x: Any) -> Any:
        # a sub-list is marked element by element (List::check_member recurses): a matrix gives
        # a matrix of 1 and 0
        if isinstance(x, list):
            if any(isinstance(e, list) for e in x):
                return [mark(e) for e in x]
            return Integers(found(e) for e in x)
        return found(x)

    return mark(lst)


@builtin("==", group=G)
def equal_one_zero(a: Any, b: Any) -> Any:
    """(== '(1 2 3) '(1 5 3)) compares element by element with 1 for equal, 0 otherwise: (1 0 1).

    A list (or a matrix) and a value compare each element with the value: (== '((4 1) (2 4)) 4)
    is ((1 0) (0 1)). Two values that are not lists give one 1 or 0: (== 2 2.0) is 1.
    """
    if isinstance(a, list) and isinstance(b, list) and not (a and isinstance(a[0], list)):
        return Integers(1 if lisp_equal(x, y) else 0 for x, y in zip(a, b))
    if isinstance(a, list) != isinstance(b, list):  # a list (or matrix) and a value: each element
        return _one_zero_each(a, b) if isinstance(a, list) else _one_zero_each(b, a)
    return 1 if lisp_equal(a, b) else 0


def _one_zero_each(lst: list, v: Any) -> list:
    out = [_one_zero_each(x, v) if isinstance(x, list) else (1 if lisp_equal(x, v) else 0) for x in lst]
    return Integers(out) if all(type(x) is int for x in out) else out


_ONE_ZERO = equal_one_zero.builtin  # type: ignore[attr-defined]


@builtin(",", group=G, min_args=1, max_args=2)
def concatenate(a: Any, b: Any = _MISSING_ARG) -> list:
    """(, '(1 2) '(3 4)) concatenates two lists: (1 2 3 4); (, m) alone flattens a matrix.

    A list of lists and a list concatenate row by row: (, '((1 2) (3 4)) '((5) (6))) is
    ((1 2 5) (3 4 6)); a list and a value pair each element with it: (, '(1 2) 5) is ((1 5) (2 5)).
    """
    if b is _MISSING_ARG:
        out: list = []
        _flat(_items(",", a), out)
        return typed_from(out)
    xs = _items(",", a)
    if isinstance(b, list):
        if xs and all(isinstance(r, list) for r in xs) and len(b) == len(xs) and all(isinstance(r, list) for r in b):
            return [typed_from([*r, *q]) for r, q in zip(xs, b)]
        return typed_from([*xs, *b])
    return [typed_from([*r, b]) if isinstance(r, list) else typed_from([r, b]) for r in xs]


# ---------------------------------------------------------------- set-like operations on lists

def _setlike(name: str, args: tuple, op: str) -> Any:
    first = args[0]
    if isinstance(first, LispSet):
        acc = first.copy()
        for other in args[1:]:
            o = LispSet(first.kind, [y for y in _items(name, other) if _fits(first, y)])
            if op == "and":
                acc = LispSet(first.kind, [x for x in acc if x in o])
            elif op == "or":
                acc = LispSet(first.kind, [*acc, *o])
            else:
                acc = LispSet(first.kind, [*(x for x in acc if x not in o), *(y for y in o if y not in acc)])
        return acc
    acc_list = list(_items(name, first))
    for other in args[1:]:
        items = _items(name, other)
        if op == "and":
            out: list = []
            for x in acc_list:
                if any(lisp_equal(x, y) for y in items) and not any(lisp_equal(x, o) for o in out):
                    out.append(x)
        elif op == "or":
            out = []
            for x in acc_list + list(items):
                if not any(lisp_equal(x, o) for o in out):
                    out.append(x)
        else:
            out = []
            for x in acc_list:
                if not any(lisp_equal(x, y) for y in items) and not any(lisp_equal(x, o) for o in out):
                    out.append(x)
            for y in items:
                if not any(lisp_equal(y, x) for x in acc_list) and not any(lisp_equal(y, o) for o in out):
                    out.append(y)
        acc_list = out
    if isinstance(first, str):
        return "".join(acc_list)
    return like(first, acc_list) if isinstance(first, list) else typed_from(acc_list)


def _fits(s: LispSet, x: Any) -> bool:
    try:
        s.convert(x)
        return True
    except LispEError:
        return False


@builtin("&&&", group=G, min_args=1, max_args=None)
def list_and(*args: Any) -> Any:
    """(&&& '(1 2 3 2) '(2 3 4)) keeps the elements found in every list, each once: (2 3).

    On strings it works on characters: (&&& "aabbc" "cab") is "abc"; on a set the result is a set
    of the same kind.
    """
    return _setlike("&&&", args, "and")


@builtin("|||", group=G, min_args=1, max_args=None)
def list_or(*args: Any) -> Any:
    """(||| '(1 2) '(2 3)) unites lists, each element once, in order of appearance: (1 2 3)."""
    return _setlike("|||", args, "or")


@builtin("^^^", group=G, min_args=1, max_args=None)
def list_xor(*args: Any) -> Any:
    """(^^^ '(1 2 3) '(2 3 4)) keeps the elements found in only one of two lists: (1 4)."""
    return _setlike("^^^", args, "xor")


# ---------------------------------------------------------------- outer and inner products

@builtin("outer", "°", group=G, ctx=True)
def outer(ctx: Any, fn: Any, a: Any, b: Any) -> list:
    """(° '* '(1 2) '(10 20 30)) applies an operator to every pair: ((10 20 30) (20 40 60)).

    LispE's own order, the operator between the lists, is read too: (° '(1 2) '* '(10 20 30)).
    `=` gives 1 or 0, as `==`: (° '= '(1 2) '(1 2)) is ((1 0) (0 1)).
    """
    from ._apply import _is_lambda_list

    if (isinstance(fn, list) and not _is_lambda_list(fn)
            and (not isinstance(a, list) or _is_lambda_list(a))):
        fn, a = a, fn  # (° l1 op l2): List_outerproduct_eval reads the operator second
    if getattr(fn, "name", None) == "=":
        fn = _ONE_ZERO
    xs, ys = _items("outer", a), _items("outer", b)
    check_size("outer", len(xs) * len(ys))
    return [typed_from([ctx.call(fn, x, y) for y in ys]) for x in xs]


@builtin("inner", group=G, ctx=True)
def inner(ctx: Any, f: Any, g: Any, a: Any, b: Any) -> Any:
    """(inner '+ '* '((1 2) (3 4)) '((5 6) (7 8))) is the matrix product: ((19 22) (43 50)).

    Each cell reduces with the first operator the results of the second over a row of the first
    matrix and a column of the second; on two lists it gives one value: (inner '+ '* '(1 2) '(3 4))
    is 11. LispE also spells it `.`.
    """
    def cell(row: list, col: list) -> Any:
        if len(row) != len(col):
            raise LispEError("inner: the sizes do not match")
        vals = [ctx.call(g, x, y) for x, y in zip(row, col)]
        if not vals:
            return None
        acc = vals[0]
        for v in vals[1:]:
            acc = ctx.call(f, acc, v)
        return acc

    if isinstance(a, list) and a and all(isinstance(r, list) for r in a):
        ma, mb = _matrix("inner", a), _matrix("inner", b)
        cols = [[r[j] for r in mb] for j in range(len(mb[0]))]
        return [typed_from([cell(r, c) for c in cols]) for r in ma]
    return cell(_items("inner", a), _items("inner", b))


@builtin(".", group=G, ctx=True, min_args=4, max_args=4)
def inner_dot(ctx: Any, a: Any, f: Any, g: Any, b: Any) -> Any:
    """(. '(1 2) '+ '* '(3 4)) is 11: LispE's spelling of `inner`, operators between the operands.

    Only at the head of a list: elsewhere in a list, `.` is composition, `(sum . numbers 1 2 3)`.
    """
    return inner(ctx, f, g, a, b)


# ---------------------------------------------------------------- linear algebra

def _square(name: str, m: Any) -> list[list[float]]:
    rows = _matrix(name, m)
    if len(rows) != len(rows[0]):
        raise LispEError(f"{name}: expected a square matrix, got {len(rows)}x{len(rows[0])}")
    for r in rows:
        for x in r:
            expect_number(name, x, "a numeric matrix")
    return [[float(x) for x in r] for r in rows]


def _eliminate(name: str, a: list[list[float]], b: list[list[float]]) -> tuple[list[list[float]], float]:
    """Gauss-Jordan elimination with partial pivoting: (a^-1 b, det a)."""
    n = len(a)
    a = copy.deepcopy(a)
    b = copy.deepcopy(b)
    det = 1.0
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-12:
            raise LispEError(f"{name}: the matrix is singular")
        if pivot != col:
            a[col], a[pivot] = a[pivot], a[col]
            b[col], b[pivot] = b[pivot], b[col]
            det = -det
        p = a[col][col]
        det *= p
        a[col] = [x / p for x in a[col]]
        b[col] = [x / p for x in b[col]]
        for r in range(n):
            if r != col and a[r][col] != 0.0:
                k = a[r][col]
                a[r] = [x - k * y for x, y in zip(a[r], a[col])]
                b[r] = [x - k * y for x, y in zip(b[r], b[col])]
    return b, det


@builtin("determinant", group=G)
def determinant(m: Any) -> float:
    """(determinant '((1 2) (3 4))) computes the determinant of a square matrix: -2."""
    a = _square("determinant", m)
    try:
        return _eliminate("determinant", a, [[0.0] for _ in a])[1]
    except LispEError:
        return 0.0


@builtin("invert", "⌹", group=G)
def invert(m: Any) -> list:
    """(invert '((2 0) (0 4))) inverts a square matrix: ((0.5 0) (0 0.25)); a singular one is an error."""
    a = _square("invert", m)
    ident = [[1.0 if i == j else 0.0 for j in range(len(a))] for i in range(len(a))]
    return [Numbers(r) for r in _eliminate("invert", a, ident)[0]]


@builtin("solve", group=G)
def solve(m: Any, y: Any) -> list:
    """(solve '((2 1) (1 3)) '(3 5)) solves the linear system m·x = y: (0.8 1.4).

    With a matrix y of the same size (LispE's form, Matrice::solve) it solves m·X = y column by
    column and gives the matrix X: (solve m (matrix '((1 0) (0 1)))) is the inverse of m.
    """
    a = _square("solve", m)
    if isinstance(y, list) and y and all(isinstance(r, list) for r in y):
        b = _square("solve", y)
        if len(b) != len(a):
            raise LispEError("solve: the two matrices must have the same size")
        return [Numbers(r) for r in _eliminate("solve", a, b)[0]]
    ys = expect_list("solve", y)
    if len(ys) != len(a):
        raise LispEError("solve: the vector must have as many values as the matrix has rows")
    for v in ys:
        expect_number("solve", v, "a numeric vector")
    sol = _eliminate("solve", a, [[float(v)] for v in ys])[0]
    return Numbers(r[0] for r in sol)



_LU_TINY = 1.5e-16  # LispE's TINY (tensors.cxx): a row whose values all stay below it is singular


def _lu_matrix(name: str, m: Any) -> list:
    """A square numeric matrix, whose rows become Numbers in place (ludcmp and lubksb write in it)."""
    rows = _matrix(name, m)
    if len(rows) != len(rows[0]):
        raise LispEError(f"{name}: expected a square matrix, got {len(rows)}x{len(rows[0])}")
    for i, r in enumerate(rows):
        for x in r:
            expect_number(name, x, "a numeric matrix")
        if type(r) is not Numbers:
            rows[i] = Numbers(float(x) for x in r)
    return rows


def _lu_solve(a: list, perm: list, b: list) -> None:
    """Solves a·x = b in place in b, with a and perm as _lu_decompose leaves them."""
    n = len(a)
    first = -1  # the first nonzero element of b: the forward sums start there
    for i in range(n):
        k = perm[i]
        total = b[k]
        b[k] = b[i]
        if first >= 0:
            row = a[i]
            for j in range(first, i):
                total -= row[j] * b[j]
        elif total != 0.0:
            first = i
        b[i] = total
    for i in range(n - 1, -1, -1):
        row = a[i]
        total = b[i]
        for j in range(i + 1, n):
            total -= row[j] * b[j]
        b[i] = total / row[i]


def _lu_decompose(a: list) -> list | None:
    """Crout's LU decomposition with implicit scaled partial pivoting, in place in the rows of a.

    Returns the row permutation (perm[j] is the row swapped with row j at step j), or None when a
    row is all zeros (below LispE's TINY). A zero pivot becomes TINY, as in LispE's LUDCMP.
    """
    n = len(a)
    scale = []
    for row in a:
        big = max(abs(x) for x in row)
        if big < _LU_TINY:
            return None
        scale.append(1.0 / big)
    perm = []
    for j in range(n):
        for i in range(j):
            row = a[i]
            row[j] = row[j] - sum(row[k] * a[k][j] for k in range(i))
        best, pivot = 0.0, j
        for i in range(j, n):
            row = a[i]
            row[j] = row[j] - sum(row[k] * a[k][j] for k in range(j))
            weight = scale[i] * abs(row[j])
            if weight >= best:  # the last row of the largest weight, as LispE's test `>=` picks
                best, pivot = weight, i
        if pivot != j:
            a[pivot][:], a[j][:] = list(a[j]), list(a[pivot])
            scale[pivot] = scale[j]
        perm.append(pivot)
        if abs(a[j][j]) < _LU_TINY:
            a[j][j] = _LU_TINY
        if j != n - 1:
            inv = 1.0 / a[j][j]
            for i in range(j + 1, n):
                a[i][j] *= inv
    return perm


@builtin("ludcmp", group=G)
def ludcmp(m: Any) -> Any:
    """(ludcmp m) replaces the square matrix m by its LU decomposition and returns the row permutation.

    As LispE's ludcmp (Matrice::ludcmp, LUDCMP in tensors.cxx): m is changed in place (L below
    the diagonal, its unit diagonal left out, U on and above it, rows permuted), the value is the
    integers_ list of the rows swapped at each step, for lubksb; a singular m (a row of zeros) gives ().
    """
    a = _lu_matrix("ludcmp", m)
    perm = _lu_decompose(a)
    return [] if perm is None else Integers(perm)


@builtin("lubksb", group=G, min_args=2, max_args=3)
def lubksb(m: Any, idxs: Any, y: Any = None) -> list:
    """(lubksb m idxs [y]) solves with the LU decomposition left in m by (setq idxs (ludcmp m)).

    Without y it gives the inverse of the original matrix; with a square matrix y of the same size
    it solves original·X = y column by column, writing X in y and returning y (Matrice::lubksb).
    """
    a = _lu_matrix("lubksb", m)
    if type(idxs) is not Integers:
        raise fail("lubksb", "an integers_ list of row indexes (as ludcmp returns)", idxs)
    n = len(a)
    if len(idxs) != n or any(not 0 <= k < n for k in idxs):
        raise LispEError(f"lubksb: expected {n} row indexes between 0 and {n - 1}, got {show_quoted(idxs)}")
    if y is None:
        out = [Numbers(1.0 if i == j else 0.0 for j in range(n)) for i in range(n)]
    else:
        out = _lu_matrix("lubksb", y)
        if len(out) != n:
            raise LispEError("lubksb: the matrices must have the same size")
    perm = list(idxs)
    for j in range(n):
        col = [out[i][j] for i in range(n)]
        _lu_solve(a, perm, col)
        for i in range(n):
            out[i][j] = col[i]
    return out if y is None else y


# ---------------------------------------------------------------- matrix, rank, irank

def _to_numbers(name: str, row: Any) -> Numbers:
    vals = _items(name, row)
    out = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise fail(name, "a number in the rows of the matrix", v)
        out.append(float(v))
    return Numbers(out)


@builtin("matrix", group=G, min_args=1, max_args=3)
def matrix(first: Any, y: Any = None, value: Any = None) -> list:
    """(matrix '((1 2) (3 4))) makes a matrix of numbers from a list of rows: ((1 2) (3 4)).

    As LispE's matrix (numbers), (matrix 2 3) is a 2x3 matrix of zeros and (matrix 2 3 7) is
    filled with 7. The rows must have the same size.
    """
    if y is None:
        if value is not None:
            raise LispEError("matrix: expected a list of rows, or two sizes and a value")
        rows = _matrix("matrix", first) if isinstance(first, list) and first else first
        if not isinstance(rows, list) or not rows:
            raise fail("matrix", "a list of rows", first)
        return [_to_numbers("matrix", r) for r in rows]
    nx = expect_int("matrix", first, "an integer number of rows")
    ny = expect_int("matrix", y, "an integer number of columns")
    if nx < 0 or ny < 0:
        raise LispEError("matrix: a size cannot be negative")
    check_size("matrix", max(nx, ny, nx * ny))  # (matrix 1e18 0) would still build 1e18 rows
    v = 0.0 if value is None else float(expect_number("matrix", value, "a number to fill the matrix"))
    return [Numbers([v] * ny) for _ in range(nx)]


def _rank(name: str, x: Any, positions: list) -> Any:
    if not positions:
        return x
    p, rest = positions[0], positions[1:]
    if not isinstance(x, list):
        raise LispEError(f"{name}: too many indexes for this matrix")
    if p == -1:
        return typed_from([_rank(name, sub, rest) for sub in x])
    if p < 0 or p >= len(x):
        raise LispEError(f"{name}: index {p} out of bounds (size {len(x)})")
    return _rank(name, x[p], rest)


def _positions(name: str, idx: tuple) -> list:
    out = []
    for i in idx:
        k = expect_int(name, i, "an integer index (-1 for a whole axis)")
        if k < -1:
            raise LispEError(f"{name}: an index must be -1 (a whole axis) or a position, got {k}")
        out.append(k)
    return out


@builtin("rank", "rank@", "⍤", group=G, min_args=2)
def rank(m: Any, *idx: Any) -> Any:
    """(rank '((1 2 3) (4 5 6)) -1 1) extracts a slice of a matrix; -1 takes a whole axis: (2 5).

    (rank m 1) is row 1, (rank m 1 2) one value, (rank m -1 2) column 2, as LispE's rank; rank@
    and ⍤ are the names of LispE's current instruction table (Matrix::rank, Tensor::rank).
    """
    expect_list("rank", m, "a matrix or tensor")
    return _rank("rank", m, _positions("rank", idx))


@builtin("irank", "irank@", group=G, min_args=2)
def irank(m: Any, *idx: Any) -> list:
    """(irank '((1 2) (3 4)) -1) lists the slices along the next axis: the columns ((1 3) (2 4)).

    LispE's irank iterates (rank m i... k) for each k of the axis after the given indexes; here the
    slices come as a list, to loop over or map.
    """
    expect_list("irank", m, "a matrix or tensor")
    pos = _positions("irank", idx)
    shape = _shape(m)
    if len(pos) >= len(shape):
        raise LispEError(f"irank: {len(pos)} indexes for a {len(shape)}-dimension matrix, no axis left")
    return [_rank("irank", m, pos + [k]) for k in range(shape[len(pos)])]
