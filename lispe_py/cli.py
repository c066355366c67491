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
  --sandbox          refuse file access outside the script folder (load, fread, fwrite)
  --vi               start the REPL with Vi key bindings (also LISPE_EDITING_MODE=vi)
  --version          print the version and exit
  -h, --help         show this help and exit

Exit status: 0 on success, 1 on a LispE error (reported on stderr), 2 on a usage error.
"""


class _Usage(Exception):
    pass


def _parse(argv: Sequence[str]) -> dict:
    opts = {"print_result": False, "sandbox": False, "code": None, "file": None, "args": [],
            "stdin": False, "vi": False}
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
    interp = Interpreter(sandbox=opts["sandbox"], script_dir=script_dir, args=opts["args"])

    if opts["code"] is None and opts["file"] is None and not opts["stdin"] and sys.stdin.isatty():
        return _repl(interp, opts["vi"])

    from .printer import to_string
    from .runtime import run_with_big_stack
    from .values import VOID

    show = opts["print_result"] or opts["code"] is not None
    try:
        if opts["code"] is not None:
            value = run_with_big_stack(lambda: interp._run_text(opts["code"], "<command line>"),
                                       stop_wait=STOP_WAIT)
        elif opts["file"] is not None:
            value = run_with_big_stack(lambda: interp._run_text(_read(opts["file"]), opts["file"]),
                                       stop_wait=STOP_WAIT)
        else:
            text = sys.stdin.read()
            value = run_with_big_stack(lambda: interp._run_text(text, "<stdin>"), stop_wait=STOP_WAIT)
        if show and value is not VOID:
            text = run_with_big_stack(lambda: to_string(value), stop_wait=STOP_WAIT)
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


if __name__ == "__main__":
    sys.exit(main())
