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
import re
from typing import Any, Callable, Iterable

from .errors import LispEError
from .values import VOID, Symbol

__version__ = "0.1.0"
__all__ = ["Interpreter", "LispEError", "__version__"]

_HOISTED_ORDER = {"use": 0, "defmacro": 1, "data@": 1, "data": 1, "class@": 1, "defun": 2, "defpat": 2}
DEFAULT_MAX_DEPTH = 20000
_LIBRARY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # (use 'name): a library or stdlib/<name>.lisp


class Interpreter:
    """One LispE interpreter: its own globals, loaded libraries and settings.

    sandbox: the permission model of docs/security.md: files may be read only inside the script folder
    and the `allow_read` paths, written only inside the `allow_write` paths; relative paths resolve
    against the script folder, `~` is not expanded, symlinks are followed before the check
    (`check_file_access`, which every file-touching builtin and library calls). allow_net: the hosts
    `check_net_access` lets through. Giving any allow_* list turns the sandbox on.
    script_dir: folder of the running script (`_current`, sandbox root). args: the script arguments,
    bound to `_args`. max_depth: the Lisp call depth limit. max_seconds / max_memory (MB): limits of
    each evaluation (`eval`, `run_file`, `call`...): "time limit exceeded (N s)", "memory limit
    exceeded (N MB)" (the process's resident memory, checked by a watchdog; see docs/security.md).
    """

    def __init__(self, sandbox: bool = False, script_dir: str | None = None,
                 args: Iterable[str] = (), max_depth: int = DEFAULT_MAX_DEPTH, *,
                 allow_read: Iterable[str] = (), allow_write: Iterable[str] = (),
                 allow_net: Iterable[str] = (), max_seconds: float | None = None,
                 max_memory: float | None = None):
        from .builtins import load_all
        from .compiler import Compiler
        from .runtime import Context, GlobalEnv, RuntimeState

        load_all()
        allow_read, allow_write, allow_net = (_str_list(n, v) for n, v in (
            ("allow_read", allow_read), ("allow_write", allow_write), ("allow_net", allow_net)))
        self.sandbox = bool(sandbox or allow_read or allow_write or allow_net)
        self.allow_read = [_host_path(p) for p in allow_read]
        self.allow_write = [_host_path(p) for p in allow_write]
        self.allow_net = [h.strip().lower() for h in allow_net]
        self.max_seconds = _positive("max_seconds", max_seconds)
        self.max_memory = _positive("max_memory", max_memory)
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
        # the other constants of LispE's math module (src/maths.cxx, moduleMaths)
        self.globals["π"] = math.pi
        self.globals["_tau"] = self.globals["τ"] = math.tau
        self.globals["ℯ"] = math.e
        self.globals["_phi"] = (1 + math.sqrt(5)) / 2
        self.globals["cut_"] = Symbol("cut_")  # defprol's cut marker, an atom standing for itself

    def _current(self) -> str:
        return (self.script_dir or os.getcwd()).rstrip(os.sep) + "/"

    # running code ----------------------------------------------------------------------------

    def eval(self, source: str, filename: str = "<string>") -> Any:
        """Run LispE source text; return the value of its last form (VOID as None).

        A `source` that is not a str raises TypeError; bad LispE raises LispEError."""
        from .runtime import run_with_big_stack

        _check_source("eval", source)
        return _to_python(run_with_big_stack(lambda: self._run_text(source, filename), limits=self.limits()))

    def run_source(self, source: str, filename: str = "<string>") -> Any:
        """Run LispE source text and return the Lisp value of its last form, as Lisp holds it.

        Unlike `eval`, the void value of print functions comes back as `lispe_py.values.VOID`
        (not None), so a caller such as a console can tell "printed something, no value" from nil.
        The value is not converted; print it with `lispe_py.printer.repr_string`.
        """
        from .runtime import run_with_big_stack

        _check_source("run_source", source)
        return run_with_big_stack(lambda: self._run_text(source, filename), limits=self.limits())

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
        return _to_python(run_with_big_stack(lambda: self._run_text(text, path), limits=self.limits()))

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

        return _to_python(run_with_big_stack(run, limits=self.limits()))

    def repl(self, **options: Any) -> None:
        """Open the interactive console (lispe_py.repl) on this interpreter and its globals."""
        from .repl import run_repl

        run_repl(self, **options)

    def _run_text(self, text: str, filename: str) -> Any:
        from .reader import read

        return self._run_forms(read(text, filename))

    def _run_forms(self, forms: list) -> Any:
        """Hoist use/defmacro/defun/defpat, then run every other form in order."""
        from .runtime import BreakSignal, ReturnSignal

        rt = self._rt
        depth = rt.depth
        self._compiler.declare_functions(forms)
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
        except ReturnSignal as s:  # (return v) outside any function ends the script with v (LispE)
            result = s.value
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
        except MemoryError:  # the --max-memory cap (RLIMIT_DATA) or a real shortage
            message = f"memory limit exceeded ({self.max_memory:g} MB)" if self.max_memory else "out of memory"
            raise err_at(LispEError(message), form_pos(form)) from None
        except Exception as exc:  # a bug of ours must still reach the user as a LispE error
            raise err_at(LispEError(f"internal error: {type(exc).__name__}: {exc}"), form_pos(form)) from exc

    def _eval_data(self, value: Any) -> Any:
        """`(eval x)`: a string is read and run; any other value is compiled as code and run."""
        if isinstance(value, str):
            return self._run_text(value, "<eval>")
        return self._run_form(value)

    # libraries and files ---------------------------------------------------------------------

    def use(self, name: str) -> None:
        """`(use 'name)`: import lispe_py.libs.<name> or run stdlib/<name>.lisp, once.

        Else the script folder's NAME.lisp. A name that is not a plain identifier is a .lisp file
        (".lisp" added when the name has no extension), relative to the script folder, read under
        `check_file_access` like `load`; any other file is refused without being read.
        """
        if name in self.libraries:
            return
        if not _LIBRARY_NAME.match(name):
            return self._use_file(name)
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
            if self.script_dir and os.path.lexists(os.path.join(self.script_dir, name + ".lisp")):
                return self._use_file(name)  # the script folder's NAME.lisp
            raise LispEError(f"use: unknown library '{name}'")
        self.libraries.add(name)
        self._run_text(path.read_text(encoding="utf-8"), str(path))

    def _use_file(self, name: str) -> None:
        """`(use "lib/helpers")`: run a .lisp file once. Only .lisp files: an error never shows the
        content of some other file (a reader error would quote its lines)."""
        file = name if os.path.splitext(os.path.basename(name))[1] else name + ".lisp"
        if not file.endswith(".lisp"):
            raise LispEError(f"use: '{name}' is neither a library name nor a .lisp file")
        try:
            full = self._code_path(file)
        except LispEError as exc:
            raise LispEError(f"use: {exc.message}") from None
        if full in self.libraries:
            return
        text = self._read_code("use", name, full)
        self.libraries.add(full)
        self._run_text(text, name)

    def load(self, path: str, space: str | None = None) -> Any:
        """`(load "file.lisp")`: run another file in this interpreter (relative to the script folder).

        With `space`, `(load "file.lisp" name)`: the functions the file defines go into that name
        space (see `lispe_py.spaces`).
        """
        text = self._read_code("load", path, self._code_path(path))
        if space is not None:
            from .reader import read
            from .spaces import run_forms_in_space

            return run_forms_in_space(self, read(text, path), space)
        return self._run_text(text, path)

    def _code_path(self, path: str) -> str:
        """The checked path of a file of code: a relative path is taken from the script folder (the
        working directory without one), in and out of the sandbox."""
        if not self.sandbox and not os.path.isabs(path) and not path.startswith("~"):
            path = os.path.join(self.script_dir or os.getcwd(), path)
        return self.check_file_access(path)

    @staticmethod
    def _read_code(what: str, path: str, full: str) -> str:
        """The text of a file of code; bytes that are not UTF-8 are an error at their line and column."""
        from .reader import decode_source

        try:
            with open(full, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise LispEError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
        return decode_source(data, path)

    def check_file_access(self, path: str | os.PathLike, write: bool = False) -> str:
        """The resolved absolute path if this interpreter may read (or write) `path`; else a LispEError.

        Outside the sandbox every path is allowed: `~` is expanded, a relative path is taken from the
        working directory. In the sandbox `~` is not expanded, a relative path is taken from the
        script folder, symlinks are followed, and the real path must lie inside the script folder or
        an `allow_read` path (reading), inside an `allow_write` path (writing). Callers open the path
        returned, never the one they were given.
        """
        given = os.fspath(path)
        if "\0" in given:
            raise LispEError("sandbox: a file name cannot contain a NUL character" if self.sandbox
                             else "a file name cannot contain a NUL character")
        if not self.sandbox:
            return os.path.realpath(os.path.abspath(os.path.expanduser(given)))
        if given.startswith("~"):
            raise LispEError(f"sandbox: '{given}': '~' paths (home folders) are not allowed; "
                             f"relative paths start from the script folder")
        base = self.script_dir or os.getcwd()
        full = os.path.realpath(os.path.join(base, given))
        if write:
            if not _inside(full, self.allow_write):
                raise LispEError(f"sandbox: writing '{given}' is not allowed (outside the --allow-write paths)")
            return full
        roots = ([os.path.realpath(self.script_dir)] if self.script_dir else []) + self.allow_read
        if not _inside(full, roots):
            raise LispEError(f"sandbox: reading '{given}' is not allowed (outside the script folder "
                             f"and the --allow-read paths)")
        return full

    def may_write(self, path: str | os.PathLike) -> bool:
        """Whether `check_file_access(path, write=True)` would let `path` through."""
        try:
            self.check_file_access(path, write=True)
        except LispEError:
            return False
        return True

    def check_net_access(self, host: str) -> str:
        """`host` ("name" or "name:port") if this interpreter may connect to it, else a LispEError.

        Outside the sandbox every host is allowed; in it only the `allow_net` entries: an entry
        without a port allows every port of that host. Network builtins call this before connecting.
        """
        if not isinstance(host, str) or not host.strip():
            raise LispEError("sandbox: expected a host name" if self.sandbox else "expected a host name")
        wanted = host.strip().lower()
        if not self.sandbox:
            return host
        if wanted.startswith("[") and "]" in wanted:  # "[::1]:8080"
            name = wanted[:wanted.index("]") + 1]
        else:
            name = wanted.split(":")[0] if wanted.count(":") == 1 else wanted
        if wanted in self.allow_net or name in self.allow_net:
            return host
        raise LispEError(f"sandbox: network access to '{host}' is not allowed (not an --allow-net host)")

    def limits(self) -> Any:
        """The time/memory limits of one evaluation started now (None without limits)."""
        if self.max_seconds is None and self.max_memory is None:
            return None
        from .runtime import Limits

        return Limits(self.max_seconds, self.max_memory)


def _check_source(method: str, source: Any) -> None:
    if not isinstance(source, str):
        raise TypeError(f"Interpreter.{method}() takes LispE source text (a str), "
                        f"not {type(source).__name__}")


def _str_list(what: str, values: Any) -> list[str]:
    if isinstance(values, str):
        values = [values]
    out = list(values or ())
    if not all(isinstance(v, (str, os.PathLike)) for v in out):
        raise TypeError(f"Interpreter: {what} must be a list of strings")
    return [os.fspath(v) for v in out]


def _host_path(path: str) -> str:
    """A permission path given by the host (API or command line): `~` expanded, made absolute against
    the working directory, symlinks resolved."""
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def _positive(what: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"Interpreter: {what} must be a positive number, got {value!r}")
    return value


def _inside(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or os.path.commonpath([root, path]) == root for root in roots)


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
