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

import ctypes
import os
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any, Callable, Iterator

from .builtins.registry import REGISTRY, Builtin, lookup, visible_names
from .errors import LispEError
from .hints import did_you_mean
from .values import Symbol, type_name


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
                 "body", "source", "rt", "kind", "refs", "params")

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
        # (parameter index, frame slot) of parameters the body changes with += -= *= /=: the slot
        # holds the last value so given; a call site passing a variable there gets it back
        self.refs: tuple[tuple[int, int], ...] = ()
        self.params: Any = None  # the parameter list as written, for error messages

    def arity_text(self) -> str:
        """How many arguments it takes, in words: `2 arguments`, `1 to 3 arguments`, `at least 1
        argument`, `at most 2 arguments`."""
        nreq, nopt = self.nreq, self.nopt
        if self.rest:
            n, words = nreq, f"at least {nreq}"
        elif nopt == 0:
            n, words = nreq, str(nreq)
        elif nreq == 0:
            n, words = nopt, f"at most {nopt}"
        else:
            n, words = nreq + nopt, f"{nreq} to {nreq + nopt}"
        return f"{words} argument{'' if n == 1 else 's'}"

    def accepts(self, n: int) -> bool:
        """Whether a call with `n` arguments binds (the check `Lambda.make_frame` makes)."""
        return n >= self.nreq and (self.rest or n <= self.nreq + self.nopt)

    def params_text(self) -> str:
        """The parameter list as written, `(x (y 2) $ rest)`; "" when there is none to show."""
        if not isinstance(self.params, list):
            return ""
        from .printer import repr_string

        return repr_string(self.params)


class Lambda:
    """A Lisp function value: compiled code plus the frame it closes over."""

    __slots__ = ("code", "env", "body", "nfast", "pad", "name", "nslots")

    def __init__(self, code: FunctionCode, env: list | None, self_value: Any = None):
        self.code = code
        self.env = env
        self.body = code.body
        self.name = code.name
        self.nfast = code.nreq if (code.nopt == 0 and not code.rest and not code.refs) else -1
        self.nslots = code.nreq  # for a defpat clause: its pattern variables
        pad = [UNSET] * code.nextra
        if code.self_index >= 0:
            pad[code.self_index - code.nparams - 1] = self if self_value is None else self_value
        self.pad = pad

    @property
    def lisp_type(self) -> str:
        return self.code.kind

    def arity_error(self, given: int) -> LispEError:
        """`Wrong number of arguments in call to: 'f': expects 2 arguments (x y), got 3`."""
        code = self.code
        params = code.params_text()
        return LispEError(f"Wrong number of arguments in call to: '{self.name}': expects "
                          f"{code.arity_text()}{' ' + params if params else ''}, got {given}")

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
            raise self.arity_error(n)
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


def _param_name(p: Any) -> str | None:
    from .values import Symbol

    if isinstance(p, Symbol):
        return p.name
    if isinstance(p, list) and p and isinstance(p[0], Symbol):
        return p[0].name
    return None


def bind_named(fn: Any, name: str, positional: list, named: dict) -> Any:
    """Call `fn` with positional arguments and arguments given by name (LispE's `(? x 10)`):
    a defun/lambda binds them to its parameters of that name, a class@ constructor to its fields;
    an optional parameter left out takes its default, a required one left out is an error."""
    if isinstance(fn, Lambda):
        code = fn.code
        names = [_param_name(p) for p in (code.params or [])]
        total = code.nreq + code.nopt
        fr = [fn.env, *positional[:total]]
        fr.extend([UNSET] * (total + 1 - len(fr)))
        for k, v in named.items():
            if k not in names[:total]:
                raise LispEError(f"'{name}' has no parameter named '{k}'")
            i = names.index(k)
            if i < len(positional):
                raise LispEError(f"'{name}': the parameter '{k}' is given twice")
            fr[1 + i] = v
        for i in range(code.nreq):
            if fr[1 + i] is UNSET:
                raise LispEError(f"'{name}': missing argument for the parameter '{names[i]}'")
        if len(positional) > total and not code.rest:
            raise fn.arity_error(len(positional) + len(named))
        if code.rest:
            fr.append(list(positional[total:]))
        fr += fn.pad
        for i in range(code.nopt):
            if fr[1 + code.nreq + i] is UNSET:
                fr[1 + code.nreq + i] = code.defaults[i](fr)
        return code.rt.run(fn.body, fr)
    call_named = getattr(fn, "call_named", None)
    if call_named is not None:
        return call_named(positional, named)
    raise LispEError(f"'{name}': arguments given by name, (? name value), need a defun, a lambda "
                     f"or a class@ name")


class PatternFunction:
    """A `defpat` function: the first clause whose patterns match runs.

    As in LispE (`recordingMethod`/`evalpattern`), each clause is indexed by the label of its first
    pattern (a type such as `integer_` for `(integer_ n)` or `0`, a data@ name for `(Point x y)`, or
    none); a call first tries, in definition order, the clauses indexed by its first argument's label
    (its type, or its data@ name and that structure's ancestors), then the others in definition order.
    """

    __slots__ = ("name", "clauses", "keys", "labels", "rt", "ancestors", "_orders")
    lisp_type = "function_"

    def __init__(self, name: str, rt: RuntimeState, ancestors: Callable[[str], list[str]] | None = None):
        self.name = name
        self.clauses: list[tuple[Callable[[list, Any], list | None], Lambda]] = []
        self.keys: list[str] = []
        self.labels: list[str | None] = []
        self.rt = rt
        self.ancestors = ancestors  # data@ name -> [name, parent, ...]; [] for other names
        self._orders: dict[str | None, list] | None = None  # clause order per argument label

    def add_clause(self, key: str, match: Callable[[list, Any], list | None], fn: Lambda,
                   label: str | None = None) -> None:
        """Add a clause; a clause with the same patterns (`key`) is replaced where it stands."""
        if key in self.keys:
            k = self.keys.index(key)
            self.clauses[k] = (match, fn)
            self.labels[k] = label
        else:
            self.keys.append(key)
            self.clauses.append((match, fn))
            self.labels.append(label)
        self._orders = {} if any(lb is not None for lb in self.labels) else None

    def _ordered(self, label: str | None) -> list:
        """The clauses in the order a call whose first argument has `label` tries them."""
        wanted = (self.ancestors(label) if (label is not None and self.ancestors is not None) else []) or [label]
        first = [c for c, lb in zip(self.clauses, self.labels) if lb is not None and lb in wanted]
        order = first + [c for c, lb in zip(self.clauses, self.labels) if lb is None or lb not in wanted]
        self._orders[label] = order  # type: ignore[index]
        return order

    def select(self, args: list) -> tuple[Lambda, list]:
        orders = self._orders
        if orders is None:
            clauses = self.clauses
        else:
            if args:
                a = args[0]
                label = _FAST_LABELS.get(a.__class__)
                if label is None:
                    label = _value_label(a, self.ancestors)
            else:
                label = None
            clauses = orders.get(label)
            if clauses is None:
                clauses = self._ordered(label)
        for match, fn in clauses:
            env = fn.env
            bound = match(args, env)
            if bound is not None:
                if len(bound) < fn.nslots:  # variables a matched branch did not reach (after $ _)
                    bound += [UNSET] * (fn.nslots - len(bound))
                fr = [env, *bound]
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


_FAST_LABELS = {int: "integer_", str: "string_", float: "number_"}


def _value_label(v: Any, ancestors: Any) -> str | None:
    """The index label of a defpat argument: a data@ value's name, else the type of the value (or of
    the first element, through nested lists) as LispE's `extractdynamiclabel` finds it."""
    while isinstance(v, list):
        if not v:
            return None
        v = v[0]
        if v.__class__ is Symbol and ancestors is not None and ancestors(v.name):
            return v.name
    return type_name(v)


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

    def function_named(self, name: str, _seen: tuple = ()) -> Any:
        """The function a name denotes: a global holding a function, else a visible builtin.

        A global holding a symbol that names a function denotes that function: (setq a '<).
        """
        cell = self.globals.cells.get(name)
        if cell is not None and cell.v is not UNSET and is_function(cell.v):
            return cell.v
        if cell is not None and cell.v.__class__ is Symbol and cell.v.name not in _seen \
                and lookup(name, self.interp.libraries) is None:
            return self.function_named(cell.v.name, _seen + (name,))
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
    # names lispe_py lists as unsupported (upstream's, with a reason) are never a useful suggestion
    candidates = [n for n in visible_names(interp.libraries) if REGISTRY[n].group != "unsupported"]
    candidates += [n for n, c in interp.globals.cells.items() if c.v is not UNSET and is_function(c.v)]
    msg = f"unknown function: '{name}'"
    from .libs import library_for

    library = library_for(name)
    if library is not None and library not in interp.libraries:
        return LispEError(msg + f" (functions like it come with (use '{library}))")
    return LispEError(msg + did_you_mean(name, candidates))


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


class LimitExceeded(BaseException):
    """Raised into the evaluating thread when its time or memory limit is passed. Not an Exception,
    so no Lisp `catch`/`maybe` and no builtin's error wrapping stops it; `run_with_big_stack`
    turns it into the LispEError the `Limits` object words."""


class Limits:
    """The limits of one evaluation (Interpreter max_seconds / max_memory, lispe --max-seconds /
    --max-memory), checked by `run_with_big_stack`'s waiting thread every POLL seconds: wall-clock
    time since this object was made, and the process's resident memory."""

    POLL = 0.02
    #: After raising LimitExceeded into the worker, how long to wait for it to stop before giving up
    #: on it (a blocking call such as `sleep`, or one long native call, only sees it when it returns).
    GRACE = 1.0

    def __init__(self, max_seconds: float | None = None, max_memory: float | None = None) -> None:
        self.max_seconds, self.max_memory = max_seconds, max_memory
        self.deadline = None if max_seconds is None else time.monotonic() + max_seconds

    def exceeded(self) -> str | None:
        """The error message of a passed limit, or None."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return f"time limit exceeded ({_number(self.max_seconds)} s)"
        if self.max_memory is not None and resident_bytes() > self.max_memory * 1024 * 1024:
            return f"memory limit exceeded ({_number(self.max_memory)} MB)"
        return None


def _number(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def resident_bytes() -> int:
    """The process's resident memory (Linux: /proc/self/statm; elsewhere the peak, from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _watch_limits(limits: Limits, t: threading.Thread, gate: threading.Lock, state: dict[str, bool],
                  done: threading.Event) -> None:
    """Wait for the worker; when a limit is passed raise LimitExceeded into it and wait up to GRACE
    for it to stop. Raises the limit's LispEError either way (the worker may still be running)."""
    while not done.wait(limits.POLL):
        message = limits.exceeded()
        if message is None:
            continue
        with gate:
            if state["finished"] or t.ident is None:
                return
            state["sent"] = True
            _send_async_exc(t.ident, LimitExceeded)
        done.wait(limits.GRACE)
        raise LispEError(message)


def run_with_big_stack(fn: Callable[[], Any], *, stop_wait: float | None = None,
                       limits: Limits | None = None) -> Any:
    """Run `fn()` in a thread with a big C stack and a high recursion limit; return or raise its outcome.

    Re-entrant calls (an `eval` from inside running Lisp code) run directly on the current thread.

    Ctrl-C: SIGINT raises KeyboardInterrupt in the main thread, which waits here. The interrupt is
    then carried into the worker (`PyThreadState_SetAsyncExc`): it arrives at the worker's next Python
    instruction (after a running torch operation or a blocking read returns), the Lisp code unwinds,
    and KeyboardInterrupt is raised here once the worker has stopped. `stop_wait` bounds that wait in
    seconds (None: until the worker stops); a second Ctrl-C stops waiting at once. The main thread
    never join()s the worker: an interrupted join() marks a running thread as stopped in some Python
    versions (CPython gh-90882).

    limits: a `Limits` (time, memory) this thread watches while it waits; a passed limit raises
    LimitExceeded into the worker and its LispEError here (see `_watch_limits`).
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
            if limits is not None:
                _watch_limits(limits, t, gate, state, done)
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
    """Raise `exc` in thread `ident` at its next Python instruction (None: cancel a pending one).
    ctypes is imported with this module: imported here, a process at its memory limit could not map
    libffi, and the memory-limit error would become an ImportError."""
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
