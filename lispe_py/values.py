"""LispE values as Python objects: the one place that says how each Lisp type is represented.

    integer_      int (never bool)            number_   float (a float literal)
    float_        Float (float subclass, made by (float x))
    string_       str                         nil_      None  (nil, _, false)
    true_         True                        list_     list (mutable, shared by reference)
    integers_     Integers(list)              floats_   Floats(list)
    numbers_      Numbers(list)               strings_  Strings(list)
    dictionary_   dict with str keys          dictionary_n_  dict with int/float keys
    atom_         Symbol (interned)           lambda_ / function_  see runtime / registry
    void          VOID: what print functions return; never echoed by the REPL or `lispe -e`;
                  printed as nothing, like LispE's emptyatom_ (an atom named ""); false as nil

Library values (tensors, models, generators, tokenizers) are plain Python objects whose LispE type
name and printed form are declared with `register_type`.
"""
from __future__ import annotations

from typing import Any, Callable


class Symbol:
    """An interned symbol: `Symbol("x") is Symbol("x")`, so symbols compare by identity."""

    __slots__ = ("name",)
    _table: dict[str, "Symbol"] = {}

    def __new__(cls, name: str) -> "Symbol":
        sym = cls._table.get(name)
        if sym is None:
            sym = object.__new__(cls)
            sym.name = name
            cls._table[name] = sym
        return sym

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self):
        return (Symbol, (self.name,))


class _Void:
    """The value of print functions: prints as nothing at the prompt, as nil elsewhere."""

    __slots__ = ()
    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = object.__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "VOID"

    def __bool__(self) -> bool:
        return False


VOID = _Void()


class Float(float):
    """A float made by `(float x)`: LispE type `float_` (a float literal is `number_`)."""

    __slots__ = ()


class Integers(list):
    """`(integers ...)`: a typed list of ints; a list of Integers rows is a matrix."""

    __slots__ = ()
    lisp_type = "integers_"


class Floats(list):
    """`(floats ...)`: a typed list of floats."""

    __slots__ = ()
    lisp_type = "floats_"


class Numbers(list):
    """`(numbers ...)`: a typed list of numbers (floats)."""

    __slots__ = ()
    lisp_type = "numbers_"


class Strings(list):
    """`(strings ...)`: a typed list of strings."""

    __slots__ = ()
    lisp_type = "strings_"


TYPED_LISTS = (Integers, Floats, Numbers, Strings)


class Pair(list):
    """A dotted pair, `(cons 1 2)`: its elements in order, the last one being the tail.

    As in LispE (a pair is a list whose last element is printed after a dot), `(1 2 . 3)` holds
    [1, 2, 3]: list functions see its elements; `cdr` of a two-element pair is the tail itself."""

    __slots__ = ()
    lisp_type = "pair_"


class OpaqueType:
    """How a library type looks from Lisp: its `(type x)` name and how it prints."""

    __slots__ = ("cls", "name", "printer")

    def __init__(self, cls: type, name: str, printer: Callable[[Any], str] | None):
        self.cls = cls
        self.name = name
        self.printer = printer


_OPAQUE: dict[type, OpaqueType] = {}


def register_type(cls: type, type_name: str, printer: Callable[[Any], str] | None = None) -> None:
    """Declare a library type: `(type x)` answers `type_name`; `printer(x)` gives its printed form."""
    _OPAQUE[cls] = OpaqueType(cls, type_name, printer)


def opaque_type(value: Any) -> OpaqueType | None:
    """The registered description of a library value, following its class's MRO."""
    for klass in type(value).__mro__:
        info = _OPAQUE.get(klass)
        if info is not None:
            return info
    return None


def type_name(value: Any) -> str:
    """The LispE type name of any value, as `(type x)` returns it."""
    if value is None or value is VOID:
        return "nil_"
    if value is True:
        return "true_"
    if value is False:
        return "nil_"
    if isinstance(value, Float):
        return "float_"
    if isinstance(value, int):
        return "integer_"
    if isinstance(value, float):
        return "number_"
    if isinstance(value, str):
        return "string_"
    if isinstance(value, Symbol):
        return "atom_"
    if isinstance(value, TYPED_LISTS) or value.__class__ is Pair:
        return value.lisp_type
    if isinstance(value, list):
        return "list_"
    if isinstance(value, dict):
        if value and all(isinstance(k, (int, float)) for k in value):
            return "dictionary_n_"
        return "dictionary_"
    lisp_type = getattr(value, "lisp_type", None)
    if isinstance(lisp_type, str):
        return lisp_type
    info = opaque_type(value)
    if info is not None:
        return info.name
    if callable(value):
        return "function_"
    return type(value).__name__ + "_"


def truthy(value: Any) -> bool:
    """LispE truthiness: nil, false, 0, 0.0, "", () and {} are false; everything else is true."""
    if value is None or value is False or value is VOID:
        return False
    if value is True:
        return True
    if isinstance(value, (int, float, str, list, dict)):
        return bool(value)
    return True
