"""What compiled code runs against: functions, frames, global cells, tail calls, the call context.

A compiled form is a Python closure `node(frame) -> value`. A *frame* is a Python list: slot 0 holds
the frame of the enclosing function (for closures), then the parameters, then the locals that the
compiler found in the body. Globals live in `Cell`s resolved once at compile time.

Tail calls: a call in tail position returns a `TailCall(fn, frame)` instead of calling; whoever
invoked the function loops until a real value comes back, so tail recursion runs in constant stack.
Lisp call depth is counted in `RuntimeState.depth` (not Python's stack): past `max_depth` the user
gets `stack overflow (recursion depth N)`.
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any, Callable, Iterator

from .builtins.registry import Builtin, lookup, suggest, visible_names
from .errors import LispEError
from .values import Symbol


class _Unset:
    """Marks a frame slot or global cell that holds no value yet."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


class Cell:
    """A global variable: compiled code keeps the cell, so a lookup is one attribute read."""

    __slots__ = ("name", "v")

    def __init__(self, name: str):
        self.name = name
        self.v: Any = UNSET


class GlobalEnv(MutableMapping):
    """An interpreter's globals: a mapping name -> value, backed by `Cell`s."""

    def __init__(self) -> None:
        self.cells: dict[str, Cell] = {}

    def cell(self, name: str) -> Cell:
        """The cell of `name`, created unbound if new."""
        c = self.cells.get(name)
        if c is None:
            c = self.cells[name] = Cell(name)
        return c

    def __getitem__(self, name: str) -> Any:
        c = self.cells.get(name)
        if c is None or c.v is UNSET:
            raise KeyError(name)
        return c.v

    def __setitem__(self, name: str, value: Any) -> None:
        self.cell(name).v = value

    def __delitem__(self, name: str) -> None:
        c = self.cells.get(name)
        if c is None or c.v is UNSET:
            raise KeyError(name)
        c.v = UNSET

    def __iter__(self) -> Iterator[str]:
        return (n for n, c in list(self.cells.items()) if c.v is not UNSET)

    def __len__(self) -> int:
        return sum(1 for c in self.cells.values() if c.v is not UNSET)


class TailCall:
    """A call left for the caller's trampoline: run `fn.body(frame)` there."""

    __slots__ = ("fn", "frame")

    def __init__(self, fn: Any, frame: list):
        self.fn = fn
        self.frame = frame


class Signal(Exception):
    """Non-error control transfer (return, break): never wrapped, never caught by `catch`."""


class ReturnSignal(Signal):
    """`(return value)`: leaves the current function."""

    def __init__(self, value: Any):
        super().__init__()
        self.value = value


class BreakSignal(Signal):
    """`(break)`: leaves the innermost loop."""


class ErrorValue:
    """The `maybe_` value `catch` returns when its body fails; prints as the error message."""

    __slots__ = ("error",)
    lisp_type = "maybe_"

    def __init__(self, error: LispEError):
        self.error = error

    @property
    def message(self) -> str:
        return self.error.message

    def __repr__(self) -> str:
        return f"#<error {self.error.message}>"


class RuntimeState:
    """Per-interpreter mutable run state: the Lisp call depth and its limit."""

    __slots__ = ("depth", "max_depth")

    def __init__(self, max_depth: int):
        self.depth = 0
        self.max_depth = max_depth

    def overflow(self) -> LispEError:
        self.depth = 0
        return LispEError(f"stack overflow (recursion depth {self.max_depth})")

    def run(self, body: Callable[[list], Any], frame: list) -> Any:
        """Run a function body one level deeper, with the tail-call trampoline (compiled call sites
        inline the same loop)."""
        d = self.depth + 1
        if d > self.max_depth:
            raise self.overflow()
        self.depth = d
        r = body(frame)
        while r.__class__ is TailCall:
            r = r.fn.body(r.frame)
        self.depth = d - 1
        return r


class FunctionCode:
    """What `lambda`/`defun` compile to, once: parameters, body closure, frame layout."""

    __slots__ = ("name", "nreq", "nopt", "defaults", "rest", "nparams", "nextra", "self_index",
                 "body", "source", "rt", "kind")

    def __init__(self, name: str, rt: RuntimeState, source: Any, kind: str = "lambda_"):
        self.name = name
        self.rt = rt
        self.source = source  # the (lambda ...) / (defun ...) form, for printing
        self.kind = kind
        self.nreq = 0
        self.nopt = 0
        self.defaults: list[Callable[[list], Any]] = []
        self.rest = False
        self.nparams = 0
        self.nextra = 0
        self.self_index = -1
        self.body: Callable[[list], Any] = lambda f: None


class Lambda:
    """A Lisp function value: compiled code plus the frame it closes over."""

    __slots__ = ("code", "env", "body", "nfast", "pad", "name")

    def __init__(self, code: FunctionCode, env: list | None, self_value: Any = None):
        self.code = code
        self.env = env
        self.body = code.body
        self.name = code.name
        self.nfast = code.nreq if (code.nopt == 0 and not code.rest) else -1
        pad = [UNSET] * code.nextra
        if code.self_index >= 0:
            pad[code.self_index - code.nparams - 1] = self if self_value is None else self_value
        self.pad = pad

    @property
    def lisp_type(self) -> str:
        return self.code.kind

    def arity_error(self) -> LispEError:
        return LispEError(f"Wrong number of arguments in call to: '{self.name}'")

    def make_frame(self, args: list) -> list:
        """Bind arguments to a new frame (defaults and rest parameter included)."""
        code = self.code
        n = len(args)
        if n == self.nfast:
            fr = [self.env, *args]
            fr += self.pad
            return fr
        nreq, nopt = code.nreq, code.nopt
        if n < nreq or (not code.rest and n > nreq + nopt):
            raise self.arity_error()
        fr = [self.env]
        fr.extend(args[:nreq + nopt])
        missing = nreq + nopt - len(fr) + 1
        if missing > 0:
            fr.extend([UNSET] * missing)
        if code.rest:
            fr.append(list(args[nreq + nopt:]))
        fr += self.pad
        for i in range(max(n - nreq, 0), nopt):
            fr[1 + nreq + i] = code.defaults[i](fr)
        return fr

    def invoke(self, args: list) -> Any:
        """Call with a list of evaluated arguments; runs the tail-call trampoline."""
        return self.code.rt.run(self.body, self.make_frame(args))

    def __call__(self, *args: Any) -> Any:
        """Python code (torch callbacks, embedding) may call a Lisp function directly."""
        return self.invoke(list(args))

    def __repr__(self) -> str:
        return f"#<{self.code.kind[:-1]} {self.name}>"


class PatternFunction:
    """A `defpat` function: clauses tried in definition order; the first whose patterns match runs."""

    __slots__ = ("name", "clauses", "keys", "rt")
    lisp_type = "function_"

    def __init__(self, name: str, rt: RuntimeState):
        self.name = name
        self.clauses: list[tuple[Callable[[list], list | None], Lambda]] = []
        self.keys: list[str] = []
        self.rt = rt

    def add_clause(self, key: str, match: Callable[[list], list | None], fn: Lambda) -> None:
        """Add a clause; a clause with the same patterns (`key`) is replaced where it stands."""
        if key in self.keys:
            self.clauses[self.keys.index(key)] = (match, fn)
        else:
            self.keys.append(key)
            self.clauses.append((match, fn))

    def select(self, args: list) -> tuple[Lambda, list]:
        for match, fn in self.clauses:
            bound = match(args)
            if bound is not None:
                fr = [fn.env, *bound]
                fr += fn.pad
                return fn, fr
        from .printer import repr_string

        raise LispEError(f"no pattern of '{self.name}' matches the arguments: "
                         + " ".join(repr_string(a) for a in args))

    def invoke(self, args: list) -> Any:
        fn, fr = self.select(args)
        return self.rt.run(fn.body, fr)

    def __call__(self, *args: Any) -> Any:
        return self.invoke(list(args))

    def __repr__(self) -> str:
        return f"#<defpat {self.name}>"


def call_builtin(b: Builtin, args: list, ctx: "Context") -> Any:
    """Run a builtin with arity check; wrap any Python exception into a LispEError naming it."""
    b.check_arity(len(args))
    try:
        if b.ctx:
            return b.fn(ctx, *args)
        return b.fn(*args)
    except (LispEError, Signal):
        raise
    except RecursionError:
        raise ctx.rt.overflow() from None
    except Exception as exc:  # a builtin's Python error becomes a LispE error naming it
        raise wrap_exception(b.name, exc, args, b.group == "user") from None


def wrap_exception(name: str, exc: BaseException, args: Any = None, host: bool = False) -> LispEError:
    """The LispEError for a Python exception that escaped builtin `name` (called with `args`), in
    LispE's words: the arguments' LispE types and the builtin's usage, not Python's message.
    `host`: a function the host program gave (`Interpreter.define`): its own exceptions keep their
    text (see `python_error_message`)."""
    from .builtins.registry import python_error_message

    return LispEError(python_error_message(name, exc, args, host))


def call_python(name: str, fn: Callable[..., Any], args: list, ctx: "Context") -> Any:
    """Call a plain Python callable (from `Interpreter.define` or a library) with error wrapping."""
    try:
        return fn(*args)
    except (LispEError, Signal):
        raise
    except RecursionError:
        raise ctx.rt.overflow() from None
    except Exception as exc:
        raise wrap_exception(name, exc, args, True) from None


_UNDERSCORE = Symbol("_")
_LAMBDA_HEADS = (Symbol("lambda"), Symbol("λ"), Symbol("defun"))


class Context:
    """The runtime context builtins with `ctx=True` receive: `ctx.call(fn, *args)`, `ctx.interp`."""

    __slots__ = ("interp", "rt", "globals")

    def __init__(self, interp: Any):
        self.interp = interp
        self.rt: RuntimeState = interp._rt
        self.globals: GlobalEnv = interp.globals

    def call(self, fn: Any, *args: Any) -> Any:
        """Call any Lisp function value with evaluated arguments and return its value.

        `fn` may be a lambda, a builtin, a defpat function, a quoted symbol naming a function, a
        partial call list like `'(< 3)` (the argument goes first, or where `_` stands), or a Python
        callable.
        """
        return self.apply(fn, list(args))

    def apply(self, fn: Any, args: list) -> Any:
        """Like `call`, with the arguments as one list."""
        cls = fn.__class__
        if cls is Lambda or cls is PatternFunction:
            return fn.invoke(args)
        if cls is Builtin:
            return call_builtin(fn, args, self)
        if cls is Symbol:
            return self.apply(self.function_named(fn.name), args)
        if isinstance(fn, str):
            return self.apply(self.function_named(fn), args)
        if isinstance(fn, list) and fn:
            return self._partial(fn, args)
        if callable(fn) and not isinstance(fn, type):
            return call_python(getattr(fn, "__name__", "function"), fn, args, self)
        from .printer import repr_string

        raise LispEError(f"not a function: {repr_string(fn)}")

    def function_named(self, name: str) -> Any:
        """The function a name denotes: a global holding a function, else a visible builtin."""
        cell = self.globals.cells.get(name)
        if cell is not None and cell.v is not UNSET and is_function(cell.v):
            return cell.v
        b = lookup(name, self.interp.libraries)
        if b is not None:
            return b
        raise unknown_function(name, self.interp)

    def _partial(self, lst: list, args: list) -> Any:
        head = lst[0]
        if head in _LAMBDA_HEADS:
            return self.apply(self.interp._eval_data(lst), args)
        rest = list(lst[1:])
        queue = list(args)
        filled = []
        for item in rest:
            if item is _UNDERSCORE and queue:
                filled.append(queue.pop(0))
            elif item.__class__ is Symbol:
                cell = self.globals.cells.get(item.name)
                filled.append(cell.v if cell is not None and cell.v is not UNSET else item)
            else:
                filled.append(item)
        return self.apply(head, queue + filled)


def is_function(v: Any) -> bool:
    """Whether a value can be called from Lisp code."""
    cls = v.__class__
    if cls is Lambda or cls is PatternFunction or cls is Builtin:
        return True
    if isinstance(v, (str, list, dict, int, float, Symbol)) or v is None or v is True:
        return False
    return callable(v) and not isinstance(v, type)


def unknown_function(name: str, interp: Any) -> LispEError:
    """`unknown function: 'x' (did you mean 'y'?)` over visible builtins and user functions."""
    candidates = visible_names(interp.libraries)
    candidates += [n for n, c in interp.globals.cells.items() if c.v is not UNSET and is_function(c.v)]
    best = suggest(name, candidates)
    msg = f"unknown function: '{name}'"
    if best:
        msg += f" (did you mean '{best}'?)"
    else:
        from .libs import library_for

        library = library_for(name)
        if library is not None and library not in interp.libraries:
            msg += f" (functions like it come with (use '{library}))"
    return LispEError(msg)


# --- a big stack for deep recursion -------------------------------------------------------------

_STACK_SIZE = 512 * 1024 * 1024
_RECURSION_LIMIT = 1_000_000
_tls = threading.local()
_limit_lock = threading.Lock()
_limit_users = 0
_saved_limit = 0


def _raise_limit() -> None:
    global _limit_users, _saved_limit
    with _limit_lock:
        if _limit_users == 0:
            _saved_limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_saved_limit, _RECURSION_LIMIT))
        _limit_users += 1


def _restore_limit() -> None:
    """Back to the caller's limit once no big-stack evaluation runs (small stacks need it)."""
    global _limit_users
    with _limit_lock:
        _limit_users -= 1
        if _limit_users == 0:
            sys.setrecursionlimit(_saved_limit)


#: The name of the worker thread `run_with_big_stack` evaluates in.
EVAL_THREAD_NAME = "lispe-eval"


def run_with_big_stack(fn: Callable[[], Any], *, stop_wait: float | None = None) -> Any:
    """Run `fn()` in a thread with a big C stack and a high recursion limit; return or raise its outcome.

    Re-entrant calls (an `eval` from inside running Lisp code) run directly on the current thread.

    Ctrl-C: SIGINT raises KeyboardInterrupt in the main thread, which waits here. The interrupt is
    then carried into the worker (`PyThreadState_SetAsyncExc`): it arrives at the worker's next Python
    instruction (after a running torch operation or a blocking read returns), the Lisp code unwinds,
    and KeyboardInterrupt is raised here once the worker has stopped. `stop_wait` bounds that wait in
    seconds (None: until the worker stops); a second Ctrl-C stops waiting at once. The main thread
    never join()s the worker: an interrupted join() marks a running thread as stopped in some Python
    versions (CPython gh-90882).
    """
    if getattr(_tls, "big", False):
        return fn()
    box: dict[str, Any] = {}
    done = threading.Event()
    gate = threading.Lock()  # orders "the worker has finished" against an interrupt being sent
    state = {"finished": False, "sent": False}

    def target() -> None:
        _tls.big = True
        try:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed to the calling thread
                box["error"] = exc
            with gate:
                state["finished"] = True
                if state["sent"]:  # sent while fn() was returning: it must not fire later
                    _send_async_exc(threading.get_ident(), None)
        except BaseException:  # a late interrupt that landed after fn() returned: nothing to stop
            pass
        finally:
            done.set()

    _raise_limit()
    try:
        with _limit_lock:
            old = threading.stack_size()
            try:
                threading.stack_size(_STACK_SIZE)
                t = threading.Thread(target=target, name=EVAL_THREAD_NAME, daemon=True)
                t.start()
            finally:
                threading.stack_size(old)
        try:
            # A timed wait: a process-directed SIGINT may land on another thread (the worker, a
            # torch or timer thread), which does not wake a blocked wait; returning to Python
            # every 0.1 s lets the main thread run the pending handler. (An untimed wait hung
            # `test_ctrl_c_stops_the_lisp_code_not_only_the_wait` once in CI.)
            while not done.wait(0.1):
                pass
        except KeyboardInterrupt:
            _interrupt_worker(t, gate, state, done, stop_wait)
            raise
    finally:
        _restore_limit()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _send_async_exc(ident: int, exc: type[BaseException] | None) -> int:
    """Raise `exc` in thread `ident` at its next Python instruction (None: cancel a pending one)."""
    import ctypes

    arg = ctypes.py_object(exc) if exc is not None else None
    return ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), arg)


def _interrupt_worker(t: threading.Thread, gate: threading.Lock, state: dict[str, bool],
                      done: threading.Event, stop_wait: float | None) -> None:
    """Send KeyboardInterrupt into worker `t` unless it has finished; wait until it has stopped."""
    with gate:
        if not state["finished"] and t.ident is not None:
            state["sent"] = True
            _send_async_exc(t.ident, KeyboardInterrupt)
    deadline = None if stop_wait is None else time.monotonic() + stop_wait
    try:
        while not done.wait(0.05):
            if deadline is not None and time.monotonic() >= deadline:
                return
            if t.ident not in sys._current_frames():  # the thread is gone (done not set: cannot wait)
                return
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
        return
