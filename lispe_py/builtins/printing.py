"""Output builtins: `print`, `println`, `printerr`, `printerrln`. They return VOID (never echoed)."""
from __future__ import annotations

import sys
from typing import Any

from ..printer import to_string
from ..values import VOID
from .registry import builtin


@builtin("print", group="io")
def print_(*args: Any) -> Any:
    """(print "a" 1) writes the printed forms with no separator and no newline."""
    sys.stdout.write("".join(to_string(a) for a in args))
    return VOID


@builtin("println", group="io")
def println(*args: Any) -> Any:
    """(println "a" 1) writes the printed forms separated by spaces, then a newline."""
    sys.stdout.write(" ".join(to_string(a) for a in args) + "\n")
    return VOID


@builtin("printerr", group="io")
def printerr(*args: Any) -> Any:
    """(printerr "warning") writes to stderr like print."""
    sys.stderr.write("".join(to_string(a) for a in args))
    return VOID


@builtin("printerrln", group="io")
def printerrln(*args: Any) -> Any:
    """(printerrln "warning:" 3) writes to stderr like println."""
    sys.stderr.write(" ".join(to_string(a) for a in args) + "\n")
    return VOID
