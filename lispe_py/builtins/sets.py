"""Sets and heaps (LispE's sets.cxx and its AVL heap).

- `(sets ...)` holds strings, `(seti ...)` integers, `(setn ...)` numbers, `(set ...)` any value
  (told apart by its printed form). Their elements are kept sorted and unique; lists given as
  arguments are spread, a set given as argument is copied. They print in braces: `{1 2 3}`.
- `(heap comparator ...)` keeps its elements ordered by a comparator ('< or a lambda of two
  arguments); equal elements stay in insertion order. It prints as a list: `(1 3 10)`.

Both work with `in`, `size`, `push`/`insert` (add), `pop` (remove a value), `car`, `@`, `loop`,
`to_list`, `&&&`/`|||`/`^^^`; `popfirst`/`poplast` remove a heap's first/last element.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from ..errors import LispEError
from ..values import Integers, Numbers, Strings, Symbol, register_type, truthy
from ._common import describe, expect_int, is_int, is_number, lisp_equal, show, show_quoted
from .registry import builtin

G = "sets"


class LispSet:
    """A sorted set of unique elements; `kind` is "s" (strings), "i" (integers), "n" (numbers) or ""
    (any value, keyed by its printed form)."""

    TYPES = {"s": "set_s_", "i": "set_i_", "n": "set_n_", "": "set_"}

    def __init__(self, kind: str, items: Iterable[Any] = ()):
        self.kind = kind
        self._items: dict[Any, Any] = {}
        for x in items:
            self.add(x)

    @property
    def lisp_type(self) -> str:
        return self.TYPES[self.kind]

    def convert(self, x: Any, name: str = "set") -> tuple[Any, Any]:
        """(key, stored value) for an element, converted to the set's kind."""
        if self.kind == "s":
            v = x if isinstance(x, str) else show(x)
            return v, v
        if self.kind in ("i", "n"):
            if isinstance(x, str):
                try:
                    x = float(x) if any(c in x for c in ".eE") else int(x, 0)
                except ValueError:
                    raise LispEError(f"{name}: expected a number for a numeric set, got {describe(x)}") from None
            if not is_number(x):
                raise LispEError(f"{name}: expected a number for a numeric set, got {describe(x)}")
            v = int(x) if self.kind == "i" else float(x)
            return v, v
        return show_quoted(x), x

    def add(self, x: Any, name: str = "set") -> None:
        k, v = self.convert(x, name)
        self._items[k] = v

    def discard(self, x: Any) -> bool:
        try:
            k, _ = self.convert(x)
        except LispEError:
            return False
        return self._items.pop(k, _MISSING) is not _MISSING

    def __contains__(self, x: Any) -> bool:
        try:
            k, _ = self.convert(x)
        except LispEError:
            return False
        return k in self._items

    def keys_sorted(self) -> list:
        return sorted(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter([self._items[k] for k in self.keys_sorted()])

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, LispSet) and other.kind == self.kind and other._items.keys() == self._items.keys()

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> "LispSet":
        return LispSet(self.kind, list(self))

    def as_list(self) -> list:
        items = list(self)
        if self.kind == "s":
            return Strings(items)
        if self.kind == "i":
            return Integers(items)
        if self.kind == "n":
            return Numbers(items)
        return items


_MISSING = object()


def _print_set(s: LispSet) -> str:
    return "{" + " ".join(show_quoted(x) for x in s) + "}"


register_type(LispSet, "set_", _print_set)


def _make(kind: str, name: str, args: tuple) -> LispSet:
    out = LispSet(kind)
    for a in args:
        if isinstance(a, LispSet):
            for x in a:
                out.add(x, name)
        elif isinstance(a, list):
            for x in a:
                out.add(x, name)
        else:
            out.add(a, name)
    return out


@builtin("set", group=G, min_args=0, max_args=None)
def set_(*values: Any) -> LispSet:
    """(set 1 "a" 1 '(2 3)) builds a set of any values, each once, sorted: {"a" 1 2 3}.

    Elements are told apart by their printed form; a list argument gives its elements.
    """
    return _make("", "set", values)


@builtin("sets", group=G, min_args=0, max_args=None)
def sets(*values: Any) -> LispSet:
    """(sets "b" "a" "b") builds a set of strings, each once, sorted: {"a" "b"}.

    Numbers are stored as their printed form; a list argument gives its elements.
    """
    return _make("s", "sets", values)


@builtin("seti", group=G, min_args=0, max_args=None)
def seti(*values: Any) -> LispSet:
    """(seti 3 1 3 '(2)) builds a set of integers, each once, sorted: {1 2 3}.

    Floats are truncated; numeric strings are read; anything else is an error.
    """
    return _make("i", "seti", values)


@builtin("setn", group=G, min_args=0, max_args=None)
def setn(*values: Any) -> LispSet:
    """(setn 2.5 1 2.5) builds a set of numbers, each once, sorted: {1 2.5}."""
    return _make("n", "setn", values)


# ---------------------------------------------------------------- heaps

class Heap:
    """Elements ordered by a Lisp comparator (the first argument goes first when it is true)."""

    lisp_type = "heap_"

    def __init__(self, ctx: Any, comparator: Any):
        self.ctx = ctx
        self.comparator = comparator
        self.items: list = []

    def before(self, a: Any, b: Any) -> bool:
        r = self.ctx.call(self.comparator, a, b)
        if is_int(r):  # a three-way comparator such as >=< answers -1, 0 or 1
            return r < 0
        return truthy(r)

    def insert(self, x: Any) -> None:
        lo, hi = 0, len(self.items)
        while lo < hi:  # first element x goes before; equal ones keep insertion order
            mid = (lo + hi) // 2
            if self.before(x, self.items[mid]):
                hi = mid
            else:
                lo = mid + 1
        self.items.insert(lo, x)

    def find(self, x: Any) -> int:
        """The position of an element equal to x (neither goes before the other), or -1."""
        lo, hi = 0, len(self.items)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.before(self.items[mid], x):
                lo = mid + 1
            else:
                hi = mid
        i = lo
        while i < len(self.items) and not self.before(x, self.items[i]):
            if lisp_equal(self.items[i], x):
                return i
            i += 1
        return -1

    def __contains__(self, x: Any) -> bool:
        return self.find(x) >= 0

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Heap) and len(other.items) == len(self.items) and all(
            lisp_equal(a, b) for a, b in zip(self.items, other.items))

    __hash__ = None  # type: ignore[assignment]


register_type(Heap, "heap_", lambda h: "(" + " ".join(show(x) for x in h.items) + ")")


@builtin("heap", group=G, ctx=True, min_args=1, max_args=None)
def heap(ctx: Any, comparator: Any, *values: Any) -> Heap:
    """(heap '< 10 3 5) builds a heap ordered by a comparator: (3 5 10).

    The comparator is true when its first argument goes first ('<, a lambda), or a three-way
    comparison such as '>=< answering a negative number when the first goes first; nil means '>=<.

    `push`/`insert` add values in order, `car` gives the first, `(@ h -1)` the last, `pop` removes a
    value, `popfirst`/`poplast` the first/last one; `loop` and `to_list` read it in order.
    """
    h = Heap(ctx, comparator if comparator is not None else Symbol(">=<"))
    for v in values:
        h.insert(v)
    return h


def heap_at(h: Heap, idx: Any) -> Any:
    i = expect_int("at", idx, "an integer index")
    if i == -1 and h.items:
        return h.items[-1]
    if 0 <= i < len(h.items):
        return h.items[i]
    return None


def set_member(s: LispSet, idx: Any) -> Any:
    """A set indexed by a value gives it when present (nil otherwise), as LispE's value_on_index."""
    if idx in s:
        return s.convert(idx)[1]
    return None
