"""The `lispe` command: run a script, an expression (`-e`), stdin, or start the REPL.

    lispe FILE [ARGS...]      run FILE; ARGS go to _args; prints only what the script prints
    lispe -e CODE             run CODE and print the value of its last form (not the void value)
    lispe - | piped stdin     run the program read from stdin
    lispe                     the interactive REPL (on a terminal)

Exit status: 0 success, 1 LispE error (message on stderr, earlier output kept), 2 usage error.
Imports stay lazy: `lispe -e '(+ 1 2)'` must start fast and never imports torch.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

USAGE = """usage: lispe [options] [FILE | -e CODE | -] [ARGS...]

Run LispE programs.

  FILE               run a LispE script; ARGS are bound to _args
  -e, --eval CODE    run CODE and print the value of its last form
  -                  read the program from stdin (also when stdin is not a terminal)
  (nothing)          start the interactive REPL

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

Exit status: 0 on success, 1 on a LispE error (reported on stderr), 2 on a usage error.
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lispe` console script; returns the exit status (130 after Ctrl-C)."""
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # Ctrl-C while starting up or running: no traceback
        _interrupted()
        return 130


def _interrupted() -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    sys.stderr.write("Interrupted\n")


def _main(argv: Sequence[str]) -> int:
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
    except LispEError as exc:
        sys.stdout.flush()
        sys.stderr.write(exc.format() + "\n")
        return 1
    except KeyboardInterrupt:
        _interrupted()
        return 130
    finally:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass
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

    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise LispEError(f"cannot read {path}: {exc}") from None


def _repl(interp, vi_mode: bool) -> int:
    """The interactive console (lispe_py.repl); `--vi` starts it with Vi key bindings."""
    from .repl import run_repl

    run_repl(interp, vi_mode=True if vi_mode else None)  # None: LISPE_EDITING_MODE decides
    return 0


if __name__ == "__main__":
    sys.exit(main())
