"""Suggestions for error messages: the one "did you mean" helper.

Unknown functions, unbound variables, unknown config keys and unknown option names all name the
closest known name the same way: `did_you_mean(name, candidates)` gives ` (did you mean 'x'?)` or
an empty string.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The candidate closest to `name` (difflib's ratio at least `cutoff`), or None.

    `name` itself is never suggested; a candidate differing only in case wins outright.
    """
    pool = sorted({c for c in candidates if isinstance(c, str) and c != name})
    lower = name.lower()
    for c in pool:
        if c.lower() == lower:
            return c
    close = difflib.get_close_matches(name, pool, n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """` (did you mean 'best'?)` for the closest candidate, or "" when none is close enough."""
    best = closest(name, candidates, cutoff)
    return f" (did you mean '{best}'?)" if best else ""
