"""Dictionary builtins. Dictionaries are Python dicts whose keys are all strings (`dictionary_`) or
all numbers (`dictionary_n_`); `keys`/`values` list them in sorted key order, the order in which
they print. `in`, `pop`, `find`, `size` and `@` on dictionaries are the shared builtins of lists.py.
Both LispE spellings are accepted: `key`/`key@`, `keys`/`keys@`, `values`/`values@`.
"""
from __future__ import annotations

from typing import Any

from ..errors import LispEError
from ..values import Integers, Numbers, Strings
from ._common import dict_key, fail, is_int, typed_from
from .lists import _dict_set
from .registry import builtin

G = "dictionaries"


def _sorted_keys(d: dict) -> list:
    return sorted(d, key=lambda k: (isinstance(k, str), k))


@builtin("dictionary", group=G, min_args=0, max_args=None)
def dictionary(*pairs: Any) -> dict:
    """(dictionary "a" 1 "b" 2) builds a dictionary from keys and values: {"a":1 "b":2}."""
    if len(pairs) % 2:
        raise LispEError("dictionary: expected keys and values in pairs, got an odd number of arguments")
    d: dict = {}
    for i in range(0, len(pairs), 2):
        _dict_set("dictionary", d, pairs[i], pairs[i + 1])
    return d


@builtin("key", "key@", group=G, min_args=0, max_args=None)
def key(*args: Any) -> Any:
    """(key d "a") returns the value under a key (nil if absent); (key d "a" 1) stores it and returns d.

    (key) alone returns a new empty dictionary; several key/value pairs may be stored at once;
    (key "a" 1 "b" 2), without a dictionary first, builds a new dictionary from the pairs.
    """
    if not args:
        return {}
    d = args[0]
    if isinstance(d, str) and len(args) % 2 == 0:
        return dictionary(*args)  # (key "a" 1 "b" 2): a new dictionary from key/value pairs
    if not isinstance(d, dict):
        raise fail("key", "a dictionary", d)
    if len(args) == 1:
        raise LispEError("key: expected a key after the dictionary")
    if len(args) == 2:
        return d.get(dict_key(d, args[1]))
    rest = args[1:]
    if len(rest) % 2:
        raise LispEError("key: expected keys and values in pairs")
    for i in range(0, len(rest), 2):
        _dict_set("key", d, rest[i], rest[i + 1])
    return d


@builtin("keys", "keys@", group=G)
def keys(d: Any) -> list:
    """(keys {"b":2 "a":1}) lists a dictionary's keys in sorted order: ("a" "b"); a list gives its positions."""
    if isinstance(d, list):
        return Integers(range(len(d)))
    if not isinstance(d, dict):
        raise fail("keys", "a dictionary", d)
    ks = _sorted_keys(d)
    if ks and all(isinstance(k, str) for k in ks):
        return Strings(ks)
    if ks and all(is_int(k) for k in ks):
        return Integers(ks)
    if ks and all(isinstance(k, (int, float)) for k in ks):
        return Numbers(float(k) for k in ks)
    return ks


@builtin("values", "values@", group=G)
def values(d: Any) -> list:
    """(values {"b":2 "a":1}) lists a dictionary's values in sorted key order: (1 2)."""
    if isinstance(d, list):
        return list(d)
    if not isinstance(d, dict):
        raise fail("values", "a dictionary", d)
    return typed_from([d[k] for k in _sorted_keys(d)])
