"""More of LispE's vocabulary: list utilities (nconc, swap, shift, takenb, to_list, scanlist, minmax,
over, replaceall, mask@, findall), numbers (sign, signp, iabs, fabs, !, &~, convert_in_base),
random draws (random_choice, shuffle), strings (getstruct, prettify), typed dictionaries
(dictionaryi, dictionaryn, keyi@, keyn@), marks on lists, time (chrono) and the system (command, ls).

Each follows the description of LispE's function reference; where a choice had to be made it is in
the builtin's docstring and in docs/builtins-library.md.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import time
from typing import Any

from ..errors import LispEError
from ..values import Integers, Pair, Strings, truthy
from ._common import (check_size, describe, expect_int, expect_list, expect_number, expect_str, fail,
                      is_number, lisp_equal, like, show, show_quoted, typed_from)
from .registry import builtin
from .numbers import interp_random
from .apl import _items
from .sets import Heap, LispSet

G = "lists"
_NO = object()


# ---------------------------------------------------------------- lists

def _tail_pieces(name: str, args: tuple) -> tuple[list, Any]:
    """The elements nconc/nconcn append after their first argument, and the dotted tail if any.

    Lists are spliced and nil is skipped; an atom as last argument becomes the tail of a dotted
    pair (LispE's nconc); an atom elsewhere is appended as one element (upstream programs pass
    markers such as "*" that way)."""
    items: list = []
    tail: Any = _NO
    last = len(args) - 1
    for i, arg in enumerate(args):
        if arg is None:
            continue
        if isinstance(arg, list):
            items.extend(arg)
        elif isinstance(arg, (dict, Heap, LispSet)):
            raise fail(name, "lists or atoms", arg)
        elif i == last:
            tail = arg
        else:
            items.append(arg)
    return items, tail


@builtin("nconc", group=G, min_args=0, max_args=None)
def nconc(*lists: Any) -> Any:
    """(nconc x '(d e)) appends the following lists to the first one, in place, and returns it.

    (nconc) is nil; nil arguments are skipped. An atom as last argument makes a dotted pair, as
    in LispE: (nconc (list 1 2) 3) is (1 2 . 3), a new value (a list cannot turn into a pair in
    place)."""
    args = list(lists)
    while args and args[0] is None:
        args.pop(0)
    if not args:
        return None
    first = args[0]
    if not isinstance(first, list):
        if len(args) == 1:
            return first
        first, args = [], [first, *args[1:]]
    else:
        args = args[1:]
    items, tail = _tail_pieces("nconc", tuple(args))
    if tail is _NO:
        if first.__class__ is Pair:
            return Pair([*first, *items])
        first.extend(items)
        return first
    if not first and not items:
        return tail
    return Pair([*first, *items, tail])


@builtin("nconcn", group=G, min_args=0, max_args=None)
def nconcn(*lists: Any) -> Any:
    """(nconcn x '(d e)) concatenates lists into a new list, leaving the first one unchanged.

    Atoms are appended as elements, except a last one, which makes a dotted pair when something
    comes before it: (nconcn '(1 2) 3) is (1 2 . 3); (nconcn () "a") is ("a")."""
    items, tail = _tail_pieces("nconcn", lists)
    if tail is not _NO:
        return Pair([*items, tail]) if items else [tail]
    if not items and all(x is None for x in lists):
        return None
    return typed_from(items)


@builtin("swap", group=G, min_args=2, max_args=3)
def swap(lst: Any, p1: Any, p2: Any = _NO) -> list:
    """(swap l 1) exchanges, in place, the elements at two positions (by default p1 and p1+1).

    (swap (integers 1 2 3 4) 0 3) gives (4 2 3 1); returns the list.
    """
    expect_list("swap", lst)
    i = expect_int("swap", p1, "an integer position")
    j = i + 1 if p2 is _NO else expect_int("swap", p2, "an integer position")
    n = len(lst)
    for k in (i, j):
        if not -n <= k < n:
            raise LispEError(f"swap: index out of bounds: {k} (size {n})")
    lst[i], lst[j] = lst[j], lst[i]
    return lst


@builtin("shift", group=G, ctx=True, min_args=2, max_args=3)
def shift(ctx: Any, op: Any, lst: Any, nb: Any = 1) -> list:
    """(shift '- (integers 1 3 5 7 9) 2) applies an operator between a list and itself shifted: (-4 -4 -4).

    It computes (op x[i] x[i+nb]) for every i; a negative nb swaps the operands: (4 4 4).
    """
    items = _items("shift", lst)
    k = expect_int("shift", nb, "an integer shift")
    d = abs(k)
    if d == 0 or d >= len(items):
        return like(lst, []) if isinstance(lst, list) else []
    left, right = items[:-d], items[d:]
    if k < 0:
        left, right = right, left
    return typed_from([ctx.call(op, a, b) for a, b in zip(left, right)])


@builtin("takenb", group=G, min_args=2, max_args=3)
def takenb(nb: Any, lst: Any, beginning: Any = True) -> Any:
    """(takenb 3 '(1 2 3 4 5)) takes the first n elements: (1 2 3); with nil as third argument, or a
    negative n, the last ones: (takenb -3 '(1 2 3 4 5)) is (3 4 5)."""
    k = expect_int("takenb", nb, "an integer count")
    items = lst if isinstance(lst, str) else _items("takenb", lst)
    from_start = truthy(beginning) and k >= 0
    k = abs(k)
    part = items[:k] if from_start else (items[len(items) - k:] if k else items[:0])
    if isinstance(lst, str):
        return part
    return like(lst, part) if isinstance(lst, list) else list(part)


@builtin("to_list", "⊂", group=G, min_args=1, max_args=2)
def to_list(value: Any, nb: Any = _NO) -> list:
    """(to_list (numbers 10 20)) turns any container into a plain list: (10 20); (to_list "a" 3) is ("a" "a" "a").

    A string gives its characters, a dictionary its values, a set or heap its elements in order.
    """
    if nb is not _NO:
        k = expect_int("to_list", nb, "an integer count")
        if k < 0:
            raise LispEError("to_list: the count cannot be negative")
        check_size("to_list", k)
        return [value] * k
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, str, LispSet, Heap)):
        return list(value)
    if value is None:
        return []
    return [value]


@builtin("scanlist", group=G, ctx=True)
def scanlist(ctx: Any, fn: Any, lst: Any) -> Any:
    """(scanlist (lambda (x) (if (> x 5) (* 2 x))) (range 1 10 1)) returns the first non-nil result: 12."""
    for x in _items("scanlist", lst):
        r = ctx.call(fn, x)
        if r is not None and r is not False:
            return r
    return None


@builtin("minmax", group=G, min_args=1, max_args=None)
def minmax(*args: Any) -> list:
    """(minmax 1 4 5 10 8) returns the smallest and the largest value: (1 10); also on one list."""
    items = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, LispSet, Heap)) else list(args)
    if not items:
        raise LispEError("minmax: empty list")
    if all(is_number(x) for x in items) or all(isinstance(x, str) for x in items):
        return typed_from([min(items), max(items)])
    raise LispEError("minmax: expected numbers or strings, got " + ", ".join(
        sorted({describe(x).split(" ")[0] for x in items})))


@builtin("over", group=G, ctx=True)
def over(ctx: Any, fn: Any, lst: Any) -> list:
    """(over 'reverse l) replaces the content of a list, in place, with the function's result on it."""
    expect_list("over", lst)
    result = ctx.call(fn, lst)
    new = list(_items("over", result)) if not isinstance(result, str) else list(result)
    lst[:] = new
    return lst


@builtin("replaceall", group=G)
def replaceall(container: Any, search: Any, replacement: Any) -> int:
    """(replaceall l 10 100) replaces, in place, every element equal to a value: returns how many.

    On a dictionary it replaces values. Strings cannot change in place: use replace.
    """
    n = 0
    if isinstance(container, list):
        for i, x in enumerate(container):
            if lisp_equal(x, search):
                container[i] = replacement
                n += 1
        return n
    if isinstance(container, dict):
        for k, v in container.items():
            if lisp_equal(v, search):
                container[k] = replacement
                n += 1
        return n
    if isinstance(container, str):
        raise LispEError("replaceall: strings cannot be changed in place, use (replace s from to)")
    raise fail("replaceall", "a list or a dictionary", container)


@builtin("mask@", group=G, min_args=2, max_args=3)
def mask(booleans: Any, if_true: Any, if_false: Any = None) -> list:
    """(mask@ '(1 0 1) '("A" "B") '("x")) picks in turn from the first list where true, the second else: ("A" "x" "B").

    Without the third list, nil fills the false places.
    """
    flags = _items("mask@", booleans)
    yes = list(_items("mask@", if_true))
    no = list(_items("mask@", if_false)) if if_false is not None else None
    out = []
    for f in flags:
        on = truthy(f) and not (is_number(f) and f == 0)
        src = yes if on else no
        if src is None:
            out.append(None)
            continue
        if not src:
            raise LispEError("mask@: not enough values for the mask")
        out.append(src.pop(0))
    return typed_from(out)


@builtin("findall", group=G, min_args=2, max_args=3)
def findall(container: Any, value: Any, start: Any = 0) -> Any:
    """(findall "abcdefabdefabghabtr" "ab") lists every position of a substring: (0 6 11 15).

    On a list it lists the positions of the equal elements; nil when there is none.
    """
    s = expect_int("findall", start, "an integer start position")
    out: list = []
    if isinstance(container, str):
        if not isinstance(value, str):
            value = show(value)
        if not value:
            raise LispEError("findall: empty string searched")
        p = container.find(value, max(s, 0))
        while p >= 0:
            out.append(p)
            p = container.find(value, p + 1)
    elif isinstance(container, list):
        out = [i for i in range(max(s, 0), len(container)) if lisp_equal(container[i], value)]
    else:
        raise fail("findall", "a list or a string", container)
    return Integers(out) if out else None


@builtin("cutlist", group=G)
def cutlist(lst: Any, n: Any) -> list:
    """(cutlist '(a b c d e) 2) cuts a list (or a string) into pieces of n elements: ((a b) (c d) (e))."""
    from .lists import slice_

    return slice_(lst, n)


# ---------------------------------------------------------------- numbers

@builtin("sign", group="numbers")
def sign(x: Any) -> Any:
    """(sign 10) changes the sign of a number: -10 (LispE's sign negates; signp gives -1, 0 or 1)."""
    return -expect_number("sign", x)


@builtin("signp", "sign?", group="numbers")
def signp(x: Any) -> int:
    """(signp -4.5) gives -1 for a negative number, 0 for zero, 1 for a positive one."""
    v = expect_number("signp", x)
    if isinstance(v, float) and math.isnan(v):
        raise LispEError("signp: NaN has no sign")
    return (v > 0) - (v < 0)


@builtin("iabs", group="numbers")
def iabs(x: Any) -> int:
    """(iabs -7) is the absolute value as an integer: 7; (iabs -7.6) truncates first: 7."""
    v = expect_number("iabs", x)
    if isinstance(v, float) and not math.isfinite(v):
        raise LispEError(f"iabs: expected a finite number, got {show(v)}")
    return abs(int(v))


@builtin("fabs", group="numbers")
def fabs(x: Any) -> float:
    """(fabs -7) is the absolute value as a float: 7 (printed without decimals when integral)."""
    return float(abs(expect_number("fabs", x)))


@builtin("!", group="numbers")
def factorial(n: Any) -> int:
    """(! 6) is the factorial of a non-negative integer: 720."""
    k = expect_int("!", n, "a non-negative integer")
    if k < 0:
        raise LispEError("!: expected a non-negative integer, got " + show(n))
    if k > 100_000:
        raise LispEError(f"!: result too large (factorial of {k})")
    return math.factorial(k)


@builtin("&~", group="numbers", min_args=2, max_args=None)
def bitandnot(*args: Any) -> int:
    """(&~ 10 2) is the bitwise and of the first integer with the complement of the next: 8."""
    acc = expect_int("&~", args[0], "integers")
    for b in args[1:]:
        acc &= ~expect_int("&~", b, "integers")
    return acc


_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@builtin("convert_in_base", group="numbers", min_args=2, max_args=3)
def convert_in_base(value: Any, base: Any, convert_from: Any = None) -> Any:
    """(convert_in_base 36 2) writes an integer in a base from 2 to 36: "100100".

    With true as third argument it reads a string written in that base: (convert_in_base "100100" 2 true) is 36.
    """
    b = expect_int("convert_in_base", base, "a base from 2 to 36")
    if not 2 <= b <= 36:
        raise LispEError(f"convert_in_base: the base must be from 2 to 36, got {b}")
    if truthy(convert_from):
        text = value if isinstance(value, str) else show(value)
        try:
            return int(text.strip(), b)
        except ValueError:
            raise LispEError(f"convert_in_base: '{text}' is not a number in base {b}") from None
    n = expect_int("convert_in_base", value, "an integer")
    if n == 0:
        return "0"
    digits, m = [], abs(n)
    while m:
        m, r = divmod(m, b)
        digits.append(_DIGITS[r])
    return ("-" if n < 0 else "") + "".join(reversed(digits))


# ---------------------------------------------------------------- random draws

@builtin("shuffle", group="numbers", ctx=True)
def shuffle(ctx: Any, lst: Any) -> list:
    """(shuffle l) puts the elements of a list in a random order, in place, and returns the list.

    As LispE's Proc_shuffle (randoms.cxx), which swaps the list's own elements: after
    (shuffle cards) the variable cards holds the shuffled order.
    """
    items = list(expect_list("shuffle", lst))
    interp_random(ctx).shuffle(items)
    lst[:] = items
    return lst


@builtin("random_choice", group="numbers", min_args=2, max_args=3, ctx=True)
def random_choice(ctx: Any, nb: Any, lst: Any, initial: Any = None) -> Any:
    """(random_choice 3 '(a b c d) 10) draws n elements of a list at random (with repetition).

    As LispE's (randoms.cxx), one draw gives the element itself, not a list: (random_choice 1
    '(a b) 10) is a or b. The third argument `initial` gives every element the same weight
    initial/size, so the draw stays uniform; it must be a number (LispE requires it, lispe_py
    lets it out).
    """
    k = expect_int("random_choice", nb, "an integer count")
    items = list(_items("random_choice", lst))
    if k < 0:
        raise LispEError("random_choice: the count cannot be negative")
    if initial is not None and not is_number(initial):
        raise fail("random_choice", "a number as third argument (the initial weight)", initial)
    if not items:
        raise LispEError("random_choice: the list is empty")
    check_size("random_choice", k)
    g = interp_random(ctx)
    n = len(items)
    drawn = [items[int(g.random() * n) % n] for _ in range(k)]
    if k == 1:
        return drawn[0]
    return typed_from(drawn)


# ---------------------------------------------------------------- strings

@builtin("getstruct", group="strings", min_args=3, max_args=4)
def getstruct(text: Any, opening: Any, closing: Any, pos: Any = 0) -> Any:
    """(getstruct "{[a [b]] [c]}" "[" "]") reads the next balanced structure: ("[a [b]]" 1 8).

    It returns the substring, its start and its end position (after the closing mark); pass that
    end as the fourth argument to read the next one; nil when there is none left.
    """
    s = expect_str("getstruct", text)
    o = expect_str("getstruct", opening, "an opening string")
    c = expect_str("getstruct", closing, "a closing string")
    if not o or not c:
        raise LispEError("getstruct: the opening and closing marks cannot be empty")
    p = expect_int("getstruct", pos, "an integer position")
    start = s.find(o, max(p, 0))
    if start < 0:
        return None
    depth, i = 0, start
    while i < len(s):
        if s.startswith(o, i):
            depth += 1
            i += len(o)
        elif s.startswith(c, i):
            depth -= 1
            i += len(c)
            if depth == 0:
                return [s[start:i], start, i]
        else:
            i += 1
    return None


@builtin("prettify", group="strings", min_args=1, max_args=2)
def prettify(value: Any, width: Any = 60) -> str:
    """(prettify '(defun f (x) (if (< x 1) 1 (* x (f (- x 1)))))) lays out a structure on indented lines.

    Sub-lists whose printed form is shorter than the width (default 60) stay on one line.
    """
    w = expect_int("prettify", width, "an integer width")

    def lay(v: Any, indent: int) -> list[str]:
        flat = show_quoted(v)
        if not isinstance(v, list) or not v or len(flat) + indent <= w:
            return [" " * indent + flat]
        head = show_quoted(v[0])
        lines = [" " * indent + "(" + head]
        for item in v[1:]:
            lines.extend(lay(item, indent + 3))
        lines[-1] += ")"
        return lines

    if isinstance(value, dict):
        return "{\n" + "\n".join(f"   {show_quoted(k)}:{show_quoted(v)}" for k, v in value.items()) + "\n}"
    return "\n".join(lay(value, 0))


# ---------------------------------------------------------------- dictionaries on integer / number keys

def _numeric_key(name: str, k: Any, integer: bool) -> Any:
    if isinstance(k, str):
        try:
            k = float(k) if any(ch in k for ch in ".eE") else int(k)
        except ValueError:
            raise fail(name, "a numeric key", k) from None
    if not is_number(k):
        raise fail(name, "a numeric key", k)
    if isinstance(k, float) and math.isnan(k):
        raise LispEError(f"{name}: NaN cannot be a dictionary key")
    return int(k) if integer else (float(k) if not float(k).is_integer() else int(k))


def _numeric_dict(name: str, integer: bool, args: tuple) -> dict:
    if not args:
        return {}
    if isinstance(args[0], dict):
        d = args[0]
        rest = args[1:]
        if len(rest) == 1:
            return d.get(_numeric_key(name, rest[0], integer))
    else:
        d, rest = {}, args
    if len(rest) % 2:
        raise LispEError(f"{name}: expected keys and values in pairs")
    if any(isinstance(k, str) for k in d):
        raise LispEError(f"{name}: the dictionary has string keys")
    for i in range(0, len(rest), 2):
        d[_numeric_key(name, rest[i], integer)] = rest[i + 1]
    return d


@builtin("dictionaryi", group="dictionaries", min_args=0, max_args=None)
def dictionaryi(*pairs: Any) -> dict:
    """(dictionaryi 12 "e" 17 "b") builds a dictionary on integer keys: {12:"e" 17:"b"}."""
    if len(pairs) % 2:
        raise LispEError("dictionaryi: expected keys and values in pairs")
    return _numeric_dict("dictionaryi", True, pairs)


@builtin("dictionaryn", group="dictionaries", min_args=0, max_args=None)
def dictionaryn(*pairs: Any) -> dict:
    """(dictionaryn 1.5 "e" 2 "b") builds a dictionary on number keys: {1.5:"e" 2:"b"}."""
    if len(pairs) % 2:
        raise LispEError("dictionaryn: expected keys and values in pairs")
    return _numeric_dict("dictionaryn", False, pairs)


@builtin("keyi@", "keyi", group="dictionaries", min_args=0, max_args=None)
def keyi(*args: Any) -> Any:
    """(keyi@ d 12) reads the value under an integer key; (keyi@ d 12 "e") stores it and returns d.

    (keyi@) alone is a new empty dictionary, (keyi@ 1 "a" 2 "b") a new one with these pairs.
    """
    return _numeric_dict("keyi@", True, args)


@builtin("keyn@", "keyn", group="dictionaries", min_args=0, max_args=None)
def keyn(*args: Any) -> Any:
    """(keyn@ d 1.5) reads the value under a number key; (keyn@ d 1.5 "e") stores it and returns d.

    (keyn@) alone is a new empty dictionary, (keyn@ 1.5 "a") a new one with these pairs.
    """
    return _numeric_dict("keyn@", False, args)


@builtin("containerkeys", group="dictionaries")
def containerkeys(d: Any) -> Any:
    """(containerkeys {"b":2 "a":1}) lists a container's keys, as keys@: ("a" "b")."""
    from .dicts import keys

    return keys(d)


@builtin("containervalues", group="dictionaries")
def containervalues(d: Any) -> Any:
    """(containervalues {"b":2 "a":1}) lists a container's values, as values@: (1 2)."""
    from .dicts import values

    return values(d)


# ---------------------------------------------------------------- marks on lists

def _marks(ctx: Any) -> dict:
    marks = getattr(ctx.interp, "_lispe_list_marks", None)
    if marks is None:
        marks = {}
        ctx.interp._lispe_list_marks = marks
    return marks


@builtin("mark", group=G, ctx=True, min_args=1, max_args=2)
def mark(ctx: Any, lst: Any, flag: Any = _NO) -> Any:
    """(mark l true) marks a list (to stop a walk through cyclic data); (mark l) reads the mark: true or nil."""
    expect_list("mark", lst)
    marks = _marks(ctx)
    if flag is _NO:
        entry = marks.get(id(lst))
        return True if entry is not None and entry[0] is lst and entry[1] else None
    if truthy(flag):
        marks[id(lst)] = (lst, True)
    else:
        marks.pop(id(lst), None)
    return lst


@builtin("resetmark", group=G, ctx=True)
def resetmark(ctx: Any, lst: Any) -> Any:
    """(resetmark l) removes the marks of a list and of every list inside it; returns the list."""
    expect_list("resetmark", lst)
    marks = _marks(ctx)
    stack, seen = [lst], set()
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        marks.pop(id(cur), None)
        stack.extend(x for x in cur if isinstance(x, list))
    return lst


# ---------------------------------------------------------------- time and system

@builtin("chrono", group="system", min_args=0, max_args=0)
def chrono() -> float:
    """(chrono) is a clock in milliseconds: (- (chrono) start) measures a duration."""
    return time.perf_counter() * 1000.0


@builtin("command", group="system", ctx=True)
def command(ctx: Any, cmd: Any) -> Any:
    """(command "ls -l") runs a shell command and returns its output lines as a list of strings.

    Refused in sandbox mode.
    """
    c = expect_str("command", cmd, "a command string")
    if getattr(ctx.interp, "sandbox", False):
        raise LispEError("command: running system commands is not allowed in sandbox mode")
    try:
        out = subprocess.run(c, shell=True, capture_output=True, text=True, errors="replace")
    except OSError as exc:
        raise LispEError(f"command: cannot run '{c}': {exc.strerror or 'error'}") from None
    return Strings(out.stdout.splitlines(keepends=True))


@builtin("ls", group="system", ctx=True, min_args=0, max_args=1)
def ls(ctx: Any, path: Any = ".") -> list:
    """(ls "folder") lists the names in a folder, sorted: ("a.txt" "b.lisp")."""
    p = expect_str("ls", path, "a folder name")
    try:
        ctx.interp.check_file_access(p or ".")
    except LispEError as exc:
        raise LispEError(f"ls: {exc.message}") from None
    try:
        return Strings(sorted(os.listdir(os.path.expanduser(p or "."))))
    except OSError as exc:
        raise LispEError(f"ls: cannot list '{p}': {exc.strerror or 'error'}") from None


# ---------------------------------------------------------------- more of the instruction table

@builtin("cyclicp", "cyclic?", group="predicates")
def cyclicp(x: Any) -> Any:
    """(cyclicp l) is true when a list contains itself, directly or deeper (a cycle), nil otherwise."""
    if not isinstance(x, list):
        return None
    on_path: set[int] = set()
    stack: list = [(x, iter(x))]
    on_path.add(id(x))
    while stack:
        lst, it = stack[-1]
        for item in it:
            if isinstance(item, list):
                if id(item) in on_path:
                    return True
                on_path.add(id(item))
                stack.append((item, iter(item)))
                break
        else:
            stack.pop()
            on_path.discard(id(lst))
    return None


@builtin("loadcode", group="system", ctx=True, min_args=1, max_args=1)
def loadcode(ctx: Any, code: Any) -> Any:
    """(loadcode "(defun sq (x) (* x x)) (sq 4)") runs LispE code given as a string, as load does a file: 16."""
    text = expect_str("loadcode", code, "a string of code")
    return ctx.interp.run_source(text, "<loadcode>")


@builtin("dictionarytree", group="dictionaries", min_args=0, max_args=None)
def dictionarytree(*pairs: Any) -> dict:
    """(dictionarytree "b" 1 "a" 2) builds a dictionary kept in key order: {"a":2 "b":1}.

    Every lispe_py dictionary lists its keys in order already, so it is a dictionary.
    """
    from .dicts import dictionary

    return dictionary(*pairs)


@builtin("dictionarytreei", group="dictionaries", min_args=0, max_args=None)
def dictionarytreei(*pairs: Any) -> dict:
    """(dictionarytreei 17 "b" 12 "e") builds a dictionary on integer keys, in key order: {12:"e" 17:"b"}."""
    return dictionaryi(*pairs)


@builtin("dictionarytreen", group="dictionaries", min_args=0, max_args=None)
def dictionarytreen(*pairs: Any) -> dict:
    """(dictionarytreen 2.5 "b" 1 "e") builds a dictionary on number keys, in key order: {1:"e" 2.5:"b"}."""
    return dictionaryn(*pairs)


_PRINTF = re.compile(r"%([-+ #0]*)(\d+)?(?:\.(\d+))?([diouxXeEfFgGcs%])")


@builtin("stringf", "sprintf", group="strings")
def stringf(value: Any, fmt: Any) -> str:
    """(stringf 123 "0x%X") formats a number with a C printf format: "0x7B"; (stringf 3.14159 "%.2f") is "3.14".

    The format holds one conversion (d i o u x X e E f F g G c s), with flags, width and precision.
    sprintf is the name LispE's string module gives it: (sprintf 7 "%03d") is "007".
    """
    f = expect_str("stringf", fmt, "a format string")
    convs = [m for m in _PRINTF.finditer(f) if m.group(4) != "%"]
    if len(convs) != 1 or _PRINTF.sub("", f).count("%"):
        raise LispEError(f"stringf: the format must hold exactly one conversion, got '{f}'")
    kind = convs[0].group(4)
    py = f.replace("%u", "%d").replace("%i", "%d")
    if kind in "diouxXc":
        v: Any = expect_int("stringf", value, "an integer for this format")
    elif kind == "s":
        v = value if isinstance(value, str) else show(value)
    else:
        v = float(expect_number("stringf", value))
    try:
        return py % v
    except (ValueError, OverflowError, TypeError) as exc:
        raise LispEError(f"stringf: cannot format {show(value)} with '{f}': {exc}") from None


@builtin("input@", group="io", min_args=0, max_args=1)
def input_at(default: Any = None) -> Any:
    """(input@ "yes") reads a line from the standard input; an empty line gives the default text.

    LispE lets the user edit the default in place; here it is kept when the line is empty. nil at
    the end of the input.
    """
    import sys

    line = sys.stdin.readline()
    if line == "":
        return None
    line = line[:-1] if line.endswith("\n") else line
    if not line and default is not None:
        return default if isinstance(default, str) else show(default)
    return line


@builtin("pipe", group="io", min_args=0, max_args=0)
def pipe() -> Any:
    """(pipe) reads the next line coming through the standard input (a pipe); nil when it is empty."""
    import sys

    line = sys.stdin.readline()
    return None if line == "" else line


@builtin("setrange", group=G)
def setrange(lst: Any, beg: Any, end: Any, value: Any) -> list:
    """(setrange l 0 3 100) replaces, in place, the elements from a start to an end position with a value.

    On (1 2 3 4 5 6) it gives (100 4 5 6); the positions follow extract (negative from the end); a
    list value puts its elements in place of the range.
    """
    expect_list("setrange", lst)
    n = len(lst)
    b = expect_int("setrange", beg, "an integer position")
    e = expect_int("setrange", end, "an integer position")
    b = b + n if b < 0 else b
    e = e + n if e < 0 else e
    if not (0 <= b <= n and 0 <= e <= n) or e < b:
        raise LispEError(f"setrange: positions out of bounds: {beg} {end} (size {n})")
    new = list(value) if isinstance(value, list) else [value]
    from ._common import fit

    lst[b:e] = [fit("setrange", lst, v) for v in new]
    return lst
