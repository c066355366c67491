"""The names of LispE's instruction table that lispe_py does not provide, each with its reason.

Calling one is a clear LispE error rather than "unknown function":
`(fopen "f" "r")` → `fopen: not supported in lispe_py: file handles are not provided; read and
write whole files with fread, fwrite, fappend`. The same table is printed in
docs/builtins-library.md and checked by tests/test_instruction_table.py.
"""
from __future__ import annotations

from typing import Any

from ..errors import LispEError
from .registry import builtin

_FILES = "file handles are not provided; read and write whole files with fread, fwrite, fappend"
_BYTES = "byte strings and 16-bit integer containers are not provided (strings are Unicode, integers unbounded)"
_TENSORS = ("typed matrices and tensors are not provided; lispe_py uses lists of typed rows "
            "(build them with rho, transpose them with transpose)")

UNSUPPORTED: dict[str, str] = {
    # files and bytes
    "fopen": _FILES, "fclose": _FILES, "fgetchars": _FILES, "fputchars": _FILES, "fsize": _FILES,
    "fseek": _FILES, "ftell": _FILES,
    "bread": _BYTES, "bwrite": _BYTES, "bappend": _BYTES, "bytes": _BYTES, "stringbyte": _BYTES,
    "stringbytes": _BYTES, "int16_t": _BYTES, "shorts": _BYTES,
    # numeric types
    "complex": "complex numbers are not provided",
    "real": "complex numbers are not provided",
    "imaginary": "complex numbers are not provided",
    "matrix_stringbyte": _TENSORS, "matrix_string": _TENSORS, "matrix_short": _TENSORS,
    "matrix_integer": _TENSORS, "matrix_number": _TENSORS, "matrix_float": _TENSORS,
    "tensor_stringbyte": _TENSORS, "tensor_string": _TENSORS, "tensor_short": _TENSORS,
    "tensor_number": _TENSORS, "tensor_float": _TENSORS, "tensor_integer": _TENSORS,
    "⊃": _TENSORS, "to_tensor": _TENSORS,
    "+*": "the fused multiply-add on matrices is not provided; use inner",
    # data structures
    "llist": "linked lists are not provided; lists are arrays (use pushfirst to add in front)",
    "to_llist": "linked lists are not provided; lists are arrays",
    # language machinery of LispE's C++ interpreter
    "deflib": "deflib defines functions implemented in C++ libraries, which lispe_py cannot load",
    "deflibpat": "deflibpat defines functions implemented in C++ libraries, which lispe_py cannot load",
    "bodies": "function bodies are compiled into closures; their source lists are not kept",
    "atoms": "the interpreter's table of atoms is not exposed",
    "addr_": "memory addresses of values are not exposed",
    "label": "labels on expressions are not provided; use setq",
    "setconst": "constant variables are not provided; use setq",
    "setfast": "the fast-variable slots of LispE's C++ evaluator are not provided; use setq",
    "getfast": "the fast-variable slots of LispE's C++ evaluator are not provided; use a variable",
    "getchar": "reading single raw key presses needs a terminal library that lispe_py does not use",
    "toclean": "memory is freed by Python's own collector; there is nothing to clean by hand",
    # classes beyond class@
    "defclass": "classes are defined with class@",
    "withclass": "not provided; call a method on an instance with (instance (method args...))",
    "this": "not provided; inside a class@ method the fields are plain variables and setqi sets them",
}


def _make(name: str, reason: str) -> None:
    def unsupported(*_args: Any) -> Any:
        raise LispEError(f"{name}: not supported in lispe_py: {reason}")

    unsupported.__name__ = f"unsupported_{name}"
    unsupported.__doc__ = f"({name} ...) is not supported in lispe_py: {reason}."
    builtin(name, group="unsupported", min_args=0, max_args=None)(unsupported)


for _name, _reason in UNSUPPORTED.items():
    _make(_name, _reason)
