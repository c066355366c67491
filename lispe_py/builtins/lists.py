"""List builtins: construction, access, destructive updates, ranges and higher-order functions.

Conventions (LispE):
- Destructive builtins (`push`, `pushfirst`, `pop`, `popfirst`, `insert`, `extend`, `set@`, `sort`)
  change the list they receive and return it. Quoted constants are protected by `quote`, which hands
  out a fresh copy (see docs), so `(push '(1 2) 3)` never changes the program's text.
- `size`, `find`, `in`, `pop`, `last`, `reverse`, `at`/`@`/`nth`, `extract`/`@@`, `insert` also work on
  strings, and `size`, `in`, `pop`, `find`, `at` on dictionaries: one builtin per name dispatches on
  the argument's type.
- Functional arguments (map, filter, foldl, sort...) are anything `ctx.call` accepts: a lambda, a
  builtin, a quoted symbol `'+`, or a partial call `'(< 3)`.
- Typed containers (`integers`, `floats`, `numbers`, `strings`) keep their type through operations
  that keep their elements (cdr, reverse, filter, sort, extract...).
"""
from __future__ import annotations

import copy
import functools
import itertools
import math
from typing import Any

from ..errors import LispEError
from ..values import Integers, Numbers, Pair, Symbol, TYPED_LISTS, truthy
from ._common import (check_size, dict_key, expect_int, expect_list, expect_number, fail, fit, is_int,
                      is_number, like, lisp_equal, normalize_key, show, to_index, typed_from)
from ._apply import composed, slotted
from ._lazy import Lazy, counting, refuse
from .registry import builtin
from .sets import Heap, LispSet, heap_at, set_member

G = "lists"


# ---------------------------------------------------------------- construction

@builtin("list", group=G)
def list_(*items: Any) -> list:
    """(list 1 2 3) builds a list of its arguments: (1 2 3)."""
    return list(items)


@builtin("cons", group=G)
def cons(x: Any, lst: Any) -> list:
    """(cons 1 '(2 3)) puts an element in front of a list: (1 2 3); (cons 1 nil) gives (1).

    Onto anything that is not a list it makes a dotted pair: (cons 1 2) is (1 . 2), and
    (cons 0 (cons 1 2)) is (0 1 . 2)."""
    if lst is None:
        return [x]
    if lst.__class__ is Pair:
        return Pair([x, *lst])
    if isinstance(lst, list):
        return like(lst, [x, *lst])
    if isinstance(lst, (Lazy, Heap, LispSet)):
        raise fail("cons", "a list as second argument", lst)
    return Pair([x, lst])


@builtin("conspoint", group=G, min_args=1, max_args=None)
def conspoint(*items: Any) -> Any:
    """(conspoint 1 2 3) builds the dotted pair (1 2 . 3): its last argument is the tail.

    With one argument it is that value; a list as last argument is spliced, as with cons:
    (conspoint 1 '(2 3)) is (1 2 3)."""
    out: Any = items[-1]
    for x in reversed(items[:-1]):
        out = cons(x, out)
    return out


@builtin("consb", group=G)
def consb(lst: Any, x: Any) -> list:
    """(consb '(1 2) 3) adds an element at the end of a copy of a list: (1 2 3)."""
    if lst is None:
        return [x]
    if isinstance(lst, list):
        return like(lst, [*lst, x])
    raise fail("consb", "a list as first argument", lst)


# ---------------------------------------------------------------- car / cdr family

def _car(name: str, x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, Lazy):
        return next(x.iterate())
    if isinstance(x, (Heap, LispSet)):
        return next(iter(x), None)
    if isinstance(x, list):
        return x[0] if x else None
    if isinstance(x, str):
        if not x:
            raise LispEError(f"{name}: empty string")
        return x[0]
    raise fail(name, "a list", x)


def _cdr(name: str, x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, Lazy):
        return x.dropped(1)
    if isinstance(x, list):
        if len(x) <= 1:
            return None
        if x.__class__ is Pair:  # the tail of a pair is its last element, (cdr '(1 . 2)) is 2
            return x[1] if len(x) == 2 else Pair(x[1:])
        return like(x, x[1:])
    if isinstance(x, str):
        if not x:
            raise LispEError(f"{name}: empty string")
        return x[1:]
    raise fail(name, "a list", x)


@builtin("car", group=G)
def car(x: Any) -> Any:
    """(car '(1 2 3)) returns the first element: 1; (car ()) and (car nil) give nil."""
    return _car("car", x)


@builtin("cdr", group=G)
def cdr(x: Any) -> Any:
    """(cdr '(1 2 3)) returns the list without its first element: (2 3); nil when nothing is left."""
    return _cdr("cdr", x)


def _make_cxr(ops: str) -> None:
    name = f"c{ops}r"

    def cxr(x: Any) -> Any:
        for op in reversed(ops):
            x = _car(name, x) if op == "a" else _cdr(name, x)
        return x

    steps = " of ".join("car" if op == "a" else "cdr" for op in ops)
    cxr.__name__ = name
    cxr.__doc__ = (f"({name} '(1 (2 3) 4 5 6)) applies {steps} to a list.\n\n"
                   "Reads right to left like every c[ad]+r accessor; nil once the list runs out.")
    builtin(name, group=G)(cxr)


for _n in (2, 3, 4):
    for _ops in itertools.product("ad", repeat=_n):
        _make_cxr("".join(_ops))


@builtin("last", group=G)
def last(x: Any) -> Any:
    """(last '(1 2 3)) returns the last element: 3; (last "abc") gives "c"."""
    if isinstance(x, list):
        return x[-1] if x else None
    if isinstance(x, str):
        return x[-1] if x else ""
    if x is None:
        return None
    raise fail("last", "a list or a string", x)


# ---------------------------------------------------------------- indexing

def _at_one(container: Any, idx: Any) -> Any:
    if isinstance(container, Heap):
        return heap_at(container, idx)
    if isinstance(container, LispSet):
        return set_member(container, idx)
    if isinstance(container, (list, str)):
        return container[to_index("at", idx, len(container))]
    if isinstance(container, dict):
        return container.get(dict_key(container, idx))
    lisp_at = getattr(container, "lisp_at", None)
    if lisp_at is not None:  # library values (tensors) may be indexed the same way
        return lisp_at(idx)
    raise fail("at", "a list, a string or a dictionary", container)


@builtin("at", "@", "nth", group=G, min_args=2, max_args=None)
def at(container: Any, *indexes: Any) -> Any:
    """(@ '(10 20 30) 1) returns the element at a position: 20; (@ m 1 0) goes into nested lists.

    Negative positions count from the end; a dictionary is indexed by key (nil when missing); a
    string gives its character. An out-of-range position is an error.
    """
    for idx in indexes:
        container = _at_one(container, idx)
    return container


@builtin("set@", group=G, min_args=3, max_args=None)
def set_at(container: Any, *args: Any) -> Any:
    """(set@ l 1 "x") replaces the element at a position (or key) and returns the container.

    (set@ m 1 0 v) goes into nested lists first; on a dictionary the position is a key.
    """
    *path, value = args
    target = container
    for idx in path[:-1]:
        target = _at_one(target, idx)
    idx = path[-1]
    if isinstance(target, list):
        target[to_index("set@", idx, len(target))] = fit("set@", target, value)
    elif isinstance(target, dict):
        _dict_set("set@", target, idx, value)
    elif isinstance(target, str):
        raise LispEError("set@: strings cannot be modified in place")
    elif hasattr(target, "lisp_set_at"):  # a class@ instance: a field by name or position
        target.lisp_set_at(idx, value)
    else:
        raise fail("set@", "a list or a dictionary", target)
    return container


# ---------------------------------------------------------------- a flat list seen through a shape

def _shape_of(name: str, shape: Any, nidx: int) -> list[int]:
    if not isinstance(shape, list) or not shape or len(shape) < nidx:
        raise LispEError(f"{name}: expected as second argument a list of sizes with at least as "
                         f"many values as there are indexes ({nidx})")
    return [expect_int(name, d) for d in shape]


def _prod(sizes: list[int]) -> int:
    out = 1
    for d in sizes:
        out *= d
    return out


def _offset(name: str, dims: list[int], idxs: list[int], stop: int) -> int:
    """Row-major offset of the indexes after position `stop` within the indexed sizes."""
    offset, stride = 0, 1
    for p in range(len(idxs) - 1, stop, -1):
        if idxs[p] >= dims[p]:
            raise LispEError(f"{name}: index {idxs[p]} does not fit the shape's size {dims[p]}")
        offset += idxs[p] * stride
        stride *= dims[p]
    return offset


def _cell(name: str, flat: list, i: int) -> Any:
    if not 0 <= i < len(flat):
        raise LispEError(f"{name}: index out of bounds: {i} in a list of {len(flat)} values")
    return flat[i]


@builtin("atshape", "@@@", group=G, min_args=3, max_args=None)
def atshape(flat: Any, shape: Any, *indexes: Any) -> Any:
    """(atshape l shape i j ...) reads the flat list l as an array of that shape: (@@@ l '(2 3) 1 2).

    As LispE's atshape (List_at_shape_eval): as many indexes as sizes give one element, fewer
    give the block they select as a flat list; an index -1 takes every value along its axis
    ((@@@ (iota0 6) '(2 3) -1 1) is (1 4)), a lower negative index the same values axis by axis.
    """
    flat = expect_list("atshape", flat)
    idxs = [expect_int("atshape", i) for i in indexes]
    dims = _shape_of("atshape", shape, len(idxs))
    k = len(idxs)
    neg = next((p for p in range(k - 1, -1, -1) if idxs[p] < 0), None)
    offset = _offset("atshape", dims, idxs, -1 if neg is None else neg)
    if neg is None:
        if k == len(dims):
            return _cell("atshape", flat, offset)
        block = _prod(dims[k:])
        offset *= block
        return like(flat, [_cell("atshape", flat, i) for i in range(offset, offset + block)])
    # the indexes before the first negative one select a block, as LispE computes it
    begin, stride, q = 0, 1, 0
    while q < neg and idxs[q] >= 0:
        begin += idxs[q] * stride
        stride *= dims[q]
        q += 1
    if q:
        tail = _prod(dims[q:])
        begin *= tail
        end = begin + tail
    else:
        end = len(flat)
    step = _prod(dims[neg + 1:])
    rest = _prod(dims[k:])  # the sizes no index was given for
    out: list = []
    if idxs[neg] == -1:
        starts = [(i + offset * rest) for i in range(begin, end, step)]
    else:
        size = dims[neg]
        stride = step if rest == 1 else rest
        starts = [offset * rest + j * stride + i for j in range(size) for i in range(begin, end, step * size)]
    for s0 in starts:
        out.extend(_cell("atshape", flat, s) for s in range(s0, s0 + rest))
    return like(flat, out)


@builtin("setshape", "set@@@", group=G, min_args=4, max_args=None)
def setshape(flat: Any, shape: Any, *args: Any) -> Any:
    """(setshape l shape i j ... value) writes in the flat list l read through shape; returns l.

    As LispE's setshape (List_set_shape_eval): as many indexes as sizes replace one element; fewer
    replace the block they select with the first values of the list `value`. Negative indexes are
    refused.
    """
    *indexes, value = args
    flat = expect_list("setshape", flat)
    idxs = [expect_int("setshape", i) for i in indexes]
    dims = _shape_of("setshape", shape, len(idxs))
    if any(i < 0 for i in idxs):
        raise LispEError("setshape: cannot modify this value (a negative index)")
    offset = _offset("setshape", dims, idxs, -1)
    k = len(idxs)
    if k == len(dims):
        _cell("setshape", flat, offset)
        flat[offset] = fit("setshape", flat, value)
        return flat
    block = _prod(dims[k:])
    offset *= block
    if not isinstance(value, list) or len(value) < block:
        raise LispEError(f"setshape: cannot store this value in this container (a list of at least "
                         f"{block} values is needed)")
    _cell("setshape", flat, offset + block - 1)
    for i in range(block):
        flat[offset + i] = fit("setshape", flat, value[i])
    return flat


def _dict_set(name: str, d: dict, k: Any, value: Any) -> None:
    """Store `value` under `k`, keeping the dictionary's keys all strings or all numbers."""
    k = normalize_key(name, k)
    if d:
        has_str = any(isinstance(key, str) for key in d)
        if has_str and is_number(k):
            k = dict_key(d, k)
            if is_number(k):
                k = show(k)
        elif not has_str and isinstance(k, str):
            k2 = dict_key(d, k)
            if k2 in d:
                k = k2
            else:  # a string key turns a numeric dictionary into a string one
                items = [(show(key), v) for key, v in d.items()]
                d.clear()
                d.update(items)
    d[k] = value


# ---------------------------------------------------------------- destructive updates

@builtin("push", group=G, min_args=2, max_args=None)
def push(lst: Any, *values: Any) -> list:
    """(push l 4) appends values at the end of a list, in place, and returns the list.

    On a set or a heap it adds the values where they belong.
    """
    return _push("push", lst, values)


def _push(name: str, lst: Any, values: tuple | list) -> Any:
    if isinstance(lst, (Heap, LispSet)):
        for v in values:
            _add(lst, v, name)
        return lst
    expect_list(name, lst)
    lst.extend([fit(name, lst, v) for v in values])
    return lst


@builtin("pushfirst", group=G, min_args=2, max_args=None)
def pushfirst(lst: Any, *values: Any) -> list:
    """(pushfirst l 0) inserts values at the front of a list, in place, and returns the list.

    With several values each goes to the front in turn: (pushfirst '(3) 2 1) gives (1 2 3).
    """
    expect_list("pushfirst", lst)
    for v in [fit("pushfirst", lst, v) for v in values]:
        lst.insert(0, v)
    return lst


@builtin("pop", group=G, min_args=1, max_args=2)
def pop(container: Any, key: Any = None) -> Any:
    """(pop l) removes the last element of a list (or the one at a position) and returns the list.

    (pop d "k") removes a key from a dictionary and returns it; nil when there was nothing to remove.
    (pop l "x") with a value that is not a position (numeric text such as "2" is one) removes the
    first element equal to it.
    (pop "abc") returns a new string without its last character ("ab"); (pop "abc" 0) gives "bc".
    """
    if isinstance(container, str):
        if key is None:
            return container[:-1]
        i = expect_int("pop", key)
        if i < 0 or i >= len(container):
            return ""
        return container[:i] + container[i + 1:]
    if isinstance(container, list):
        if not container:
            return None
        if key is None:
            container.pop()
            return container
        if isinstance(key, str) and key.strip().lstrip("+-").isdigit():
            key = int(key)  # numeric text is a position, as LispE reads it
        if not is_int(key) and not isinstance(key, float):
            # a value to remove: LispE turns it into a position (0 for most text, so the first
            # element goes); here the first element equal to it is removed, nil if there is none
            i = _find(container, key)
            if i < 0:
                return None
            del container[i]
            return container
        i = expect_int("pop", key, "an integer position")
        if i < 0:
            i += len(container)
        if not 0 <= i < len(container):
            return None
        del container[i]
        return container
    if isinstance(container, LispSet):
        if key is None:
            raise LispEError("pop: a set needs the value to remove")
        return container if container.discard(key) else None
    if isinstance(container, Heap):
        if key is None:
            if not container.items:
                return None
            container.items.pop()
            return container
        i = container.find(key)
        if i < 0:
            return None
        del container.items[i]
        return container
    if isinstance(container, dict):
        if key is None:
            raise LispEError("pop: a dictionary needs a key to remove")
        k = dict_key(container, key)
        if k not in container:
            return None
        del container[k]
        return container
    raise fail("pop", "a list, a string or a dictionary", container)


@builtin("popfirst", group=G)
def popfirst(container: Any) -> Any:
    """(popfirst l) removes the first element of a list (or heap) in place and returns it."""
    if isinstance(container, Heap):
        if not container.items:
            return None
        del container.items[0]
        return container
    if isinstance(container, str):
        return container[1:]
    if isinstance(container, list):
        if not container:
            return None
        del container[0]
        return container
    raise fail("popfirst", "a list or a string", container)


@builtin("insert", group=G, ctx=True, min_args=2, max_args=3)
def insert(ctx: Any, container: Any, value: Any, pos: Any = 0) -> Any:
    """(insert l "x" 1) inserts a value at a position (default 0) in place and returns the list.

    With a comparator instead of a position the value goes before the first element it compares
    true against: (insert '(10 20) 15 '<) gives (10 15 20). On a string it returns a new string:
    (insert "abc" "X" 1) gives "aXbc". On a set or a heap it adds the value where it belongs.
    """
    if isinstance(container, (Heap, LispSet)):
        _add(container, value, "insert")
        return container
    if isinstance(container, str):
        if not isinstance(value, str):
            value = show(value)
        i = to_index("insert", pos, len(container), allow_end=True)
        return container[:i] + value + container[i:]
    if isinstance(container, list):
        if not is_number(pos):
            if isinstance(pos, str) or pos is None or pos is True or isinstance(pos, dict):
                raise fail("insert", "an integer position or a comparator", pos)
            i = 0
            while i < len(container) and not truthy(ctx.call(pos, value, container[i])):
                i += 1
        else:
            i = to_index("insert", pos, len(container), allow_end=True)
        container.insert(i, fit("insert", container, value))
        return container
    raise fail("insert", "a list or a string", container)


def _add(container: Any, value: Any, name: str) -> None:
    if isinstance(container, Heap):
        container.insert(value)
    else:
        container.add(value, name)


@builtin("poplast", group=G)
def poplast(container: Any) -> Any:
    """(poplast l) removes the last element of a list (or heap) in place and returns it; nil if empty."""
    if isinstance(container, Heap):
        if not container.items:
            return None
        container.items.pop()
        return container
    if isinstance(container, (list, str)):
        return pop(container)
    raise fail("poplast", "a list, a string or a heap", container)


@builtin("pushlast", group=G, min_args=2, max_args=None)
def pushlast(lst: Any, *values: Any) -> Any:
    """(pushlast l 4 5) appends values at the end of a list in place, as push: (1 2 3 4 5)."""
    return _push("pushlast", lst, values)


@builtin("pushtrue", group=G, min_args=2, max_args=None)
def pushtrue(lst: Any, *values: Any) -> Any:
    """(pushtrue l (find s "x") 3) appends the values that are not nil, in place; returns the list."""
    return _push("pushtrue", lst, [v for v in values if v is not None and v is not False])


@builtin("extend", group=G)
def extend(lst: Any, other: Any) -> list:
    """(extend l '(4 5)) appends the elements of a second list to a list, in place; returns it."""
    expect_list("extend", lst)
    items = other if isinstance(other, list) else [other]
    lst.extend([fit("extend", lst, v) for v in items])
    return lst


@builtin("reverse", group=G, min_args=1, max_args=2)
def reverse(x: Any, in_place: Any = False) -> Any:
    """(reverse '(1 2 3)) returns a reversed copy: (3 2 1); (reverse "abc") gives "cba".

    (reverse l true) reverses the list itself and returns it (a string, which cannot change,
    still gives a reversed copy)."""
    if isinstance(x, str):
        return x[::-1]
    if isinstance(x, list):
        if truthy(in_place):
            x.reverse()
            return x
        return like(x, x[::-1])
    if x is None:
        return None
    raise fail("reverse", "a list or a string", x)


@builtin("sort", group=G, ctx=True)
def sort(ctx: Any, comparator: Any, lst: Any) -> list:
    """(sort '< '(3 1 2)) sorts a list in place with a comparator and returns it: (1 2 3).

    The comparator is any function of two arguments that is true when the first goes first:
    '<, '>, a lambda. The sort is stable.
    """
    expect_list("sort", lst)
    direction = _plain_order(ctx, comparator)
    if direction is not None and (all(is_number(x) for x in lst) or all(isinstance(x, str) for x in lst)):
        lst.sort(reverse=direction)  # '< or '> on numbers or strings: same order, no Lisp calls
        return lst

    def cmp(a: Any, b: Any) -> int:
        if truthy(ctx.call(comparator, a, b)):
            return -1
        if truthy(ctx.call(comparator, b, a)):
            return 1
        return 0

    lst.sort(key=functools.cmp_to_key(cmp))
    return lst


def _plain_order(ctx: Any, comparator: Any) -> bool | None:
    """False for the builtin `<`, True for `>` (sort descending), None for any other comparator."""
    from .registry import REGISTRY

    fn = comparator
    if isinstance(fn, Symbol):
        try:
            fn = ctx.function_named(fn.name)
        except LispEError:
            return None
    if fn is REGISTRY.get("<"):
        return False
    if fn is REGISTRY.get(">"):
        return True
    return None


# ---------------------------------------------------------------- size and search (all containers)

@builtin("size", "length", group=G)
def size(x: Any) -> int:
    """(size '(1 2 3)) returns the number of elements: 3; works on strings and dictionaries too."""
    if isinstance(x, (list, str, dict, LispSet, Heap)):
        return len(x)
    if x is None:
        return 0
    lisp_size = getattr(x, "lisp_size", None)
    if lisp_size is not None:
        return lisp_size()
    raise fail("size", "a list, a string or a dictionary", x)


@builtin("find", group=G, min_args=2, max_args=3)
def find(container: Any, value: Any, start: Any = 0) -> Any:
    """(find "hello" "l") returns the first position of a value: 2; nil when absent.

    On a list it looks for an equal element, on a string for a substring (from an optional start
    position), on a dictionary for a value (returning its key).
    """
    if isinstance(container, str):
        if not isinstance(value, str):
            value = show(value)
        s = expect_int("find", start, "an integer start position")
        pos = container.find(value, s)
        return None if pos < 0 else pos
    if isinstance(container, list):
        s = expect_int("find", start, "an integer start position")
        for i in range(max(s, 0), len(container)):
            if lisp_equal(container[i], value):
                return i
        return None
    if isinstance(container, dict):
        for k, v in container.items():
            if lisp_equal(v, value):
                return k
        return None
    raise fail("find", "a list, a string or a dictionary", container)


@builtin("in", group=G)
def in_(container: Any, value: Any) -> Any:
    """(in '(1 2 3) 2) is true when a list holds a value, a string a substring, a dictionary a key."""
    if isinstance(container, str):
        if not isinstance(value, str):
            value = show(value)
        return True if value in container else None
    if isinstance(container, list):
        return True if any(lisp_equal(x, value) for x in container) else None
    if isinstance(container, dict):
        return True if dict_key(container, value) in container else None
    if isinstance(container, (LispSet, Heap)):
        return True if value in container else None
    if container is None:
        return None
    raise fail("in", "a list, a string or a dictionary", container)


@builtin("count", group=G, min_args=2, max_args=3)
def count(container: Any, value: Any, start: Any = 0) -> int:
    """(count '(1 2 1 1) 1) counts the occurrences of a value: 3; in a string, of a substring."""
    s = expect_int("count", start, "an integer start position")
    if isinstance(container, str):
        if not isinstance(value, str):
            value = show(value)
        if not value:
            return 0
        return container.count(value, s)
    if isinstance(container, list):
        return sum(1 for x in container[max(s, 0):] if lisp_equal(x, value))
    if isinstance(container, dict):
        return sum(1 for x in container.values() if lisp_equal(x, value))
    raise fail("count", "a list, a string or a dictionary", container)


# ---------------------------------------------------------------- reshaping

@builtin("flatten", group=G)
def flatten(x: Any) -> list:
    """(flatten '(1 (2 (3 4)) 5)) flattens nested lists into one list: (1 2 3 4 5)."""
    expect_list("flatten", x)
    out: list = []
    stack = [iter(x)]
    path = [id(x)]  # the lists being flattened (their ids): one met again inside itself is a cycle
    active = {id(x)}
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if id(item) in active:
                    raise LispEError("flatten: the list contains itself (a cycle): it has no flat form")
                stack.append(iter(item))
                path.append(id(item))
                active.add(id(item))
                break
            out.append(item)
        else:
            stack.pop()
            active.discard(path.pop())
    return typed_from(out) if type(x) in TYPED_LISTS else out


@builtin("unique", group=G)
def unique(x: Any) -> list:
    """(unique '(1 2 1 3 2)) removes duplicates, keeping first occurrences: (1 2 3)."""
    expect_list("unique", x)
    out: list = []
    seen: set = set()
    for item in x:
        try:
            key = (type(item) is bool, item) if not isinstance(item, float) or item != int(item) \
                else (False, int(item))
            hash(key)
        except (TypeError, ValueError, OverflowError):
            key = None
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        elif any(lisp_equal(item, y) for y in out):
            continue
        out.append(item)
    return like(x, out)


@builtin("clone", group=G)
def clone(x: Any) -> Any:
    """(clone l) returns a deep copy of a list, dictionary, set or heap: changing it leaves the original alone."""
    if isinstance(x, (list, dict)):
        return copy.deepcopy(x)
    if isinstance(x, LispSet):
        return x.copy()
    if isinstance(x, Heap):
        h = Heap(x.ctx, x.comparator)
        h.items = copy.deepcopy(x.items)
        return h
    return x


@builtin("zip", group=G, min_args=2, max_args=None)
def zip_(*lists: Any) -> list:
    """(zip '(1 2) '(a b)) pairs up the elements of lists of the same size: ((1 a) (2 b))."""
    for lst in lists:
        expect_list("zip", lst)
    if len({len(lst) for lst in lists}) > 1:
        raise LispEError("zip: the lists must have the same size")
    return [list(t) for t in zip(*lists)]


@builtin("zipwith", group=G, ctx=True, min_args=3, max_args=None)
def zipwith(ctx: Any, fn: Any, *lists: Any) -> list:
    """(zipwith '+ '(1 2) '(10 20)) applies a function to elements of lists taken in step: (11 22).

    A last argument true or nil (false) says whether the result may be a typed list (the default)
    or must be a plain list: (type (zipwith '+ '(1) '(2) false)) is list_.
    """
    keep = True
    if len(lists) > 2 and (lists[-1] is None or lists[-1] is True or lists[-1] is False):
        keep = lists[-1] is True
        lists = lists[:-1]
        out = zipwith(ctx, fn, *lists)
        return out if keep else list(out)
    for lst in lists:
        expect_list("zipwith", lst)
    if len({len(lst) for lst in lists}) > 1:
        raise LispEError("zipwith: the lists must have the same size")
    return typed_from([ctx.call(fn, *t) for t in zip(*lists)])


@builtin("extract", "@@", group=G, min_args=2, max_args=5)
def extract(container: Any, *bounds: Any) -> Any:
    """(@@ "abcdef" 1 3) extracts from a start position up to an end position (excluded): "bc".

    With only a start it returns the one element (or character) there: (@@ "12345" -2) is "4".
    Negative positions count from the end; an end of 0 or less counts from the end too. On a
    string a bound may be a marker string: (@@ "a[b]c" "[" "]") is "b"; after a marker start, a
    positive number is a count of characters: (@@ "abcdefghij" "b" 3) is "cde". `+` before a
    marker keeps it in the result, `-` searches it from the end: (@@ "x(a)(b)" - "(" ")") is "b";
    a lone `-` as the end means up to the end: (@@ "/a/b.txt" - "/" -) is "b.txt".
    A start out of range gives "" on a string and nil on a list.
    """
    if isinstance(container, str):
        return _extract_string(container, list(bounds))
    if not isinstance(container, list):
        raise fail("extract", "a list or a string", container)
    if len(bounds) > 2 or any(_is_op(b, "+", "-") or isinstance(b, str) for b in bounds):
        return _extract_list(container, list(bounds))
    n = len(container)
    b = expect_int("extract", bounds[0], "an integer position")
    if b < 0:
        b += n
    if not 0 <= b < n:
        return None
    if len(bounds) == 1:
        return container[b]
    e = expect_int("extract", bounds[1], "an integer position")
    if e < 0:
        e += n
        if e < 0:
            return None
    e = min(e, n)
    if e < b:
        return None
    return like(container, container[b:e])


def _is_op(v: Any, *names: str) -> bool:
    return v.__class__.__name__ == "Builtin" and getattr(v, "name", None) in names


def _find(lst: list, value: Any, start: int = 0) -> int:
    for i in range(max(start, 0), len(lst)):
        if lisp_equal(lst[i], value):
            return i
    return -1


def _rfind(lst: list, value: Any) -> int:
    for i in range(len(lst) - 1, -1, -1):
        if lisp_equal(lst[i], value):
            return i
    return -1


def _extract_list(lst: list, bounds: list) -> Any:
    """extract on a list with element markers, as LispE's List::extraction: a bound may be an
    element to look for (the slice starts AT it), `- x` (after its last occurrence, or up to it as
    the end), `+ x` (keeping it); a lone `-` as the end means up to the end; after a marker start
    a positive end is a count of elements."""
    n = len(lst)
    op, v = _marker(bounds, "first")
    counted = -1  # -1: the start was a number; else the offset of the counted run after a marker
    if op is not None or isinstance(v, str):
        p = _rfind(lst, v) if op == "-" else _find(lst, v)
        if p < 0:
            return []
        start, counted = (p + 1, 0) if op == "-" else (p, 0)
    elif is_number(v):
        start = expect_int("extract", v, "an integer position")
        if start < 0:
            start += n
    else:
        raise fail("extract", "a position or an element to look for", v)
    if not 0 <= start < n:
        return []
    if not bounds:
        return lst[start]
    if len(bounds) == 1 and _is_op(bounds[0], "-"):
        return like(lst, lst[start:])
    op, w = _marker(bounds, "second")
    if bounds:
        raise LispEError("extract: too many arguments")
    if op is not None or isinstance(w, str):
        if op == "-":
            q = _rfind(lst, w)
        else:
            q = _find(lst, w, start + max(counted, 0))
        if q < 0:
            return []
        end = q + 1 if op == "+" else q
    elif is_number(w):
        end = expect_int("extract", w, "an integer position")
        if counted != -1 and end > 0:
            end += start + counted
        elif end <= 0:
            end += n
    else:
        raise fail("extract", "a position or an element to look for", w)
    if end <= start:
        return []
    return like(lst, lst[start:min(end, n)])


def _marker(bounds: list, which: str) -> tuple[str | None, Any]:
    """Take one bound off `bounds`: ("+", "-" or None, value)."""
    v = bounds.pop(0)
    name = getattr(v, "name", None) if v.__class__.__name__ == "Builtin" else None
    if name in ("+", "-"):
        if not bounds:
            raise LispEError(f"extract: a marker string must follow '{name}' ({which} position)")
        value = bounds.pop(0)
        if not isinstance(value, str):
            raise LispEError(f"extract: wrong value after the {which} operator '{name}': "
                             f"expected a string, got {show(value)}")
        return name, value
    return None, v


def _extract_string(s: str, bounds: list) -> str:
    op, v = _marker(bounds, "first")
    keep = -1  # length of a start marker kept in the result (+), or 0 after a plain marker
    if isinstance(v, str):
        p = s.rfind(v) if op == "-" else s.find(v)
        if p < 0:
            return ""
        if op == "+":
            start, keep = p, len(v)
        else:
            start, keep = p + len(v), 0
    elif is_number(v):
        start = expect_int("extract", v, "an integer position")
        if start < 0:
            start += len(s)
    else:
        raise fail("extract", "a position or a marker string", v)
    if not 0 <= start < len(s):
        return ""
    if not bounds:
        return s[start]
    if len(bounds) == 1 and getattr(bounds[0], "name", None) == "-" and bounds[0].__class__.__name__ == "Builtin":
        return s[start:]  # (@@ s -"/" -): a lone - at the end means up to the end
    op, w = _marker(bounds, "second")
    if bounds:
        raise LispEError("extract: too many arguments")
    if isinstance(w, str):
        q = s.rfind(w) if op == "-" else s.find(w, start + 1)
        if q < 0:
            return ""
        end = q + len(w) if op == "+" else q
    elif is_number(w):
        end = expect_int("extract", w, "an integer position")
        if keep != -1 and end > 0:
            end += start + keep  # after a marker, a count of characters
        elif end <= 0:
            end += len(s)
    else:
        raise fail("extract", "a position or a marker string", w)
    if end <= start:
        return ""
    return s[start:min(end, len(s))]


def _slice_pos(n: int, i: Any) -> int:
    i = int(i)
    if i < 0:
        i += n
    return min(max(i, 0), n)


@builtin("take", group=G)
def take(n: Any, lst: Any) -> Any:
    """(take 2 '(1 2 3 4)) keeps the first n elements of a list (or characters of a string): (1 2)."""
    k = expect_int("take", n, "an integer count")
    if isinstance(lst, Lazy):
        check_size("take", k)
        return typed_from(list(itertools.islice(lst.iterate(), max(k, 0))))
    if isinstance(lst, str):
        return lst[:max(k, 0)]
    src = _elements("take", lst)
    return like(lst, src[:max(k, 0)])


@builtin("drop", group=G)
def drop(n: Any, lst: Any) -> Any:
    """(drop 2 '(1 2 3 4)) removes the first n elements of a list (or characters of a string): (3 4)."""
    k = expect_int("drop", n, "an integer count")
    if isinstance(lst, Lazy):
        return lst.dropped(max(k, 0))
    if isinstance(lst, str):
        return lst[max(k, 0):]
    src = _elements("drop", lst)
    return like(lst, src[max(k, 0):])


@builtin("enum", group=G, min_args=1, max_args=2)
def enum(lst: Any, start: Any = 0) -> list:
    """(enum '(a b)) pairs each element with its position: ((0 a) (1 b)); (enum l 1) counts from 1."""
    s = expect_int("enum", start, "an integer start")
    return [[i, x] for i, x in enumerate(_elements("enum", lst), s)]


@builtin("slice", group=G)
def slice_(lst: Any, n: Any) -> list:
    """(slice '(1 2 3 4 5) 2) cuts a list (or a string) into pieces of n elements: ((1 2) (3 4) (5))."""
    k = expect_int("slice", n, "a positive size")
    if k <= 0:
        raise LispEError("slice: the size must be positive")
    if isinstance(lst, str):
        from ..values import Strings

        return Strings(lst[i:i + k] for i in range(0, len(lst), k))
    src = _elements("slice", lst)
    return [like(lst, src[i:i + k]) for i in range(0, len(src), k)]


# ---------------------------------------------------------------- ranges

def _range(name: str, init: Any, limit: Any, step: Any, inclusive: bool) -> list:
    for v in (init, limit, step):
        expect_number(name, v)
    if step == 0:
        raise LispEError(f"{name}: the step cannot be 0")
    ints = is_int(init) and is_int(limit) and is_int(step)
    for v in (init, limit, step):
        if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            raise LispEError(f"{name}: expected finite numbers, got {show(v)}")
    try:
        count = (limit - init) / step
    except OverflowError:
        count = float("inf")
    check_size(name, count)
    if ints:
        stop = limit + (1 if step > 0 else -1) if inclusive else limit
        return Integers(range(init, stop, step))
    # floats: element k is init + k*step (no accumulated drift); the count is fixed up front, with a
    # tiny tolerance so that an exact limit is reached (inclusive) or excluded (exclusive)
    if count < 0:
        return Numbers()
    n = math.floor(count + 1e-9) + 1 if inclusive else math.ceil(count - 1e-9)
    out = [float(init + k * step) for k in range(max(n, 0))]
    return Numbers(out)


@builtin("range", group=G)
def range_(init: Any, limit: Any, step: Any) -> list:
    """(range 0 10 3) lists numbers from a start up to (not including) a limit by a step: (0 3 6 9)."""
    return _range("range", init, limit, step, False)


@builtin("rangein", group=G)
def rangein(init: Any, limit: Any, step: Any) -> list:
    """(rangein 0 9 3) lists numbers from a start up to and including a limit: (0 3 6 9)."""
    return _range("rangein", init, limit, step, True)


@builtin("irange", group=G, min_args=2, max_args=3)
def irange(init: Any, limit_or_step: Any, step: Any = None) -> Any:
    """(take 4 (irange 1 2)) reads an infinite range from a start by a step: (1 3 5 7).

    (irange start step) never ends: read it with take, takewhile, car or cdr, or through map and
    filter, which stay infinite; any other builtin refuses it. (irange 0 10 2) is a range up to a
    limit (excluded): (0 2 4 6 8).
    """
    if step is None:
        expect_number("irange", init)
        expect_number("irange", limit_or_step)
        for v in (init, limit_or_step):
            if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
                raise LispEError(f"irange: expected finite numbers, got {show(v)}")
        return counting(init, limit_or_step)
    return _range("irange", init, limit_or_step, step, False)


@builtin("irangein", group=G, min_args=2, max_args=3)
def irangein(init: Any, limit_or_step: Any, step: Any = None) -> Any:
    """(irangein 0 10 2) is a range up to and including a limit: (0 2 4 6 8 10).

    With two arguments it is the infinite (irange start step).
    """
    if step is None:
        return irange(init, limit_or_step)
    return _range("irangein", init, limit_or_step, step, True)


@builtin("repeat", group=G)
def repeat(value: Any) -> Any:
    """(take 3 (repeat "a")) reads an infinite repetition of a value: ("a" "a" "a")."""
    return Lazy(lambda: itertools.repeat(value), f"repeat {show(value)}")


@builtin("cycle", group=G)
def cycle(lst: Any) -> Any:
    """(take 5 (cycle '(1 2))) reads the elements of a list over and over: (1 2 1 2 1)."""
    items = list(expect_list("cycle", lst))
    if not items:
        raise LispEError("cycle: the list is empty")
    return Lazy(lambda: itertools.cycle(items), f"cycle {show(items)}")


def _iota(name: str, n: Any, base: int) -> list:
    expect_number(name, n)
    if isinstance(n, float) and (n != n or n in (float("inf"), float("-inf"))):
        raise LispEError(f"{name}: expected a finite number, got {show(n)}")
    check_size(name, n)
    if is_int(n):
        return Integers(range(base, n + base))
    frac = n - int(n)
    start = base + frac
    out = []
    v = start
    while v <= n + base - 1 + 1e-12:
        out.append(float(v))
        v += 1
    return Numbers(out)


@builtin("iota", "⍳", group=G, min_args=1, max_args=None)
def iota(*ns: Any) -> list:
    """(iota 5) lists the integers from 1 to n: (1 2 3 4 5); several arguments give several lists."""
    if len(ns) == 1:
        return _iota("iota", ns[0], 1)
    return [_iota("iota", n, 1) for n in ns]


@builtin("iota0", "⍳0", group=G, min_args=1, max_args=None)
def iota0(*ns: Any) -> list:
    """(iota0 5) lists the integers from 0 to n-1: (0 1 2 3 4); several arguments give several lists."""
    if len(ns) == 1:
        return _iota("iota0", ns[0], 0)
    return [_iota("iota0", n, 0) for n in ns]


@builtin("replicate", group=G)
def replicate(n: Any, value: Any) -> list:
    """(replicate 3 "a") builds a list of n copies of a value: ("a" "a" "a")."""
    k = expect_int("replicate", n, "an integer count")
    check_size("replicate", k * (max(len(value), 1) if isinstance(value, (list, dict, str)) else 1))
    if k < 0:
        raise LispEError("replicate: the count cannot be negative")
    if isinstance(value, (list, dict)):
        return [copy.deepcopy(value) for _ in range(k)]
    return typed_from([value] * k)


# ---------------------------------------------------------------- higher-order functions

def _elements(name: str, x: Any) -> list:
    if isinstance(x, list):
        return x
    if isinstance(x, Lazy):
        raise refuse(name)
    if isinstance(x, str):
        return list(x)
    if x is None:
        return []
    raise fail(name, "a list", x)


def _until_break(f: Any, src: Any):
    """Yield (x, f(x)) for each element until the function runs `(break)`: as LispE's maplist and
    filterlist, a break in the function ends the walk there (it leaves no enclosing loop)."""
    from ..runtime import BreakSignal
    for x in src:
        try:
            y = f(x)
        except BreakSignal:
            return
        yield x, y


def _keep_type(flag: Any) -> bool:
    return truthy(flag)


@builtin("map", group=G, ctx=True)
def map_(ctx: Any, fn: Any, lst: Any) -> Any:
    """(map '(* 2) '(1 2 3)) applies a function to each element: (2 4 6).

    As in LispE a bare operator receives the element twice: (map '+ '(1 2 3)) is (2 4 6),
    (map '* '(1 2 3)) is (1 4 9); '(op v) computes (op x v) and '(v op) computes (op v x);
    (map '- '(1 2)) is (0 0). A function or lambda receives the element once. On an infinite
    range (irange start step) the result is infinite too, to be read with take or takewhile.
    """
    f = composed(ctx, fn, action=True)
    if isinstance(lst, Lazy):
        return lst.mapped(f)
    return typed_from([f(x) for x in _elements("map", lst)])


@builtin("mapcar", group=G, ctx=True)
def mapcar(ctx: Any, fn: Any, lst: Any) -> list:
    """(mapcar '(- 10) '(1 2)) applies a function to each element, as maplist: (9 8).

    A partial call gets the element at its `_` slot or at its end: '(- 10) computes (- 10 x).
    """
    f = slotted(ctx, fn)
    return typed_from([y for _, y in _until_break(f, _elements("mapcar", lst))])


@builtin("maplist", "↑↑", "↑", "¨", group=G, ctx=True, min_args=2, max_args=3)
def maplist(ctx: Any, fn: Any, lst: Any, keep_type: Any = True) -> list:
    """(maplist '(- 10) '(1 2)) applies a function to each element: (9 8).

    Unlike map, a partial call gets the element at its `_` slot or at its end: '(- 10) computes
    (- 10 x), '(- _ 10) computes (- x 10); a bare operator receives the element once. With a third
    argument nil the result is always a plain list.
    """
    f = slotted(ctx, fn)
    out = [y for _, y in _until_break(f, _elements("maplist", lst))]
    return typed_from(out) if _keep_type(keep_type) else out


@builtin("filter", group=G, ctx=True)
def filter_(ctx: Any, pred: Any, lst: Any) -> Any:
    """(filter '(< 3) '(1 5 2 4)) keeps the elements for which a predicate is true: (1 2).

    '(cmp v) tests (cmp x v) and '(v cmp) tests (cmp v x), as LispE's filter; a function or
    lambda receives the element. On an infinite range the result is infinite (read it with take).
    """
    f = composed(ctx, pred, action=False)
    if isinstance(lst, Lazy):
        return lst.filtered(lambda x: truthy(f(x)))
    src = _elements("filter", lst)
    return like(lst, [x for x in src if truthy(f(x))])


def _listwise(name: str, ctx: Any, pred: Any, lst: Any, keep_type: Any, mode: str) -> Any:
    f = slotted(ctx, pred)
    src = _elements(name, lst)
    if mode == "filter":
        out = [x for x, y in _until_break(f, src) if truthy(y)]
    elif mode == "take":
        i = 0
        for _, y in _until_break(f, src):
            if not truthy(y):
                break
            i += 1
        out = src[:i]
    else:  # drop: LispE's droplist keeps everything from the first element the predicate accepts
        out = []
        for i, (_, y) in enumerate(_until_break(f, src)):
            if truthy(y):
                out = src[i:]
                break
    if isinstance(lst, str):
        return "".join(out) if _keep_type(keep_type) else list(out)
    return like(lst, out) if _keep_type(keep_type) else list(out)


@builtin("filterlist", group=G, ctx=True, min_args=2, max_args=3)
def filterlist(ctx: Any, pred: Any, lst: Any, keep_type: Any = True) -> Any:
    """(filterlist '(< 10) '(1 4 5 10 11 20)) keeps the elements satisfying a predicate: (11 20).

    Unlike filter, a partial call gets the element at its `_` slot or at its end: '(< 10) tests
    (< 10 x), '(< _ 10) tests (< x 10). With a third argument nil the result is a plain list.
    """
    return _listwise("filterlist", ctx, pred, lst, keep_type, "filter")


@builtin("takelist", group=G, ctx=True, min_args=2, max_args=3)
def takelist(ctx: Any, pred: Any, lst: Any, keep_type: Any = True) -> Any:
    """(takelist '(> 10) '(1 4 12 3)) keeps the leading elements while a predicate holds: (1 4).

    The element goes at the `_` slot of a partial call or at its end: '(> 10) tests (> 10 x).
    """
    return _listwise("takelist", ctx, pred, lst, keep_type, "take")


@builtin("droplist", group=G, ctx=True, min_args=2, max_args=3)
def droplist(ctx: Any, pred: Any, lst: Any, keep_type: Any = True) -> Any:
    """(droplist '(< 10) '(1 4 12 3)) drops the elements before the first one a predicate accepts: (12 3).

    As LispE's droplist: everything from the first accepted element on is kept (none accepted: ()).
    The element goes at the `_` slot of a partial call or at its end: '(< 10) tests (< 10 x).
    """
    return _listwise("droplist", ctx, pred, lst, keep_type, "drop")


@builtin("filtercar", group=G, ctx=True)
def filtercar(ctx: Any, pred: Any, lst: Any) -> Any:
    """(filtercar '(< 10) '(1 4 5 10 11 20)) is filterlist always giving a plain list: (11 20)."""
    return _listwise("filtercar", ctx, pred, lst, None, "filter")


@builtin("takecar", group=G, ctx=True)
def takecar(ctx: Any, pred: Any, lst: Any) -> Any:
    """(takecar '(> 10) '(1 4 12 3)) is takelist always giving a plain list: (1 4)."""
    return _listwise("takecar", ctx, pred, lst, None, "take")


@builtin("dropcar", group=G, ctx=True)
def dropcar(ctx: Any, pred: Any, lst: Any) -> Any:
    """(dropcar '(< 10) '(1 4 12 3)) is droplist always giving a plain list: (12 3)."""
    return _listwise("dropcar", ctx, pred, lst, None, "drop")


@builtin("takewhile", group=G, ctx=True)
def takewhile(ctx: Any, pred: Any, lst: Any) -> list:
    """(takewhile '(< 3) '(1 2 5 1)) keeps the leading elements while a predicate holds: (1 2).

    '(cmp v) tests (cmp x v), '(v cmp) tests (cmp v x); it also reads an infinite range:
    (takewhile '(< 10) (irange 1 3)) is (1 4 7).
    """
    f = composed(ctx, pred, action=False)
    out = []
    src = lst.iterate() if isinstance(lst, Lazy) else _elements("takewhile", lst)
    for x in src:
        if not truthy(f(x)):
            break
        out.append(x)
        if isinstance(lst, Lazy):
            check_size("takewhile", len(out))
    return typed_from(out) if isinstance(lst, Lazy) else like(lst, out)


@builtin("dropwhile", group=G, ctx=True)
def dropwhile(ctx: Any, pred: Any, lst: Any) -> list:
    """(dropwhile '(< 3) '(1 2 5 1)) skips the leading elements while a predicate holds: (5 1).

    '(cmp v) tests (cmp x v), '(v cmp) tests (cmp v x), as filter.
    """
    f = composed(ctx, pred, action=False)
    src = _elements("dropwhile", lst)
    i = 0
    while i < len(src) and truthy(f(src[i])):
        i += 1
    return like(lst, src[i:])


@builtin("foldl", group=G, ctx=True)
def foldl(ctx: Any, fn: Any, init: Any, lst: Any) -> Any:
    """(foldl '- 10 '(1 2 3)) folds from the left: (- (- (- 10 1) 2) 3) = 4."""
    acc = init
    for x in _elements("foldl", lst):
        acc = ctx.call(fn, acc, x)
    return acc


@builtin("foldr", group=G, ctx=True)
def foldr(ctx: Any, fn: Any, init: Any, lst: Any) -> Any:
    """(foldr '- 10 '(1 2 3)) folds from the right: (- 1 (- 2 (- 3 10))) = -8."""
    acc = init
    for x in reversed(_elements("foldr", lst)):
        acc = ctx.call(fn, x, acc)
    return acc


@builtin("scanl", group=G, ctx=True)
def scanl(ctx: Any, fn: Any, init: Any, lst: Any) -> list:
    """(scanl '+ 0 '(1 2 3)) lists every intermediate value of a left fold: (0 1 3 6)."""
    acc = init
    out = [acc]
    for x in _elements("scanl", lst):
        acc = ctx.call(fn, acc, x)
        out.append(acc)
    return typed_from(out)


# ---------------------------------------------------------------- reductions

def _numbers(name: str, args: tuple) -> list:
    items = list(args[0]) if len(args) == 1 and isinstance(args[0], list) else list(args)
    for x in items:
        expect_number(name, x, "numbers")
    return items


@builtin("sum", "∑", group=G, min_args=1, max_args=None)
def sum_(*args: Any) -> Any:
    """(sum '(1 2 3)) adds the numbers of a list: 6 (also (sum 1 2 3)); 0 for an empty list."""
    items = _numbers("sum", args)
    total: Any = 0
    for x in items:
        total += x
    return total


@builtin("product", "∏", group=G, min_args=1, max_args=None)
def product(*args: Any) -> Any:
    """(product '(2 3 4)) multiplies the numbers of a list: 24 (also (product 2 3 4)); 1 when empty."""
    items = _numbers("product", args)
    total: Any = 1
    for x in items:
        total *= x
    return total


def _extreme(name: str, args: tuple, pick_greater: bool) -> Any:
    items = list(args[0]) if len(args) == 1 and isinstance(args[0], list) else list(args)
    if not items:
        raise LispEError(f"{name}: empty list")
    best = items[0]
    for x in items:
        if is_number(x) and is_number(best) or isinstance(x, str) and isinstance(best, str):
            if (x > best) if pick_greater else (x < best):
                best = x
        else:
            raise LispEError(f"{name}: cannot compare {show_type(best)} and {show_type(x)}")
    return best


def show_type(x: Any) -> str:
    from ..values import type_name

    return type_name(x)


@builtin("max", group=G, min_args=1, max_args=None)
def max_(*args: Any) -> Any:
    """(max 3 9 2) returns the largest argument: 9; (max '(3 9 2)) the largest element of a list."""
    return _extreme("max", args, True)


@builtin("min", group=G, min_args=1, max_args=None)
def min_(*args: Any) -> Any:
    """(min 3 9 2) returns the smallest argument: 2; (min '(3 9 2)) the smallest element of a list."""
    return _extreme("min", args, False)
