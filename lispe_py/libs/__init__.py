"""Lisp libraries written in Python, loaded by `(use 'NAME)`.

`(use 'lispe_torch)` imports `lispe_py.libs.lispe_torch`, whose `@builtin(..., library="lispe_torch")`
functions then become visible in that interpreter. Nothing here is imported before a `use`: in
particular torch is imported only when `lispe_torch` is loaded.
"""
