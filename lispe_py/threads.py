"""Threads as LispE has them: `dethread`, `wait`, `sleep`, `lock`, `waiton`/`trigger`, `threadstore`.

A function defined with `(dethread name (params) body...)` runs, each time it is called, in a new
Python thread and the call gives nil at once. The thread shares the interpreter's globals (a `setq`
of a global in the thread is seen by all); its parameters and locals are its own. `(wait)` waits
until every thread launched so far (and those they launch) has finished; if one of them stopped on
an error, `wait` then raises that error (`in thread 'name': message`, at its place in the thread's
code). The state lives on the interpreter (`state_of`).
"""
from __future__ import annotations

import threading
import time
from typing import Any

from .compiler import Compiler, Node, Scope, err_at, special
from .errors import LispEError
from .runtime import Lambda, RuntimeState, _limit_lock, _raise_limit, _restore_limit, _STACK_SIZE, _tls
from .values import type_name

_state_lock = threading.Lock()
_depths: dict[int, threading.local] = {}


class _PerThreadDepth(RuntimeState):
    """A RuntimeState whose call depth is counted per thread (see `_count_depth_per_thread`)."""

    __slots__ = ()

    @property  # type: ignore[override]
    def depth(self) -> int:
        return getattr(_depths[id(self)], "d", 0)

    @depth.setter
    def depth(self, value: int) -> None:
        _depths[id(self)].d = value


def _count_depth_per_thread(rt: RuntimeState) -> None:
    """From the first thread on, count the interpreter's Lisp call depth per thread.

    Compiled calls bump one shared counter; threads interleaving those updates would leave it wrong
    (a false stack overflow later). Switching the state's class keeps every compiled call site as it
    is; the calling thread keeps its depth, a new thread starts at 0. Programs without threads
    never pay for the thread-local lookup.
    """
    with _state_lock:
        if rt.__class__ is RuntimeState:
            current = rt.depth
            local = threading.local()
            local.d = current
            _depths[id(rt)] = local
            rt.__class__ = _PerThreadDepth


class ThreadState:
    """Per interpreter: running threads, their errors, named locks and events, the thread store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.errors: list[LispEError] = []
        self.locks: dict[str, threading.RLock] = {}
        self.events: dict[str, list] = {}  # key -> [Condition, generation]
        self.store: dict[str, list] = {}
        self.store_lock = threading.Lock()


def state_of(interp: Any) -> ThreadState:
    st = getattr(interp, "_lispe_threads", None)
    if st is None:
        with _state_lock:
            st = getattr(interp, "_lispe_threads", None)
            if st is None:
                st = interp._lispe_threads = ThreadState()
    return st


class ThreadFunction:
    """The value of a `dethread` name: calling it starts the body in a new thread."""

    lisp_type = "thread_"

    def __init__(self, fn: Lambda, state: ThreadState):
        self.fn = fn
        self.name = fn.name
        self.__name__ = fn.name  # how the printer names a callable: <function square>
        self.state = state

    def __call__(self, *args: Any) -> Any:
        frame = self.fn.make_frame(list(args))  # a wrong argument count fails in the caller
        fn, st = self.fn, self.state
        _count_depth_per_thread(fn.code.rt)

        def run() -> None:
            _tls.big = True
            _raise_limit()
            try:
                fn.code.rt.run(fn.body, frame)
            except BaseException as exc:  # kept for `wait`: an error must not vanish with its thread
                with st.lock:
                    st.errors.append(_thread_error(fn.name, exc, fn.code.rt))
            finally:
                _restore_limit()

        with _limit_lock:
            old = threading.stack_size()
            try:
                threading.stack_size(_STACK_SIZE)
                t = threading.Thread(target=run, name=f"lispe-thread-{fn.name}", daemon=True)
            finally:
                threading.stack_size(old)
        with st.lock:
            st.threads.append(t)
        t.start()
        return None

    def __repr__(self) -> str:
        return f"#<thread {self.name}>"


def _thread_error(name: str, exc: BaseException, rt: RuntimeState) -> LispEError:
    """The error `wait` raises for a thread stopped by `exc`: its message, where it happened."""
    from .runtime import BreakSignal

    if isinstance(exc, LispEError):
        inner = exc
    elif isinstance(exc, RecursionError):
        inner = rt.overflow()
    elif isinstance(exc, BreakSignal):
        inner = LispEError("break outside of a loop")
    elif isinstance(exc, KeyboardInterrupt):
        inner = LispEError("interrupted")
    else:  # a bug of ours: reported like _run_form reports one
        inner = LispEError(f"internal error: {type(exc).__name__}: {exc}")
    return LispEError(f"in thread '{name}': {inner.message}", inner.filename, inner.line, inner.column,
                      inner.source_line)


def _need(c: Compiler, form: list, lo: int, hi: int | None = None) -> None:
    n = len(form) - 1
    if n < lo or (hi is not None and n > hi):
        raise err_at(LispEError(f"Wrong number of arguments in call to: '{form[0].name}'"), c.pos)


def _key(v: Any) -> str:
    from .printer import to_string

    return v if isinstance(v, str) else to_string(v)


@special("dethread")
def _dethread(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(dethread work (n) (threadstore "out" (* n n))) defines a function whose calls run as threads.

    Each call (work 3) starts the body in a new thread with its own parameters and gives nil at
    once; globals are shared. (wait) waits for all the threads.
    """
    _need(c, form, 2)
    from .values import Symbol

    name = form[1]
    if not isinstance(name, Symbol):
        raise err_at(LispEError("dethread: the function name must be a symbol"), c.pos)
    code = c.compile_function(name.name, form[2], list(form[3:]), scope, "fn", form)
    cell = c.globals.cell(name.name)
    st = state_of(c.interp)

    def dethread(f: list) -> Any:
        tf = ThreadFunction(Lambda(code, f), st)
        cell.v = tf
        return tf
    return dethread


@special("wait")
def _wait(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(wait) waits until every thread started by a dethread function has finished; returns true.

    If a thread stopped on an error, wait raises that error once all have finished, naming the thread
    and pointing at the form that failed.
    """
    _need(c, form, 0, 0)
    st, pos = state_of(c.interp), c.pos

    def wait(f: list) -> Any:
        me = threading.current_thread()
        while True:
            with st.lock:
                pending = [t for t in st.threads if t is not me]
                st.threads = [t for t in st.threads if t is me]
            if not pending:
                break
            for t in pending:
                t.join()
        with st.lock:
            errors, st.errors = st.errors, []
        if errors:  # the first error, at its place in the thread's code (else at this wait)
            raise err_at(errors[0], pos)
        return True
    return wait


@special("sleep")
def _sleep(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(sleep 100) pauses the running thread for 100 milliseconds; returns true."""
    _need(c, form, 1, 1)
    value, pos = c.comp(form[1], scope, False), c.pos

    def sleep(f: list) -> Any:
        ms = value(f)
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms < 0:
            raise err_at(LispEError(f"sleep: expected a number of milliseconds, got {type_name(ms)}"), pos)
        time.sleep(ms / 1000)
        return True
    return sleep


@special("lock")
def _lock(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(lock "total" (+= total 1)) runs its forms holding the lock named "total"; returns the last value.

    Threads locking the same key run those forms one at a time.
    """
    _need(c, form, 1)
    key = c.comp(form[1], scope, False)
    body = c.comp_body(list(form[2:]), scope, False)
    st = state_of(c.interp)

    def lock(f: list) -> Any:
        k = _key(key(f))
        with st.lock:
            lk = st.locks.get(k)
            if lk is None:
                lk = st.locks[k] = threading.RLock()
        with lk:
            return body(f)
    return lock


def _event(st: ThreadState, k: str) -> list:
    with st.lock:
        ev = st.events.get(k)
        if ev is None:
            ev = st.events[k] = [threading.Condition(), 0]
    return ev


@special("waiton")
def _waiton(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(waiton "go") blocks the running thread until another one calls (trigger "go"); returns true.

    A trigger sent before the wait started is not remembered.
    """
    _need(c, form, 1, 1)
    key, st = c.comp(form[1], scope, False), state_of(c.interp)

    def waiton(f: list) -> Any:
        ev = _event(st, _key(key(f)))
        cond = ev[0]
        with cond:
            gen = ev[1]
            while ev[1] == gen:
                cond.wait()
        return True
    return waiton


@special("trigger")
def _trigger(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(trigger "go") wakes every thread waiting with (waiton "go"); returns true."""
    _need(c, form, 1, 1)
    key, st = c.comp(form[1], scope, False), state_of(c.interp)

    def trigger(f: list) -> Any:
        ev = _event(st, _key(key(f)))
        with ev[0]:
            ev[1] += 1
            ev[0].notify_all()
        return True
    return trigger


@special("threadstore")
def _threadstore(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(threadstore "results" 42) appends 42 to the protected list "results"; returns true.

    Threads keep their results there; (threadretrieve "results") reads them.
    """
    _need(c, form, 2, 2)
    key, value, st = c.comp(form[1], scope, False), c.comp(form[2], scope, False), state_of(c.interp)

    def threadstore(f: list) -> Any:
        k, v = _key(key(f)), value(f)
        with st.store_lock:
            st.store.setdefault(k, []).append(v)
        return True
    return threadstore


@special("threadretrieve")
def _threadretrieve(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(threadretrieve "results") gives a copy of the list threadstore filled; nil if none.

    Without an argument: a dictionary of every list by its name.
    """
    _need(c, form, 0, 1)
    key = c.comp(form[1], scope, False) if len(form) > 1 else None
    st = state_of(c.interp)

    def threadretrieve(f: list) -> Any:
        with st.store_lock:
            if key is None:
                return {k: list(v) for k, v in st.store.items()}
            v = st.store.get(_key(key(f)))
            return list(v) if v is not None else None
    return threadretrieve


@special("threadclear")
def _threadclear(c: Compiler, form: list, scope: Scope, tail: bool) -> Node:
    """(threadclear "results") empties the threadstore list "results"; (threadclear) all of them.

    Returns true.
    """
    _need(c, form, 0, 1)
    key = c.comp(form[1], scope, False) if len(form) > 1 else None
    st = state_of(c.interp)

    def threadclear(f: list) -> Any:
        with st.store_lock:
            if key is None:
                st.store.clear()
            else:
                st.store.pop(_key(key(f)), None)
        return True
    return threadclear
