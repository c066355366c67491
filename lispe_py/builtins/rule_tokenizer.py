"""LispE's rule-driven string tokenizer with its default rules: tokenizer_rules, tokenize_rules.

`(tokenizer_rules)` gives a tokenizer object; `(tokenize_rules tok text)` splits code-like text
with it. The default rules of LispE's string library cut text the way a programming language's
lexer does (this is what upstream's python_interpreter example uses):

- runs of blanks are tokens of their own (a run of spaces, of tabs, of newlines); `\\r` is dropped;
- `// ...` up to the end of the line is a comment and is dropped;
- strings keep their quotes: `"..."` (backslash escapes stay as written, no newline inside),
  `'...'`, `\"\"\"...\"\"\"`; `r"..."`/`u"..."` (and with `'`) drop their prefix letter;
- numbers: digits with an optional decimal part and exponent (no sign), `0x` hexadecimal;
- words: letters (any script), digits and `_`;
- operators: `== ^^= ^^ **= ** *= += -= %= |= &= <= >= ..` as one token, any other operator
  or punctuation character alone; `≠ ∨ ∧ ÷ × ² ³ ¬` alone;
- anything else runs up to the next blank, punctuation or operator.

`(tokenize_rules tok text true)` also gives each token's kind as an integer, in a list
(tokens kinds): 20/21/22 blanks (spaces, tabs, newlines), 0 operators and fixed punctuation,
1 "strings", 2 'strings', 3 numbers, 4 words, 6/7 u-strings, 8 \"\"\"strings\"\"\", 9/10 r-strings,
30 other punctuation, 40 the mathematical operators.

Custom rules (LispE's `get_tokenizer_rules` / `set_tokenizer_rules`, a rule language with its own
compiler) are not provided: calling them is a clear error (see docs/builtins-library.md).
"""
from __future__ import annotations

from typing import Any

from ..errors import LispEError
from ..values import Integers, Strings, register_type, truthy
from ._common import expect_str, fail
from .registry import builtin

G = "strings"


class RuleTokenizer:
    """A tokenizer with LispE's default rules (the only rule set provided)."""

    __slots__ = ()


register_type(RuleTokenizer, "tokenizer_rules_", lambda t: "<tokenizer rules>")

_OPERATORS_2 = ("^^=", "**=", "==", "^^", "**", "*=", "+=", "-=", "%=", "|=", "&=", "<=", ">=", "..")
_FIXED = set(";,~!()[]{}.:$#?\\=^*+-%|&<>/")
_MATH = set("≠∨∧÷×²³¬")
_HEX = set("0123456789abcdefABCDEF")


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _is_punct(ch: str) -> bool:
    return not ch.isalnum() and not ch.isspace() and ch != "_" and (ch.isascii() or _category_p(ch))


def _category_p(ch: str) -> bool:
    import unicodedata

    return unicodedata.category(ch)[0] in "PS"


def _string_end(s: str, i: int, quote: str) -> int:
    """Index just past the closing quote of a string opening at s[i], or -1 (no newline inside)."""
    j = i + 1
    n = len(s)
    while j < n:
        c = s[j]
        if c == "\\" and j + 1 < n and s[j + 1] not in "\r\n":
            j += 2
            continue
        if c in "\r\n":
            return -1
        if c == quote:
            return j + 1
        j += 1
    return -1


def _number_end(s: str, i: int) -> int:
    n = len(s)
    if s.startswith(("0x", "0X"), i) and i + 2 < n and s[i + 2] in _HEX:
        j = i + 2
        while j < n and s[j] in _HEX:
            j += 1
        if j + 1 < n and s[j] == "." and s[j + 1] in _HEX:
            j += 1
            while j < n and s[j] in _HEX:
                j += 1
        return _exponent(s, j, "pP")
    j = i
    while j < n and s[j].isdigit() and s[j].isascii():
        j += 1
    if j + 1 < n and s[j] == "." and s[j + 1].isdigit():
        j += 1
        while j < n and s[j].isdigit():
            j += 1
    return _exponent(s, j, "eE")


def _exponent(s: str, j: int, letters: str) -> int:
    n = len(s)
    if j < n and s[j] in letters:
        k = j + 1
        if k < n and s[k] in "+-":
            k += 1
        if k < n and s[k].isdigit():
            while k < n and s[k].isdigit():
                k += 1
            return k
    return j


def rule_tokenize(s: str) -> tuple[list[str], list[int]]:
    """Tokens of `s` under the default rules, with their kinds (see the module docstring)."""
    out: list[str] = []
    kinds: list[int] = []
    i, n = 0, len(s)

    def add(tok: str, kind: int) -> None:
        out.append(tok)
        kinds.append(kind)

    while i < n:
        c = s[i]
        if c in " \t\n":
            j = i
            while j < n and s[j] == c:
                j += 1
            add(s[i:j], {" ": 20, "\t": 21, "\n": 22}[c])
            i = j
            continue
        if c == "\r":
            i += 1
            continue
        if s.startswith("//", i):
            j = i
            while j < n and s[j] not in "\r\n":
                j += 1
            i = j
            continue
        if s.startswith('"""', i):
            j = s.find('"""', i + 3)
            if j >= 0:
                add(s[i:j + 3], 8)
                i = j + 3
                continue
        if c in "\"'":
            j = _string_end(s, i, c)
            if j > 0:
                add(s[i:j], 1 if c == '"' else 2)
                i = j
                continue
        if c in "ru" and i + 1 < n and s[i + 1] in "\"'":
            j = _string_end(s, i + 1, s[i + 1])
            if j > 0:
                add(s[i + 1:j], {("r", '"'): 9, ("r", "'"): 10, ("u", '"'): 6, ("u", "'"): 7}[c, s[i + 1]])
                i = j
                continue
        if c.isdigit() and c.isascii():
            j = _number_end(s, i)
            add(s[i:j], 3)
            i = j
            continue
        if _is_word(c):
            j = i
            while j < n and _is_word(s[j]):
                j += 1
            add(s[i:j], 4)
            i = j
            continue
        op = next((o for o in _OPERATORS_2 if s.startswith(o, i)), None)
        if op is not None:
            add(op, 0)
            i += len(op)
            continue
        if c in _FIXED:
            add(c, 0)
            i += 1
            continue
        if c in _MATH:
            add(c, 40)
            i += 1
            continue
        if c == "\u00a0":
            i += 1
            continue
        if _is_punct(c):
            add(c, 30)
            i += 1
            continue
        j = i
        while j < n and not (s[j].isspace() or s[j] in _FIXED or s[j] in _MATH or _is_punct(s[j])):
            j += 1
        add(s[i:max(j, i + 1)], 4)
        i = max(j, i + 1)
    return out, kinds


@builtin("tokenizer_rules", "tokenizer", group=G)
def tokenizer_rules() -> RuleTokenizer:
    """(tokenizer_rules) gives a tokenizer with LispE's default rules, for tokenize_rules.

    (tokenize_rules (tokenizer_rules) "x += 2.5") is ("x" " " "+=" " " "2.5"): blanks are tokens.
    """
    return RuleTokenizer()


@builtin("tokenize_rules", group=G, min_args=2, max_args=3)
def tokenize_rules(tok: Any, text: Any, types: Any = None) -> Any:
    """(tokenize_rules tok "f(a, 'b')") splits code-like text with a tokenizer_rules tokenizer.

    Gives ("f" "(" "a" "," " " "'b'" ")"): strings keep their quotes, blanks are tokens, `//`
    comments are dropped. With a third argument true, gives (tokens kinds), kinds as integers.
    """
    if not isinstance(tok, RuleTokenizer):
        raise fail("tokenize_rules", "a tokenizer made by (tokenizer_rules)", tok)
    tokens, kinds = rule_tokenize(expect_str("tokenize_rules", text))
    if truthy(types):
        return [Strings(tokens), Integers(kinds)]
    return Strings(tokens)


def _no_custom_rules(name: str) -> Any:
    def refuse(*_args: Any) -> Any:
        raise LispEError(f"{name}: custom tokenizer rules are not supported (LispE's rule language "
                         "and its compiler are not provided); (tokenizer_rules) gives the default rules")
    refuse.__name__ = name
    refuse.__doc__ = (f"({name} tok ...) is not supported: custom rules need LispE's rule compiler.\n\n"
                      "(tokenizer_rules) and tokenize_rules give the default rules.")
    return refuse


for _name in ("get_tokenizer_rules", "set_tokenizer_rules"):
    builtin(_name, group=G, min_args=0, max_args=None)(_no_custom_rules(_name))
