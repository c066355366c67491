"""The interactive LispE REPL (`lispe` with no arguments on a terminal, or `Interpreter().repl()`).

prompt_toolkit does the line editing; `lexer` highlights LispE with the builtin registry's names,
`completer` completes builtins and definitions, `console` runs the read-eval-print loop.
"""
from __future__ import annotations

from .console import Repl, default_history_path, run_repl

__all__ = ["Repl", "default_history_path", "run_repl"]
