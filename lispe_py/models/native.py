"""The native CPU kernels of `kernels.cpp`: built once per machine with the system C++ compiler, loaded
as the torch operators `torch.ops.lispe.int8_linear`, `int8_block_linear`, `int4_linear`, the K-quant
`q4k_linear`, `q6k_linear` and `kquant_linear`, `rms_norm`, `decode_attention` and `decode_attention_from`.

    from lispe_py.models import native
    if native.available():            # builds on the first call (~20 s), then loads from the cache
        y = torch.ops.lispe.int8_linear(x, q, scale)

torch's own weight-only kernels (`_weight_int8pack_mm`, `_weight_int4pack_mm_for_cpu`) convert every
weight to float in bfloat16 and are compute-bound on an AVX2 CPU. The int8 kernels here (one scale per
row, or a scale and an offset per group of 32+ columns) take float32 activations, except groups of 32,
which like the int4 one multiply by activations rounded to 16 bits per block of 32 with exact integer sums;
all stream the weights at memory speed, 1.8-2.5x torch's on this project's 2-core machine
(docs/performance.md). A quantized model also runs its RMSNorms and decode-step attention on
`rms_norm` / `decode_attention` (`decode_attention_from` for left-padded rows; one op each instead of several; not bit-identical to transformers).
They are used where all of these hold, and torch's kernels
otherwise, for the same quantized values:
- an x86-64 CPU with AVX2 and FMA (torch.backends.cpu.get_cpu_capability() says AVX2 or AVX512);
- a C++ compiler (`$CXX`, else `c++` / `g++`) and torch's C++ headers (every torch wheel has them);
- the environment variable LISPE_NATIVE_KERNELS is not "0".
The shared library is cached under `$LISPE_KERNEL_CACHE` (default `$XDG_CACHE_HOME/lispe_py/kernels`,
i.e. `~/.cache/lispe_py/kernels`), in a folder named by a hash of the source, the flags and the torch
version, so an upgrade of either rebuilds it. A failed build warns once (with the compiler's message)
and leaves torch's kernels in place.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from ..resources import user_cache_dir

SOURCE = Path(__file__).with_name("kernels.cpp")
KEEP_BUILDS = 4  # builds kept in the cache (several torch versions may share one machine)
FLAGS = ["-O3", "-std=c++17", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-shared", "-fPIC", "-w"]
# Instruction sets the K-quant kernels use where the CPU has them (its /proc/cpuinfo flags): one VNNI
# instruction for a multiply-add of int16 pairs, and the AVX-512 encodings (32 vector registers) it needs.
OPTIONAL_FLAGS = {"-mavx512f": ("avx512f",), "-mavx512bw": ("avx512bw",), "-mavx512vl": ("avx512vl",),
                  "-mavx512vnni": ("avx512_vnni", "avx512f", "avx512vl", "avx512bw"), "-mavxvnni": ("avx_vnni",)}

_state: dict[str, object] = {}  # "ok": bool once decided, "reason": why not


def enabled_by_env() -> bool:
    return os.environ.get("LISPE_NATIVE_KERNELS", "1") != "0"


def cache_dir() -> Path:
    if os.environ.get("LISPE_KERNEL_CACHE"):
        return Path(os.environ["LISPE_KERNEL_CACHE"])
    return user_cache_dir("kernels")


def compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_fits() -> str | None:
    """Why this machine cannot run the kernels, or None."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not sys.platform.startswith("linux"):
        return f"the kernels are for x86-64 Linux (this is {platform.machine()} {sys.platform})"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return f"the CPU lacks AVX2 (torch reports {capability})"
    return None


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def flags() -> list[str]:
    """The compiler flags for this machine: FLAGS and the OPTIONAL_FLAGS whose CPU features it has
    (part of the build's cache key, so a machine with other features builds its own)."""
    have = _cpu_flags()
    return FLAGS + [flag for flag, needs in OPTIONAL_FLAGS.items() if all(n in have for n in needs)]


def _command(cxx: str, output: Path, flag_list: list[str] | None = None) -> list[str]:
    from torch.utils.cpp_extension import include_paths

    torch_lib = Path(torch.__file__).parent / "lib"
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return ([cxx, *(flags() if flag_list is None else flag_list), f"-D_GLIBCXX_USE_CXX11_ABI={abi}"] + [f"-I{p}" for p in include_paths()]
            + [str(SOURCE), "-o", str(output), f"-L{torch_lib}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{torch_lib}"])


def library_path(cxx: str) -> Path:
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(flags()).encode(), torch.__version__.encode(), cxx.encode()):
        key.update(part)
    return cache_dir() / key.hexdigest()[:16] / "lispe_kernels.so"


def build(cxx: str, target: Path) -> None:
    """Compile kernels.cpp into `target` (atomically: another process may be building the same)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        print("lispe: building the native int8/int4 CPU kernels (once per machine, ~20 s)", file=sys.stderr, flush=True)
        wanted = flags()
        done = subprocess.run(_command(cxx, Path(tmp), wanted), capture_output=True, text=True)
        if done.returncode != 0 and wanted != FLAGS:
            # an older compiler may not know the optional instruction sets: the AVX2 kernels then
            print(f"lispe: {cxx} refused {' '.join(wanted[len(FLAGS):])}; building the AVX2 kernels only",
                  file=sys.stderr, flush=True)
            done = subprocess.run(_command(cxx, Path(tmp), FLAGS), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{cxx} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _prune(keep=KEEP_BUILDS)


def _prune(keep: int) -> None:
    """Remove all but the `keep` most recent builds (older sources or torch versions) from the cache."""
    def modified(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # removed meanwhile by another process
            return 0.0

    builds = sorted(cache_dir().glob("*/lispe_kernels.so"), key=modified, reverse=True)
    for old in builds[keep:]:
        shutil.rmtree(old.parent, ignore_errors=True)


def available() -> bool:
    """True when torch.ops.lispe.int8_linear / int4_linear can run in this process (building and loading
    the library on the first call; LISPE_NATIVE_KERNELS is read then)."""
    if "ok" not in _state:
        _state["ok"], _state["reason"] = _load()
    return bool(_state["ok"])


@contextmanager
def switched_off() -> Iterator[None]:
    """Quantized layers made inside use torch's kernels (a layer picks its kernel when it is made):
    for comparisons in one process; LISPE_NATIVE_KERNELS=0 does it for a whole process."""
    saved = dict(_state)
    _state.clear()
    _state.update(ok=False, reason="switched off (native.switched_off)")
    try:
        yield
    finally:
        _state.clear()
        _state.update(saved)


def reason() -> str | None:
    """Why the native kernels are not used (None when they are)."""
    available()
    return _state["reason"]  # type: ignore[return-value]


def _load() -> tuple[bool, str | None]:
    if not enabled_by_env():
        return False, "LISPE_NATIVE_KERNELS=0"
    why = _cpu_fits()
    if why:
        return False, why
    if hasattr(torch.ops, "lispe") and hasattr(torch.ops.lispe, "kquant_linear"):
        return True, None  # loaded by another copy of this module (a test's reload)
    cxx = compiler()
    if cxx is None:
        return False, "no C++ compiler (set CXX, or install g++)"
    target = library_path(cxx)
    try:
        if not target.exists():
            build(cxx, target)
        torch.ops.load_library(str(target))
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        warnings.warn(f"lispe: the native int8/int4 CPU kernels are not used: {e}", RuntimeWarning, stacklevel=3)
        return False, str(e).splitlines()[0] if str(e) else type(e).__name__
    return True, None
