"""lispe_py: a LispE-compatible Lisp interpreter in Python.

    from lispe_py import Interpreter, LispEError
    interp = Interpreter()
    interp.eval("(+ 1 2)")                 # 3
    interp.define("double", lambda x: 2 * x)
    interp.eval("(double 21)")             # 42
    interp.call("double", 4)               # 8

Lisp values are Python values (see `lispe_py.values`); the void value of print functions comes back
as None. Every error is a `LispEError` with `.filename`, `.line`, `.column`.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from typing import Any, Callable, Iterable

from .errors import LispEError
from .values import VOID, Symbol

__version__ = "0.1.0"
__all__ = ["Interpreter", "LispEError", "__version__"]

_HOISTED_ORDER = {"use": 0, "defmacro": 1, "defun": 2, "defpat": 2}
DEFAULT_MAX_DEPTH = 20000


class Interpreter:
    """One LispE interpreter: its own globals, loaded libraries and settings.

    sandbox: refuse file access outside the script folder (`load`, `fread`, `fwrite` call
    `check_file_access`). script_dir: folder of the running script (`_current`, sandbox root).
    args: the script arguments, bound to `_args`. max_depth: the Lisp call depth limit.
    """

    def __init__(self, sandbox: bool = False, script_dir: str | None = None,
                 args: Iterable[str] = (), max_depth: int = DEFAULT_MAX_DEPTH):
        from .builtins import load_all
        from .compiler import Compiler
        from .runtime import Context, GlobalEnv, RuntimeState

        load_all()
        self.sandbox = sandbox
        self.script_dir = os.path.abspath(script_dir) if script_dir else None
        self.libraries: set[str] = set()
        self.globals = GlobalEnv()
        self._rt = RuntimeState(max_depth)
        self.ctx = Context(self)
        self._compiler = Compiler(self)
        self.globals["_args"] = list(args)
        self.globals["_current"] = self._current()
        self.globals["_pi"] = math.pi
        self.globals["_e"] = math.e

    def _current(self) -> str:
        return (self.script_dir or os.getcwd()).rstrip(os.sep) + "/"

    # running code ----------------------------------------------------------------------------

    def eval(self, source: str, filename: str = "<string>") -> Any:
        """Run LispE source text; return the value of its last form (VOID as None).

        A `source` that is not a str raises TypeError; bad LispE raises LispEError."""
        from .runtime import run_with_big_stack

        _check_source("eval", source)
        return _to_python(run_with_big_stack(lambda: self._run_text(source, filename)))

    def run_source(self, source: str, filename: str = "<string>") -> Any:
        """Run LispE source text and return the Lisp value of its last form, as Lisp holds it.

        Unlike `eval`, the void value of print functions comes back as `lispe_py.values.VOID`
        (not None), so a caller such as a console can tell "printed something, no value" from nil.
        The value is not converted; print it with `lispe_py.printer.repr_string`.
        """
        from .runtime import run_with_big_stack

        _check_source("run_source", source)
        return run_with_big_stack(lambda: self._run_text(source, filename))

    def run_file(self, path: str) -> Any:
        """Run a .lisp file (its folder becomes `_current` unless a script_dir was given).

        A file that cannot be read, or is not UTF-8 text, raises LispEError (invalid UTF-8 with the
        line and column of the first bad byte)."""
        from .reader import decode_source
        from .runtime import run_with_big_stack

        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise LispEError(f"cannot read {path}: {exc.strerror or exc}") from None
        text = decode_source(data, os.fspath(path))
        if self.script_dir is None:
            self.script_dir = os.path.dirname(os.path.abspath(path))
            self.globals["_current"] = self._current()
        return _to_python(run_with_big_stack(lambda: self._run_text(text, path)))

    def define(self, name: str, value: Any) -> None:
        """Bind a global; a Python callable becomes a Lisp function of that name."""
        from .builtins.registry import Builtin
        from .runtime import Lambda, PatternFunction

        if callable(value) and not isinstance(value, (Lambda, PatternFunction, Builtin, type)):
            value = _python_function(name, value)
        self.globals[name] = value

    def call(self, name: str, *args: Any) -> Any:
        """Call the Lisp function (or builtin) `name` with Python values."""
        from .runtime import run_with_big_stack

        def run() -> Any:
            fn = self.ctx.function_named(name)
            depth = self._rt.depth
            try:
                return self.ctx.apply(fn, list(args))
            except RecursionError:
                raise self._rt.overflow() from None
            finally:
                self._rt.depth = depth

        return _to_python(run_with_big_stack(run))

    def repl(self, **options: Any) -> None:
        """Open the interactive console (lispe_py.repl) on this interpreter and its globals."""
        from .repl import run_repl

        run_repl(self, **options)

    def _run_text(self, text: str, filename: str) -> Any:
        from .reader import read

        return self._run_forms(read(text, filename))

    def _run_forms(self, forms: list) -> Any:
        """Hoist use/defmacro/defun/defpat, then run every other form in order."""
        from .runtime import BreakSignal

        rt = self._rt
        depth = rt.depth
        hoisted = sorted((i for i, f in enumerate(forms) if _hoist_rank(f) is not None),
                         key=lambda i: (_hoist_rank(forms[i]), i))
        done = set(hoisted)
        result: Any = VOID
        values: dict[int, Any] = {}
        try:
            for i in hoisted:
                values[i] = self._run_form(forms[i])
            for i, form in enumerate(forms):
                result = values[i] if i in done else self._run_form(form)
        except BreakSignal:
            raise LispEError("break outside of a loop") from None
        except RecursionError:
            raise rt.overflow() from None
        finally:
            rt.depth = depth
        return result

    def _run_form(self, form: Any) -> Any:
        from .compiler import err_at, form_pos
        from .runtime import UNSET, BreakSignal, Signal

        try:
            node, nslots = self._compiler.compile_toplevel(form)
            frame = [None] + [UNSET] * (nslots - 1)
            return node(frame)
        except LispEError as exc:
            raise err_at(exc, form_pos(form))
        except BreakSignal:
            raise err_at(LispEError("break outside of a loop"), form_pos(form)) from None
        except (Signal, RecursionError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug of ours must still reach the user as a LispE error
            raise err_at(LispEError(f"internal error: {type(exc).__name__}: {exc}"), form_pos(form)) from exc

    def _eval_data(self, value: Any) -> Any:
        """`(eval x)`: a string is read and run; any other value is compiled as code and run."""
        if isinstance(value, str):
            return self._run_text(value, "<eval>")
        return self._run_form(value)

    # libraries and files ---------------------------------------------------------------------

    def use(self, name: str) -> None:
        """`(use 'name)`: import lispe_py.libs.<name> or run stdlib/<name>.lisp, once."""
        if name in self.libraries:
            return
        from .resources import stdlib_file

        module = f"lispe_py.libs.{name}"
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            try:
                importlib.import_module(module)
            except LispEError:
                raise
            except Exception as exc:
                raise LispEError(f"use: cannot load library '{name}': {exc}") from None
            self.libraries.add(name)
            return
        path = stdlib_file(name)
        if path is None:
            raise LispEError(f"use: unknown library '{name}'")
        self.libraries.add(name)
        self._run_text(path.read_text(encoding="utf-8"), str(path))

    def load(self, path: str) -> Any:
        """`(load "file.lisp")`: run another file in this interpreter (relative to the script folder)."""
        full = path
        if not os.path.isabs(path):
            base = self.script_dir or os.getcwd()
            full = os.path.join(base, path)
        full = self.check_file_access(full)
        from .reader import decode_source

        try:
            with open(full, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise LispEError(f"load: cannot read {path}: {exc.strerror or exc}") from None
        return self._run_text(decode_source(data, path), path)

    def check_file_access(self, path: str, write: bool = False) -> str:
        """The absolute path if this interpreter may read (or write) it; else a LispEError.

        In sandbox mode only files inside the script folder may be read, and nothing may be written.
        """
        full = os.path.realpath(os.path.abspath(path))
        if not self.sandbox:
            return full
        if write:
            raise LispEError(f"sandbox: writing files is not allowed ('{path}')")
        root = os.path.realpath(self.script_dir) if self.script_dir else None
        if root is None or os.path.commonpath([root, full]) != root:
            raise LispEError(f"sandbox: access to '{path}' is refused (outside the script folder)")
        return full


def _check_source(method: str, source: Any) -> None:
    if not isinstance(source, str):
        raise TypeError(f"Interpreter.{method}() takes LispE source text (a str), "
                        f"not {type(source).__name__}")


def _hoist_rank(form: Any) -> int | None:
    if isinstance(form, list) and form and isinstance(form[0], Symbol):
        return _HOISTED_ORDER.get(form[0].name)
    return None


def _to_python(value: Any) -> Any:
    return None if value is VOID else value


def _python_function(name: str, fn: Callable[..., Any]) -> Any:
    """Wrap a Python callable as an (unregistered) builtin, arity taken from its signature."""
    import inspect

    from .builtins.registry import Builtin

    lo, hi = 0, None
    try:
        params = list(inspect.signature(fn).parameters.values())
        lo = sum(1 for p in params if p.default is p.empty
                 and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
        if not any(p.kind == p.VAR_POSITIONAL for p in params):
            hi = sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    except (TypeError, ValueError):
        pass
    doc = (inspect.getdoc(fn) or "").strip()
    return Builtin(name=name, fn=fn, group="user", min_args=lo, max_args=hi, doc=doc, names=(name,))
