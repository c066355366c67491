"""Builtins by area; importing this package registers all of them in `registry.REGISTRY`.

Every module of this package except `registry` and private helpers (`_name`) is a builtin group; they
are found by iteration so a group being written elsewhere cannot break the others.
"""
from __future__ import annotations

import importlib
import pkgutil

_loaded = False


def load_all() -> None:
    """Import every builtin group module once."""
    global _loaded
    if _loaded:
        return
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "registry" or info.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True

