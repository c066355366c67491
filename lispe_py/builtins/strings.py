"""String builtins (LispE names). Strings are immutable: every builtin returns a new string.

`size`, `find`, `in`, `pop`, `count`, `reverse`, `at`, `extract` on strings live with their list
versions in `lists.py` (one builtin per name); `rfind` lives here and also searches lists.
"""
from __future__ import annotations

import string as _string
import unicodedata
from typing import Any

from ..errors import LispEError
from ..values import Strings, Symbol, type_name
from ._common import check_size, expect_int, expect_list, expect_str, fail, lisp_equal, show
from .registry import builtin

G = "strings"


@builtin("string", group=G)
def string(x: Any) -> str:
    """(string 42) converts any value to its printed form: "42"; a string is returned unchanged."""
    return x if isinstance(x, str) else show(x)


@builtin("split", group=G, min_args=1, max_args=2)
def split(s: Any, sep: Any = None) -> Strings:
    """(split "a,b,,c" ",") splits a string on a separator, dropping empty pieces: ("a" "b" "c").

    Without a separator it splits on white space; with "" it splits into characters.
    """
    expect_str("split", s)
    if sep is None:
        return Strings(s.split())
    expect_str("split", sep, "a string separator")
    if sep == "":
        return Strings(s)
    return Strings(p for p in s.split(sep) if p != "")


@builtin("splite", group=G, min_args=1, max_args=2)
def splite(s: Any, sep: Any = None) -> Strings:
    """(splite "a,b,,c" ",") splits a string on a separator, keeping empty pieces: ("a" "b" "" "c")."""
    expect_str("splite", s)
    if sep is None:
        return Strings(s.split(" "))
    expect_str("splite", sep, "a string separator")
    if sep == "":
        return Strings(s)
    return Strings(s.split(sep))


@builtin("trim", group=G)
def trim(s: Any) -> str:
    """(trim "  hi  ") removes white space at both ends of a string: "hi"."""
    return expect_str("trim", s).strip()


@builtin("trimleft", group=G)
def trimleft(s: Any) -> str:
    """(trimleft "  hi  ") removes white space at the start of a string: "hi  "."""
    return expect_str("trimleft", s).lstrip()


@builtin("trimright", group=G)
def trimright(s: Any) -> str:
    """(trimright "  hi  ") removes white space at the end of a string: "  hi"."""
    return expect_str("trimright", s).rstrip()


@builtin("upper", group=G)
def upper(s: Any) -> str:
    """(upper "abc") puts a string in upper case: "ABC"."""
    return expect_str("upper", s).upper()


@builtin("lower", group=G)
def lower(s: Any) -> str:
    """(lower "ABC") puts a string in lower case: "abc"."""
    return expect_str("lower", s).lower()


@builtin("replace", group=G, min_args=3, max_args=4)
def replace(s: Any, find: Any, rep: Any, end: Any = None) -> str:
    """(replace "a-b-c" "-" "+") replaces every occurrence of a substring: "a+b+c".

    With four arguments, (replace "abcdef" "XY" 1 3) replaces the characters from position 1 up to 3
    (excluded) with a string: "aXYdef" (LispE's index form).
    """
    expect_str("replace", s)
    if end is None:
        expect_str("replace", find, "a string to find")
        if not isinstance(rep, str):
            rep = show(rep)
        if find == "":
            raise LispEError("replace: the string to find is empty")
        return s.replace(find, rep)
    text = find if isinstance(find, str) else show(find)
    n = len(s)
    b = expect_int("replace", rep, "an integer position")
    e = expect_int("replace", end, "an integer position")
    if b < 0:
        b += n
    if b >= n:
        raise LispEError(f"replace: position out of range: {rep}")
    b = max(b, 0)
    if e < 0:
        e += n
    if e < b:
        raise LispEError(f"replace: position out of range: {end}")
    e = min(e, n)
    return s[:b] + text + s[e:]


@builtin("join", group=G, min_args=1, max_args=2)
def join(lst: Any, sep: Any = "") -> str:
    """(join '("a" "b" "c") ",") joins the elements of a list into a string: "a,b,c" (default separator "").

    The separator may be an atom: (join '(a b c) '/) is "a/b/c".
    """
    expect_list("join", lst)
    if isinstance(sep, Symbol):
        sep = sep.name
    expect_str("join", sep, "a string separator")
    return sep.join(x if isinstance(x, str) else show(x) for x in lst)


@builtin("format", group=G, min_args=1, max_args=10)
def format_(fmt: Any, *args: Any) -> str:
    """(format "%1 is %2 years old" "Ann" 30) fills %1...%9 with its arguments: "Ann is 30 years old"."""
    expect_str("format", fmt)
    out = []
    i = 0
    n = len(fmt)
    while i < n:
        c = fmt[i]
        if c == "%" and i + 1 < n and fmt[i + 1] in "123456789":
            k = int(fmt[i + 1])
            if k <= len(args):
                v = args[k - 1]
                out.append(v if isinstance(v, str) else show(v))
            else:
                out.append(fmt[i:i + 2])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


@builtin("rfind", group=G, min_args=2, max_args=3)
def rfind(container: Any, value: Any, start: Any = None) -> Any:
    """(rfind "hello" "l") returns the last position of a substring (or list element): 3; nil if absent.

    An optional position bounds the search: only occurrences starting before or at it count.
    """
    if isinstance(container, str):
        if not isinstance(value, str):
            value = show(value)
        if start is None:
            pos = container.rfind(value)
        else:
            pos = container.rfind(value, 0, expect_int("rfind", start) + len(value))
        return None if pos < 0 else pos
    if isinstance(container, list):
        top = len(container) - 1 if start is None else min(expect_int("rfind", start), len(container) - 1)
        for i in range(top, -1, -1):
            if lisp_equal(container[i], value):
                return i
        return None
    raise fail("rfind", "a string or a list", container)


@builtin("startwith", group=G)
def startwith(s: Any, prefix: Any) -> Any:
    """(startwith "hello" "he") is true when a string starts with a non-empty prefix."""
    expect_str("startwith", s)
    expect_str("startwith", prefix, "a string prefix")
    return True if prefix and s.startswith(prefix) else None


@builtin("endwith", group=G)
def endwith(s: Any, suffix: Any) -> Any:
    """(endwith "hello" "lo") is true when a string ends with a non-empty suffix."""
    expect_str("endwith", s)
    expect_str("endwith", suffix, "a string suffix")
    return True if suffix and s.endswith(suffix) else None


@builtin("explode", group=G)
def explode(value: Any) -> list:
    """(explode "abc") splits a value's text into one atom per character: (a b c).

    As LispE's explode (List::evall_atomise, Delegation::atomise): the elements are atoms, not
    strings, and any value is taken through its text, so (explode 12) is the atoms 1 and 2.
    """
    return [Symbol(c) for c in show(value)]


@builtin("atom", group=G)
def atom(s: Any) -> Symbol:
    """(atom "abc") turns a string into an atom (symbol): abc."""
    if isinstance(s, Symbol):
        return s
    text = expect_str("atom", s, "a string")
    if not text:
        raise LispEError("atom: the empty string is not an atom")
    return Symbol(text)


@builtin("ord", group=G)
def ord_(s: Any) -> Any:
    """(ord "AB") returns the Unicode codes of a string's characters as integers: (65 66).

    Like LispE, the result is always a list, (ord "A") being (65); an empty string gives ().
    """
    from ..values import Integers

    return Integers(ord(c) for c in expect_str("ord", s))


@builtin("chr", group=G)
def chr_(n: Any) -> str:
    """(chr 65) returns the character with a Unicode code: "A"."""
    code = expect_int("chr", n, "an integer character code")
    if not 0 <= code <= 0x10FFFF:
        raise LispEError(f"chr: invalid character code {code}")
    return chr(code)


@builtin("left", group=G)
def left(s: Any, n: Any) -> str:
    """(left "hello" 2) returns the first n characters of a string: "he"."""
    k = expect_int("left", n)
    return expect_str("left", s)[:max(k, 0)]


@builtin("right", group=G)
def right(s: Any, n: Any) -> str:
    """(right "hello" 3) returns the last n characters of a string: "llo"."""
    k = expect_int("right", n)
    text = expect_str("right", s)
    return text[len(text) - k:] if 0 < k <= len(text) else (text if k > 0 else "")


@builtin("middle", group=G)
def middle(s: Any, pos: Any, n: Any) -> str:
    """(middle "hello" 1 3) returns n characters from a position: "ell"."""
    text = expect_str("middle", s)
    p = expect_int("middle", pos)
    k = expect_int("middle", n)
    if p < 0:
        p = max(p + len(text), 0)
    return text[p:p + max(k, 0)]


@builtin("padding", group=G)
def padding(s: Any, c: Any, n: Any) -> str:
    """(padding "ab" "." 5) pads a string on the right with a filler up to a length: "ab..."."""
    text = s if isinstance(s, str) else show(s)
    fill = expect_str("padding", c, "a string filler")
    k = expect_int("padding", n)
    if not fill:
        raise LispEError("padding: the filler is empty")
    check_size("padding", k)
    missing = k - len(text)
    if missing <= 0:
        return text
    return text + (fill * (missing // len(fill) + 1))[:missing]


def _str_pred(name: str, test: Any, doc: str) -> None:
    def f(s: Any) -> Any:
        text = expect_str(name, s)
        return True if text and test(text) else None

    f.__name__ = name
    f.__doc__ = doc
    builtin(name, name[:-1] + "?", group=G)(f)


_str_pred("lowerp", str.islower,
          '(lowerp "abc") is true when a string has letters, all in lower case.')
_str_pred("upperp", str.isupper,
          '(upperp "ABC") is true when a string has letters, all in upper case.')
_str_pred("alphap", str.isalpha, '(alphap "abc") is true when a non-empty string has only letters.')
_str_pred("digitp", str.isdigit, '(digitp "123") is true when a non-empty string has only digits.')
_str_pred("punctuationp",
          lambda t: all(c in _string.punctuation or unicodedata.category(c).startswith("P") for c in t),
          '(punctuationp "?!") is true when a non-empty string has only punctuation.')


# ---------------------------------------------------------------- JSON (LispE's string module)

def _to_json_value(name: str, v: Any, active: set[int] | None = None,
                   big: dict[str, str] | None = None) -> Any:
    """The Python value `json.dumps` writes for `v`. `active`: ids of the lists and dictionaries
    being converted (a value that contains itself has no JSON form). `big`: integers longer than
    Python's int/str digit limit are written through a marker string replaced afterwards."""
    import math as _math

    from ..values import VOID

    if active is None:
        active = set()
    if v is None or v is VOID or v is False:
        return None
    if v is True or isinstance(v, str):
        return v
    if isinstance(v, int):
        try:
            str(v)
        except ValueError:  # more digits than sys.get_int_max_str_digits(): see printer.int_to_str
            from ..printer import int_to_str

            if big is None:
                raise
            marker = f"\x00{id(big)}:{len(big)}\x00"
            big[_json_mod().dumps(marker)] = int_to_str(v)
            return marker
        return int(v)
    if isinstance(v, float):
        if _math.isnan(v) or _math.isinf(v):
            raise LispEError(f"{name}: {show(v)} has no JSON form")
        return float(v)
    if isinstance(v, Symbol):
        return v.name
    if isinstance(v, (list, dict)):
        key = id(v)
        if key in active:
            raise LispEError(f"{name}: a {type_name(v)[:-1]} that contains itself (a cycle) has no JSON form")
        active.add(key)
        try:
            if isinstance(v, list):
                return [_to_json_value(name, x, active, big) for x in v]
            return {(k if isinstance(k, str) else show(k)): _to_json_value(name, x, active, big)
                    for k, x in v.items()}
        finally:
            active.discard(key)
    raise fail(name, "lists, dictionaries, strings, numbers, true or nil", v)


def _json_mod() -> Any:
    import json as _json

    return _json


def _from_json_value(v: Any) -> Any:
    if v is False:
        return None
    if isinstance(v, list):
        return [_from_json_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _from_json_value(x) for k, x in v.items()}
    return v


def _parse_json(name: str, text: str) -> Any:
    import json as _json

    try:
        from ..printer import str_to_int

        return _from_json_value(_json.loads(text, parse_int=str_to_int))
    except ValueError as exc:
        msg = exc.msg if hasattr(exc, "msg") else str(exc)
        where = f" (line {exc.lineno}, column {exc.colno})" if hasattr(exc, "lineno") else ""
        raise LispEError(f"{name}: invalid JSON: {msg}{where}") from None


@builtin("json", group=G)
def json(value: Any) -> str:
    """(json {"a":(1 2)}) returns the compact JSON text of a value: {"a":[1,2]} (nil is null).

    As LispE's jsonString, no blank follows the commas and colons.
    """
    import json as _json

    big: dict[str, str] = {}
    text = _json.dumps(_to_json_value("json", value, None, big), ensure_ascii=False, separators=(",", ":"))
    for marker, digits in big.items():
        text = text.replace(marker, digits)
    return text


@builtin("json_parse", group=G)
def json_parse(text: Any) -> Any:
    """(json_parse "[1, {\\"a\\": true}]") reads JSON text into Lisp values: (1 {"a":true}).

    Objects become dictionaries, arrays lists, null and false nil.
    """
    return _parse_json("json_parse", expect_str("json_parse", text))


@builtin("json_read", group=G, ctx=True)
def json_read(ctx: Any, path: Any) -> Any:
    """(json_read "config.json") reads a JSON file into Lisp values (same conversions as json_parse)."""
    from .io import read_text

    return _parse_json("json_read", read_text(ctx, "json_read", path))


# ---------------------------------------------------------------- the rest of LispE's string module
# (src/strings.cxx, moduleChaines: trim0 fill ngrams editdistance vowelp consonantp emojip)

@builtin("trim0", group=G)
def trim0(s: Any) -> str:
    """(trim0 "2.500") removes the '0' characters at the end of a string: "2.5"."""
    return expect_str("trim0", s).rstrip("0")


@builtin("fill", group=G)
def fill(s: Any, n: Any) -> str:
    """(fill "ab" 3) repeats a string a number of times: "ababab" ("" when the count is 0 or less)."""
    text = expect_str("fill", s)
    k = expect_int("fill", n)
    if k <= 0:
        return ""
    check_size("fill", k * len(text))
    return text * k


@builtin("ngrams", group=G)
def ngrams(s: Any, n: Any) -> Strings:
    """(ngrams "abcd" 2) lists the substrings of a given length, in order: ("ab" "bc" "cd")."""
    text = s if isinstance(s, str) else show(s)
    k = n if isinstance(n, int) and not isinstance(n, bool) else None
    if k is None and isinstance(n, float):
        k = int(n)
    if k is None:
        raise LispEError(f"ngrams: expected a number, got {type_name(n)}")
    if k <= 0:
        raise LispEError("ngrams: nb should be a positive value")
    return Strings(text[i:i + k] for i in range(len(text) - k + 1))


@builtin("editdistance", group=G)
def editdistance(a: Any, b: Any) -> int:
    """(editdistance "kitten" "sitting") is the Levenshtein distance between two strings: 3."""
    s1 = a if isinstance(a, str) else show(a)
    s2 = b if isinstance(b, str) else show(b)
    column = list(range(len(s1) + 1))
    for x in range(1, len(s2) + 1):
        column[0] = x
        lastdiag = x - 1
        for y in range(1, len(s1) + 1):
            olddiag = column[y]
            column[y] = min(column[y] + 1, column[y - 1] + 1,
                            lastdiag + (0 if s1[y - 1] == s2[x - 1] else 1))
            lastdiag = olddiag
    return column[len(s1)]


def _base_letter(ch: str) -> str:
    return unicodedata.normalize("NFD", ch)[0].lower()


def _is_vowel(ch: str) -> bool:
    return ch.isalpha() and _base_letter(ch) in "aeiouy"


def _is_consonant(ch: str) -> bool:
    return ch.isalpha() and _base_letter(ch) not in "aeiouy"


def _is_emoji(ch: str) -> bool:
    o = ord(ch)
    return (0x1F000 <= o <= 0x1FAFF or 0x2600 <= o <= 0x27BF or 0x2300 <= o <= 0x23FF
            or 0x2B00 <= o <= 0x2BFF or o in (0x200D, 0xFE0F, 0x20E3, 0x00A9, 0x00AE, 0x203C, 0x2049,
                                               0x2122, 0x2139, 0x3030, 0x303D, 0x3297, 0x3299)
            or 0xE0020 <= o <= 0xE007F)


_str_pred("vowelp", lambda t: all(_is_vowel(c) for c in t),
          '(vowelp "aé") is true when a non-empty string has only vowels (accented ones too).')
_str_pred("consonantp", lambda t: all(_is_consonant(c) for c in t),
          '(consonantp "bcd") is true when a non-empty string has only consonants.')
_str_pred("emojip", lambda t: all(_is_emoji(c) for c in t),
          '(emojip "👍") is true when a non-empty string has only emoji characters.')
