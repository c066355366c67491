"""Tensors: creation, arithmetic, shapes, softmax/top-k, attention."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...builtins.registry import builtin
from ...errors import LispEError
from ...values import Integers
from .. import torch_values as tv
from ..torch_values import (arg_error, as_tensor_arg, dim_arg, dtype_arg, expect_int, expect_real,
                            expect_tensor, shape_arg, tensor_to_lisp, to_tensor)

from ._common import LIB, G_TENSOR


@builtin("torch_tensor", "tensor_create", group=G_TENSOR, library=LIB, min_args=1, max_args=2)
def torch_tensor(data: Any, dtype: Any = None) -> torch.Tensor:
    """(torch_tensor (integers 15339 1332))

    A tensor from Lisp data: integers -> int64, floats -> float32, a matrix (integers (10 20) (30 40))
    -> 2-D. An optional dtype: "int64", "int32", "float32", "float64", "float16", "bfloat16", "bool".
    """
    fname = "torch_tensor"
    dt = None if dtype is None else dtype_arg(fname, "dtype", dtype)
    return to_tensor(fname, "data", data, dt)


@builtin("tensor_to_list", group=G_TENSOR, library=LIB)
def tensor_to_list(t: Any) -> Any:
    """(tensor_to_list t)

    A tensor as Lisp data: 1-D -> integers or floats, 2-D -> a list of rows, 0-D -> a number.
    """
    return tensor_to_lisp(expect_tensor("tensor_to_list", "tensor", t))


@builtin("tensor_shape", "torch_shape", "tensor_size", group=G_TENSOR, library=LIB)
def tensor_shape(t: Any) -> Integers:
    """(tensor_shape t)

    The shape of a tensor as integers, e.g. (2 4).
    """
    return Integers(int(s) for s in expect_tensor("tensor_shape", "tensor", t).shape)


@builtin("tensor_item", "torch_item", group=G_TENSOR, library=LIB)
def tensor_item(t: Any) -> Any:
    """(tensor_item t)

    The number held by a one-element tensor.
    """
    t = expect_tensor("tensor_item", "tensor", t)
    if t.numel() != 1:
        raise LispEError(f"tensor_item: argument 'tensor': expected one element, got shape {list(t.shape)}")
    return tv.scalar(t)


def _factory(fname: str, shape: Any, dtype: Any, make) -> torch.Tensor:
    dims = shape_arg(fname, "shape", shape)
    dt = torch.float32 if dtype is None else dtype_arg(fname, "dtype", dtype)
    return make(dims, dt)


@builtin("tensor_zeros", group=G_TENSOR, library=LIB, min_args=1, max_args=2)
def tensor_zeros(shape: Any, dtype: Any = None) -> torch.Tensor:
    """(tensor_zeros (integers 2 3))

    A tensor of zeros (float32 unless a dtype is given).
    """
    return _factory("tensor_zeros", shape, dtype, lambda s, d: torch.zeros(s, dtype=d))


@builtin("tensor_ones", group=G_TENSOR, library=LIB, min_args=1, max_args=2)
def tensor_ones(shape: Any, dtype: Any = None) -> torch.Tensor:
    """(tensor_ones (integers 2 3))

    A tensor of ones (float32 unless a dtype is given).
    """
    return _factory("tensor_ones", shape, dtype, lambda s, d: torch.ones(s, dtype=d))


@builtin("tensor_randn", group=G_TENSOR, library=LIB, min_args=1, max_args=2)
def tensor_randn(shape: Any, dtype: Any = None) -> torch.Tensor:
    """(tensor_randn (integers 2 3))

    A tensor of standard normal random numbers (seed with torch_manual_seed).
    """
    def make(s: list[int], d: torch.dtype) -> torch.Tensor:
        if not d.is_floating_point:
            raise LispEError("tensor_randn: argument 'dtype': random normal values need a float dtype")
        return torch.randn(s, dtype=d)
    return _factory("tensor_randn", shape, dtype, make)


@builtin("tensor_full", group=G_TENSOR, library=LIB, min_args=2, max_args=3)
def tensor_full(shape: Any, value: Any, dtype: Any = None) -> torch.Tensor:
    """(tensor_full (integers 2 3) 7)

    A tensor filled with one value (int64 for an integer value, else float32, unless a dtype is given).
    """
    v = expect_real("tensor_full", "value", value)
    if dtype is None:
        dtype = "int64" if tv.is_int(value) else "float32"
    return _factory("tensor_full", shape, dtype, lambda s, d: torch.full(s, v, dtype=d))


def _binary(fname: str, a: Any, b: Any, op) -> torch.Tensor:
    x = as_tensor_arg(fname, "a", a)
    y = as_tensor_arg(fname, "b", b)
    try:
        return op(x, y)
    except RuntimeError as exc:
        raise LispEError(f"{fname}: shapes {list(x.shape)} and {list(y.shape)} do not combine: "
                         f"{str(exc).splitlines()[0]}") from None


@builtin("tensor_add", group=G_TENSOR, library=LIB)
def tensor_add(a: Any, b: Any) -> torch.Tensor:
    """(tensor_add a b)

    Element-wise sum (broadcasting; a number or a list counts as a tensor). Same as (+ a b).
    """
    return _binary("tensor_add", a, b, torch.add)


@builtin("tensor_sub", group=G_TENSOR, library=LIB)
def tensor_sub(a: Any, b: Any) -> torch.Tensor:
    """(tensor_sub a b)

    Element-wise difference (broadcasting). Same as (- a b).
    """
    return _binary("tensor_sub", a, b, torch.sub)


@builtin("tensor_mul", group=G_TENSOR, library=LIB)
def tensor_mul(a: Any, b: Any) -> torch.Tensor:
    """(tensor_mul a b)

    Element-wise product (broadcasting). Same as (* a b).
    """
    return _binary("tensor_mul", a, b, torch.mul)


@builtin("tensor_div", group=G_TENSOR, library=LIB)
def tensor_div(a: Any, b: Any) -> torch.Tensor:
    """(tensor_div a b)

    Element-wise true division (broadcasting). Same as (/ a b).
    """
    return _binary("tensor_div", a, b, torch.div)


@builtin("tensor_matmul", group=G_TENSOR, library=LIB)
def tensor_matmul(a: Any, b: Any) -> torch.Tensor:
    """(tensor_matmul a b)

    Matrix product (torch.matmul semantics).
    """
    return _binary("tensor_matmul", a, b, torch.matmul)


@builtin("tensor_div_scalar", "torch_div_scalar", group=G_TENSOR, library=LIB)
def tensor_div_scalar(t: Any, value: Any) -> torch.Tensor:
    """(tensor_div_scalar logits 0.7)

    Divides every element by a number (e.g. logits by a temperature).
    """
    t = expect_tensor("tensor_div_scalar", "tensor", t)
    v = expect_real("tensor_div_scalar", "value", value)
    if v == 0:
        raise LispEError("tensor_div_scalar: division by zero")
    return t / v


@builtin("tensor_reshape", group=G_TENSOR, library=LIB)
def tensor_reshape(t: Any, shape: Any) -> torch.Tensor:
    """(tensor_reshape t (integers 2 2))

    The same elements in a new shape (one dimension may be -1).
    """
    t = expect_tensor("tensor_reshape", "tensor", t)
    if isinstance(shape, list) and all(tv.is_int(v) and v >= -1 for v in shape):
        dims = [int(v) for v in shape]
    else:
        dims = shape_arg("tensor_reshape", "shape", shape)
    try:
        return t.reshape(dims)
    except RuntimeError as exc:
        raise LispEError(f"tensor_reshape: {exc}") from None


@builtin("tensor_unsqueeze", "torch_unsqueeze", group=G_TENSOR, library=LIB)
def tensor_unsqueeze(t: Any, dim: Any) -> torch.Tensor:
    """(tensor_unsqueeze t 0)

    Inserts a dimension of size 1 (e.g. a batch dimension).
    """
    t = expect_tensor("tensor_unsqueeze", "tensor", t)
    d = expect_int("tensor_unsqueeze", "dim", dim)
    if not -(t.dim() + 1) <= d <= t.dim():
        raise LispEError(f"tensor_unsqueeze: argument 'dim': {d} is out of range for a {t.dim()}-D tensor")
    return t.unsqueeze(d)


@builtin("tensor_squeeze", group=G_TENSOR, library=LIB, min_args=1, max_args=2)
def tensor_squeeze(t: Any, dim: Any = None) -> torch.Tensor:
    """(tensor_squeeze t)

    Removes dimensions of size 1 (all of them, or only dim).
    """
    t = expect_tensor("tensor_squeeze", "tensor", t)
    return t.squeeze() if dim is None else t.squeeze(dim_arg("tensor_squeeze", "dim", t, dim))


@builtin("tensor_select", group=G_TENSOR, library=LIB)
def tensor_select(t: Any, dim: Any, index: Any) -> torch.Tensor:
    """(tensor_select logits 1 -1)

    The slice at one index along a dimension (that dimension disappears).
    """
    fname = "tensor_select"
    t = expect_tensor(fname, "tensor", t)
    d = dim_arg(fname, "dim", t, dim)
    i = expect_int(fname, "index", index)
    n = t.shape[d]
    if not -n <= i < n:
        raise LispEError(f"{fname}: argument 'index': {i} is out of range for size {n}")
    return t.select(d, i)


@builtin("tensor_slice", group=G_TENSOR, library=LIB, min_args=4, max_args=5)
def tensor_slice(t: Any, dim: Any, start: Any, end: Any, step: Any = 1) -> torch.Tensor:
    """(tensor_slice t 0 1 3)

    Elements start..end-1 (step 1 unless given) along a dimension.
    """
    fname = "tensor_slice"
    t = expect_tensor(fname, "tensor", t)
    d = dim_arg(fname, "dim", t, dim)
    s, e = expect_int(fname, "start", start), expect_int(fname, "end", end)
    k = expect_int(fname, "step", step, 1)
    index = [slice(None)] * t.dim()
    index[d] = slice(s, e, k)
    return t[tuple(index)]


@builtin("tensor_cat", group=G_TENSOR, library=LIB, min_args=1, max_args=2)
def tensor_cat(tensors: Any, dim: Any = 0) -> torch.Tensor:
    """(tensor_cat (list a b) 0)

    Concatenates a list of tensors along a dimension.
    """
    fname = "tensor_cat"
    if not isinstance(tensors, list) or not tensors:
        raise arg_error(fname, "tensors", "a non-empty list of tensors", tensors)
    ts = [as_tensor_arg(fname, "tensors", x) for x in tensors]
    d = dim_arg(fname, "dim", ts[0], dim)
    try:
        return torch.cat(ts, dim=d)
    except RuntimeError as exc:
        raise LispEError(f"{fname}: {str(exc).splitlines()[0]}") from None


@builtin("tensor_argmax", group=G_TENSOR, library=LIB, min_args=1, max_args=2)
def tensor_argmax(t: Any, dim: Any = None) -> torch.Tensor:
    """(tensor_argmax logits -1)

    Index of the largest value (over everything, or along dim).
    """
    t = expect_tensor("tensor_argmax", "tensor", t)
    return t.argmax() if dim is None else t.argmax(dim=dim_arg("tensor_argmax", "dim", t, dim))


@builtin("tensor_softmax", "torch_softmax", group=G_TENSOR, library=LIB, min_args=1, max_args=2)
def tensor_softmax(t: Any, dim: Any = -1) -> torch.Tensor:
    """(tensor_softmax logits -1)

    Softmax along a dimension (the last one by default).
    """
    t = expect_tensor("tensor_softmax", "tensor", t)
    return torch.softmax(t.float() if not t.is_floating_point() else t, dim=dim_arg("tensor_softmax", "dim", t, dim))


@builtin("tensor_log_softmax", group=G_TENSOR, library=LIB, min_args=1, max_args=2)
def tensor_log_softmax(t: Any, dim: Any = -1) -> torch.Tensor:
    """(tensor_log_softmax logits -1)

    Log-softmax along a dimension (the last one by default).
    """
    t = expect_tensor("tensor_log_softmax", "tensor", t)
    return torch.log_softmax(t.float() if not t.is_floating_point() else t,
                             dim=dim_arg("tensor_log_softmax", "dim", t, dim))


@builtin("torch_topk", group=G_TENSOR, library=LIB, min_args=2, max_args=3)
def torch_topk(t: Any, k: Any, dim: Any = -1) -> list:
    """(torch_topk logits 5)

    The k largest values and their indices along a dimension: a list (values indices).
    """
    fname = "torch_topk"
    t = expect_tensor(fname, "tensor", t)
    d = dim_arg(fname, "dim", t, dim)
    n = t.shape[d] if t.dim() else 1
    k = expect_int(fname, "k", k, 1)
    if k > n:
        raise LispEError(f"{fname}: argument 'k': {k} is larger than the dimension's size {n}")
    values, indices = torch.topk(t, k, dim=d)
    return [values, indices]


@builtin("torch_sort", group=G_TENSOR, library=LIB, min_args=1, max_args=3)
def torch_sort(t: Any, dim: Any = -1, descending: Any = None) -> list:
    """(torch_sort logits -1 true)

    Sorted values and their original indices along a dimension: a list (values indices).
    """
    t = expect_tensor("torch_sort", "tensor", t)
    values, indices = torch.sort(t, dim=dim_arg("torch_sort", "dim", t, dim), descending=bool(descending))
    return [values, indices]


@builtin("torch_multinomial", "tensor_multinomial", group=G_TENSOR, library=LIB, min_args=2, max_args=3)
def torch_multinomial(probs: Any, n: Any, replacement: Any = None) -> torch.Tensor:
    """(torch_multinomial probs 1)

    Draws n indices from the probabilities of each row (without replacement unless true is given).
    """
    fname = "torch_multinomial"
    p = expect_tensor(fname, "probs", probs)
    k = expect_int(fname, "n", n, 1)
    if not p.is_floating_point() or p.dim() not in (1, 2):
        raise LispEError(f"{fname}: argument 'probs': expected a 1-D or 2-D float tensor, got "
                         f"{str(p.dtype).removeprefix('torch.')} {list(p.shape)}")
    if bool((p < 0).any()) or not bool(torch.isfinite(p).all()) or bool((p.sum(-1) <= 0).any()):
        raise LispEError(f"{fname}: argument 'probs': probabilities must be finite, >= 0, with a "
                         f"positive sum")
    if not replacement and k > p.shape[-1]:
        raise LispEError(f"{fname}: argument 'n': cannot draw {k} of {p.shape[-1]} without replacement")
    return torch.multinomial(p.float(), k, replacement=bool(replacement))


@builtin("torch_flash_attention", group=G_TENSOR, library=LIB, min_args=3, max_args=5)
def torch_flash_attention(q: Any, k: Any, v: Any, scale: Any = None, causal: Any = None) -> torch.Tensor:
    """(torch_flash_attention query key value)

    Scaled dot-product attention softmax(q k^T * scale) v with torch's fused kernels (flash attention
    on GPUs that have it). Shapes [..., seq, dim]; scale defaults to 1/sqrt(dim); true as the fifth
    argument makes it causal: (torch_flash_attention q k v nil true).
    """
    fname = "torch_flash_attention"
    qt, kt, vt = (expect_tensor(fname, n, x) for n, x in (("query", q), ("key", k), ("value", v)))
    for name, t in (("query", qt), ("key", kt), ("value", vt)):
        if not t.is_floating_point() or t.dim() < 2:
            raise LispEError(f"{fname}: argument '{name}': expected a float tensor [..., seq, dim], got "
                             f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}")
    if qt.shape[-1] != kt.shape[-1]:
        raise LispEError(f"{fname}: query and key must have the same last dimension, got "
                         f"{list(qt.shape)} and {list(kt.shape)}")
    if kt.shape[-2] != vt.shape[-2]:
        raise LispEError(f"{fname}: key and value must have the same sequence length, got "
                         f"{list(kt.shape)} and {list(vt.shape)}")
    s = None if scale is None else expect_real(fname, "scale", scale)
    try:
        return F.scaled_dot_product_attention(qt, kt, vt, is_causal=bool(causal), scale=s)
    except RuntimeError as exc:
        raise LispEError(f"{fname}: {str(exc).splitlines()[0]}") from None
