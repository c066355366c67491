"""How much memory a model holds, and the process's resident memory (for torch_model_info and
bench/models.py).

    from lispe_py.models.memory import memory_report
    memory_report(model)   # {"weights_bytes": ..., "mapped_bytes": ..., "rss_bytes": ..., "peak_rss_bytes": ...,
                           #  "anon_rss_bytes": ...}

weights_bytes: the bytes of the model's parameters and buffers (each storage counted once: tied and
shared tensors are not counted twice), without those that are views of a memory-mapped file (a
quantized GGUF load's embedding blocks, `gguf_embedding.py`, and K-quant layers, `kquant_linear.py`),
which are `mapped_bytes`: the kernel
reads only the pages used and may drop them again. rss_bytes / peak_rss_bytes: the process's resident
memory now and at its highest (Linux /proc and getrusage; None where the platform does not say).
anon_rss_bytes: the part of rss_bytes that is the process's own memory (Linux's RssAnon: heap, tensors,
the interpreter), as opposed to pages of files (a mapped model, libraries) the system can drop and
read again; None outside Linux.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import torch


def _storages(model: Any) -> tuple[int, int]:
    from .gguf_embedding import GGUFEmbedding
    from .kquant_linear import KQuantLinear

    mapped_ptrs = set()
    for m in model.modules():
        if isinstance(m, GGUFEmbedding):
            mapped_ptrs.add(m.raw.untyped_storage().data_ptr())
        elif isinstance(m, KQuantLinear):
            mapped_ptrs.update(raw.untyped_storage().data_ptr() for _, raw, _ in m._parts())
    seen: set[int] = set()
    weights = mapped = 0
    tensors = [t for t in list(model.parameters()) + list(model.buffers()) if t.numel()]
    for t in tensors:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in seen:
            continue
        seen.add(ptr)
        if ptr in mapped_ptrs:
            mapped += storage.nbytes()
        else:
            weights += storage.nbytes()
    native = [getattr(m, "_native_scales", None) for m in model.modules()]
    for t in native:  # the int4 kernel's plane copies (other group sizes than 32)
        if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            weights += t.untyped_storage().nbytes()
    return weights, mapped


def rss_bytes() -> int | None:
    """The process's resident memory now."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _status_bytes(field: str) -> int | None:
    """A kB field of /proc/self/status ("RssAnon", "VmHWM") in bytes; None where /proc does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def anon_rss_bytes() -> int | None:
    """The process's resident anonymous memory now (Linux's RssAnon), None where /proc does not say."""
    return _status_bytes("RssAnon")


def peak_rss_bytes() -> int | None:
    """The process's highest resident memory so far: Linux's VmHWM (the process's own address space;
    getrusage's ru_maxrss can start from the RSS of the parent it was forked from), else getrusage."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, kilobytes on Linux


def memory_report(model: Any) -> dict[str, int | None]:
    weights, mapped = _storages(model)
    return {"weights_bytes": weights, "mapped_bytes": mapped, "rss_bytes": rss_bytes(),
            "peak_rss_bytes": peak_rss_bytes(), "anon_rss_bytes": anon_rss_bytes()}
