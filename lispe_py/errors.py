"""The one error type users see: `LispEError`, with the position of the form that failed."""
from __future__ import annotations

#: At most this many characters of the source line are shown under an error, around the caret.
LINE_WINDOW = 100
#: A longer message is shown cut in the middle (`exc.message` keeps all of it).
MESSAGE_LIMIT = 600


class LispEError(Exception):
    """A LispE error: a message plus, when known, file, line and column of the offending form.

    Builtins raise it with a message only; the runtime fills in the position of the call.
    """

    def __init__(self, message: str, filename: str | None = None, line: int | None = None,
                 column: int | None = None, source_line: str | None = None):
        super().__init__(message)
        self.message = message
        self.filename = filename
        self.line = line
        self.column = column
        self.source_line = source_line

    @property
    def has_position(self) -> bool:
        return self.line is not None

    def with_position(self, filename: str | None, line: int | None, column: int | None,
                      source_line: str | None = None) -> "LispEError":
        """Fill in the position if it is not set yet (the innermost form wins). Returns self."""
        if self.line is None and line is not None:
            self.filename, self.line, self.column = filename, line, column
            self.source_line = source_line
        return self

    def format(self) -> str:
        """`Error: msg` then `  at file:line:column`, the source line and a caret under the column."""
        out = [f"Error: {shorten(self.message, MESSAGE_LIMIT)}"]
        if self.line is not None:
            where = f"{shorten(self.filename or '<string>', 300)}:{self.line}:{self.column}"
            out.append(f"  at {where}")
            if self.source_line is not None:
                text, caret = source_window(self.source_line.rstrip("\n"), max((self.column or 1) - 1, 0))
                out.append("  " + text)
                out.append("  " + " " * caret + "^")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


def shorten(text: str, limit: int) -> str:
    """`text` itself if it has at most `limit` characters, else its start and end around `...`."""
    if len(text) <= limit:
        return text
    tail = limit // 4
    return f"{text[:limit - tail - 5]} ... {text[-tail:]}"


def source_window(line: str, col: int, width: int = LINE_WINDOW) -> tuple[str, int]:
    """At most `width` characters of a source line around 0-based column `col`, with `...` where
    the line was cut, and the caret's column in the text returned."""
    if len(line) <= width:
        return line, col
    start = max(0, min(col - width // 2, len(line) - width))
    end = start + width
    text = line[start:end]
    caret = col - start
    if start > 0:
        text = "..." + text
        caret += 3
    if end < len(line):
        text += "..."
    return text, caret


class LispEThrow(LispEError):
    """An error raised by `(throw ...)`: caught by `catch`/`maybe` like any other."""
