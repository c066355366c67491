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
recently used entries are kept.

Safety rules:
- The cache deletes only what it wrote itself: an entry is a folder holding the marker file MARKER (written
  last, atomically, with the format version and the checksum of index.json), a half-written entry is a
  folder named `.lispe-tmp-<pid>-...` holding WRITER (or nothing). Any other file or folder under the
  cache folder is never touched, by pruning, by `clear()` or by a rebuild.
- An entry is written in a temporary folder and renamed into place once complete; a writer that dies
  leaves its temporary folder, removed by the next load once its process is gone (same machine) or it is
  older than STALE_TMP_S.
- Damage is detected at load: index.json's CRC-32 is in the marker, and index.json holds the CRC-32 of
  every CHUNK bytes of weights.bin and of every tokenizer file. The index and the tokenizer files are
  checked at every load; weights.bin's chunks (on several threads, while the tokenizer is read) at the
  first load after any change to the file: the marker keeps its `_stamp` (size, mtime, ctime, inode,
  device) from when its checksums were last verified, and an unchanged file costs one stat instead of
  0.36-0.47 s for SmolLM2's 513 MB on this project's loaded 2-core machine (LISPE_MODEL_CACHE_VERIFY=full
  checks it at every load). A damaged entry is reported, removed and rebuilt; a cache that cannot be
  written (read-only folder, full disk) is reported once per process and the model is loaded without it.
- Mode "read" (`load_model(..., model_cache="read")`, used where the interpreter may not write) reads
  valid entries and never writes, prunes or deletes anything (a damaged entry is reported and skipped).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import shutil
import socket
import stat
import tempfile
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..resources import user_cache_dir
from .config import ModelConfig

FORMAT = 2  # bump when the layout of an entry changes
KEEP = 4  # entries kept (the most recently used)
ALIGN = 64  # byte alignment of each tensor in weights.bin
CHUNK = 32 * 2**20  # weights.bin is checksummed in chunks of this many bytes (checked in parallel)
STALE_TMP_S = 15 * 60  # a half-written entry older than this is removed even if its writer looks alive
MARKER = "lispe-model-cache.json"  # what makes a folder an entry of this cache (written last)
WRITER = "lispe-writer.json"  # first file of a half-written entry: who writes it
TMP_PREFIX = ".lispe-tmp-"
_SIGNATURE = "lispe_py model cache entry"
_TMP_NAME = re.compile(r"\.lispe-tmp-(\d+)-[A-Za-z0-9_]+")
_OFF = ("0", "off", "false", "no")
MODES = (True, False, "read")
# The code whose output an entry holds: any edit to these files makes new entries.
_SOURCES = ("model_cache.py", "gguf_loader.py", "tokenizer.py", "config.py", "layers.py", "llama.py", "gpt2.py",
            "loading.py", "families.py", "gguf_families.py")

_warned: set[str] = set()


class DamagedEntry(ValueError):
    """An entry that does not read back as written (the message says what is wrong)."""


def cache_root() -> Path | None:
    """The cache folder, or None when `$LISPE_MODEL_CACHE` turns the cache off."""
    value = os.environ.get("LISPE_MODEL_CACHE")
    if value is not None and value.strip().lower() in _OFF:
        return None
    if value and value.strip():
        return Path(value).expanduser()
    return user_cache_dir("models")


def check_mode(mode: Any) -> bool | str:
    """`mode` if it is a valid model_cache setting (True, False or "read"), else ModelError."""
    if mode is True or mode is False or mode == "read":
        return mode
    from .errors import ModelError

    raise ModelError(f"model_cache must be true, false or \"read\", got {mode!r}")


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    import tokenizers

    digest = hashlib.sha256(f"{FORMAT} {torch.__version__} {tokenizers.__version__}".encode())
    here = Path(__file__).parent
    for name in _SOURCES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def entry_for(path: str | Path, dtype: torch.dtype, mode: bool | str = True) -> CacheEntry | None:
    """The cache entry of the model in the GGUF file `path` loaded as `dtype` (None: cache off).

    mode True also removes the half-written entries of writers that died (see `remove_stale`)."""
    root = cache_root()
    if root is None or mode is False:
        return None
    path = Path(path).resolve()
    st = path.stat()
    key = hashlib.sha256(
        f"{_code_version()}\n{path}\n{st.st_size}\n{st.st_mtime_ns}\n{dtype}".encode()
    ).hexdigest()
    if mode is True:
        remove_stale(root)
    return CacheEntry(root / key[:24], key, path.name, read_only=mode == "read")


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _nbytes(shape: list[int], dtype: torch.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _crc_file(path: Path) -> int:
    return zlib.crc32(path.read_bytes())


def _regular(path: Path) -> None:
    """DamagedEntry unless `path` is a regular file (a FIFO or device planted there would block a read)."""
    try:
        mode = path.lstat().st_mode
    except OSError as exc:
        raise DamagedEntry(f"{path.name} is missing ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise DamagedEntry(f"{path.name} is not a regular file")


# ----- what belongs to the cache -----

def is_entry(folder: Path) -> bool:
    """Whether `folder` is an entry this cache wrote (it holds a valid MARKER)."""
    return _marker(folder) is not None


def _marker(folder: Path) -> dict | None:
    path = folder / MARKER
    try:
        if folder.is_symlink() or not stat.S_ISREG(path.lstat().st_mode) or path.lstat().st_size > 4096:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("what") != _SIGNATURE or not isinstance(data.get("format"), int):
        return None
    return data


def _tmp_owner(folder: Path) -> dict | None:
    """{"pid", "host", "started"} of a half-written entry of this cache, or None when `folder` is not one
    ({} for an empty folder with such a name: a writer that died before writing WRITER)."""
    m = _TMP_NAME.fullmatch(folder.name)
    if m is None or folder.is_symlink() or not folder.is_dir():
        return None
    writer = folder / WRITER
    try:
        data = json.loads(writer.read_text(encoding="utf-8"))
    except FileNotFoundError:
        try:
            return {} if not any(folder.iterdir()) else None
        except OSError:
            return None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("what") != _SIGNATURE or data.get("pid") != int(m.group(1)):
        return None
    return data


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale(root: Path) -> int:
    """Remove the half-written entries whose writer is dead (same machine) or that are older than
    STALE_TMP_S; returns how many were removed. Nothing else is touched."""
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(TMP_PREFIX)]
    except OSError:
        return 0
    removed, now = 0, time.time()
    for folder in candidates:
        owner = _tmp_owner(folder)
        if owner is None:
            continue
        try:
            age = now - folder.stat().st_mtime
        except OSError:
            continue
        pid = owner.get("pid", int(_TMP_NAME.fullmatch(folder.name).group(1)))
        same_host = owner.get("host", socket.gethostname()) == socket.gethostname()
        dead = same_host and pid != os.getpid() and not _pid_alive(pid)
        if dead or age > STALE_TMP_S:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


# ----- entries -----

class CacheEntry:
    """One cached model: `folder`/index.json (config, tensor table, checksums), weights.bin, tokenizer/,
    and MARKER."""

    def __init__(self, folder: Path, key: str, source_name: str, read_only: bool = False) -> None:
        self.folder, self.key, self.source_name, self.read_only = folder, key, source_name, read_only
        self.verified_weights = False  # whether the last load() checked every chunk of weights.bin

    @property
    def index_path(self) -> Path:
        return self.folder / "index.json"

    def exists(self) -> bool:
        return (self.folder / MARKER).exists()

    # ----- reading -----

    def load(self) -> tuple[ModelConfig, dict[str, torch.Tensor], Any] | None:
        """(config, state dict mapped from weights.bin, tokenizer or None), or None when there is no
        entry; a damaged entry is reported and removed (the caller then rebuilds it; in read-only mode it
        is left as it is)."""
        if not self.folder.exists() and not self.folder.is_symlink():
            return None
        if not is_entry(self.folder):
            if not self.read_only:
                _warn_once(f"foreign {self.folder}",
                           f"lispe: {self.folder} is in the model cache's place for {self.source_name} but "
                           "was not written by it; it is left alone and the model loads without the cache")
            return None
        try:
            loaded = self._read()
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError, IndexError) as exc:
            action = "loading without it" if self.read_only else "rebuilding it"
            if isinstance(exc, KeyError):
                what = f"its index lacks {exc.args[0]!r}"
            elif isinstance(exc, OSError) and exc.strerror:
                what = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
            elif isinstance(exc, (TypeError, AttributeError, IndexError)):
                what = "its index has values of the wrong type"
            else:
                what = str(exc)
            warnings.warn(f"lispe: the model cache entry {self.folder} is damaged ({what}); {action} from "
                          f"{self.source_name}", RuntimeWarning, stacklevel=3)
            if not self.read_only:
                shutil.rmtree(self.folder, ignore_errors=True)
            return None
        if not self.read_only:
            try:
                os.utime(self.folder / MARKER)  # most recently used: pruned last
            except OSError:
                pass
        return loaded

    def _read(self) -> tuple[ModelConfig, dict[str, torch.Tensor], Any]:
        marker = _marker(self.folder)
        if marker is None or marker["format"] != FORMAT:
            raise DamagedEntry(f"its marker says format {marker and marker.get('format')}, expected {FORMAT}")
        _regular(self.index_path)
        raw_index = self.index_path.read_bytes()
        if zlib.crc32(raw_index) != marker.get("index_crc32"):
            raise DamagedEntry("index.json does not match its checksum")
        index = json.loads(raw_index.decode("utf-8"))
        if index.get("key") != self.key:
            raise DamagedEntry("its index belongs to another model")
        weights = self.folder / "weights.bin"
        _regular(weights)
        size = weights.stat().st_size
        if size != index["bytes"]:
            raise DamagedEntry(f"weights.bin has {size} bytes, its index says {index['bytes']}")
        checks = index["checks"]
        if len(checks["weights"]) != (size + CHUNK - 1) // CHUNK:
            raise DamagedEntry("the index has the wrong number of weight checksums")
        # copy-on-write: a weight edited in place is copied in memory, the file stays as it is
        array = np.memmap(weights, dtype=np.uint8, mode="c") if size else np.empty(0, dtype=np.uint8)
        # The full check runs when weights.bin changed since its checksums were last verified (any write,
        # truncation or copy changes its ctime, size or inode), or always with LISPE_MODEL_CACHE_VERIFY=full.
        stamp = _stamp(weights)
        full = marker.get("weights_stamp") != stamp or _verify_always()
        pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) if size and full else None
        try:
            futures = [pool.submit(zlib.crc32, array[i * CHUNK: (i + 1) * CHUNK])
                       for i in range(len(checks["weights"]))] if pool else []
            base = torch.from_numpy(array)
            state = {}
            for entry in index["tensors"]:
                dtype = getattr(torch, entry["dtype"])
                if not isinstance(dtype, torch.dtype):
                    raise DamagedEntry(f"unknown dtype {entry['dtype']!r}")
                shape, stride, offset = entry["shape"], entry["stride"], entry["offset"]
                n = _nbytes(shape, dtype)
                if offset % ALIGN or offset + n > size:
                    raise DamagedEntry(f"tensor {entry['name']!r} lies outside weights.bin")
                flat = base[offset: offset + n].view(dtype)
                state[entry["name"]] = flat.as_strided(shape, stride)
            config = ModelConfig.from_dict(index["config"])
            tokenizer = None
            if index.get("tokenizer"):
                from .tokenizer import Tokenizer

                folder = self.folder / "tokenizer"
                files = checks["files"]
                present = sorted(p.name for p in folder.iterdir())
                if present != sorted(files):
                    raise DamagedEntry(f"tokenizer/ holds {present}, its index lists {sorted(files)}")
                for name, crc in files.items():
                    _regular(folder / name)
                    if _crc_file(folder / name) != crc:
                        raise DamagedEntry(f"tokenizer/{name} does not match its checksum")
                tokenizer = Tokenizer.from_folder(folder)
            for i, (future, crc) in enumerate(zip(futures, checks["weights"])):
                if future.result() != crc:
                    end = min(size, (i + 1) * CHUNK)
                    raise DamagedEntry(f"weights.bin bytes {i * CHUNK}-{end} do not match their checksum")
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self.verified_weights = pool is not None
        if pool is not None and not self.read_only and marker.get("weights_stamp") != stamp:
            _write_marker(self.folder, {**marker, "weights_stamp": stamp})  # verified as it is now
        return config, state, tokenizer

    # ----- writing -----

    def save(self, model: Any) -> bool:
        """Write `model` (a CPU model whose weights are laid out for decoding) as this entry; False
        (with a warning, once per process) when the cache cannot be written."""
        if self.read_only:
            return False
        state = {k: v.detach() for k, v in model.state_dict().items()}
        if model.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)  # the same tensor as embed.weight; tied again at load
        total = sum(_aligned(t.numel() * t.element_size()) for t in state.values())
        root = self.folder.parent
        tmp: Path | None = None
        try:
            root.mkdir(parents=True, exist_ok=True)
            if self.folder.exists() or self.folder.is_symlink():
                if not is_entry(self.folder):
                    return False  # not ours: reported by load(), never replaced
            free = shutil.disk_usage(root).free
            if free < 2 * total:
                _warn_once("space", f"lispe: the model cache {root} has {free / 2**20:.1f} MB free, twice "
                                    f"{total / 2**20:.1f} MB are needed for {self.source_name}: loading it "
                                    "without the cache")
                return False
            tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=root))
            (tmp / WRITER).write_text(json.dumps({"what": _SIGNATURE, "pid": os.getpid(),
                                                  "host": socket.gethostname(), "started": time.time()}),
                                      encoding="utf-8")
            table, crcs = _write_tensors(tmp / "weights.bin", state)
            files: dict[str, int] = {}
            if model.tokenizer is not None:
                model.tokenizer.save(tmp / "tokenizer")
                files = {p.name: _crc_file(p) for p in sorted((tmp / "tokenizer").iterdir())}
            index = {"key": self.key, "format": FORMAT, "source": self.source_name, "bytes": table.pop(),
                     "config": model.config.to_dict(), "tokenizer": model.tokenizer is not None, "tensors": table,
                     "checks": {"chunk": CHUNK, "weights": crcs, "files": files}}
            raw_index = json.dumps(index).encode("utf-8")
            (tmp / "index.json").write_bytes(raw_index)
            # The marker last, atomically: a folder holding it is complete.
            marker = {"what": _SIGNATURE, "format": FORMAT, "index_crc32": zlib.crc32(raw_index),
                      "weights_stamp": _stamp(tmp / "weights.bin")}
            _write_marker(tmp, marker)
            try:
                os.rename(tmp, self.folder)
            except OSError:  # another process wrote the same entry meanwhile
                if not self.exists():
                    raise
            else:
                tmp = None
                # WRITER stays until the entry is in place: a writer killed before that leaves a folder
                # that remove_stale recognises as its own.
                try:
                    (self.folder / WRITER).unlink()
                except OSError:
                    pass
        except (OSError, ValueError) as exc:
            _warn_once("write", f"lispe: cannot write the model cache in {root} ({exc}); models load without "
                                "it (set LISPE_MODEL_CACHE to another folder, or to 0 to turn it off)")
            return False
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        prune(root, KEEP)
        return True


def _stamp(path: Path) -> list[int]:
    """What changes when a file's content may have changed: size, modification and status-change times
    (the latter cannot be set back by a user), inode and device."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _verify_always() -> bool:
    return os.environ.get("LISPE_MODEL_CACHE_VERIFY", "").strip().lower() == "full"


def _write_marker(folder: Path, marker: dict) -> None:
    """Write MARKER atomically (a complete file or the previous one, never a partial one)."""
    part = folder / f"{MARKER}.{os.getpid()}.part"
    part.write_text(json.dumps(marker), encoding="utf-8")
    os.replace(part, folder / MARKER)


class _ChunkCRC:
    """CRC-32 of every CHUNK bytes of a stream fed piece by piece."""

    def __init__(self) -> None:
        self.crcs: list[int] = []
        self.crc, self.filled = 0, 0

    def feed(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            take = min(len(view), CHUNK - self.filled)
            self.crc = zlib.crc32(view[:take], self.crc)
            self.filled += take
            view = view[take:]
            if self.filled == CHUNK:
                self.crcs.append(self.crc)
                self.crc, self.filled = 0, 0

    def done(self) -> list[int]:
        if self.filled:
            self.crcs.append(self.crc)
            self.crc, self.filled = 0, 0
        return self.crcs


def _write_tensors(path: Path, state: dict[str, torch.Tensor]) -> tuple[list, list[int]]:
    """Write each tensor's bytes (64-byte aligned, in its own memory order when that is dense) and return
    the table of {name, dtype, shape, stride, offset} followed by the file's size, and the CRC-32 of each
    CHUNK of the file."""
    table: list = []
    offset = 0
    crc = _ChunkCRC()
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
            crc.feed(b"\0" * pad)
            offset += pad
            table.append({"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                          "stride": list(t.stride()), "offset": offset})
            raw = data.reshape(-1).view(torch.uint8).numpy()
            f.write(raw.data)
            crc.feed(raw.data)
            offset += raw.nbytes
    table.append(offset)
    return table, crc.done()


def _entries(root: Path) -> list[Path]:
    try:
        return [p for p in root.iterdir() if not p.name.startswith(".") and is_entry(p)]
    except OSError:
        return []


def prune(root: Path, keep: int = KEEP) -> None:
    """Remove all but the `keep` most recently used entries, and the half-written ones of dead writers.
    Only folders this cache wrote (see the module docstring) are ever removed."""
    def used(folder: Path) -> float:
        try:
            return (folder / MARKER).stat().st_mtime
        except OSError:
            return 0.0

    remove_stale(root)
    entries = sorted(_entries(root), key=used, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def clear() -> int:
    """Remove every entry of the model cache (and the half-written ones of dead writers); returns how many
    entries were removed. Files and folders the cache did not write are left alone."""
    root = cache_root()
    if root is None or not root.is_dir():
        return 0
    remove_stale(root)
    removed = 0
    for p in _entries(root):
        shutil.rmtree(p, ignore_errors=True)
        removed += 1
    return removed
