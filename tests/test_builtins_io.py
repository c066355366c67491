"""File and console builtins: fwrite / fappend / fread round trips in a temporary folder, the
sandbox refusal, and `input` on a redirected standard input."""
from __future__ import annotations

import io as _io
import sys

import pytest

from lispe_py import Interpreter, LispEError


def _lisp_str(path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_fwrite_fappend_fread_round_trip(tmp_path) -> None:
    p = _lisp_str(tmp_path / "notes.txt")
    interp = Interpreter()
    assert interp.eval(f'(fwrite {p} "line one\\n")') is True
    assert interp.eval(f'(fappend {p} "line two\\n")') is True
    assert interp.eval(f"(fread {p})") == "line one\nline two\n"
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "line one\nline two\n"
    # fwrite replaces the content; non-string content is written in its printed form
    interp.eval(f"(fwrite {p} '(1 \"a\" 2.5))")
    assert interp.eval(f"(fread {p})") == '(1 "a" 2.5)'


def test_fappend_creates_the_file(tmp_path) -> None:
    p = _lisp_str(tmp_path / "new.txt")
    Interpreter().eval(f'(fappend {p} "é")')
    assert (tmp_path / "new.txt").read_text(encoding="utf-8") == "é"


def test_fread_of_a_missing_file_is_a_lispe_error(tmp_path) -> None:
    p = tmp_path / "missing.txt"
    with pytest.raises(LispEError) as info:
        Interpreter().eval(f"(fread {_lisp_str(p)})")
    assert info.value.message.startswith("fread: cannot access file")
    assert "No such file" in info.value.message


def test_fwrite_into_a_missing_folder_is_a_lispe_error(tmp_path) -> None:
    p = tmp_path / "no" / "such" / "dir.txt"
    with pytest.raises(LispEError) as info:
        Interpreter().eval(f'(fwrite {_lisp_str(p)} "x")')
    assert info.value.message.startswith("fwrite: cannot access file")


def test_fread_of_binary_data_is_a_lispe_error(tmp_path) -> None:
    (tmp_path / "bin.dat").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(LispEError) as info:
        Interpreter().eval(f"(fread {_lisp_str(tmp_path / 'bin.dat')})")
    assert "not UTF-8" in info.value.message


@pytest.mark.parametrize("src", ['(fread "{p}")', '(fwrite "{p}" "x")', '(fappend "{p}" "x")',
                                 '(json_read "{p}")'])
def test_sandbox_refuses_file_builtins(tmp_path, src: str) -> None:
    target = tmp_path / "secret.txt"
    target.write_text("secret", encoding="utf-8")
    code = src.format(p=str(target).replace("\\", "\\\\"))
    with pytest.raises(LispEError) as info:
        Interpreter(sandbox=True).eval(code)
    name = src[1:src.index(" ")]
    assert info.value.message.startswith(name + ":"), info.value.message
    assert target.read_text(encoding="utf-8") == "secret"


def test_input_reads_lines_until_end_of_input(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "stdin", _io.StringIO("Ann\nlast line without newline"))
    interp = Interpreter()
    assert interp.eval('(input "Name: ")') == "Ann"
    assert interp.eval("(input)") == "last line without newline"
    assert interp.eval("(input)") is None
    assert capsys.readouterr().out == "Name: "
