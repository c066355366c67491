"""A disk cache of models loaded from GGUF files: the next start maps the weights instead of rebuilding them.

Loading SmolLM2-135M-Instruct's GGUF (Q4_1 blocks) as float32 dequantizes 135M weights (~1 s on this
project's 2-core machine), builds the tokenizer from the GGUF vocabulary (~0.45 s), and the first decode
step re-lays the wide weights out column-major (~0.6 s). The first load of a file writes what those steps
produce to a cache entry: the weights, already in the order the decode step reads them
(`DecoderModel.lay_out_weights`), the model config and the tokenizer (a Hugging Face tokenizer folder).
Later loads of the same file with the same dtype memory-map the weights and read the tokenizer's JSON.
The mapping is copy-on-write: a weight edited in place is copied in memory, never written to the file.

Where: `$LISPE_MODEL_CACHE` (a folder; "0", "off", "false" or "no" turns the cache off), else
`$XDG_CACHE_HOME/lispe_py/models` (that is, `~/.cache/lispe_py/models`). An entry's name is a hash of the
GGUF file's absolute path, size and modification time, the dtype, torch's and tokenizers' versions and
the source of the code that builds a model, so an edited file or an upgrade gets a new entry; the KEEP most
recently used entries are kept. Only loads onto the CPU write entries (any device reads them). A damaged
entry is reported, removed and rebuilt; a cache that cannot be written (read-only folder, full disk) is
reported once per process and the model is loaded without it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..resources import user_cache_dir
from .config import ModelConfig

FORMAT = 1  # bump when the layout of an entry changes
KEEP = 4  # entries kept (the most recently used)
ALIGN = 64  # byte alignment of each tensor in weights.bin
STALE_TMP_S = 3600  # a half-written entry older than this was left by a process that died
_OFF = ("0", "off", "false", "no")
# The code whose output an entry holds: any edit to these files makes new entries.
_SOURCES = ("model_cache.py", "gguf_loader.py", "tokenizer.py", "config.py", "layers.py", "llama.py", "gpt2.py",
            "loading.py")

_warned: set[str] = set()


def cache_root() -> Path | None:
    """The cache folder, or None when `$LISPE_MODEL_CACHE` turns the cache off."""
    value = os.environ.get("LISPE_MODEL_CACHE")
    if value is not None and value.strip().lower() in _OFF:
        return None
    if value and value.strip():
        return Path(value).expanduser()
    return user_cache_dir("models")


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    import tokenizers

    digest = hashlib.sha256(f"{FORMAT} {torch.__version__} {tokenizers.__version__}".encode())
    here = Path(__file__).parent
    for name in _SOURCES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def entry_for(path: str | Path, dtype: torch.dtype) -> CacheEntry | None:
    """The cache entry of the model in the GGUF file `path` loaded as `dtype` (None: cache off)."""
    root = cache_root()
    if root is None:
        return None
    path = Path(path).resolve()
    stat = path.stat()
    key = hashlib.sha256(
        f"{_code_version()}\n{path}\n{stat.st_size}\n{stat.st_mtime_ns}\n{dtype}".encode()
    ).hexdigest()
    return CacheEntry(root / key[:24], key, path.name)


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _nbytes(shape: list[int], dtype: torch.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class CacheEntry:
    """One cached model: `folder`/index.json (config, tensor table), weights.bin, tokenizer/."""

    def __init__(self, folder: Path, key: str, source_name: str) -> None:
        self.folder, self.key, self.source_name = folder, key, source_name

    @property
    def index_path(self) -> Path:
        return self.folder / "index.json"

    def exists(self) -> bool:
        return self.index_path.exists()

    # ----- reading -----

    def load(self) -> tuple[ModelConfig, dict[str, torch.Tensor], Any] | None:
        """(config, state dict mapped from weights.bin, tokenizer or None), or None when there is no
        entry; a damaged entry is reported and removed (the caller then rebuilds it)."""
        if not self.exists():
            return None
        try:
            loaded = self._read()
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
            warnings.warn(f"lispe: the model cache entry {self.folder} is damaged ({exc}); rebuilding it from "
                          f"{self.source_name}", RuntimeWarning, stacklevel=3)
            shutil.rmtree(self.folder, ignore_errors=True)
            return None
        try:
            os.utime(self.index_path)  # most recently used: pruned last
        except OSError:
            pass
        return loaded

    def _read(self) -> tuple[ModelConfig, dict[str, torch.Tensor], Any]:
        index = json.loads(self.index_path.read_text(encoding="utf-8"))
        if index.get("key") != self.key:
            raise ValueError("its index belongs to another model")
        weights = self.folder / "weights.bin"
        size = weights.stat().st_size
        if size != index["bytes"]:
            raise ValueError(f"weights.bin has {size} bytes, its index says {index['bytes']}")
        if size:  # copy-on-write: a weight edited in place is copied in memory, the file stays as it is
            base = torch.from_numpy(np.memmap(weights, dtype=np.uint8, mode="c"))
        else:
            base = torch.empty(0, dtype=torch.uint8)
        state = {}
        for entry in index["tensors"]:
            dtype = getattr(torch, entry["dtype"])
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown dtype {entry['dtype']!r}")
            shape, stride, offset = entry["shape"], entry["stride"], entry["offset"]
            n = _nbytes(shape, dtype)
            if offset % ALIGN or offset + n > size:
                raise ValueError(f"tensor {entry['name']!r} lies outside weights.bin")
            flat = base[offset: offset + n].view(dtype)
            state[entry["name"]] = flat.as_strided(shape, stride)
        config = ModelConfig.from_dict(index["config"])
        tokenizer = None
        if index.get("tokenizer"):
            from .tokenizer import Tokenizer

            tokenizer = Tokenizer.from_folder(self.folder / "tokenizer")
        return config, state, tokenizer

    # ----- writing -----

    def save(self, model: Any) -> bool:
        """Write `model` (a CPU model whose weights are laid out for decoding) as this entry; False
        (with a warning, once per process) when the cache cannot be written."""
        state = {k: v.detach() for k, v in model.state_dict().items()}
        if model.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)  # the same tensor as embed.weight; tied again at load
        total = sum(_aligned(t.numel() * t.element_size()) for t in state.values())
        root = self.folder.parent
        tmp: Path | None = None
        try:
            root.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(root).free
            if free < 2 * total:
                _warn_once("space", f"lispe: the model cache {root} has {free / 2**20:.1f} MB free, twice "
                                    f"{total / 2**20:.1f} MB are needed for {self.source_name}: loading it "
                                    "without the cache")
                return False
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
            table = _write_tensors(tmp / "weights.bin", state)
            if model.tokenizer is not None:
                model.tokenizer.save(tmp / "tokenizer")
            index = {"key": self.key, "format": FORMAT, "source": self.source_name, "bytes": table.pop(),
                     "config": model.config.to_dict(), "tokenizer": model.tokenizer is not None, "tensors": table}
            (tmp / "index.json").write_text(json.dumps(index), encoding="utf-8")
            try:
                os.rename(tmp, self.folder)
            except OSError:  # another process wrote the same entry meanwhile
                if not self.exists():
                    raise
            else:
                tmp = None
        except (OSError, ValueError) as exc:
            _warn_once("write", f"lispe: cannot write the model cache in {root} ({exc}); models load without "
                                "it (set LISPE_MODEL_CACHE to another folder, or to 0 to turn it off)")
            return False
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        prune(root, KEEP)
        return True


def _write_tensors(path: Path, state: dict[str, torch.Tensor]) -> list:
    """Write each tensor's bytes (64-byte aligned, in its own memory order when that is dense) and return
    the table of {name, dtype, shape, stride, offset}, followed by the file's size."""
    table: list = []
    offset = 0
    with open(path, "wb") as f:
        for name, t in state.items():
            t = t.cpu()
            if t.is_contiguous():
                data = t
            elif t.dim() == 2 and t.t().is_contiguous():  # column-major: write the transpose's rows
                data = t.t()
            else:
                t = data = t.contiguous()
            pad = _aligned(offset) - offset
            f.write(b"\0" * pad)
            offset += pad
            table.append({"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                          "stride": list(t.stride()), "offset": offset})
            raw = data.reshape(-1).view(torch.uint8).numpy()
            f.write(raw.data)
            offset += raw.nbytes
    table.append(offset)
    return table


def prune(root: Path, keep: int = KEEP) -> None:
    """Remove all but the `keep` most recently used entries, and half-written ones left by dead processes."""
    def used(folder: Path) -> float:
        try:
            return (folder / "index.json").stat().st_mtime
        except OSError:
            return 0.0

    try:
        folders = [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return
    now = time.time()
    for p in folders:
        if p.name.startswith(".tmp-"):
            try:
                if now - p.stat().st_mtime > STALE_TMP_S:
                    shutil.rmtree(p, ignore_errors=True)
            except OSError:
                pass
    entries = sorted((p for p in folders if not p.name.startswith(".tmp-")), key=used, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def clear() -> int:
    """Remove every entry of the model cache; returns how many were removed."""
    root = cache_root()
    if root is None or not root.is_dir():
        return 0
    removed = 0
    for p in root.iterdir():
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    return removed

