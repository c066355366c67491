"""The `lispe` command: run a script, an expression (`-e`), stdin, or start the REPL.

    lispe FILE [ARGS...]      run FILE; ARGS go to _args; prints only what the script prints
    lispe -e CODE             run CODE and print the value of its last form (not the void value)
    lispe - | piped stdin     run the program read from stdin
    lispe                     the interactive REPL (on a terminal)

Exit status: 0 success, 1 LispE error (message on stderr, earlier output kept), 2 usage error,
130 after Ctrl-C (a second Ctrl-C as well), 141 when the reader of the output went away (a broken
pipe: `lispe prog.lisp | head -1`, quietly, as a program killed by SIGPIPE), 1 with a one-line
message when standard output is closed (`lispe prog.lisp >&-`) or cannot be written.
Imports stay lazy: `lispe -e '(+ 1 2)'` must start fast and never imports torch.
"""
from __future__ import annotations

import errno
import os
import sys
from typing import Any, Sequence

USAGE = """usage: lispe [options] [FILE | -e CODE | -] [ARGS...]

Run LispE programs.

  FILE               run a LispE script; ARGS are bound to _args
  -e, --eval CODE    run CODE and print the value of its last form
  -                  read the program from stdin (also when stdin is not a terminal)
  (nothing)          start the interactive REPL
  chat [MODEL]       chat with an instruct model (lispe chat --help; docs/chat.md)
  serve MODEL ...    serve a model over the OpenAI HTTP API (lispe serve --help; docs/serving.md)
  kernel install     register the LispE Jupyter kernel (lispe kernel --help; docs/jupyter.md)

options:
  --print-result     after running FILE or stdin, print the value of the last form
  --sandbox          read files only in the script folder, write none, no network (docs/security.md)
  --allow-read PATH  (sandbox) also read files under PATH; repeatable
  --allow-write PATH (sandbox) write files under PATH; repeatable
  --allow-net HOST   (sandbox) allow network access to HOST or HOST:PORT; repeatable
  --max-seconds N    stop the program after N seconds: "time limit exceeded (N s)"
  --max-memory MB    stop the program when the process uses more than MB megabytes
  --vi               start the REPL with Vi key bindings (also LISPE_EDITING_MODE=vi)
  --version          print the version and exit
  -h, --help         show this help and exit

Exit status: 0 on success, 1 on a LispE error (reported on stderr), 2 on a usage error,
130 after Ctrl-C, 141 when the output pipe is closed by its reader (as with SIGPIPE).
"""


class _Usage(Exception):
    pass


def _parse(argv: Sequence[str]) -> dict:
    opts = {"print_result": False, "sandbox": False, "code": None, "file": None, "args": [],
            "stdin": False, "vi": False, "allow_read": [], "allow_write": [], "allow_net": [],
            "max_seconds": None, "max_memory": None}
    i = 0
    argv = list(argv)
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            opts["help"] = True
            return opts
        if a == "--version":
            opts["version"] = True
            return opts
        if a == "--print-result":
            opts["print_result"] = True
        elif a == "--sandbox":
            opts["sandbox"] = True
        elif a.split("=", 1)[0] in _VALUE_OPTIONS:
            name, value, i = _option_value(argv, i)
            key = name[2:].replace("-", "_")
            if key.startswith("allow_"):
                if not value:
                    raise _Usage(f"{name} needs a non-empty value")
                opts[key].append(value)
                opts["sandbox"] = True
            else:
                opts[key] = _positive_number(name, value)
        elif a == "--vi":
            opts["vi"] = True
        elif a in ("-e", "--eval"):
            if i + 1 >= len(argv):
                raise _Usage(f"{a} needs an argument")
            opts["code"] = argv[i + 1]
            opts["args"] = argv[i + 2:]
            return opts
        elif a == "-":
            opts["stdin"] = True
            opts["args"] = argv[i + 1:]
            return opts
        elif a == "--":
            if i + 1 < len(argv):
                opts["file"] = argv[i + 1]
                opts["args"] = argv[i + 2:]
            return opts
        elif a.startswith("-") and len(a) > 1:
            raise _Usage(f"unknown option {a}")
        else:
            opts["file"] = a
            opts["args"] = argv[i + 1:]
            return opts
        i += 1
    return opts


_VALUE_OPTIONS = ("--allow-read", "--allow-write", "--allow-net", "--max-seconds", "--max-memory")


def _option_value(argv: list[str], i: int) -> tuple[str, str, int]:
    """(option name, its value, index of the value's word): `--opt VALUE` or `--opt=VALUE`."""
    a = argv[i]
    if "=" in a:
        name, value = a.split("=", 1)
        return name, value, i
    if i + 1 >= len(argv):
        raise _Usage(f"{a} needs an argument")
    return a, argv[i + 1], i + 1


def _positive_number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0 or number == float("inf"):
        raise _Usage(f"{name} expects a positive number, got {value!r}")
    return int(number) if number.is_integer() else number


#: How long `lispe` waits, after Ctrl-C, for the running program to stop before it exits anyway
#: (a program blocked reading its input only sees the interrupt once the read returns).
STOP_WAIT = 1.0


#: Exit status after a broken pipe on standard output: 128 + SIGPIPE, what a shell reports for a
#: program SIGPIPE killed (`yes | head -1`).
EXIT_BROKEN_PIPE = 141


class OutputClosed(BaseException):
    """Standard output cannot be written any more. A BaseException, not an Exception: the builtin
    error wrapping, `catch` and `maybe` let it through, so the program stops at the failed write."""

    def __init__(self, broken_pipe: bool, reason: str):
        super().__init__(reason)
        self.broken_pipe = broken_pipe
        self.reason = reason


class _GuardedOutput:
    """sys.stdout while a program runs: a failed write or flush raises OutputClosed (Python leaves
    sys.stdout as None when the process starts with descriptor 1 closed)."""

    def __init__(self, stream: Any):
        self._stream = stream

    def _fail(self, exc: BaseException | None) -> OutputClosed:
        if isinstance(exc, BrokenPipeError):
            return OutputClosed(True, "broken pipe")
        if exc is None or isinstance(exc, ValueError) or getattr(exc, "errno", None) == errno.EBADF:
            return OutputClosed(False, "standard output is closed")
        return OutputClosed(False, f"cannot write to standard output: {exc.strerror or exc}")

    def write(self, text: str) -> int:
        if self._stream is None:
            raise self._fail(None)
        try:
            return self._stream.write(text)
        except (OSError, ValueError) as exc:
            raise self._fail(exc) from None

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except (OSError, ValueError) as exc:
            raise self._fail(exc) from None

    def __getattr__(self, name: str) -> Any:
        if self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)


def _output_closed(exc: OutputClosed, stream: Any) -> int:
    """Stop quietly after a broken pipe (status 141); one line on stderr otherwise (status 1).
    Descriptor 1 then points at /dev/null, so the flush at exit cannot fail again (Python's
    advice in its signal module notes on SIGPIPE)."""
    if stream is not None:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
    if exc.broken_pipe:
        return EXIT_BROKEN_PIPE
    _error_line(f"lispe: {exc.reason}\n")
    return 1


def _error_line(text: str) -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.write(text)
            sys.stderr.flush()
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lispe` console script; returns the exit status (130 after Ctrl-C).

    After the first Ctrl-C is handled, SIGINT is ignored: a second Ctrl-C (the first one may take a
    moment to stop a long torch operation) must not end the process through Python's default
    handling of an uncaught KeyboardInterrupt (killed by SIGINT, status -2) or print a traceback."""
    stream = sys.stdout
    try:
        try:
            return _main(sys.argv[1:] if argv is None else argv)
        except KeyboardInterrupt:  # Ctrl-C while starting up or running: no traceback
            _ignore_sigint()
            _interrupted()
            return 130
        except OutputClosed as exc:
            return _output_closed(exc, stream)
    except KeyboardInterrupt:  # a further Ctrl-C while the first one was being reported
        _ignore_sigint()
        return 130
    finally:
        if sys.stdout is not stream and isinstance(sys.stdout, _GuardedOutput):
            sys.stdout = stream


_sigint_state = {"count": 0, "reported": False}


def _install_sigint_handler() -> Any:
    """While a program runs: the first Ctrl-C raises KeyboardInterrupt (the program unwinds, status
    130); a second one, while the first is still stopping a long operation, exits at once with 130.
    Returns the previous handler (None when it could not be set: not the main thread)."""
    import signal

    _sigint_state.update(count=0, reported=False)

    def on_sigint(signum: int, frame: Any) -> None:
        _sigint_state["count"] += 1
        if _sigint_state["count"] == 1:
            raise KeyboardInterrupt
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if sys.stdout is not None:
                sys.stdout.flush()
        except BaseException:  # a closed or broken output: nothing more to save
            pass
        if not _sigint_state["reported"]:
            _error_line("Interrupted\n")
        os._exit(130)

    try:
        return signal.signal(signal.SIGINT, on_sigint)
    except (ValueError, OSError):
        return None


def _restore_sigint_handler(previous: Any) -> None:
    import signal

    if previous is None or _sigint_state["count"]:
        return  # after a Ctrl-C, SIGINT stays ignored until the process ends
    try:
        signal.signal(signal.SIGINT, previous)
    except (ValueError, OSError):
        pass


def _ignore_sigint() -> None:
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # not the main thread
        pass


def _interrupted() -> None:
    _sigint_state["reported"] = True
    try:
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError, OutputClosed):
        pass
    _error_line("Interrupted\n")


def _main(argv: Sequence[str]) -> int:
    if argv and argv[0] in _SUBCOMMANDS:  # `lispe -- chat` runs a file named chat
        return _SUBCOMMANDS[argv[0]](list(argv[1:]))
    try:
        opts = _parse(argv)
    except _Usage as exc:
        sys.stderr.write(f"lispe: {exc}\n{USAGE}")
        return 2
    if opts.get("help"):
        sys.stdout.write(USAGE)
        return 0
    if opts.get("version"):
        from . import __version__

        sys.stdout.write(f"lispe_py {__version__}\n")
        return 0

    from . import Interpreter, LispEError

    if opts["file"] is not None and not os.path.isfile(opts["file"]):
        sys.stderr.write(f"lispe: cannot open {opts['file']}: no such file\n")
        return 2
    script_dir = os.path.dirname(os.path.abspath(opts["file"])) if opts["file"] else os.getcwd()
    interp = Interpreter(sandbox=opts["sandbox"], script_dir=script_dir, args=opts["args"],
                         allow_read=opts["allow_read"], allow_write=opts["allow_write"],
                         allow_net=opts["allow_net"], max_seconds=opts["max_seconds"],
                         max_memory=opts["max_memory"])

    if opts["code"] is None and opts["file"] is None and not opts["stdin"] and sys.stdin.isatty():
        if opts["max_seconds"] is not None or opts["max_memory"] is not None:
            sys.stderr.write("lispe: --max-seconds and --max-memory limit a program (FILE, -e or -), "
                             "not the REPL\n")
            return 2
        return _repl(interp, opts["vi"])
    limits = interp.limits()  # one deadline for the whole program
    if limits is not None:
        problem = _hard_limits(opts["max_seconds"], opts["max_memory"])
        if problem:
            sys.stderr.write(f"lispe: {problem}\n")
            return 2

    from .printer import to_string
    from .runtime import run_with_big_stack
    from .values import VOID

    show = opts["print_result"] or opts["code"] is not None
    stream = sys.stdout
    sys.stdout = _GuardedOutput(stream)
    previous_handler = _install_sigint_handler()
    try:
        if opts["code"] is not None:
            value = run_with_big_stack(lambda: interp._run_text(opts["code"], "<command line>"),
                                       stop_wait=STOP_WAIT, limits=limits)
        elif opts["file"] is not None:
            value = run_with_big_stack(lambda: interp._run_text(_read(opts["file"]), opts["file"]),
                                       stop_wait=STOP_WAIT, limits=limits)
        else:
            text = sys.stdin.read()
            value = run_with_big_stack(lambda: interp._run_text(text, "<stdin>"), stop_wait=STOP_WAIT,
                                       limits=limits)
        if show and value is not VOID:
            text = run_with_big_stack(lambda: to_string(value), stop_wait=STOP_WAIT, limits=limits)
            sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except LispEError as exc:
        sys.stdout.flush()
        _error_line(exc.format() + "\n")
        return 1
    except KeyboardInterrupt:
        _ignore_sigint()
        _interrupted()
        return 130
    except OutputClosed as exc:
        return _output_closed(exc, stream)
    finally:
        sys.stdout = stream
        _restore_sigint_handler(previous_handler)
    return 0


#: Seconds past --max-seconds after which SIGALRM ends the process whatever it is doing (a native call
#: that holds the interpreter lock never lets the LispE error be raised).
ALARM_MARGIN = 3


def _hard_limits(max_seconds: float | None, max_memory: float | None) -> str | None:
    """The kernel-enforced backstops of --max-seconds / --max-memory in this process (docs/security.md):
    SIGALRM (default action: end the process) ALARM_MARGIN s after the deadline, and RLIMIT_DATA (the
    process's private writable memory, beyond which allocations fail) at MB plus the evaluation
    thread's reserved stack. Returns why the limits cannot be set, or None."""
    import math
    import signal

    if max_seconds is not None and hasattr(signal, "alarm"):
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(math.ceil(max_seconds) + ALARM_MARGIN)
    if max_memory is None:
        return None
    try:
        import resource
    except ImportError:  # not a POSIX system: the watchdog alone
        return None
    from .runtime import _STACK_SIZE, resident_bytes

    used = resident_bytes()
    if used > max_memory * 1024 * 1024:
        return f"--max-memory {max_memory} MB is below what the interpreter already uses ({used >> 20} MB)"
    cap = int(max_memory * 1024 * 1024) + _STACK_SIZE
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    except (ValueError, OSError) as exc:
        return f"cannot set the memory limit: {exc}"
    return None


def _read(path: str) -> str:
    from .errors import LispEError
    from .reader import decode_source

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise LispEError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decode_source(data, path)  # invalid UTF-8: an error at its line and column


def _repl(interp, vi_mode: bool) -> int:
    """The interactive console (lispe_py.repl); `--vi` starts it with Vi key bindings."""
    from .repl import run_repl

    run_repl(interp, vi_mode=True if vi_mode else None)  # None: LISPE_EDITING_MODE decides
    return 0


def _chat(argv: list[str]) -> int:
    from .chat import run_chat

    stream = sys.stdout
    sys.stdout = _GuardedOutput(stream)  # a closed pipe (`lispe chat | head`): 141, quietly (main)
    try:
        return run_chat(argv)
    finally:
        sys.stdout = stream


def _serve(argv: list[str]) -> int:
    from .serve.cli import main as serve_main

    return serve_main(argv)


def _kernel(argv: list[str]) -> int:
    from .kernel.install import run_kernel_command

    return run_kernel_command(argv)


#: `lispe WORD ...` subcommands: WORD -> function(rest of argv) -> exit status.
_SUBCOMMANDS = {"chat": _chat, "serve": _serve, "kernel": _kernel}


if __name__ == "__main__":
    sys.exit(main())
