"""A Pygments lexer for LispE, and the bracket scanning the REPL builds on it.

The lexical rules are `grammar/lispe.lark`'s: `;` line comments, `;; ... ;;` block comments, `#!` up
to the end of a line, strings `"..."` (escapes, one line), backquoted and triple-quoted strings
(multi-line, raw), numbers (`12 -12 +3 1.5 2e-4 0xFF 0b1011`), `'` for quote, `( ) [ ] { } :`, and
symbols (any run of non-delimiters; a `.` standing alone is the composition operator). Symbols are
classified by name: special forms as keywords, builtins as builtins, the name after
`defun`/`defmacro`/`defpat`/`dethread` as a function name.

`lexer_class(builtins, special_forms)` makes a lexer class whose name sets are read on every
highlighting pass, so builtins that appear after `(use 'lispe_torch)` are coloured at once.
"""
from __future__ import annotations

import re
from typing import Callable, Collection, Iterator

from pygments.lexer import RegexLexer, bygroups
from pygments.token import (Comment, Keyword, Name, Number, Operator, Punctuation, String, Text,
                            Whitespace, _TokenType)

#: Forms the compiler handles itself (arguments not evaluated first), per `language.md`'s control
#: group: the default of a lexer used on its own (the REPL passes the compiler's own table).
SPECIAL_FORMS: frozenset[str] = frozenset(
    "quote if ife cond check ncheck while loop loopcount dotimes block and or return break switch "
    "select maybe catch setq setg setqv let defun defmacro defpat lambda λ \\ use self".split())

CONSTANTS: frozenset[str] = frozenset({"true", "nil", "false", "_"})

DEFINERS: frozenset[str] = frozenset({"defun", "defmacro", "defpat", "dethread"})

#: Characters that end a symbol, as in `grammar/lispe.lark` (`:` separates dictionary pairs).
DELIMITERS = "\\s()\\[\\]{}\"'`;:"
SYMBOL_RE = f"[^{DELIMITERS}]+"
_NUMBER_END = f"(?=[{DELIMITERS}]|\\Z)"

#: `(` and `[` are the same bracket for the reader: either closer ends either opener.
OPENERS = {"(": ")]", "[": ")]", "{": "}"}
CLOSERS = frozenset(")]}")


class LispELexer(RegexLexer):
    """LispE source: comments, strings, numbers, brackets and registry-classified symbols."""

    name = "LispE"
    aliases = ["lispe"]
    filenames = ["*.lisp", "*.lispe"]
    flags = re.MULTILINE | re.UNICODE

    #: Replaced per class by `lexer_class`; read on every call to `get_tokens_unprocessed`.
    builtin_names: Callable[[], Collection[str]] = staticmethod(lambda: frozenset())
    special_names: Callable[[], Collection[str]] = staticmethod(lambda: SPECIAL_FORMS)

    tokens = {
        "root": [
            (r"#!.*$", Comment.Hashbang),
            (r"\s+", Whitespace),
            (r";;[\s\S]*?;;", Comment.Multiline),  # an unclosed `;;` is a line comment (below)
            (r";.*$", Comment.Single),
            (r'"""[\s\S]*?"""', String.Heredoc),
            (r'"""[\s\S]*', String.Heredoc),  # unterminated long string
            (r"`[^`]*`?", String.Backtick),
            (r'"', String.Double, "string"),
            (r"[-+]?0[xX][0-9a-fA-F]+" + _NUMBER_END, Number.Hex),
            (r"[-+]?0[bB][01]+" + _NUMBER_END, Number.Bin),
            (r"[-+]?(\d+\.\d*|\.\d+|\d+)[eE][-+]?\d+" + _NUMBER_END, Number.Float),
            (r"[-+]?(\d+\.\d*|\.\d+)" + _NUMBER_END, Number.Float),
            (r"[-+]?\d+" + _NUMBER_END, Number.Integer),
            (r"'", Operator),
            (r"[()\[\]{}]", Punctuation),
            (r":", Punctuation),
            (r"(\*[123e])" + _NUMBER_END, bygroups(Name.Variable.Magic)),
            (r"\." + _NUMBER_END, Operator),  # `(f . g x)`: composition
            (SYMBOL_RE, Name),
        ],
        "string": [
            (r'\\.', String.Escape),
            (r'[^"\\\n]+', String.Double),
            (r'"', String.Double, "#pop"),
            (r"\n", Text, "#pop"),  # a "..." string cannot cross a line break
            (r"\\$", String.Double),
        ],
    }

    def get_tokens_unprocessed(self, text: str, stack: tuple[str, ...] = ("root",)
                               ) -> Iterator[tuple[int, _TokenType, str]]:
        """Classify plain symbols: special forms, constants, builtins, defined function names."""
        builtins = self.builtin_names()
        specials = self.special_names()
        after_definer = False
        for index, token, value in super().get_tokens_unprocessed(text, stack):
            if token is Name:
                if after_definer:
                    token = Name.Function
                elif value in CONSTANTS:
                    token = Keyword.Constant
                elif value in specials:
                    token = Keyword
                elif value in builtins:
                    token = Name.Builtin
                after_definer = value in DEFINERS
            elif token not in (Whitespace, Text) and token not in Comment:
                after_definer = False
            yield index, token, value


def lexer_class(builtin_names: Callable[[], Collection[str]],
                special_names: Callable[[], Collection[str]] = lambda: SPECIAL_FORMS,
                ) -> type[LispELexer]:
    """A `LispELexer` subclass reading its name sets from these callables at each pass."""
    return type("BoundLispELexer", (LispELexer,), {
        "builtin_names": staticmethod(builtin_names),
        "special_names": staticmethod(special_names),
    })


_PLAIN = LispELexer(stripnl=False, stripall=False, ensurenl=False)


def unclosed_brackets(text: str) -> list[tuple[int, str]]:
    """Offsets and characters of the brackets still open at the end of `text`.

    Brackets inside strings and comments do not count; a closer that matches nothing is ignored
    (the reader reports it when the form is evaluated).
    """
    stack: list[tuple[int, str]] = []
    for index, token, value in _PLAIN.get_tokens_unprocessed(text):
        if token is Punctuation:
            if value in OPENERS:
                stack.append((index, value))
            elif value in CLOSERS and stack and value in OPENERS[stack[-1][1]]:
                stack.pop()
    return stack


def in_string_or_comment(text: str, offset: int) -> bool:
    """True when the cursor at `offset` sits inside a string or a comment of `text`."""
    in_double = False
    last: tuple[_TokenType, str] | None = None
    for _index, token, value in _PLAIN.get_tokens_unprocessed(text[:offset]):
        if token is String.Double and value == '"':
            in_double = not in_double
        elif token is Text and value == "\n":
            in_double = False
        last = (token, value)
    if in_double or (last is not None and last[0] is Comment.Single):
        return True
    return in_long_string(text[:offset])


def in_long_string(text: str) -> bool:
    """True when `text` ends inside an unfinished long string (triple-quoted or backquoted)."""
    last = None
    for _index, token, value in _PLAIN.get_tokens_unprocessed(text):
        last = (token, value)
    if last is None:
        return False
    token, value = last
    if token is String.Heredoc:
        return len(value) < 6 or not value.endswith('"""')
    if token is String.Backtick:
        return len(value) < 2 or not value.endswith("`")
    return False


def indentation(text: str) -> str:
    """Indentation for a new line after `text`: two columns past the innermost open bracket
    (none inside a long string, whose content it would change)."""
    open_ = unclosed_brackets(text)
    if not open_ or in_long_string(text):
        return ""
    index = open_[-1][0]
    line_start = text.rfind("\n", 0, index) + 1
    return " " * (index - line_start + 2)


def innermost_head(text: str) -> str | None:
    """The symbol heading the innermost open form of `text` (`(map (lambda` → `lambda`)."""
    open_ = unclosed_brackets(text)
    if not open_:
        return None
    index, char = open_[-1]
    if char != "(":
        return None
    match = re.match(r"\s*(" + SYMBOL_RE + ")", text[index + 1:])
    return match.group(1) if match else None
