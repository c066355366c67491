"""Regular expressions: LispE's own syntax (`rgx`) and the posix-like one (`prgx`).

`(rgx "%d+%C")` compiles LispE's syntax: %d digit, %x hexadecimal digit, %p punctuation, %c
lowercase letter, %C uppercase letter, %a letter, %h Greek letter, %H Asian character, %s space,
%r carriage return, %n non-breaking space, ? any character, %? %% \\x literal characters, \\ddd and
\\xFFFF character codes, {...} a choice of characters, classes or sub-expressions ({[do][don't]}
is "do" or "don't"), {a-z} a range, [...] a sequence, (...) an optional part, ~ negates the next
element, + and * repeat it, ^ and $ anchor. `(prgx "\\w+")` compiles the usual
syntax (Python's `re`, close to the ECMAScript/posix syntax LispE uses through C++ std::regex).

Both families share their functions: `_match` (the whole string), `_find` (the first match, "" if
none), `_findall`, `_find_i` / `_findall_i` (positions as (start end)), `_replace`, `_split`.
A pattern may be given as a compiled value or as a string.
"""
from __future__ import annotations

import re
import string
import unicodedata
from functools import lru_cache
from typing import Any

from ..errors import LispEError
from ..values import Integers, Strings, register_type
from ._common import expect_int, expect_str, fail
from .registry import builtin

G = "regex"
MAX_PATTERN = 10_000


class Regex:
    """A compiled regular expression and the syntax it was written in."""

    def __init__(self, source: str, compiled: "re.Pattern[str]", kind: str):
        self.source = source
        self.compiled = compiled
        self.kind = kind

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Regex) and (other.source, other.kind) == (self.source, self.kind)

    __hash__ = None  # type: ignore[assignment]


register_type(Regex, "rgx_", lambda r: f"{r.kind}:{r.source}")


@lru_cache(maxsize=None)
def _class_of(category: str) -> str:
    """All BMP characters of a Unicode property, as the inside of a [...] class."""
    def keep(ch: str) -> bool:
        if category == "lower":
            return ch.islower()
        if category == "upper":
            return ch.isupper()
        if category == "punct":
            return unicodedata.category(ch).startswith("P") or ch in string.punctuation
        return False
    chars = [chr(i) for i in range(0x10000) if not 0xD800 <= i <= 0xDFFF and keep(chr(i))]
    return "".join(re.escape(ch) for ch in chars)


_META = {
    "d": r"\d", "x": "0-9a-fA-F", "a": r"^\W\d_", "s": r"\s\u00a0", "r": r"\r\n", "n": r"\u00a0",
    "h": r"\u0370-\u03ff\u1f00-\u1fff",
    "H": r"\u1100-\u11ff\u2e80-\u2fdf\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af",
}


def _meta_class(ch: str) -> str:
    """The inside of a character class for %ch (None if ch is not a class letter)."""
    if ch == "c":
        return _class_of("lower")
    if ch == "C":
        return _class_of("upper")
    if ch == "p":
        return _class_of("punct")
    return _META.get(ch, "")


def translate(src: str) -> str:
    """LispE's regular expression syntax into Python's."""
    out: list[str] = []
    i, n = 0, len(src)

    def element(i: int) -> tuple[str, int, str]:
        """(python text, next index, its negation as python text)."""
        ch = src[i]
        if ch == "%":
            if i + 1 >= n:
                raise LispEError("rgx: '%' at the end of the expression")
            m = src[i + 1]
            if m == "a":
                return r"[^\W\d_]", i + 2, r"[\W\d_]"
            if m in "dxshrnHcCp":
                inner = _meta_class(m)
                return f"[{inner}]", i + 2, f"[^{inner}]"
            return re.escape(m), i + 2, f"[^{re.escape(m)}]"
        if ch == "\\":
            if i + 1 >= n:
                raise LispEError("rgx: '\\' at the end of the expression")
            if src[i + 1] == "x" and re.fullmatch(r"[0-9a-fA-F]{4}", src[i + 2:i + 6]):
                c, j = chr(int(src[i + 2:i + 6], 16)), i + 6
            elif re.fullmatch(r"\d{3}", src[i + 1:i + 4]):
                c, j = chr(int(src[i + 1:i + 4])), i + 4
            else:
                c, j = src[i + 1], i + 2
            return re.escape(c), j, f"[^{re.escape(c)}]"
        if ch == "?":
            return ".", i + 1, "(?!)"
        if ch == "{":
            j = i + 1
            parts: list[str] = []
            alts: list[str] = []  # sub-expressions [...], {...}, (...) among the choices
            while j < n and src[j] != "}":
                if src[j] in "[{(":
                    text, j, _neg = element(j)
                    alts.append(text)
                elif src[j] == "%" and j + 1 < n:
                    m = src[j + 1]
                    if m == "a":
                        parts.append(_class_of("lower") + _class_of("upper"))
                    elif m in "dxshrnHcCp":
                        parts.append(_meta_class(m))
                    else:
                        parts.append(re.escape(m))
                    j += 2
                elif j + 2 < n and src[j + 1] == "-" and src[j + 2] != "}":
                    parts.append(f"{re.escape(src[j])}-{re.escape(src[j + 2])}")
                    j += 3
                elif src[j] == "\\" and j + 1 < n:
                    parts.append(re.escape(src[j + 1]))
                    j += 2
                else:
                    parts.append(re.escape(src[j]))
                    j += 1
            if j >= n:
                raise LispEError("rgx: '{' without its '}'")
            inner = "".join(parts)
            if not inner and not alts:
                raise LispEError("rgx: empty '{}' choice")
            if alts:  # LispE's automaton: each sequence or character is one branch of the choice
                choice = "(?:" + "|".join(alts + ([f"[{inner}]"] if inner else [])) + ")"
                return choice, j + 1, f"(?:(?!{choice}).)"
            return f"[{inner}]", j + 1, f"[^{inner}]"
        if ch == "(":
            depth, j = 1, i + 1
            while j < n and depth:
                if src[j] in "\\%":
                    j += 2
                    continue
                depth += src[j] == "("
                depth -= src[j] == ")"
                j += 1
            if depth:
                raise LispEError("rgx: '(' without its ')'")
            if j - 1 == i + 1:
                raise LispEError("rgx: empty '()' optional part")
            text = f"(?:{translate(src[i + 1:j - 1])})?"
            return text, j, text
        if ch == "[":
            depth, j = 1, i + 1
            while j < n and depth:
                if src[j] in "\\%":
                    j += 2
                    continue
                depth += src[j] == "["
                depth -= src[j] == "]"
                j += 1
            if depth:
                raise LispEError("rgx: '[' without its ']'")
            text = f"(?:{translate(src[i + 1:j - 1])})"
            return text, j, f"(?:(?!{text}).)"
        if ch in "^$":
            return ch, i + 1, ch
        return re.escape(ch), i + 1, f"[^{re.escape(ch)}]"

    while i < n:
        if src[i] == "~":
            if i + 1 >= n:
                raise LispEError("rgx: '~' at the end of the expression")
            _text, i, negated = element(i + 1)
            out.append(negated)
        else:
            text, i, _neg = element(i)
            out.append(text)
        if i < n and src[i] in "+*":
            out.append(src[i])
            i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def _compile(source: str, kind: str) -> Regex:
    if len(source) > MAX_PATTERN:
        raise LispEError(f"{kind}: expression too long ({len(source)} characters, limit {MAX_PATTERN})")
    text = translate(source) if kind == "rgx" else source
    try:
        return Regex(source, re.compile(text, re.DOTALL), kind)
    except re.error as exc:
        raise LispEError(f"{kind}: invalid regular expression '{source}': {exc.msg}") from None


def _regex(name: str, kind: str, exp: Any) -> Regex:
    if isinstance(exp, Regex):
        return exp
    if isinstance(exp, str):
        return _compile(exp, kind)
    raise fail(name, "a regular expression or a string", exp)


def _text(name: str, s: Any) -> str:
    return expect_str(name, s)


def _define(kind: str) -> None:
    def make(exp: Any, s: Any = None) -> Any:
        r = _regex(kind, kind, expect_str(kind, exp, "an expression string") if not isinstance(exp, Regex) else exp)
        if s is None:
            return r
        return True if r.compiled.fullmatch(_text(kind, s)) else None
    make.__doc__ = (f"({kind} \"{'%d+%C' if kind == 'rgx' else '[0-9]+[A-Z]'}\") compiles a regular expression; "
                    f"({kind} exp str) is true when str matches it whole.")
    builtin(kind, group=G, min_args=1, max_args=2)(make)

    def match(exp: Any, s: Any) -> Any:
        return True if _regex(f"{kind}_match", kind, exp).compiled.fullmatch(_text(f"{kind}_match", s)) else None
    match.__doc__ = f"({kind}_match r \"123A\") is true when the whole string matches the expression."
    builtin(f"{kind}_match", group=G)(match)

    def find(exp: Any, s: Any, pos: Any = 0) -> Any:
        p = expect_int(f"{kind}_find", pos, "an integer position")
        m = _regex(f"{kind}_find", kind, exp).compiled.search(_text(f"{kind}_find", s), max(p, 0))
        return m.group(0) if m else ""
    find.__doc__ = f"({kind}_find r \"a test: 123A\") returns the first matching substring (from a position): \"123A\"."
    builtin(f"{kind}_find", group=G, min_args=2, max_args=3)(find)

    def findall(exp: Any, s: Any, pos: Any = 0) -> Any:
        p = expect_int(f"{kind}_findall", pos, "an integer position")
        r = _regex(f"{kind}_findall", kind, exp).compiled
        return Strings(m.group(0) for m in r.finditer(_text(f"{kind}_findall", s), max(p, 0)))
    findall.__doc__ = f"({kind}_findall r \"12A and 45T\") lists every matching substring: (\"12A\" \"45T\")."
    builtin(f"{kind}_findall", group=G, min_args=2, max_args=3)(findall)

    def find_i(exp: Any, s: Any, pos: Any = 0) -> Any:
        p = expect_int(f"{kind}_find_i", pos, "an integer position")
        m = _regex(f"{kind}_find_i", kind, exp).compiled.search(_text(f"{kind}_find_i", s), max(p, 0))
        return Integers([m.start(), m.end()]) if m else None
    find_i.__doc__ = f"({kind}_find_i r \"a 12A\") gives the start and end positions of the first match: (2 5); nil if none."
    builtin(f"{kind}_find_i", group=G, min_args=2, max_args=3)(find_i)

    def findall_i(exp: Any, s: Any, pos: Any = 0) -> Any:
        p = expect_int(f"{kind}_findall_i", pos, "an integer position")
        r = _regex(f"{kind}_findall_i", kind, exp).compiled
        return [Integers([m.start(), m.end()]) for m in r.finditer(_text(f"{kind}_findall_i", s), max(p, 0))]
    findall_i.__doc__ = f"({kind}_findall_i r \"1A 2B\") lists the (start end) positions of every match: ((0 2) (3 5))."
    builtin(f"{kind}_findall_i", group=G, min_args=2, max_args=3)(findall_i)

    def replace(exp: Any, s: Any, rep: Any) -> str:
        r = _regex(f"{kind}_replace", kind, exp).compiled
        new = expect_str(f"{kind}_replace", rep, "a replacement string")
        return r.sub(lambda _m: new, _text(f"{kind}_replace", s))
    replace.__doc__ = f"({kind}_replace r \"a1b22\" \"#\") replaces every match with a string (taken literally)."
    builtin(f"{kind}_replace", group=G)(replace)

    def split(exp: Any, s: Any) -> Any:
        r = _regex(f"{kind}_split", kind, exp).compiled
        return Strings(x for x in r.split(_text(f"{kind}_split", s)) if x)
    split.__doc__ = f"({kind}_split r \"a1b22c\") splits a string where the expression matches, dropping empty pieces."
    builtin(f"{kind}_split", group=G)(split)


_define("rgx")
_define("prgx")
