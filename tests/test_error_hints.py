"""Issue 20.5's helpers: the shared did-you-mean and the atom positions of unbound-variable errors
(the messages themselves are golden tests: tests/golden/errors_*.lisp)."""
from __future__ import annotations

import pytest

from lispe_py import Interpreter, LispEError
from lispe_py.hints import closest, did_you_mean
from lispe_py.reader import atom_position, read


def test_did_you_mean_names_the_closest_candidate_or_nothing() -> None:
    assert did_you_mean("max_lenght", ["max_length", "min_p", "top_k"]) == " (did you mean 'max_length'?)"
    assert did_you_mean("qqqzzz", ["max_length", "min_p"]) == ""
    assert closest("Println", ["println", "print"]) == "println"  # a case-only difference wins
    assert closest("x", ["x"]) is None  # the name itself is no suggestion


def test_atom_position_skips_quoted_atoms_and_spans_lines() -> None:
    form = read("(list 'zz\n   (+ 1 zz))")[0]
    assert atom_position(form, "zz") == (2, 9)
    assert atom_position(form, "nowhere") is None
    assert atom_position(["not", "read"], "zz") is None


def test_unbound_variable_in_a_let_binding_points_at_the_atom() -> None:
    with pytest.raises(LispEError) as info:
        Interpreter().eval("(let ((a 1)\n      (b zzq))\n  (+ a b))", filename="p.lisp")
    assert (info.value.line, info.value.column) == (2, 10)
    assert info.value.message == "Unbound atom: 'zzq'"
