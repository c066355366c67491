"""LispE builtins found in upstream programs: link, trace, deaccentuate, and the string tokenizers
of LispE's strings library (tokenize, tokenizee, segment, segment_e); `set_range` serves the
`set@@` form of forms_extra.py.

These tokenizers are LispE's own string functions (strings.cxx), unrelated to the model
tokenizers of `lispe_torch`.
"""
from __future__ import annotations

import unicodedata
from typing import Any

from ..errors import LispEError
from ..values import Strings, Symbol
from ._common import expect_int, expect_str, fail, show
from .registry import builtin

G = "strings"


# ---------------------------------------------------------------- interpreter switches

@builtin("link", group="misc", ctx=True)
def link(ctx: Any, name: Any, target: Any) -> Any:
    """(link "∑" 'sum) makes a new name for a function: after it, (∑ '(1 2 3)) is (sum '(1 2 3)).

    The target is a quoted atom naming a builtin or a user function; returns true.
    """
    name = expect_str("link", name)
    if not isinstance(target, Symbol):
        raise LispEError("link: the second argument must be an atom")
    if not name:
        raise LispEError("link: the new name must not be empty")
    fn = ctx.function_named(target.name)
    ctx.globals.cell(name).v = fn
    return True


_TRACE_KEY = "_lispe_trace"


@builtin("trace", group="misc", ctx=True, min_args=0, max_args=1)
def trace(ctx: Any, flag: Any = Ellipsis) -> Any:
    """(trace true) sets the trace flag and returns it: true; (trace) returns the current flag.

    The flag is kept per interpreter. Upstream LispE uses it to step through the code in its
    debugger; this interpreter has no step debugger, so the flag changes nothing else.
    """
    from ..values import truthy

    state = ctx.interp.__dict__.setdefault(_TRACE_KEY, [False])
    if flag is not Ellipsis:
        state[0] = bool(truthy(flag))
    return True if state[0] else None


# ---------------------------------------------------------------- strings

@builtin("deaccentuate", group=G)
def deaccentuate(s: Any) -> str:
    """(deaccentuate "élève à Noël") removes the accents from letters: "eleve a Noel"."""
    s = expect_str("deaccentuate", s)
    out = []
    for ch in s:
        base = unicodedata.normalize("NFD", ch)
        stripped = "".join(c for c in base if not unicodedata.combining(c))
        out.append(unicodedata.normalize("NFC", stripped) if stripped else ch)
    return "".join(out)


def _range_bounds(name: str, container: Any, start: Any, end: Any) -> tuple[int, int]:
    n = len(container)
    i = expect_int(name, start)
    if i < 0:
        i += n
    if isinstance(end, str) and isinstance(container, str):
        j = container.find(end, max(i, 0)) if end else -1
        if j < 0:
            raise LispEError(f"{name}: {end!r} does not occur after position {start}")
    else:
        j = expect_int(name, end)
        if j < 0:
            j += n
    if not (0 <= i <= j <= n):
        raise LispEError(f"{name}: positions {start} and {end} are out of range for a size of {n}")
    return i, j


def set_range(container: Any, start: Any, end: Any, value: Any) -> Any:
    """The container with the elements start..end-1 replaced by value (a list in place, a new string)."""
    if isinstance(container, str):
        i, j = _range_bounds("set@@", container, start, end)
        return container[:i] + (value if isinstance(value, str) else show(value)) + container[j:]
    if isinstance(container, list):
        from ._common import fit

        i, j = _range_bounds("set@@", container, start, end)
        items = list(value) if isinstance(value, list) else [value]
        container[i:j] = [fit("set@@", container, v) for v in items]
        return container
    raise fail("set@@", "a string or a list", container)


# ---------------------------------------------------------------- LispE string tokenizers

_SINGLE = set(";,#'`\"()[]:{}&|*%/^<>!=")


def _number_end(s: str, i: int) -> int:
    """End of the number starting at i (optional sign, hexadecimal, decimals, exponent), or i."""
    n = len(s)
    j = i
    if j < n and s[j] in "+-":
        j += 1
    if s.startswith(("0x", "0X"), j):
        k = j + 2
        while k < n and s[k] in "0123456789abcdefABCDEF":
            k += 1
        return k if k > j + 2 else i
    k = j
    while k < n and s[k].isdigit():
        k += 1
    if k == j and not (k + 1 < n and s[k] == "." and s[k + 1].isdigit()):
        return i
    if k + 1 < n and s[k] == "." and s[k + 1].isdigit():
        k += 1
        while k < n and s[k].isdigit():
            k += 1
    return _exponent_end(s, k)


def _exponent_end(s: str, k: int) -> int:
    """After a number's digits at k: the end of an exponent `e12`, `E-3` there, else k."""
    n = len(s)
    if k < n and s[k] in "eE":
        e = k + 1
        if e < n and s[e] in "+-":
            e += 1
        if e < n and s[e].isdigit():
            while e < n and s[e].isdigit():
                e += 1
            return e
    return k


def _letter(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _tokenize_lispe(s: str, keepblanks: bool) -> list[str]:
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch in " \t\n\r":
            if keepblanks:
                out.append(ch)
            i += 1
            continue
        if ch in _SINGLE:
            out.append(ch)
            i += 1
            continue
        if ch in ".+-" or ch.isdigit():
            nxt = s[i + 1] if i + 1 < n else ""
            if ch == "." and nxt == " " or ch in ".+-" and not nxt.isdigit():
                out.append(ch)
                i += 1
                continue
            j = _number_end(s, i)
            if j > i:
                out.append(s[i:j])
                i = j
                continue
            out.append(ch)
            i += 1
            continue
        if not _letter(ch):
            out.append(ch)
            i += 1
            continue
        j = i + 1
        while j < n and _letter(s[j]):
            j += 1
        out.append(s[i:j])
        i = j
    return out


@builtin("tokenize", group=G, min_args=1, max_args=3)
def tokenize(s: Any, text: Any = None, types: Any = None) -> Any:
    """(tokenize "(+ a1 2.5)") splits a string into LispE-style tokens: ("(" "+" "a1" "2.5" ")").

    Blanks separate tokens and are dropped; words of letters, digits and _ stay whole; numbers
    (with a sign glued to them, decimals, exponent, 0x hexadecimal) are one token; every other
    character is a token by itself. tokenizee keeps the blanks. Given a tokenizer first, as in
    LispE's string module, (tokenize (tokenizer) text) is (tokenize_rules (tokenizer) text).
    """
    from .rule_tokenizer import RuleTokenizer, tokenize_rules

    if isinstance(s, RuleTokenizer):
        if text is None:
            raise LispEError("tokenize: write (tokenize rules text), the text is missing")
        return tokenize_rules(s, text, types)
    if text is not None:
        raise LispEError("tokenize: with a string first it takes no other argument; "
                         "(tokenize (tokenizer) text) uses a rule tokenizer")
    return Strings(_tokenize_lispe(expect_str("tokenize", s), False))


@builtin("tokenizee", group=G)
def tokenizee(s: Any) -> Strings:
    """(tokenizee "a b") tokenizes like tokenize but keeps each blank as a token: ("a" " " "b")."""
    return Strings(_tokenize_lispe(expect_str("tokenizee", s), True))


def _segment(name: str, s: Any, keepblanks: Any, point: Any) -> Strings:
    s = expect_str(name, s)
    keep = keepblanks is not None and keepblanks is not False
    decimal = _decimal_marks(name, point)
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch.isspace():
            if keep:
                out.append(ch)
            i += 1
            continue
        j = _segment_number(s, i, decimal)
        if j == i and ch in "#$" and i + 1 < n and s[i + 1].isalnum():
            j = i + 1
            while j < n and s[j].isalnum():
                j += 1
        if j == i and ch.isalpha():
            j = i + 1
            while j < n and (s[j].isalnum() or s[j] in "-'’_") and not (s[j] == "-" and (j + 1 >= n or not s[j + 1].isalnum())):
                j += 1
        if j == i:
            j = i + 1
        out.append(s[i:j])
        i = j
    return Strings(out)


def _decimal_marks(name: str, point: Any) -> str:
    """LispE's `point` argument of segment: 0 (or nil) a decimal point, 1 (or true) a decimal comma,
    2 either of them (strings.cxx: tokenize(str, keepblanks, point))."""
    if point is None or point is False or point == 0:
        return "."
    if point is True or point == 1:
        return ","
    if point == 2:
        return ".,"
    raise LispEError(f"{name}: point is 0 (decimal point), 1 (decimal comma) or 2 (both), got {show(point)}")


def _segment_number(s: str, i: int, decimal: str) -> int:
    n = len(s)
    j = i
    if j < n and s[j] in "+-" and j + 1 < n and s[j + 1].isdigit():
        j += 1
    k = j
    while k < n and s[k].isdigit():
        k += 1
    if k == j:
        return i
    if k + 1 < n and s[k] in decimal and s[k + 1].isdigit():
        k += 1
        while k < n and s[k].isdigit():
            k += 1
        k = _exponent_end(s, k)
    return k


@builtin("segment", group=G, min_args=1, max_args=2)
def segment(s: Any, point: Any = None) -> Strings:
    """(segment "Dr. Li paid 12.5 euros, didn't he?") splits text into words, numbers and signs.

    Gives ("Dr" "." "Li" "paid" "12.5" "euros" "," "didn't" "he" "?"). Words keep inner hyphens and
    apostrophes; a number keeps its sign, decimals and exponent; #tag and $var stay whole; every other
    character is a token. LispE's point argument: 0 (the default) reads "." as the decimal separator,
    1 reads ",", 2 either: (segment "10,5 and 2.5" 2) is ("10,5" "and" "2.5").
    """
    return _segment("segment", s, None, point)


@builtin("segment_e", group=G, min_args=1, max_args=2)
def segment_e(s: Any, point: Any = None) -> Strings:
    """(segment_e "a b") segments like segment and keeps the blanks: ("a" " " "b")."""
    return _segment("segment_e", s, True, point)
