"""The LispE Jupyter kernel: one `Interpreter` per kernel, its state kept from cell to cell.

Built on ipykernel's `Kernel` base (the wire protocol, the heartbeat, the control channel and the
signal set-up are ipykernel's); this class supplies execution, completion, inspection and
is-complete checks. A cell runs in the interpreter's big-stack worker thread
(`runtime.run_with_big_stack`) while the kernel's main thread waits: the interrupt Jupyter sends
(SIGINT) raises KeyboardInterrupt there, and the runtime carries it into the worker, which stops at its
next Python instruction (a generation stops after the current token), the definitions made so far
staying. Whatever the cell prints goes to the notebook at once as `stream` messages (so tokens a
generation callback prints appear as they are produced); the value of the cell's last form is the
`execute_result`, with an HTML table for tensors and dictionaries.
"""
from __future__ import annotations

import html
import io
import re
import sys
from typing import Any

from ipykernel.kernelbase import Kernel

from .. import __version__

#: The largest table drawn for a tensor: rows/columns beyond these are elided (`...`).
MAX_ROWS, MAX_COLUMNS, MAX_TABLES = 40, 20, 8

#: Characters that end a LispE symbol (the REPL lexer's delimiters, plus quotes).
_SYMBOL_CHARS = r"[^\s()\[\]{}\"'`;,]"


class _CellOutput:
    """sys.stdout / sys.stderr while a cell runs: each write is sent at once as a `stream` message
    of the cell (the parent message is captured in the main thread: the worker thread running the
    cell does not see ipykernel's per-request context)."""

    def __init__(self, kernel: "LispEKernel", name: str, parent: dict) -> None:
        self.kernel, self.name, self.parent = kernel, name, parent
        self.encoding = "utf-8"

    def write(self, text: str) -> int:
        if text:
            self.kernel.session.send(self.kernel.iopub_socket, "stream", {"name": self.name, "text": text},
                                     self.parent, ident=self.kernel._topic("stream"))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("a notebook cell's output has no file descriptor")


class LispEKernel(Kernel):
    implementation = "lispe_py"
    implementation_version = __version__
    language = "lispe"
    language_version = __version__
    language_info = {
        "name": "lispe",
        "version": __version__,
        "mimetype": "text/x-lispe",
        "file_extension": ".lisp",
        "codemirror_mode": "commonlisp",
        "pygments_lexer": "common-lisp",
    }
    banner = f"lispe_py {__version__}: LispE in Python, with lispe_torch for text generation"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from .. import Interpreter

        self.interp = Interpreter()

    # ------------------------------------------------------------------------------ execute
    def do_execute(self, code: str, silent: bool, store_history: bool = True,
                   user_expressions: dict | None = None, allow_stdin: bool = False,
                   **kwargs: Any) -> dict:
        from ..errors import LispEError
        from ..values import VOID

        parent = self.get_parent("shell")
        count = self.execution_count
        saved = sys.stdout, sys.stderr, sys.stdin
        sys.stdout = _CellOutput(self, "stdout", parent)  # type: ignore[assignment]
        sys.stderr = _CellOutput(self, "stderr", parent)  # type: ignore[assignment]
        sys.stdin = io.StringIO("")  # `input` reads the end of the input (nil), never blocks the cell
        try:
            value = self.interp.run_source(code, f"<cell {count}>")
        except LispEError as exc:
            return self._error(exc, parent, "LispEError", _evalue(exc), exc.format().splitlines())
        except KeyboardInterrupt:
            return self._error(None, parent, "KeyboardInterrupt", "Interrupted",
                               ["Interrupted: the cell was stopped; the definitions made so far are kept"])
        except Exception as exc:  # a bug of ours still reaches the user as one line, no traceback
            message = f"internal error: {type(exc).__name__}: {exc}"
            return self._error(None, parent, "LispEError", message, [f"Error: {message}"])
        finally:
            sys.stdout, sys.stderr, sys.stdin = saved
        if not silent and value is not VOID:  # nil shows as nil, as at the REPL
            try:
                data = display_bundle(value)
            except LispEError as exc:  # a value whose printing fails (too large, a broken object)
                return self._error(exc, parent, "LispEError", _evalue(exc), exc.format().splitlines())
            except Exception as exc:
                message = f"internal error: cannot show the value: {type(exc).__name__}: {exc}"
                return self._error(None, parent, "LispEError", message, [f"Error: {message}"])
            self.session.send(self.iopub_socket, "execute_result",
                              {"execution_count": count, "data": data, "metadata": {}},
                              parent, ident=self._topic("execute_result"))
        return {"status": "ok", "execution_count": count, "payload": [], "user_expressions": {}}

    def _error(self, exc: Any, parent: dict, ename: str, evalue: str, traceback: list[str]) -> dict:
        content = {"ename": ename, "evalue": evalue, "traceback": traceback}
        self.session.send(self.iopub_socket, "error", content, parent, ident=self._topic("error"))
        return {"status": "error", "execution_count": self.execution_count, **content}

    # ------------------------------------------------------------------------------ complete
    def do_complete(self, code: str, cursor_pos: int) -> dict:
        from ..repl.lexer import in_string_or_comment, unclosed_brackets

        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        before = code[:cursor_pos]
        if in_string_or_comment(code, cursor_pos):
            match = re.search(r'"([A-Za-z_]*)$', before)
            open_ = unclosed_brackets(before[:match.start()]) if match else []
            if not open_ or open_[-1][1] != "{":  # config keys: a string key of a dictionary
                return _completions([], cursor_pos, cursor_pos)
            prefix = match.group(1)
            names = [k for k in config_keys() if k.startswith(prefix)]
            return _completions(names, cursor_pos - len(prefix), cursor_pos)
        match = re.search(_SYMBOL_CHARS + "*$", before)
        prefix = match.group(0) if match else ""
        if not prefix:
            return _completions([], cursor_pos, cursor_pos)
        names = sorted(n for n in self.names() if n.startswith(prefix))
        return _completions(names, cursor_pos - len(prefix), cursor_pos)

    def names(self) -> set[str]:
        """Builtins of the loaded libraries, special forms and the names defined in the session."""
        from ..builtins.help import special_forms
        from ..builtins.registry import visible_names

        names = set(visible_names(set(self.interp.libraries)))
        names.update(special_forms())
        names.update(str(n) for n in self.interp.globals.keys())
        return names

    # ------------------------------------------------------------------------------ inspect
    def do_inspect(self, code: str, cursor_pos: int, detail_level: int = 0,
                   omit_sections: Any = ()) -> dict:
        from ..builtins.help import describe
        from ..builtins.registry import REGISTRY

        name = _word_at(code, len(code) if cursor_pos is None else cursor_pos)
        known = name and (name in self.names() or name in REGISTRY)
        if not known:
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}
        text = describe(name, self.interp, set(self.interp.libraries))
        entry = REGISTRY.get(name)
        if entry is not None and entry.library is not None and entry.library not in self.interp.libraries:
            text += f"\n(needs (use '{entry.library}))"
        return {"status": "ok", "found": True, "data": {"text/plain": text}, "metadata": {}}

    # ------------------------------------------------------------------------------ is_complete
    def do_is_complete(self, code: str) -> dict:
        from ..reader import is_complete
        from ..repl.lexer import indentation

        if is_complete(code):
            return {"status": "complete"}
        return {"status": "incomplete", "indent": indentation(code)}


# ---------------------------------------------------------------------------------- helpers
def _evalue(exc: Any) -> str:
    """The message, with the position when there is one: `msg (at <cell 3>:2:5)`."""
    if exc.has_position:
        return f"{exc.message} (at {exc.filename}:{exc.line}:{exc.column})"
    return exc.message


def _completions(matches: list[str], start: int, end: int) -> dict:
    return {"status": "ok", "matches": matches, "cursor_start": start, "cursor_end": end, "metadata": {}}


def _word_at(code: str, pos: int) -> str:
    """The symbol the cursor is in or just after; else the head of the innermost open call."""
    left = re.search(_SYMBOL_CHARS + "*$", code[:pos])
    right = re.match(_SYMBOL_CHARS + "*", code[pos:])
    word = (left.group(0) if left else "") + (right.group(0) if right else "")
    if word:
        return word
    from ..repl.lexer import innermost_head

    return innermost_head(code[:pos]) or ""


def config_keys() -> list[str]:
    """Every config key a lispe_torch dictionary takes: generation settings (with aliases) and
    `torch_hf_load_model`'s keys."""
    from dataclasses import fields

    from ..generation.config import ALIASES, GenerationConfig
    from ..libs.lispe_torch.models import _LOAD_KEYS

    return sorted({f.name for f in fields(GenerationConfig)} | set(ALIASES) | set(_LOAD_KEYS))


def display_bundle(value: Any) -> dict[str, str]:
    """The cell value's MIME bundle: text/plain as the REPL prints it, plus text/html tables for
    tensors and dictionaries."""
    from ..printer import repr_string

    bundle = {"text/plain": repr_string(value)}
    if isinstance(value, dict):
        bundle["text/html"] = dict_html(value)
    elif type(value).__name__ == "Tensor" and type(value).__module__.startswith("torch"):
        bundle["text/html"] = tensor_html(value)
    return bundle


def dict_html(d: dict) -> str:
    from ..printer import repr_string

    rows = "".join(f"<tr><td>{html.escape(repr_string(k))}</td><td>{html.escape(repr_string(v))}</td></tr>"
                   for k, v in d.items())
    return (f'<table class="lispe-dict"><thead><tr><th>key</th><th>value</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _cells(values: list, limit: int) -> list[str]:
    shown = [html.escape(_number(v)) for v in values[:limit]]
    return shown + (["&hellip;"] if len(values) > limit else [])


def _number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _matrix_html(rows: list, caption: str) -> str:
    """A table of a 2-D list (rows of numbers), rows/columns past MAX_ROWS/MAX_COLUMNS elided."""
    width = len(rows[0]) if rows else 0
    head = "".join(f"<th>{j}</th>" for j in range(min(width, MAX_COLUMNS)))
    head += "<th>&hellip;</th>" if width > MAX_COLUMNS else ""
    body = []
    for i, row in enumerate(rows[:MAX_ROWS]):
        cells = "".join(f"<td>{c}</td>" for c in _cells(row, MAX_COLUMNS))
        body.append(f"<tr><th>{i}</th>{cells}</tr>")
    if len(rows) > MAX_ROWS:
        body.append(f"<tr><th>&hellip;</th>{'<td>&hellip;</td>' * min(width, MAX_COLUMNS)}</tr>")
    return (f'<table class="lispe-tensor"><caption>{html.escape(caption)}</caption>'
            f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def tensor_html(t: Any) -> str:
    """A tensor as HTML: a 0-D tensor as its value, a 1-D one as one row, a 2-D one as a table, and
    higher ranks as one table per index of the leading dimensions (the first MAX_TABLES)."""
    import itertools

    t = t.detach().cpu()
    dtype = str(t.dtype).removeprefix("torch.")
    shape = list(t.shape)
    caption = f"tensor {shape} {dtype}"
    if t.dim() == 0:
        return f'<table class="lispe-tensor"><caption>{html.escape(caption)}</caption><tr><td>' \
               f"{html.escape(_number(t.item()))}</td></tr></table>"
    if t.dim() == 1:
        return _matrix_html([t[:MAX_COLUMNS + 1].tolist()] if shape[0] else [[]], caption)
    if t.dim() == 2:
        return _matrix_html(t[:MAX_ROWS + 1, :MAX_COLUMNS + 1].tolist(), caption)
    lead = shape[:-2]
    parts = [f"<div>{html.escape(caption)}</div>"]
    for k, index in enumerate(itertools.product(*(range(n) for n in lead))):
        if k == MAX_TABLES:
            parts.append("<div>&hellip;</div>")
            break
        sub = t[index][:MAX_ROWS + 1, :MAX_COLUMNS + 1].tolist()
        parts.append(_matrix_html(sub, "[" + ", ".join(str(i) for i in index) + ", :, :]"))
    return "".join(parts)
