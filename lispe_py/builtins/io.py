"""File and console input builtins. Every file access first asks the interpreter
(`ctx.interp.check_file_access(path, write=...)`), which refuses it in sandbox mode with a clear
LispE error, and opens the resolved path it returns. Paths are relative to the current working
directory, as in LispE (in sandbox mode: to the script folder, without `~` expansion). Files are UTF-8.
(`print`/`println`/`printerr`/`printerrln` live in printing.py.)
"""
from __future__ import annotations

import sys
from typing import Any

from ..errors import LispEError
from ._common import expect_str, show
from .registry import builtin

G = "io"


def _os_error(name: str, path: str, exc: OSError) -> LispEError:
    reason = exc.strerror or type(exc).__name__
    return LispEError(f"{name}: cannot access file '{path}': {reason}")


def _path(ctx: Any, name: str, path: Any, write: bool) -> str:
    p = expect_str(name, path, "a file name")
    if not p:
        raise LispEError(f"{name}: empty file name")
    try:
        return ctx.interp.check_file_access(p, write=write)
    except LispEError as exc:  # sandbox refusal: say which builtin was refused
        if not exc.message.startswith(name):
            raise LispEError(f"{name}: {exc.message}") from None
        raise


def read_text(ctx: Any, name: str, path: Any) -> str:
    """The content of a UTF-8 text file, after the interpreter allowed reading it."""
    p = _path(ctx, name, path, False)
    try:
        with open(p, encoding="utf-8") as fh:
            return fh.read()
    except UnicodeDecodeError:
        raise LispEError(f"{name}: file '{path}' is not UTF-8 text") from None
    except OSError as exc:
        raise _os_error(name, path, exc) from None


@builtin("fread", group=G, ctx=True)
def fread(ctx: Any, path: Any) -> str:
    """(fread "notes.txt") returns the whole content of a text file as a string."""
    return read_text(ctx, "fread", path)


def _write(ctx: Any, name: str, path: Any, content: Any, mode: str) -> Any:
    p = _path(ctx, name, path, True)
    text = content if isinstance(content, str) else show(content)
    try:
        with open(p, mode, encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise _os_error(name, path, exc) from None
    return True


@builtin("fwrite", group=G, ctx=True)
def fwrite(ctx: Any, path: Any, content: Any) -> Any:
    """(fwrite "out.txt" "hello") writes a string to a file, replacing its content; returns true."""
    return _write(ctx, "fwrite", path, content, "w")


@builtin("fappend", group=G, ctx=True)
def fappend(ctx: Any, path: Any, content: Any) -> Any:
    """(fappend "log.txt" "one more line\\n") appends a string at the end of a file; returns true."""
    return _write(ctx, "fappend", path, content, "a")


@builtin("input", group=G, min_args=0, max_args=1)
def input_(prompt: Any = None) -> Any:
    """(input "Your name: ") prints a prompt, reads a line from the standard input and returns it.

    The trailing newline is removed; at the end of the input it returns nil.
    """
    if prompt is not None:
        sys.stdout.write(prompt if isinstance(prompt, str) else show(prompt))
        sys.stdout.flush()
    line = sys.stdin.readline()
    if line == "":
        return None
    return line[:-1] if line.endswith("\n") else line
