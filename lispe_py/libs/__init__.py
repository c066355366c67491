"""Lisp libraries written in Python, loaded by `(use 'NAME)`.

`(use 'lispe_torch)` imports `lispe_py.libs.lispe_torch`, whose `@builtin(..., library="lispe_torch")`
functions then become visible in that interpreter. Nothing here is imported before a `use`: in
particular torch is imported only when `lispe_torch` is loaded.
"""

# Name prefixes of each library's functions, known without importing the library (which would import
# torch): an unknown function with such a prefix gets a hint to `use` the library.
NAME_PREFIXES: dict[str, tuple[str, ...]] = {
    "lispe_torch": ("torch_", "tensor_", "tokenizer_"),
}

# LispE names that share such a prefix but are not library functions: LispE's own rule-driven string
# tokenizer (strings.cxx), which this interpreter does not provide; no `use` hint for them.
NOT_LIBRARY_NAMES = frozenset({"tokenizer_rules", "tokenize_rules", "get_tokenizer_rules", "set_tokenizer_rules"})


def library_for(name: str) -> str | None:
    """The library whose functions are named like `name`, if any."""
    if name in NOT_LIBRARY_NAMES:
        return None
    for library, prefixes in NAME_PREFIXES.items():
        if name.startswith(prefixes):
            return library
    return None
