"""Completion of builtin names, user definitions and REPL commands, with a one-line description.

The candidates come from a callable returning `{name: meta}` (the REPL builds it from the builtin
registry and the interpreter's globals on every request, so new definitions and names that appear
after `(use 'lispe_torch)` complete at once). Names that start with the typed word come first, then,
for words of three characters or more, names that contain it (`generate` finds `torch_generate`).
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from .lexer import SYMBOL_RE, in_string_or_comment

_WORD_BEFORE_CURSOR = re.compile(f"({SYMBOL_RE})$")
_COMMAND = re.compile(r"^\s*(:[\w-]*)$")
_LOAD_ARGUMENT = re.compile(r"^\s*:load\s+(.*)$")


class LispECompleter(Completer):
    """Completes the symbol before the cursor; `:`-commands at the start of the input, and the
    file name after `:load`.

    While typing, completions appear from `min_chars` characters on; Tab asks at any length.
    """

    def __init__(self, names: Callable[[], Mapping[str, str]],
                 commands: Mapping[str, str] | None = None, min_chars: int = 2) -> None:
        self.names = names
        self.commands = dict(commands or {})
        self.min_chars = min_chars
        self._paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent
                        ) -> Iterable[Completion]:
        before = document.text_before_cursor
        load = _LOAD_ARGUMENT.match(before)
        if load and "\n" not in before:
            argument = Document(load.group(1), len(load.group(1)))
            yield from self._paths.get_completions(argument, complete_event)
            return
        command = _COMMAND.match(before)
        if command and "\n" not in before:
            word = command.group(1)
            for name, meta in sorted(self.commands.items()):
                if name.startswith(word):
                    yield Completion(name, -len(word), display_meta=meta)
            return
        match = _WORD_BEFORE_CURSOR.search(before)
        word = match.group(1) if match else ""
        if len(word) < self.min_chars and not complete_event.completion_requested:
            return  # while typing, a menu after a single character is more noise than help
        if in_string_or_comment(document.text, document.cursor_position):
            return
        yield from self.completions_for(word)

    def completions_for(self, word: str) -> Iterable[Completion]:
        """The completions of `word`: prefix matches, then (3+ characters) substring matches."""
        names = self.names()
        prefix = sorted(n for n in names if n.startswith(word))
        inner = sorted(n for n in names if len(word) >= 3 and word in n and not n.startswith(word))
        for name in (*prefix, *inner):
            yield Completion(name, -len(word), display_meta=names[name] or None)
