"""Loading GGUF files (llama.cpp's format): metadata, tensors, dequantization, and our model from them.

`gguf.GGUFReader` parses every metadata array element into its own numpy view, which takes ~4 s on
SmolLM2's 49k-token vocabulary here; `GGUFFile` reads the same layout directly (strings in one pass,
numeric arrays with `np.frombuffer`, tensor data memory-mapped) in a few tens of milliseconds.
Q4_0/Q4_1/Q8_0 and the K-quant (Q4_K/Q5_K/Q6_K, `kquants.py`) blocks are dequantized with vectorized
torch code (values bit-identical to `gguf.quants.dequantize`); other types go through
`gguf.quants.dequantize`.
"""
from __future__ import annotations

import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import kquants
from .config import FAMILY_ARCHS, ModelConfig
from .errors import ModelError, check_regular_file

# GGUF metadata value types.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9
# ggml tensor types read without importing the `gguf` package (numpy.typing, yaml...: ~10 MB of modules):
# id -> (name, values per block, bytes per block).
_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 8: ("Q8_0", 32, 34),
          12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 30: ("BF16", 1, 2)}


def _type_info(ggml_type: int) -> tuple[str, int, int]:
    if ggml_type in _TYPES:
        return _TYPES[ggml_type]
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        return (GGMLQuantizationType(ggml_type).name, *GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)])
    except (ValueError, KeyError):
        raise ModelError(f"unknown GGUF tensor type {ggml_type}") from None


@dataclass
class GGUFTensor:
    """One tensor of a GGUF file: name, torch-order shape, ggml type id, and its raw bytes (memory-mapped)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    data: np.ndarray  # uint8 view of the file

    @property
    def type_name(self) -> str:
        return _type_info(self.ggml_type)[0]


class GGUFFile:
    """A parsed GGUF file: `metadata` (dict of plain Python values / numpy arrays) and `tensors` (by name)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        check_regular_file(self.path, "GGUF file")
        try:
            self._buf = np.memmap(self.path, dtype=np.uint8, mode="c")  # copy-on-write: writable views, no copy
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read GGUF file {str(path)!r}: {exc}") from None
        raw = self._buf
        if raw.size < 24 or bytes(raw[:4]) != b"GGUF":
            raise ModelError(f"{str(path)!r} is not a GGUF file (bad magic)" if raw.size >= 4 and bytes(raw[:4]) != b"GGUF"
                             else f"{str(path)!r} is not a GGUF file (truncated: {raw.size} bytes)")
        self._mv = memoryview(raw)
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", self._mv, 4)
        if version < 2:
            raise ModelError(f"{str(path)!r}: GGUF version {version} is not supported (need 2 or 3)")
        self._pos = 24
        self.metadata: dict[str, Any] = {}
        where = "the metadata"
        try:
            for _ in range(n_kv):
                key = self._string()
                where = f"metadata key {key!r}"
                (vtype,) = self._unpack("<I")
                self.metadata[key] = self._value(vtype)
            infos = []
            for _ in range(n_tensors):
                where = "the tensor table"
                name = self._string()
                where = f"the tensor table at {name!r}"
                (n_dims,) = self._unpack("<I")
                if n_dims > 8:
                    raise ModelError(f"{str(path)!r}: tensor {name!r} has {n_dims} dimensions (damaged file?)")
                dims = self._unpack(f"<{n_dims}Q")
                ggml_type, offset = self._unpack("<IQ")
                infos.append((name, tuple(reversed(dims)), ggml_type, offset))
        except (struct.error, ValueError, OverflowError, MemoryError) as exc:
            if isinstance(exc, ModelError):
                raise
            raise ModelError(f"{str(path)!r}: the file ends or is damaged in {where} "
                             f"(truncated GGUF file? {raw.size} bytes)") from None
        align = self.metadata.get("general.alignment", 32)
        if not isinstance(align, int) or isinstance(align, bool) or align <= 0:
            raise ModelError(f"{str(path)!r}: general.alignment must be a positive integer, got {align!r}")
        start = (self._pos + align - 1) // align * align
        self.tensors: dict[str, GGUFTensor] = {}
        for name, shape, ggml_type, offset in infos:
            _, block, type_size = _type_info(ggml_type)
            count = 1
            for d in shape:
                count *= int(d)
            if count % block:
                raise ModelError(f"{str(path)!r}: tensor {name!r} of shape {list(shape)} is not a whole number of "
                                 f"{_type_info(ggml_type)[0]} blocks")
            nbytes = count // block * type_size
            if start + offset + nbytes > raw.size:
                raise ModelError(f"{str(path)!r}: tensor {name!r} (shape {list(shape)}) needs bytes {start + offset} to "
                                 f"{start + offset + nbytes}, but the file has {raw.size} bytes: the file is truncated")
            data = raw[start + offset : start + offset + nbytes]
            self.tensors[name] = GGUFTensor(name, shape, ggml_type, data)

    def _unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from(fmt, self._mv, self._pos)
        self._pos += struct.calcsize(fmt)
        return values

    def _string(self) -> str:
        (n,) = struct.unpack_from("<Q", self._mv, self._pos)
        start = self._pos + 8
        if start + n > len(self._mv):
            raise struct.error("string past the end of the file")
        self._pos = start + n
        return bytes(self._mv[start : start + n]).decode("utf-8", errors="replace")

    def _value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self._string()
        if vtype == _ARRAY:
            etype, count = self._unpack("<IQ")
            if etype == _STRING:
                mv, pos, out = self._mv, self._pos, []
                unpack = struct.Struct("<Q").unpack_from
                if count > len(mv) - pos:
                    raise struct.error("array past the end of the file")
                for _ in range(count):
                    (n,) = unpack(mv, pos)
                    if pos + 8 + n > len(mv):
                        raise struct.error("string past the end of the file")
                    out.append(str(mv[pos + 8 : pos + 8 + n], "utf-8", "replace"))
                    pos += 8 + n
                self._pos = pos
                return out
            if etype in _NUMPY:
                dtype = np.dtype(_NUMPY[etype])
                arr = np.frombuffer(self._buf, dtype=dtype, count=count, offset=self._pos).copy()
                self._pos += dtype.itemsize * count
                return arr
            if count > len(self._mv) - self._pos:
                raise struct.error("array past the end of the file")
            return [self._value(etype) for _ in range(count)]
        if vtype in _SCALARS:
            (value,) = self._unpack(_SCALARS[vtype])
            return value
        raise ModelError(f"{self.path}: unknown GGUF metadata type {vtype}")

    def release(self, tensor: GGUFTensor, start: int = 0, length: int | None = None) -> None:
        """Let the kernel drop the pages of `tensor`'s bytes (all, or `length` bytes from `start`) from
        this process's resident memory (they
        are read again from the file if touched): after a loader has copied a tensor into its own
        layout, the file's copy would otherwise stay resident alongside it. A no-op where the platform
        has no madvise."""
        import mmap

        handle = getattr(self._buf, "_mmap", None)
        if handle is None or not hasattr(handle, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return
        base = self._buf.ctypes.data
        length = tensor.data.nbytes - start if length is None else length
        start += tensor.data.ctypes.data - base
        first = (start + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE  # whole pages inside the range
        end = (start + length) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > first:
            try:
                handle.madvise(mmap.MADV_DONTNEED, first + self._buf.offset, end - first)
            except (OSError, ValueError):
                pass

    def dequantize(self, name: str, out: torch.Tensor | None = None) -> torch.Tensor:
        """The tensor `name` as float32 (torch order: [out_features, in_features] for matrices),
        written into `out` when given."""
        return dequantize(self.tensors[name], out)


def dequantize(t: GGUFTensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Float32 values of one GGUF tensor (into `out`, a float32 tensor of its shape, when given)."""
    kind = t.type_name
    if out is None:
        out = torch.empty(t.shape, dtype=torch.float32)
    raw = torch.from_numpy(t.data)
    if kind == "F32":
        return out.copy_(raw.view(torch.float32).reshape(t.shape))
    if kind in ("F16", "BF16"):
        return out.copy_(raw.view(torch.float16 if kind == "F16" else torch.bfloat16).reshape(t.shape))
    if kind in ("Q4_0", "Q4_1", "Q8_0"):
        _dequant_blocks(raw, kind, out.view(-1, 32))
        return out
    if kind in kquants.KINDS:  # the same float32 operations as gguf.quants, vectorized in torch
        return out.copy_(kquants.dequantize(kind, raw.view(-1, kquants.BLOCK_BYTES[kind])).reshape(t.shape))
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize as gguf_dequantize

    values = gguf_dequantize(t.data, GGMLQuantizationType(t.ggml_type))
    return out.copy_(torch.from_numpy(np.ascontiguousarray(values)).reshape(t.shape))


def _dequant_blocks(raw: torch.Tensor, kind: str, out: torch.Tensor) -> None:
    """Vectorized ggml block dequantization, 32 values per block, into out [n_blocks, 32] float32."""
    if kind == "Q8_0":  # [d: f16][q: 32 x int8]; x = d * q
        blocks = raw.view(-1, 34)
        d = blocks[:, :2].contiguous().view(torch.float16).float()
        torch.mul(blocks[:, 2:].view(torch.int8), d, out=out)
        return
    size, header = (20, 4) if kind == "Q4_1" else (18, 2)
    blocks = raw.view(-1, size)
    d = blocks[:, :2].contiguous().view(torch.float16).float()
    qs = blocks[:, header:]
    # Low nibbles are elements 0..15 of a block, high nibbles 16..31.
    torch.bitwise_and(qs, 0x0F, out=out[:, :16])
    torch.bitwise_right_shift(qs, 4, out=out[:, 16:])
    if kind == "Q4_1":  # [d][m][16 bytes]; x = d * q + m
        m = blocks[:, 2:4].contiguous().view(torch.float16).float()
        torch.addcmul(m, out, d, out=out)  # m + q * d: the same float32 rounding as d * q + m
    else:  # Q4_0: [d][16 bytes]; x = d * (q - 8)
        out.sub_(8.0).mul_(d)


# ----- config and weights -----

def config_from_gguf(meta: dict[str, Any], factors: dict | None = None) -> ModelConfig:
    """ModelConfig from GGUF metadata (llama, mistral, qwen2, qwen3, gpt2 architectures)."""
    arch = meta.get("general.architecture")
    supported = ("llama", "mistral", "qwen2", "qwen3", "gpt2")
    from .gguf_families import GGUF_FAMILIES, config_from_gguf_family  # Gemma, Phi-3, Qwen MoE (arch19)

    family = config_from_gguf_family(meta, factors)
    if family is not None:
        return family
    if arch not in supported:
        raise ModelError(f"unsupported GGUF architecture {arch!r}; supported: {', '.join(supported + tuple(GGUF_FAMILIES))}")

    def get(key: str, default: Any = None) -> Any:
        return meta.get(f"{arch}.{key}", default)

    for key in ("embedding_length", "block_count", "attention.head_count", "feed_forward_length"):
        value = get(key)
        if value is None:
            raise ModelError(f"GGUF metadata: missing key {arch}.{key}")
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise ModelError(f"GGUF metadata: {arch}.{key} must be a positive integer, got {value!r}")
    vocab = get("vocab_size") or len(meta.get("tokenizer.ggml.tokens", ()))
    if not vocab:
        raise ModelError(f"GGUF metadata: no vocabulary size ({arch}.vocab_size and tokenizer.ggml.tokens missing)")
    heads = get("attention.head_count")
    hidden = get("embedding_length")
    common = dict(
        vocab_size=int(vocab),
        hidden_size=int(hidden),
        num_layers=int(get("block_count")),
        num_heads=int(heads),
        intermediate_size=int(get("feed_forward_length")),
        max_position_embeddings=int(get("context_length", 2048)),
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=meta.get("tokenizer.ggml.padding_token_id"),
        model_type=arch,
    )
    if arch == "gpt2":
        return ModelConfig(
            arch="gpt2", norm_eps=float(get("attention.layer_norm_epsilon", 1e-5)), tie_word_embeddings=True,
            attention_bias=True, attention_out_bias=True, mlp_bias=True, hidden_act="gelu_new", **common,
        )
    scaling = None
    if get("rope.scaling.type") == "linear":
        scaling = {"rope_type": "linear", "factor": float(get("rope.scaling.factor"))}
    head_dim = get("attention.key_length") or get("rope.dimension_count") or hidden // heads
    return ModelConfig(
        arch="llama",
        num_kv_heads=int(get("attention.head_count_kv", heads)),
        head_dim=int(head_dim),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        rope_scaling=scaling,
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-6)),
        attention_bias=arch == "qwen2",
        qk_norm=arch == "qwen3",
        sliding_window=get("attention.sliding_window") if arch == "mistral" else None,
        **common,
    )


def _unpermute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    # llama.cpp's converter interleaves the two rotary halves of each head (for its RoPE layout);
    # put them back so the weights match Hugging Face's rotate-half RoPE.
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def state_dict_from_gguf(g: GGUFFile, config: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict (float32) from a GGUF file's tensors; fused weights are dequantized in place."""
    names = set(g.tensors)
    if config.arch in FAMILY_ARCHS:  # Gemma, Phi-3, Qwen MoE: gguf_families.py
        from .gguf_families import state_dict_from_gguf_family

        return state_dict_from_gguf_family(config, g.dequantize, names)

    expected = _expected_shapes(config)

    def check(name: str) -> GGUFTensor:
        if name not in names:
            raise ModelError(f"{g.path.name}: tensor {name!r} is missing")
        t = g.tensors[name]
        want = expected(name)
        if want is not None and tuple(t.shape) != want:
            raise ModelError(f"{g.path.name}: tensor {name!r} has shape {list(t.shape)} but the config needs "
                             f"{list(want)}")
        return t

    def get(name: str) -> torch.Tensor:
        check(name)
        return g.dequantize(name)

    def fused(parts: list[str], heads: list[int | None]) -> torch.Tensor:
        tensors = [check(n) for n in parts]
        rows = sum(t.shape[0] for t in tensors)
        out = torch.empty((rows, *tensors[0].shape[1:]), dtype=torch.float32)
        row = 0
        for t, n_head in zip(tensors, heads):
            part = out[row : row + t.shape[0]]
            dequantize(t, part)
            if n_head is not None:
                part.copy_(_unpermute(part.clone(), n_head))
            row += t.shape[0]
        return out

    out = {"embed.weight": get("token_embd.weight"), "norm.weight": get("output_norm.weight")}
    tied = "output.weight" not in names
    config.tie_word_embeddings = tied
    if not tied:
        out["lm_head.weight"] = get("output.weight")
    if config.arch == "gpt2":
        return _gpt2_tensors(g, config, get, out)
    permuted = config.model_type in ("llama", "mistral")
    rope_heads = [config.num_heads, config.num_kv_heads, None] if permuted else [None, None, None]
    for i in range(config.num_layers):
        b, q = f"blk.{i}.", f"layers.{i}."
        out[q + "attn.wqkv.weight"] = fused([b + f"attn_{n}.weight" for n in "qkv"], rope_heads)
        if config.attention_bias:
            out[q + "attn.wqkv.bias"] = fused([b + f"attn_{n}.bias" for n in "qkv"], rope_heads)
        out[q + "attn.wo.weight"] = get(b + "attn_output.weight")
        if config.qk_norm:
            out[q + "attn.q_norm.weight"] = get(b + "attn_q_norm.weight")
            out[q + "attn.k_norm.weight"] = get(b + "attn_k_norm.weight")
        out[q + "mlp.w_gate_up.weight"] = fused([b + "ffn_gate.weight", b + "ffn_up.weight"], [None, None])
        out[q + "mlp.w_down.weight"] = get(b + "ffn_down.weight")
        out[q + "attn_norm.weight"] = get(b + "attn_norm.weight")
        out[q + "mlp_norm.weight"] = get(b + "ffn_norm.weight")
    return out


def _expected_shapes(config: ModelConfig):
    """name -> the shape the config needs for a GGUF tensor of a llama-family model (None: not checked
    here; build_from_state_dict checks every weight's shape)."""
    h, v, inter = config.hidden_size, config.vocab_size, config.intermediate_size
    q, kv = config.num_heads * config.head_dim, config.num_kv_heads * config.head_dim
    llama = {"token_embd.weight": (v, h), "output.weight": (v, h), "output_norm.weight": (h,),
             "attn_q.weight": (q, h), "attn_k.weight": (kv, h), "attn_v.weight": (kv, h),
             "attn_q.bias": (q,), "attn_k.bias": (kv,), "attn_v.bias": (kv,), "attn_output.weight": (h, q),
             "attn_q_norm.weight": (config.head_dim,), "attn_k_norm.weight": (config.head_dim,),
             "ffn_gate.weight": (inter, h), "ffn_up.weight": (inter, h), "ffn_down.weight": (h, inter),
             "attn_norm.weight": (h,), "ffn_norm.weight": (h,)}

    def expected(name: str) -> tuple[int, ...] | None:
        if config.arch == "gpt2":
            return {"token_embd.weight": (v, h), "output.weight": (v, h)}.get(name)
        return llama.get(name.split(".", 2)[2] if name.startswith("blk.") else name)
    return expected


def _gpt2_tensors(g: GGUFFile, config: ModelConfig, get, out: dict) -> dict[str, torch.Tensor]:
    out["pos_embed.weight"] = get("position_embd.weight")
    out["norm.bias"] = get("output_norm.bias")
    pairs = {"attn_qkv": "attn.wqkv", "attn_output": "attn.wo", "ffn_up": "mlp.fc", "ffn_down": "mlp.proj",
             "attn_norm": "attn_norm", "ffn_norm": "mlp_norm"}
    for i in range(config.num_layers):
        for theirs, ours in pairs.items():
            for part in ("weight", "bias"):
                out[f"layers.{i}.{ours}.{part}"] = get(f"blk.{i}.{theirs}.{part}")
    return out


@contextmanager
def single_thread():
    """Run torch on one intra-op thread inside the block."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def load_gguf(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu",
              cache: bool | str = True):
    """Our model, its tokenizer, special tokens and chat template from a .gguf file.

    cache: True reads the model from, or writes it to, the model cache (`model_cache.py`: the weights
    dequantized and laid out for decoding, memory-mapped at the next load); "read" only reads valid
    entries (never writes, prunes or deletes); False skips it. `$LISPE_MODEL_CACHE=0` turns the cache off
    for every load."""
    from . import model_cache
    from .loading import attach_tokenizer, build_from_state_dict
    from .tokenizer import Tokenizer

    cache = model_cache.check_mode(cache)
    entry = model_cache.entry_for(path, dtype, cache) if cache else None
    cached = entry.load() if entry is not None else None
    if cached is not None:
        config, state, tokenizer = cached
        model = build_from_state_dict(config, state, dtype, device)
        if tokenizer is not None:
            attach_tokenizer(model, tokenizer)
        model.model_cache_entry = str(entry.folder)
        return model
    g = GGUFFile(path)
    try:
        from .gguf_families import rope_factors

        config = config_from_gguf(g.metadata, rope_factors(g.tensors, g.dequantize))
    except ModelError as exc:
        raise ModelError(f"{str(path)!r}: {exc}") from None
    except (TypeError, ValueError, AttributeError, OverflowError):
        raise ModelError(f"{str(path)!r}: a GGUF metadata value has the wrong type (damaged file?)") from None
    try:
        state = state_dict_from_gguf(g, config)  # all threads: SmolLM2 0.61-0.70 s on 2, 0.89-1.09 s on 1
    except RuntimeError as exc:
        raise ModelError(f"{str(path)!r}: the tensors do not fit the metadata ({exc})") from None
    try:
        model = build_from_state_dict(config, state, dtype, device)
    except ModelError as exc:
        raise ModelError(f"{str(path)!r}: {exc}") from None
    if "tokenizer.ggml.tokens" in g.metadata:
        try:
            tokenizer = Tokenizer.from_gguf(g)
        except KeyError as exc:
            raise ModelError(f"{str(path)!r}: missing key {exc.args[0]} in the tokenizer metadata") from None
        except ModelError:
            raise
        except (TypeError, ValueError, IndexError, AttributeError):
            raise ModelError(f"{str(path)!r}: the tokenizer metadata is damaged (a value of the wrong type or "
                             "size)") from None
        except Exception as exc:  # the tokenizers library raises plain Exceptions
            raise ModelError(f"{str(path)!r}: the tokenizer metadata is damaged ({exc})") from None
        attach_tokenizer(model, tokenizer)
    if entry is not None and model.device.type == "cpu":
        model.lay_out_weights()
        if entry.save(model):
            model.model_cache_entry = str(entry.folder)
    return model
