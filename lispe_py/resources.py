"""Find the files shipped beside the code (the grammar and the LispE-source standard library), and the
per-user cache folder.

In a source checkout or an editable install they sit at the repository's top level (`grammar/`,
`stdlib/`); in a built wheel hatch copies them to `lispe_py/_data/grammar` and `lispe_py/_data/stdlib`.
"""
from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder `name` ("grammar" or "stdlib"): packaged copy first, then the source tree's."""
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"lispe_py data folder {name!r} not found (looked in {_PKG / '_data'} "
                            f"and {_PKG.parent})")


def grammar_path() -> Path:
    """The Lark grammar of the LispE lexical syntax."""
    return data_dir("grammar") / "lispe.lark"


def stdlib_file(name: str) -> Path | None:
    """`stdlib/<name>.lisp` if it exists, else None."""
    try:
        path = data_dir("stdlib") / f"{name}.lisp"
    except FileNotFoundError:
        return None
    return path if path.is_file() else None


def user_cache_dir(name: str) -> Path:
    """`$XDG_CACHE_HOME/lispe_py/<name>` (by default `~/.cache/lispe_py/<name>`); not created here."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lispe_py" / name
