"""Every name of LispE's instruction table (tests/data/lispe_instructions.txt, extracted from
Delegation::initialisation in upstream's src/lispe.cxx) is either defined in a fresh Interpreter (a
builtin or a special form) or listed as not supported, with its reason, in
lispe_py.builtins.unsupported and in the table of docs/builtins-library.md. Calling an unsupported
one is a LispE error naming it and the reason.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lispe_py import Interpreter, LispEError
from lispe_py.builtins.registry import REGISTRY
from lispe_py.builtins.unsupported import UNSUPPORTED
from lispe_py.compiler import SPECIAL_FORMS
from lispe_py.values import Symbol

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "tests" / "data" / "lispe_instructions.txt"
DOC = ROOT / "docs" / "builtins-library.md"

# Names the other lang helpers add on their branches (lang-patterns: data@ and classes; lang-syntax:
# the \ lambda, the . composition, spaces and threads). The lead empties this list after merging.

# Every unsupported name called once; written out so that each appears as a call in the test sources.
UNSUPPORTED_CALLS = r"""
(fopen) (fclose) (fgetchars) (fputchars) (fsize) (fseek) (ftell) (bread) (bwrite) (bappend) (bytes)
(stringbyte) (stringbytes) (int16_t) (shorts) (complex) (real) (imaginary) (matrix_stringbyte)
(matrix_string) (matrix_short) (matrix_integer) (matrix_number) (matrix_float) (tensor_stringbyte)
(tensor_string) (tensor_short) (tensor_number) (tensor_float) (tensor_integer) (⊃) (to_tensor)
(+*) (llist) (to_llist)
(deflib) (deflibpat) (bodies) (atoms) (addr_) (label)
(setconst) (setfast) (getfast) (getchar) (toclean) (defclass) (withclass) (this)
"""


def _table() -> list[str]:
    names = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(line)
    return names


def _defined(name: str) -> bool:
    return name in REGISTRY or Symbol(name) in SPECIAL_FORMS


def test_table_names_the_upstream_source_and_has_no_duplicates() -> None:
    text = TABLE.read_text(encoding="utf-8")
    assert "src/lispe.cxx" in text and "Delegation::initialisation" in text
    names = _table()
    assert len(names) > 300
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)


def test_every_instruction_is_defined_or_unsupported() -> None:
    Interpreter()
    missing = [n for n in _table()
               if not _defined(n) and n not in UNSUPPORTED]
    assert not missing, f"instructions neither defined nor listed as unsupported: {missing}"


def test_unsupported_names_are_from_the_table_and_documented() -> None:
    table = set(_table())
    assert set(UNSUPPORTED) <= table, sorted(set(UNSUPPORTED) - table)
    doc = DOC.read_text(encoding="utf-8")
    undocumented = [n for n in UNSUPPORTED if f"`{n}`" not in doc]
    assert not undocumented, f"add to the unsupported table of docs/builtins-library.md: {undocumented}"


def test_every_unsupported_name_is_called_here() -> None:
    called = set(re.findall(r"\(([^\s()]+)\)", UNSUPPORTED_CALLS))
    assert called == set(UNSUPPORTED)


@pytest.mark.parametrize("call", re.findall(r"\([^\s()]+\)", UNSUPPORTED_CALLS))
def test_calling_an_unsupported_instruction_names_it_and_the_reason(call: str) -> None:
    name = call[1:-1]
    with pytest.raises(LispEError) as info:
        Interpreter().eval(call)
    message = info.value.message
    assert message.startswith(f"{name}: not supported in lispe_py: "), message
    assert UNSUPPORTED[name] in message


def test_unsupported_call_inside_a_program_is_caught_like_any_error() -> None:
    interp = Interpreter()
    out = interp.eval('(maybe (fopen "data.txt" "r") "no file handles")')
    assert out == "no file handles"


# ------------------------------------------------------------------ builtins reading the console

def test_pipe_and_input_at_read_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("first\n\nthird\n"))
    interp = Interpreter()
    assert interp.eval("(pipe)") == "first\n"
    assert interp.eval('(input@ "kept")') == "kept"  # an empty line keeps the default
    assert interp.eval("(input@)") == "third"
    assert interp.eval("(list (pipe) (input@))") == [None, None]  # nil at the end of the input


def test_ls_lists_a_folder_and_respects_the_sandbox(tmp_path: Path) -> None:
    (tmp_path / "b.lisp").write_text("", encoding="utf-8")
    (tmp_path / "a.txt").write_text("", encoding="utf-8")
    assert Interpreter().eval(f'(ls "{tmp_path}")') == ["a.txt", "b.lisp"]
    with pytest.raises(LispEError) as info:
        Interpreter(sandbox=True, script_dir=str(tmp_path / "inner")).eval(f'(ls "{tmp_path}")')
    assert info.value.message.startswith("ls: ")
    with pytest.raises(LispEError) as info:
        Interpreter().eval(f'(ls "{tmp_path / "missing"}")')
    assert "ls: cannot list" in info.value.message


def test_command_is_refused_in_sandbox_mode(tmp_path: Path) -> None:
    with pytest.raises(LispEError) as info:
        Interpreter(sandbox=True, script_dir=str(tmp_path)).eval('(command "echo hi")')
    assert info.value.message == "command: running system commands is not allowed in sandbox mode"


# ------------------------------------------------------------------ bad arguments, systematically

_POOL = ["42", "-1", "1.5", '"a"', "nil", "true", "'(1 2)", "'((1 2) (3 4))", "'x", '{"a":1}',
         "(seti 1 2)", "(heap '< 1)", "'+", "'(< 2)", "()"]
_SKIP = {"command", "ls", "pipe", "input@", "loadcode", "!"}  # console, system, huge integers
_PYTHON_WORDING = ("Traceback", "NoneType", "unsupported operand", "object is not", "object has no",
                   "TypeError", "ValueError", "KeyError", "IndexError", "AttributeError",
                   "not subscriptable", "not iterable", "takes from", "positional argument",
                   "index out of range", "invalid literal for", "object of type", "'str'", "'int'",
                   "'list'", "'float'", "'Symbol'", "'dict'")


def _new_builtins() -> list:
    import lispe_py.builtins.apl as apl
    import lispe_py.builtins.extras as extras
    import lispe_py.builtins.regex as regex
    import lispe_py.builtins.sets as sets

    Interpreter()
    modules = {m.__name__ for m in (apl, extras, regex, sets)}
    seen, out = set(), []
    for entry in REGISTRY.values():
        if entry.fn.__module__ in modules and id(entry) not in seen and entry.name not in _SKIP:
            seen.add(id(entry))
            out.append(entry)
    return sorted(out, key=lambda e: e.name)


@pytest.mark.parametrize("entry", _new_builtins(), ids=lambda e: e.name)
def test_new_builtins_refuse_bad_arguments_with_lispe_errors(entry) -> None:
    """Every builtin of the LispE-vocabulary modules, given odd arguments, answers a value or a
    LispEError in LispE's words, never a Python exception or Python's wording."""
    import itertools

    interp = Interpreter()
    lo = entry.min_args
    hi = entry.max_args if entry.max_args is not None else lo + 2
    for n in range(lo, min(hi, lo + 2) + 1):
        for args in itertools.islice(itertools.product(_POOL, repeat=n), 400):
            src = f"({entry.name} {' '.join(args)})"
            try:
                interp.eval(src)
            except LispEError as exc:
                # errors of other builtins called on the way (an operator given as argument) are
                # theirs; this checks the ones this builtin raises (or lets escape, wrapped)
                if exc.message.startswith(tuple(f"{n}:" for n in entry.names)):
                    assert not any(w in exc.message for w in _PYTHON_WORDING), (src, exc.message)
