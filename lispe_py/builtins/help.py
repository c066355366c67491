"""`(help 'name)`: the documentation of a builtin, special form or definition, at the REPL and in scripts.

It reads the builtin registry, so every builtin documents itself through its docstring (first line:
a usage example). `(help)` lists the builtins by group.
"""
from __future__ import annotations

import inspect
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

from ..errors import LispEError
from ..values import VOID, Symbol, type_name
from ..hints import did_you_mean
from .registry import REGISTRY, Builtin, builtin, visible_names


@builtin("help", group="help", ctx=True, min_args=0, max_args=1)
def help_(ctx: Any, name: Any = None) -> Any:
    """(help 'car) prints the documentation of a builtin, a special form or a name defined here.

    With no argument, lists the builtins by group. The name may be quoted (`'car`) or a string
    (`"car"`); `(help car)` works too for a builtin, since `car` evaluates to the builtin itself.
    A generation config key that names no function is documented too: `(help "max_length")` gives
    its type, default and meaning.
    """
    interp = getattr(ctx, "interp", None)
    libraries = set(getattr(interp, "libraries", ()) or ())
    text = overview(libraries) if name is None else describe(_name_of(name), interp, libraries)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return VOID


def _name_of(value: Any) -> str:
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, str):
        return value
    entry = value if isinstance(value, Builtin) else getattr(value, "builtin", None)
    if isinstance(entry, Builtin):
        return entry.name
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    raise LispEError(f"help: expected a quoted name like 'car, got {type_name(value)}")


def special_forms() -> dict[str, str]:
    """The compiler's special forms, each with its docstring (first line: usage), if it has one."""
    from ..compiler import SPECIAL_FORMS

    return {sym.name: inspect.cleandoc(fn.__doc__ or "") for sym, fn in SPECIAL_FORMS.items()}


def describe(name: str, interp: Any = None, libraries: set[str] | None = None) -> str:
    """The help text for `name`: a builtin's or special form's docstring, or what a global is."""
    entry = REGISTRY.get(name)
    if entry is not None:
        return _describe_builtin(entry, libraries or set())
    forms = special_forms()
    if name in forms:
        doc = forms[name] or "A special form: the compiler handles it, its arguments are not evaluated first."
        return f"{name}  [special form]\n" + textwrap.indent(doc, "  ")
    env = getattr(interp, "globals", None)
    if isinstance(env, Mapping) and name in env:
        value = env[name]
        lines = [f"{name}: a {type_name(value).rstrip('_')} defined in this session"]
        summary = summarize(value)
        if summary != type_name(value):
            lines.append("  " + summary)
        return "\n".join(lines)
    keys = _config_keys()
    text = keys.get("describe", lambda _: None)(name)
    if text is not None:
        return text
    candidates = visible_names(libraries or set()) + list(forms) + keys.get("names", [])
    candidates += list(env) if isinstance(env, Mapping) else []
    raise LispEError(f"help: no builtin or definition named '{name}'{did_you_mean(name, candidates)}")


def _config_keys() -> dict[str, Any]:
    """The generation config keys' documentation (`describe`) and names, when the generation layer
    can be imported (it needs torch); else an empty dict."""
    try:
        from ..generation.config import ALIASES, KEY_DOCS, describe_key
    except ImportError:
        return {}
    return {"describe": describe_key, "names": list(KEY_DOCS) + list(ALIASES)}


def summarize(value: Any) -> str:
    """One line about a defined value: a function's type and parameters (`function_ (w h)`), the
    first docstring line of a Python function given to `Interpreter.define`, else its type."""
    kind = type_name(value)
    source = getattr(getattr(value, "code", None), "source", None)
    if isinstance(source, list) and len(source) >= 2:
        params = source[2] if kind == "function_" and len(source) >= 3 else source[1]
        if isinstance(params, list):
            from ..printer import repr_string

            return f"{kind} {repr_string(params)}"
    doc = getattr(value, "doc", None)
    if isinstance(doc, str) and doc.strip():
        return doc.strip().splitlines()[0]
    return kind


def _describe_builtin(entry: Builtin, libraries: set[str]) -> str:
    header = entry.name
    others = [n for n in entry.names if n != entry.name]
    details = [entry.group] + ([f"also: {' '.join(others)}"] if others else [])
    header += f"  [{'; '.join(details)}]"
    lines = [header]
    doc = entry.doc.strip() or "(no documentation)"
    lines.append(textwrap.indent(doc, "  "))
    if entry.library is not None and entry.library not in libraries:
        lines.append(f"  Available after (use '{entry.library}).")
    return "\n".join(lines)


def overview(libraries: set[str]) -> str:
    """Every visible builtin, grouped; how to ask for one."""
    groups: dict[str, list[str]] = {}
    for name in visible_names(libraries):
        entry = REGISTRY[name]
        if name == entry.name:
            groups.setdefault(entry.group, []).append(name)
    lines = ["(help 'name) documents one of these builtins:"]
    for group in sorted(groups):
        body = textwrap.fill(" ".join(groups[group]), width=78, initial_indent="    ",
                             subsequent_indent="    ", break_on_hyphens=False)
        lines.append(f"  {group}:\n{body}")
    return "\n".join(lines)
