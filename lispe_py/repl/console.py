"""The interactive LispE console: a prompt_toolkit session around one `Interpreter`.

    lispe> (defun square (x)
    ......   (* x x))
    lispe> (square 12)
    144

Enter submits the input when the reader says the form is complete, otherwise it opens a new,
indented line (Meta-Enter submits as is). The interpreter evaluates in its big-stack worker thread
while the main thread waits with SIGINT turned into `KeyboardInterrupt`; the runtime carries Ctrl-C
into the worker, so a long loop or a generation really stops and the session goes on with its
definitions intact. Ctrl-C at the prompt clears the input; Ctrl-D on an empty line exits.
The last three values are bound to `*1 *2 *3`, the last error to `*e`.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.document import Document
from prompt_toolkit.enums import DEFAULT_BUFFER, EditingMode
from prompt_toolkit.filters import has_focus
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout.processors import HighlightMatchingBracketProcessor
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.output import Output
from prompt_toolkit.styles import Style, merge_styles, style_from_pygments_dict
from pygments.token import Comment, Keyword, Name, Number, Operator, String

from .. import printer, reader
from ..builtins.help import special_forms, summarize
from ..builtins.registry import REGISTRY, visible_names
from ..errors import LispEError
from ..runtime import ErrorValue, run_with_big_stack
from ..values import VOID
from .completer import LispECompleter
from .lexer import indentation, innermost_head, lexer_class

PROMPT = "lispe> "

COMMANDS: dict[str, str] = {
    ":load": ":load FILE  runs a LispE file in this session",
    ":reset": ":reset  forgets the definitions made since the session started",
    ":quit": ":quit  leaves the REPL (Ctrl-D too)",
    ":vi": ":vi  switches to Vi key bindings",
    ":emacs": ":emacs  switches to Emacs key bindings (the default)",
    ":help": ":help  lists these commands",
}

ERROR_NAME = "*e"
REPL_FILENAME = "<repl>"

#: ANSI colour names, so the terminal's own palette (dark or light) decides the actual colours.
_SYNTAX = style_from_pygments_dict({
    Keyword: "ansimagenta bold",
    Keyword.Constant: "ansimagenta",
    Name.Builtin: "ansicyan",
    Name.Function: "ansiblue bold",
    Name.Variable.Magic: "ansiyellow",
    String: "ansigreen",
    String.Escape: "ansiyellow",
    Number: "ansiyellow",
    Comment: "ansibrightblack italic",
    Operator: "ansired",
})

_STYLE = Style.from_dict({
    "prompt": "ansigreen bold",
    "continuation": "ansibrightblack",
    "matching-bracket.cursor": "bg:ansiblue ansiwhite bold",
    "matching-bracket.other": "bg:ansiblue ansiwhite bold",
    "bottom-toolbar": "noreverse ansibrightblack",
})

_RED, _YELLOW, _RESET = "\x1b[31m", "\x1b[33m", "\x1b[0m"


def default_history_path() -> Path:
    """`$LISPE_HISTORY`, else `$XDG_DATA_HOME/lispe_py/history` (`~/.local/share` by default)."""
    explicit = os.environ.get("LISPE_HISTORY")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "lispe_py" / "history"


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


def wants_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and not when `NO_COLOR` is set or `TERM=dumb`."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return _isatty(stream)


class _TrackingWriter:
    """Wraps the output stream during an evaluation: flushes every write (so streamed tokens show
    as they are produced) and remembers whether the output ended at the start of a line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.at_line_start = True

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        if text:
            self.at_line_start = text.endswith("\n")
        self.stream.flush()
        return written

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class _TrackingReader:
    """Wraps stdin during an evaluation: after `(input ...)` reads a line, the terminal's echo of
    Enter has ended the output line, so no extra newline is needed before the value."""

    def __init__(self, stream: TextIO, writer: _TrackingWriter) -> None:
        self.stream = stream
        self.writer = writer

    def readline(self, *args: Any) -> str:
        line = self.stream.readline(*args)
        self.writer.at_line_start = True
        return line

    def read(self, *args: Any) -> str:
        text = self.stream.read(*args)
        self.writer.at_line_start = True
        return text

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class Repl:
    """One interactive session: the prompt, the evaluation loop and the REPL commands.

    `input`/`output` are prompt_toolkit's (tests pass `create_pipe_input()` and `DummyOutput()`);
    `stdout`/`stderr` receive values, program output and errors. `history_file=None` uses
    `default_history_path()`; `False` keeps the history in memory only.
    """

    def __init__(self, interp: Any = None, *, input: Input | None = None, output: Output | None = None,
                 stdout: TextIO | None = None, stderr: TextIO | None = None,
                 history_file: str | os.PathLike[str] | None | bool = None,
                 vi_mode: bool | None = None, color: bool | None = None) -> None:
        if interp is None:
            from .. import Interpreter

            interp = Interpreter()
        self.interp = interp
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.color = wants_color(self.stderr) if color is None else color
        for name in ("*1", "*2", "*3", ERROR_NAME):
            self._globals().setdefault(name, None)  # nil until there is a value or an error
        self._baseline = self._snapshot()
        self._special_forms = special_forms()
        if vi_mode is None:
            vi_mode = os.environ.get("LISPE_EDITING_MODE", "").lower() == "vi"
        self.session: PromptSession[str] = PromptSession(
            FormattedText([("class:prompt", PROMPT)]),
            multiline=True,
            prompt_continuation=self._continuation,
            lexer=PygmentsLexer(lexer_class(self._builtin_names, self._special_names)),
            completer=LispECompleter(self.completion_names, COMMANDS),
            complete_while_typing=True,
            history=self._make_history(history_file),
            auto_suggest=AutoSuggestFromHistory(),
            key_bindings=self._key_bindings(),
            input_processors=[HighlightMatchingBracketProcessor(chars="[](){}")],
            style=merge_styles([_SYNTAX, _STYLE]),
            include_default_pygments_style=False,
            bottom_toolbar=self._toolbar,
            editing_mode=EditingMode.VI if vi_mode else EditingMode.EMACS,
            enable_history_search=False,
            input=input,
            output=output,
        )

    # ----------------------------------------------------------------- interpreter access
    def _globals(self) -> MutableMapping[str, Any]:
        return self.interp.globals

    def _libraries(self) -> set[str]:
        return set(getattr(self.interp, "libraries", ()) or ())

    def _builtin_names(self) -> set[str]:
        return set(visible_names(self._libraries()))

    def _special_names(self) -> set[str]:
        return set(self._special_forms)

    def _snapshot(self) -> tuple[dict[str, Any], set[str]]:
        return dict(self._globals()), self._libraries()

    def completion_names(self) -> dict[str, str]:
        """Every name the user can type here, with its usage line (or its type) as description."""
        names: dict[str, str] = {}
        for name, value in self._globals().items():
            names[str(name)] = summarize(value)
        for name in visible_names(self._libraries()):
            names[name] = REGISTRY[name].usage
        for name, doc in self._special_forms.items():
            names.setdefault(name, doc.splitlines()[0] if doc else "special form")
        return names

    # ----------------------------------------------------------------- prompt parts
    def _continuation(self, width: int, line_number: int, is_soft_wrap: int) -> FormattedText:
        return FormattedText([("class:continuation", "." * (width - 1) + " ")])

    def _toolbar(self) -> FormattedText:
        """The usage line of the function or special form whose call the cursor is in."""
        try:
            head = innermost_head(self.session.app.current_buffer.document.text_before_cursor)
            text = self.describe_name(head) if head else ""
        except Exception:  # the toolbar must never break the prompt
            text = ""
        if self.session.editing_mode == EditingMode.VI:
            text += "   [vi]"
        return FormattedText([("", text)])

    def describe_name(self, name: str) -> str:
        """One line about `name`: a builtin's or special form's usage, a definition's parameters."""
        entry = REGISTRY.get(name)
        if entry is not None and (entry.library is None or entry.library in self._libraries()):
            return entry.usage
        env = self._globals()
        if name in env:
            return f"{name}: {summarize(env[name])}"
        doc = self._special_forms.get(name)
        return doc.splitlines()[0] if doc else ""

    def _make_history(self, history_file: str | os.PathLike[str] | None | bool) -> History:
        if history_file is False:
            return InMemoryHistory()
        path = default_history_path() if history_file in (None, True) else Path(history_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
        except OSError as err:
            self._write_err(f"lispe: history not saved ({path}: {err.strerror})", _YELLOW)
            return InMemoryHistory()
        self.history_path = path
        return FileHistory(str(path))

    def input_ready(self, document: Document) -> bool:
        """Whether Enter submits: a command, an empty line, or a complete form with the cursor on
        its last line (so a line recalled from the history runs wherever the cursor is, while Enter
        on an earlier line of a multi-line form opens a new line there)."""
        text = document.text
        if not text.strip() or text.lstrip().startswith(":"):
            return True
        if "\n" in document.text_after_cursor.rstrip():
            return False
        return reader.is_complete(text)

    def _key_bindings(self) -> KeyBindings:
        bindings = KeyBindings()

        @bindings.add("enter", filter=has_focus(DEFAULT_BUFFER))
        def _enter(event: KeyPressEvent) -> None:
            buffer = event.current_buffer
            state = buffer.complete_state
            if state is not None and state.current_completion is not None:
                buffer.apply_completion(state.current_completion)
                return
            if self.input_ready(buffer.document):
                buffer.validate_and_handle()
            else:
                buffer.insert_text("\n" + indentation(buffer.document.text_before_cursor))

        @bindings.add("escape", "enter", filter=has_focus(DEFAULT_BUFFER))
        def _submit(event: KeyPressEvent) -> None:
            event.current_buffer.validate_and_handle()

        return bindings

    # ----------------------------------------------------------------- the loop
    def run(self, banner: bool = True) -> None:
        """Read, evaluate, print until `:quit` or Ctrl-D."""
        if banner:
            self._write(_banner())
        while True:
            try:
                text = self.session.prompt()
                if not self.handle(text):
                    break
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears it; between two evaluations it stops nothing
            except EOFError:
                break

    def handle(self, text: str) -> bool:
        """Evaluate one submitted input or run a command; False means leave the REPL."""
        stripped = text.strip()
        if not stripped:
            return True
        if stripped.startswith(":"):
            return self.command(stripped)
        self.evaluate(text)
        return True

    def command(self, line: str) -> bool:
        """Run a `:command`; False for `:quit`."""
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name in (":quit", ":q", ":exit"):
            return False
        if name == ":load":
            if not argument:
                self._write_err("Error: usage: :load FILE", _RED)
            else:
                self.evaluate(argument, load=True)
        elif name == ":reset":
            self.reset()
            self._write("Session reset: definitions made since the start are gone.")
        elif name == ":vi":
            self.session.editing_mode = EditingMode.VI
        elif name == ":emacs":
            self.session.editing_mode = EditingMode.EMACS
        elif name == ":help":
            self._write("\n".join(COMMANDS.values()) + "\n(help 'name) shows a builtin's documentation;"
                        " *1 *2 *3 hold the last values, *e the last error.")
        else:
            self._write_err(f"Error: unknown command {name} (try :help)", _RED)
        return True

    def reset(self) -> None:
        """Forget definitions and results made since the session started."""
        saved_globals, saved_libraries = self._baseline
        current = self._globals()
        current.clear()
        current.update(saved_globals)
        libraries = getattr(self.interp, "libraries", None)
        if isinstance(libraries, set):
            libraries.intersection_update(saved_libraries)

    def evaluate(self, text: str, load: bool = False) -> None:
        """Evaluate source text (or load a file), print its value or its error."""
        tracker = _TrackingWriter(self.stdout)
        try:
            try:
                with _tracked_stdio(tracker), _interruptible():
                    if load:
                        path = _unquote(text)
                        value = run_with_big_stack(lambda: self.interp.load(path))
                    else:
                        value = self.interp.run_source(text, REPL_FILENAME)
                    shown = None if value is VOID else run_with_big_stack(lambda: printer.repr_string(value))
            finally:
                if not tracker.at_line_start:
                    self._write("")
            if shown is not None:
                self.remember(value)
                self._write(shown)
        except KeyboardInterrupt:  # run_with_big_stack has stopped the evaluation thread
            # A terminal has echoed ^C where the cursor was: start a fresh line, as Python does.
            self._write_err(("\n" if _isatty(self.stderr) else "") + "Interrupted", _YELLOW)
        except LispEError as err:
            self._error(err)
        except RecursionError:
            self._error(LispEError("stack overflow"))
        except Exception as err:  # never a Python traceback at the prompt
            self._error(LispEError(f"internal error: {type(err).__name__}: {err}"))

    def remember(self, value: Any) -> None:
        """Shift `*1 *2 *3` and bind the new value to `*1`."""
        env = self._globals()
        for older, newer in (("*3", "*2"), ("*2", "*1")):
            if newer in env:
                env[older] = env[newer]
        env["*1"] = value

    def _error(self, err: LispEError) -> None:
        self._globals()[ERROR_NAME] = ErrorValue(err)
        self._write_err(err.format(), _RED)

    # ----------------------------------------------------------------- output
    def _write(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def _write_err(self, text: str, color: str) -> None:
        self.stdout.flush()
        if self.color:
            text = color + text + _RESET
        self.stderr.write(text + "\n")
        self.stderr.flush()


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return os.path.expanduser(text)


def _banner() -> str:
    from .. import __version__

    return f"lispe_py {__version__} (LispE in Python). (help 'name), :help for commands, Ctrl-D to exit."


@contextmanager
def _tracked_stdio(writer: _TrackingWriter) -> Iterator[None]:
    saved = sys.stdout, sys.stdin
    sys.stdout = writer  # type: ignore[assignment]
    if sys.stdin is not None:
        sys.stdin = _TrackingReader(sys.stdin, writer)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stdin = saved


@contextmanager
def _interruptible() -> Iterator[None]:
    """Make SIGINT raise KeyboardInterrupt while the block runs (the embedding program may have
    installed another handler); only possible in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_repl(interp: Any = None, **options: Any) -> None:
    """Start the interactive REPL on `interp` (a new `Interpreter` when None); see `Repl`."""
    Repl(interp, **options).run()
