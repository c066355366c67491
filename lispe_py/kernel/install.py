"""`lispe kernel install [--user] [--prefix P] [--name N]`: register the LispE kernel with Jupyter.

The kernelspec (kernel.json) runs `python -m lispe_py.kernel -f {connection_file}` with the Python
that ran this command, so the kernel finds the same lispe_py installation; jupyter_client's
`KernelSpecManager.install_kernel_spec` copies it where Jupyter looks (the environment's
share/jupyter/kernels by default, the user's data folder with --user, PREFIX/share/jupyter/kernels
with --prefix).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any, Sequence

DEFAULT_NAME = "lispe"
DISPLAY_NAME = "LispE"

USAGE = """usage: lispe kernel install [--user] [--prefix PREFIX] [--name NAME] [--display-name TEXT]

Register the LispE Jupyter kernel (needs the `kernel` extra: pip install 'lispe_py[kernel]').

  --user               install for the current user (Jupyter's user data folder)
  --prefix PREFIX      install under PREFIX/share/jupyter/kernels (a virtual environment, a conda env)
  --name NAME          the kernelspec's name (default: lispe)
  --display-name TEXT  the name notebooks show (default: LispE)
  -h, --help           show this help and exit

Without --user or --prefix, the kernel goes to the system-wide (or the current environment's)
Jupyter data folder. The kernel runs `python -m lispe_py.kernel` with this Python.
"""


class KernelUsage(Exception):
    """A bad `lispe kernel` command line (exit status 2)."""


def kernel_json(display_name: str = DISPLAY_NAME, python: str | None = None) -> dict[str, Any]:
    """The kernelspec's kernel.json."""
    return {
        "argv": [python or sys.executable, "-m", "lispe_py.kernel", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "lispe",
        "interrupt_mode": "signal",
        "metadata": {"debugger": False},
    }


def write_kernelspec(folder: str, display_name: str = DISPLAY_NAME, python: str | None = None,
                     env: dict[str, str] | None = None) -> str:
    """Write kernel.json into `folder` (created if needed); `env` adds environment variables to the
    kernel's. Returns the folder."""
    os.makedirs(folder, exist_ok=True)
    spec = kernel_json(display_name, python)
    if env:
        spec["env"] = dict(env)
    with open(os.path.join(folder, "kernel.json"), "w", encoding="utf-8") as fh:
        json.dump(spec, fh, indent=2)
        fh.write("\n")
    return folder


def install(name: str = DEFAULT_NAME, user: bool = False, prefix: str | None = None,
            display_name: str = DISPLAY_NAME) -> str:
    """Register the kernelspec through jupyter_client's KernelSpecManager; returns where it went."""
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        source = write_kernelspec(os.path.join(tmp, name), display_name)
        return KernelSpecManager().install_kernel_spec(source, kernel_name=name, user=user, prefix=prefix)


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        return {"help": True}
    if args[0] != "install":
        raise KernelUsage(f"unknown kernel command {args[0]!r} (the command is: lispe kernel install)")
    opts: dict[str, Any] = {"help": False, "user": False, "prefix": None, "name": DEFAULT_NAME,
                            "display_name": DISPLAY_NAME}
    values = {"--prefix": "prefix", "--name": "name", "--display-name": "display_name"}
    i = 1
    while i < len(args):
        a = args[i]
        option = a.split("=", 1)[0]
        if a in ("-h", "--help"):
            opts["help"] = True
        elif a == "--user":
            opts["user"] = True
        elif option in values:
            if "=" in a:
                value = a.split("=", 1)[1]
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise KernelUsage(f"{a} needs a value")
            if not value:
                raise KernelUsage(f"{option} needs a non-empty value")
            opts[values[option]] = value
        else:
            raise KernelUsage(f"unknown option {a}")
        i += 1
    if opts["user"] and opts["prefix"] is not None:
        raise KernelUsage("--user and --prefix cannot be combined")
    return opts


def run_kernel_command(argv: Sequence[str]) -> int:
    """`lispe kernel ...`: 0 when installed, 1 when it could not be, 2 on a bad command line."""
    try:
        opts = parse_args(argv)
    except KernelUsage as exc:
        sys.stderr.write(f"lispe kernel: {exc}\n{USAGE}")
        return 2
    if opts["help"]:
        sys.stdout.write(USAGE)
        return 0
    try:
        import ipykernel  # noqa: F401  (the kernel itself needs it)
        import jupyter_client  # noqa: F401
    except ImportError as exc:
        sys.stderr.write(f"lispe kernel: {exc.name} is not installed: pip install 'lispe_py[kernel]'\n")
        return 1
    try:
        where = install(opts["name"], opts["user"], opts["prefix"], opts["display_name"])
    except OSError as exc:
        sys.stderr.write(f"lispe kernel: cannot install the kernelspec: {exc.strerror or exc}"
                         + ("" if opts["user"] or opts["prefix"] else " (try --user)") + "\n")
        return 1
    sys.stdout.write(f"Installed the LispE kernel {opts['name']!r} in {where}\n")
    return 0
