"""A JSON-schema subset compiled into a grammar (the Python form of `grammar.py`).

Supported: `type` (object, array, string, number, integer, boolean, null, or a list of them),
`properties` + `required` (properties are written in the schema's order; optional ones may be left
out; no other keys), `items` with `minItems`/`maxItems`, `minLength`/`maxLength` and `pattern` (the
whole string content must match it) for strings, `enum`, `const`, `anyOf`/`oneOf`, `$ref` to
`#/$defs/...` or `#/definitions/...` (recursion allowed), and `{}` / `true` for any JSON value.
Numeric bounds (`minimum`, ...) and `format` are not enforced: a schema using a keyword outside this
list raises GenerationError rather than being silently ignored.

The output is compact JSON; `whitespace` (a regex, default `[ ]?`, like outlines) is allowed after
`{ [ , :` and before `} ]`. A permissive whitespace pattern lets small models loop on blanks.
"""
from __future__ import annotations

import json
from typing import Any

from ..config import GenerationError

STRING_CHAR = r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})'
INTEGER = r"-?(?:0|[1-9][0-9]*)"
NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_IGNORED = {"title", "description", "$schema", "$id", "examples", "default", "$comment",
            "additionalProperties", "$defs", "definitions"}
_KNOWN = {"type", "properties", "required", "items", "minItems", "maxItems", "minLength",
          "maxLength", "pattern", "enum", "const", "anyOf", "oneOf", "$ref"} | _IGNORED


def _lit(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Compiler:
    def __init__(self, schema: Any, whitespace: str | None):
        self.root = schema
        self.rules: list[list[Any]] = []
        self.names: set[str] = set()
        self.refs: dict[str, str] = {}
        self.ws: Any = ["ref", "ws"] if whitespace else ""
        if whitespace:
            self.rules.append(["ws", ["regex", whitespace]])
            self.names.add("ws")
        self.generic: str | None = None

    def fresh(self, base: str) -> str:
        i = len(self.names)
        name = f"{base}{i}"
        while name in self.names:
            i += 1
            name = f"{base}{i}"
        self.names.add(name)
        return name

    def value(self, s: Any, path: str) -> Any:
        if s is True or s == {}:
            return self.any_value()
        if not isinstance(s, dict):
            raise GenerationError(f"json_schema {path}: a schema is an object, got {s!r}")
        unknown = set(s) - _KNOWN
        if unknown:
            raise GenerationError(f"json_schema {path}: unsupported keywords {sorted(unknown)}; "
                                  f"supported: {sorted(_KNOWN - _IGNORED)}")
        if "$ref" in s:
            return ["ref", self.ref(s["$ref"], path)]
        if "const" in s:
            return _lit(s["const"])
        if "enum" in s:
            if not isinstance(s["enum"], list) or not s["enum"]:
                raise GenerationError(f"json_schema {path}: enum must be a non-empty list")
            return ["alt", *[_lit(v) for v in s["enum"]]]
        for key in ("anyOf", "oneOf"):
            if key in s:
                if not isinstance(s[key], list) or not s[key]:
                    raise GenerationError(f"json_schema {path}: {key} must be a non-empty list")
                return ["alt", *[self.value(sub, f"{path}/{key}/{i}") for i, sub in enumerate(s[key])]]
        t = s.get("type")
        if t is None:
            if "properties" in s:
                t = "object"
            elif "items" in s:
                t = "array"
            else:
                return self.any_value()
        if isinstance(t, list):
            return ["alt", *[self.typed(dict(s, type=x), x, path) for x in t]]
        return self.typed(s, t, path)

    def typed(self, s: dict, t: Any, path: str) -> Any:
        if t == "string":
            return ["regex", self.string_regex(s, path)]
        if t == "integer":
            return ["regex", INTEGER]
        if t == "number":
            return ["regex", NUMBER]
        if t == "boolean":
            return ["alt", "true", "false"]
        if t == "null":
            return "null"
        if t == "array":
            return self.array(s, path)
        if t == "object":
            return self.obj(s, path)
        raise GenerationError(f"json_schema {path}: unknown type {t!r}")

    def string_regex(self, s: dict, path: str) -> str:
        lo, hi = s.get("minLength", 0), s.get("maxLength")
        if "pattern" in s:
            if "minLength" in s or "maxLength" in s:
                raise GenerationError(f"json_schema {path}: pattern with min/maxLength is not supported")
            return '"(?:' + s["pattern"] + ')"'
        if not isinstance(lo, int) or lo < 0 or (hi is not None and (not isinstance(hi, int) or hi < lo)):
            raise GenerationError(f"json_schema {path}: bad minLength/maxLength {lo!r}/{hi!r}")
        rep = "*" if lo == 0 and hi is None else "{%d,%s}" % (lo, "" if hi is None else hi)
        return '"' + STRING_CHAR + rep + '"'

    def array(self, s: dict, path: str) -> Any:
        item = self.value(s.get("items", True), f"{path}/items")
        lo, hi = s.get("minItems", 0), s.get("maxItems")
        if not isinstance(lo, int) or lo < 0 or (hi is not None and (not isinstance(hi, int) or hi < lo)):
            raise GenerationError(f"json_schema {path}: bad minItems/maxItems {lo!r}/{hi!r}")
        ws = self.ws
        if hi == 0:
            return ["seq", "[", ws, "]"]
        name = self.fresh("item")
        self.rules.append([name, item])
        more = ["seq", ws, ",", ws, ["ref", name]]
        body = ["seq", ["ref", name], ["repeat", more, max(lo - 1, 0), None if hi is None else hi - 1]]
        if lo == 0:
            body = ["opt", body]
        return ["seq", "[", ws, body, ws, "]"]

    def obj(self, s: dict, path: str) -> Any:
        props = s.get("properties")
        if props is None:
            return self.any_object()
        if not isinstance(props, dict):
            raise GenerationError(f"json_schema {path}: properties must be an object")
        required = s.get("required", [])
        missing = [r for r in required if r not in props]
        if missing:
            raise GenerationError(f"json_schema {path}: required {missing} are not in properties")
        ws = self.ws
        keys = list(props)
        if not keys:
            return ["seq", "{", ws, "}"]
        base = self.fresh("obj")
        members = [["seq", _lit(k), ws, ":", ws, self.value(props[k], f"{path}/properties/{k}")]
                   for k in keys]
        n = len(keys)
        # first{i}: members i.. with none written yet; rest{i}: members i.. after a written one
        for i in range(n - 1, -1, -1):
            req = keys[i] in required
            nxt_rest = ["ref", f"{base}_rest{i + 1}"] if i + 1 < n else ""
            nxt_first = ["ref", f"{base}_first{i + 1}"] if i + 1 < n else ""
            first = ["seq", members[i], nxt_rest]
            rest = ["seq", ws, ",", ws, members[i], nxt_rest]
            self.rules.append([f"{base}_first{i}", first if req else ["alt", first, nxt_first]])
            self.rules.append([f"{base}_rest{i}", rest if req else ["alt", rest, nxt_rest]])
        return ["seq", "{", ws, ["ref", f"{base}_first0"], ws, "}"]

    def ref(self, ref: Any, path: str) -> str:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise GenerationError(f"json_schema {path}: only local $ref (#/$defs/...) are supported")
        if ref in self.refs:
            return self.refs[ref]
        target: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(target, dict) or part not in target:
                raise GenerationError(f"json_schema {path}: $ref {ref!r} points nowhere")
            target = target[part]
        name = self.refs[ref] = self.fresh("def")
        self.rules.append([name, self.value(target, ref)])
        return name

    def any_value(self) -> Any:
        if self.generic is None:
            self.generic = "json_value"
            ws = self.ws
            self.rules += [
                ["json_value", ["alt", ["ref", "json_object"], ["ref", "json_array"],
                                ["regex", '"' + STRING_CHAR + '*"'], ["regex", NUMBER],
                                "true", "false", "null"]],
                ["json_member", ["seq", ["regex", '"' + STRING_CHAR + '*"'], ws, ":", ws,
                                 ["ref", "json_value"]]],
                ["json_object", ["seq", "{", ws, ["opt", ["ref", "json_member"],
                                                  ["star", ws, ",", ws, ["ref", "json_member"]]],
                                 ws, "}"]],
                ["json_array", ["seq", "[", ws, ["opt", ["ref", "json_value"],
                                                 ["star", ws, ",", ws, ["ref", "json_value"]]],
                                ws, "]"]],
            ]
        return ["ref", "json_value"]

    def any_object(self) -> Any:
        self.any_value()
        return ["ref", "json_object"]


def schema_to_grammar(schema: Any, whitespace: str | None = r"[ ]?") -> list:
    """The grammar (Python form, `["grammar", ["root", ...], ...]`) of JSON texts valid for `schema`."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as e:
            raise GenerationError(f"json_schema: not valid JSON: {e}") from None
    c = _Compiler(schema, whitespace)
    root = c.value(schema, "#")
    return ["grammar", ["root", root], *c.rules]
