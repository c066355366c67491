"""Infinite sequences: LispE's (irange start step), (repeat v) and (cycle l).

LispE composes them with map/filter and reads them with take/takewhile (composing.cxx); here a
`Lazy` value holds how to produce its elements, `map`/`filter` give a new `Lazy`, and `take`,
`takewhile`, `car`, `cdr` read what they need. Any other builtin refuses it with an error saying so,
instead of running forever.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

from ..errors import LispEError


class Lazy:
    """An infinite sequence: `iterate()` gives a fresh iterator over its elements."""

    lisp_type = "list_"

    def __init__(self, make: Callable[[], Iterator[Any]], text: str):
        self._make = make
        self.text = text

    def iterate(self) -> Iterator[Any]:
        return self._make()

    def mapped(self, f: Callable[[Any], Any]) -> "Lazy":
        return Lazy(lambda: map(f, self._make()), f"(map ... {self.text})")

    def filtered(self, p: Callable[[Any], bool]) -> "Lazy":
        return Lazy(lambda: filter(p, self._make()), f"(filter ... {self.text})")

    def dropped(self, n: int) -> "Lazy":
        return Lazy(lambda: itertools.islice(self._make(), n, None), f"(drop {n} {self.text})")

    def __str__(self) -> str:
        return f"<infinite {self.text}>"

    __repr__ = __str__


def counting(start: Any, step: Any) -> Lazy:
    """start, start+step, start+2*step... (computed from the index, so floats do not drift)."""
    if isinstance(start, int) and isinstance(step, int):
        return Lazy(lambda: itertools.count(start, step), f"irange {start} {step}")
    return Lazy(lambda: (start + k * step for k in itertools.count()), f"irange {start} {step}")


def refuse(name: str) -> LispEError:
    return LispEError(f"{name}: cannot read an infinite sequence (irange without a limit, repeat, "
                      f"cycle); take its first elements with take or takewhile")
