"""The one error type users see: `LispEError`, with the position of the form that failed."""
from __future__ import annotations


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
        out = [f"Error: {self.message}"]
        if self.line is not None:
            where = f"{self.filename or '<string>'}:{self.line}:{self.column}"
            out.append(f"  at {where}")
            if self.source_line is not None:
                out.append("  " + self.source_line.rstrip("\n"))
                out.append("  " + " " * max((self.column or 1) - 1, 0) + "^")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


class LispEThrow(LispEError):
    """An error raised by `(throw ...)`: caught by `catch`/`maybe` like any other."""
