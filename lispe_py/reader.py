"""Read LispE source text into Lisp data, keeping the file, line and column of every list form.

    forms = read("(println 1) (+ 2 3)", "demo.lisp")   # [Form, Form]
    forms[0].line, forms[0].column                      # 1, 1

The grammar is `grammar/lispe.lark`, parsed by Lark LALR with an inline transformer: each reduction
builds Lisp data directly on Lark's explicit parse stack, so 10,000-deep nesting needs no recursion.
Atoms become values of `lispe_py.values` (int, float, str, Symbol); a list becomes a `Form` (a list
that also knows where it was written); `{k:v}` becomes a `DictForm`.
"""
from __future__ import annotations

import threading
from typing import Any

from .errors import LispEError
from .values import Symbol


class Source:
    """One piece of source text: its name (file path or "<string>") and its lines, for error carets."""

    __slots__ = ("name", "text", "_lines")

    def __init__(self, name: str, text: str):
        self.name = name
        self.text = text
        self._lines: list[str] | None = None

    def line(self, n: int | None) -> str | None:
        """The text of line `n` (1-based), or None."""
        if n is None:
            return None
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines[n - 1] if 0 < n <= len(self._lines) else None


class Form(list):
    """A list read from source: a plain Lisp list that also carries its source position."""

    __slots__ = ("source", "line", "column")

    def __init__(self, items: Any = (), source: Source | None = None, line: int | None = None,
                 column: int | None = None):
        super().__init__(items)
        self.source = source
        self.line = line
        self.column = column


class DictForm:
    """A `{k:v ...}` literal: key and value forms, evaluated when the literal is."""

    __slots__ = ("pairs", "source", "line", "column")

    def __init__(self, pairs: list[tuple[Any, Any]], source: Source | None, line: int, column: int):
        self.pairs = pairs
        self.source = source
        self.line = line
        self.column = column

    def __repr__(self) -> str:
        return "{" + " ".join(f"{k!r}:{v!r}" for k, v in self.pairs) + "}"


def position_error(message: str, source: Source, line: int | None, column: int | None) -> LispEError:
    """A LispEError located at line/column of `source`."""
    return LispEError(message, source.name, line, column, source.line(line))


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unescape(body: str) -> str:
    if "\\" not in body:
        return body
    out = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "\\" and i + 1 < n:
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _number(text: str) -> int | float:
    body = text.lstrip("+-")
    low = body[:2].lower()
    if low == "0x":
        return int(text, 16)
    if low == "0b":
        return int(text, 2)
    if "." in body or "e" in body or "E" in body:
        return float(text)
    from .printer import str_to_int  # any number of digits, without the process-wide int/str limit

    return str_to_int(text)


_parser = None
_parser_lock = threading.Lock()
_tls = threading.local()


def _get_parser():
    global _parser, _parser_closing
    if _parser is None:
        with _parser_lock:
            if _parser is None:
                _import_lark_without_regex()
                from lark import Lark, Transformer

                from .resources import grammar_path

                class _Build(Transformer):
                    """Inline transformer: turns each reduction into Lisp data."""

                    def start(self, items):
                        return items

                    def list(self, items):
                        tok = items[0]
                        return Form(items[1:-1], _tls.source, tok.line, tok.column)

                    def quote(self, items):
                        tok = items[0]
                        item = items[1]
                        if getattr(item, "type", None) == "COLON":
                            item = Symbol(":")
                        return Form((_QUOTE, item), _tls.source, tok.line, tok.column)

                    def dict(self, items):
                        tok = items[0]
                        return DictForm(items[1:-1], _tls.source, tok.line, tok.column)

                    def setlit(self, items):
                        # {1 2 3} is a set (LispE's set literal): a set of integers, numbers or
                        # strings when every element written is one, else a set of any values
                        tok = items[0]
                        elems = items[1:-1]
                        kind = "set"
                        if elems and all(e.__class__ is int for e in elems):
                            kind = "seti"
                        elif elems and all(e.__class__ in (int, float) for e in elems):
                            kind = "setn"
                        elif elems and all(e.__class__ is str for e in elems):
                            kind = "sets"
                        return Form((Symbol(kind), *elems), _tls.source, tok.line, tok.column)

                    def pair(self, items):
                        return (items[0], items[2])

                    def number(self, items):
                        return _number(str(items[0]))

                    def string(self, items):
                        tok = items[0]
                        s = str(tok)
                        if tok.type == "STRING":
                            return _unescape(s[1:-1])
                        if tok.type == "LONGSTRING":
                            return s[3:-3]
                        return s[1:-1]

                    def symbol(self, items):
                        tok = items[0]
                        if "\x00" in tok:  # binary data, not a name (a string may hold one)
                            raise position_error("a NUL byte (\\0) outside a string", _tls.source,
                                                 tok.line, tok.column + tok.index("\x00"))
                        text = str(tok)
                        if text[0] == "#":
                            _check_hash(text, tok, _tls.source)
                        return Symbol(text)

                text = grammar_path().read_text(encoding="utf-8")
                _parser = Lark(text, parser="lalr", transformer=_Build(), maybe_placeholders=False,
                               cache=_cache_file())
                _parser_closing = lambda: Lark(text, parser="lalr", transformer=_Build(),  # noqa: E731
                                               maybe_placeholders=False, postlex=_CloseAll(),
                                               cache=_cache_file())
    return _parser


_parser_closing: Any = None  # after _get_parser: a function building the parser of _CloseAll


def _get_closing_parser():
    """The parser for texts holding a `]` (built on first use: most texts have none)."""
    global _parser_closing
    _get_parser()
    if not hasattr(_parser_closing, "parse"):
        with _parser_lock:
            if not hasattr(_parser_closing, "parse"):
                _parser_closing = _parser_closing()
    return _parser_closing


class _CloseAll:
    """A `]` with no `[` left open closes every parenthesis still open, as in LispE.

    LispE's segmenter (LispE::segmenting) counts the `[` still open: a `]` closes one level while
    that count is not zero (`[` and `]` are then plain parentheses); otherwise it closes all the
    parentheses of the current top-level form, so `(defun f (x) (+ x 1]` is a whole definition.
    Braces are not closed by it. A `]` with nothing open is skipped, as LispE skips it.
    """

    always_accept = ()

    def process(self, stream):
        parens = 0
        brackets = 0
        for tok in stream:
            kind = tok.type
            if kind == "LPAR":
                parens += 1
                if tok == "[":
                    brackets += 1
            elif kind == "RPAR":
                if tok == "]":
                    if not brackets:
                        for _ in range(parens):
                            yield tok
                        parens = 0
                        continue
                    brackets -= 1
                parens -= 1
            yield tok


def _import_lark_without_regex() -> None:
    """Import lark without its optional `regex` and `interegular` modules (~100 ms of startup).

    We never ask lark for `regex=True`, and `interegular` only checks terminal collisions while
    building the grammar, which the cached grammar analysis skips anyway.
    """
    import sys

    if "lark" in sys.modules:
        return
    blocked = [m for m in ("regex", "interegular") if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # type: ignore[assignment]  # makes `import m` fail inside lark
    try:
        import lark  # noqa: F401
    finally:
        for m in blocked:
            del sys.modules[m]


def _cache_file() -> str | bool:
    """A per-user cache of the grammar analysis (Lark builds the LALR tables ~3x faster from it)."""
    import os
    import tempfile

    try:
        folder = os.path.join(tempfile.gettempdir(), f"lispe_py-{os.getuid() if hasattr(os, 'getuid') else 'u'}")
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, "lark-grammar.cache")
    except OSError:
        return False


_QUOTE = Symbol("quote")


def _check_hash(text: str, tok: Any, source: Source | None) -> None:
    """`#` is no comment in LispE: a lone `#`, or a `#word` opening its line, is a legacy comment.

    `#word` elsewhere stays an atom, as in LispE; `#!` lines never get here (the grammar skips them).
    """
    if source is None:
        return
    if text != "#":
        line = source.line(tok.line) or ""
        if line[:tok.column - 1].strip():
            return
    raise position_error("'#' does not start a comment in LispE: write comments with ';' "
                         "(or ';; ... ;;' around several lines)", source, tok.line, tok.column)


_DOT = Symbol(".")


def compose_dots(form: Any) -> Any:
    """`(f a . g b . h c)` as LispE composes it: `(f a (g b (h c)))`; None when `form` has no `.`.

    A `.` after the first element splits the list into segments; each segment is a call that gets
    the value of the segments after it as its last argument. A `.` heading the list is not a
    composition (it is LispE's inner product operator). Raises LispEError on `. .` or a final `.`.
    """
    dots = 0
    for item in form:  # identity, not `in`: data built at run time may hold values with odd __eq__
        if item is _DOT:
            dots += 1
    if dots == 0 or (dots == 1 and form[0] is _DOT):
        return None
    segments: list[list] = [[]]
    for k, item in enumerate(form):
        if item is _DOT and k > 0:
            if not segments[-1]:
                raise LispEError("two '.' in a row: nothing to compose")
            segments.append([])
        else:
            segments[-1].append(item)
    if not segments[-1]:
        raise LispEError("a '.' ends the list: nothing to compose")
    src = getattr(form, "source", None)
    line, column = getattr(form, "line", None), getattr(form, "column", None)
    inner = Form(segments[-1], src, line, column)
    for seg in reversed(segments[:-1]):
        inner = Form([*seg, inner], src, line, column)
    return inner


def _strip_shebang(text: str) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    if text.startswith("#!"):
        nl = text.find("\n")
        text = "" if nl < 0 else text[nl:]
    return text


def read(text: str, filename: str = "<string>") -> list[Any]:
    """Parse a whole source text into a list of top-level forms; raise LispEError on bad syntax."""
    source = Source(filename, text)
    body = _strip_shebang(text)
    parser = _get_parser()
    if "]" in body:  # a `]` may close several parentheses (_CloseAll); other texts skip that pass
        parser = _get_closing_parser()
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

    prev = getattr(_tls, "source", None)
    _tls.source = source
    try:
        return parser.parse(body)
    except UnexpectedCharacters as exc:
        raise _char_error(exc, body, source) from None
    except UnexpectedToken as exc:
        raise _token_error(exc, body, source) from None
    except UnexpectedInput:  # UnexpectedEOF
        raise _unbalanced(body, source) from None
    finally:
        _tls.source = prev


def atom_position(form: Any, name: str) -> tuple[int, int] | None:
    """(line, column) of the first symbol `name` in the source text of `form` (a list or dictionary
    read from source), quoted ones left out; None when not found or `form` has no position.

    Only errors call it (an unbound variable's caret points at the atom itself): the text of the form
    is lexed again from its opening bracket, so reading keeps no position per symbol.
    """
    source, line, column = getattr(form, "source", None), getattr(form, "line", None), getattr(form, "column", None)
    if source is None or line is None or column is None:
        return None
    first = source.line(line)
    if first is None:
        return None
    rest = source._lines[line:] if source._lines is not None else []
    text = "\n".join([first[column - 1:], *rest])
    depth, quoted = 0, False
    try:
        for tok in _get_parser().lex(text):
            kind = tok.type
            if kind in ("LPAR", "LBRACE"):
                depth += 1
            elif kind in ("RPAR", "RBRACE"):
                depth -= 1
                if depth <= 0:
                    return None
            elif kind in ("SYMBOL", "OPPREFIX") and str(tok) == name and not quoted:
                return line + tok.line - 1, tok.column + (column - 1 if tok.line == 1 else 0)
            quoted = kind == "QUOTE"
    except Exception:  # a lexing error further on: no better position than the form's
        return None
    return None


def offset_error(message: str, source: Source, text: str, offset: int) -> LispEError:
    """A LispEError at character `offset` of `text` (line and column counted from 1)."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return position_error(message, source, line, column)


def decode_source(data: bytes, filename: str) -> str:
    """A source file's bytes as text (UTF-8, a leading BOM allowed); invalid UTF-8 is a LispEError
    at the line and column of the first bad byte (the column counts the characters before it)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[:exc.start].decode("utf-8")
        bad = data[exc.start:exc.start + 1].hex()
        source = Source(filename, good + data[exc.start:].split(b"\n", 1)[0].decode("utf-8", "replace"))
        raise offset_error(f"invalid UTF-8 (byte 0x{bad} at byte offset {exc.start})",
                           source, good, len(good)) from None


def _char_error(exc, body: str, source: Source) -> LispEError:
    pos = exc.pos_in_stream
    ch = body[pos] if pos < len(body) else ""
    if ch in "\"`":
        if body.startswith('"""', max(pos - 2, 0)) and pos >= 2 and body[pos - 2:pos + 1] == '"""':
            return position_error("missing end of string", source, exc.line, exc.column - 2)
        return position_error("missing end of string", source, exc.line, exc.column)
    return position_error(f"unexpected character {ch!r}", source, exc.line, exc.column)


#: The hint for JSON-style commas in a dictionary literal (here and for an atom like `1,` in one).
DICT_COMMAS_HINT = "LispE dictionaries separate their pairs with spaces, not commas: {\"a\":1 \"b\":2}"


def _token_error(exc, body: str, source: Source) -> LispEError:
    tok = exc.token
    if tok.type == "$END":
        return _unbalanced(body, source)
    if tok.type == "RBRACE" and "COLON" in exc.expected:
        # {"a":1 "b"}: pairs and a lone element mixed
        return position_error("a dictionary is written {key:value ...}, a set {v1 v2 ...}; this one "
                              "mixes both", source, tok.line, tok.column)
    if tok.type in ("RPAR", "RBRACE"):
        return position_error("parentheses do not balance", source, tok.line, tok.column)
    if tok.type == "COLON" and "COLON" not in exc.expected and "RBRACE" not in exc.expected:
        return position_error("unexpected ':'", source, tok.line, tok.column)
    if "COLON" in exc.expected or tok.type == "COLON":
        message = "a dictionary is written {key:value ...}"
        start = getattr(tok, "start_pos", None)
        if str(tok).startswith(",") or (start is not None and body[:start].rstrip().endswith(",")):
            message += f" ({DICT_COMMAS_HINT})"
        return position_error(message, source, tok.line, tok.column)
    return position_error(f"unexpected {str(tok)!r}", source, tok.line, tok.column)


def _unbalanced(body: str, source: Source) -> LispEError:
    """`parentheses do not balance`, pointing at the innermost opening bracket left unclosed."""
    stack = []
    try:
        parser = _get_closing_parser() if "]" in body else _get_parser()
        for tok in parser.lex(body):
            if tok.type in ("LPAR", "LBRACE"):
                stack.append(tok)
            elif tok.type in ("RPAR", "RBRACE") and stack:
                stack.pop()
    except Exception:  # the lexer stops on its own errors; what was seen is enough
        pass
    if stack:
        tok = stack[-1]
        return position_error("parentheses do not balance", source, tok.line, tok.column)
    lines = body.split("\n")
    return position_error("parentheses do not balance", source, len(lines), len(lines[-1]) + 1)


def read_one(text: str, filename: str = "<string>") -> Any:
    """Parse text holding one form (e.g. for `eval` of a string); several forms give a block."""
    forms = read(text, filename)
    if len(forms) == 1:
        return forms[0]
    return Form([Symbol("block"), *forms], Source(filename, text), 1, 1)


def is_complete(text: str) -> bool:
    """Whether `text` is a finished input for the REPL: brackets closed, no open long string/comment.

    An ordinary string left open at the end of a line is complete (it is an error a reader reports);
    an unexpected closing bracket is complete too, so the REPL shows the error at once.
    """
    depth = 0
    brackets = 0  # `[` still open: a `]` with none closes every parenthesis (see _CloseAll)
    i, n = 0, len(text)
    if text.startswith("#!"):
        nl = text.find("\n")
        i = n if nl < 0 else nl
    while i < n:
        c = text[i]
        if c == "#" and text.startswith("#!", i) and (i == 0 or text[i - 1] in " \t\r\n()[]{}"):
            nl = text.find("\n", i)  # `#!` to the end of the line is a comment, as in the grammar
            if nl < 0:
                break
            i = nl + 1
            continue
        if c == ";":
            if text.startswith(";;", i):
                end = text.find(";;", i + 2)
                if end >= 0:
                    i = end + 2
                    continue
            nl = text.find("\n", i)
            if nl < 0:
                break
            i = nl + 1
            continue
        if c == '"':
            if text.startswith('"""', i):
                end = text.find('"""', i + 3)
                if end < 0:
                    return False
                i = end + 3
                continue
            j = i + 1
            while j < n and text[j] != '"' and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            if j >= n or text[j] == "\n":
                return True  # an unterminated string: complete, so the reader reports it
            i = j + 1
            continue
        if c == "`":
            end = text.find("`", i + 1)
            if end < 0:
                return False
            i = end + 1
            continue
        if c in "([{":
            depth += 1
            if c == "[":
                brackets += 1
        elif c == "]" and not brackets:
            depth = 0
        elif c in ")]}":
            if c == "]":
                brackets -= 1
            depth -= 1
            if depth < 0:
                return True
        i += 1
    return depth <= 0
