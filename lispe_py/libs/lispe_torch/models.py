"""Building, loading and inspecting models; devices; seeds."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...builtins._common import describe
from ...builtins.registry import builtin
from ...errors import LispEError
from ...hints import did_you_mean
from ...models import DecoderModel, create_model, load_model
from ...models.loading import EMBEDDED_MODELS, resolve_dtype
from ...models.quantize import model_kernels
from .. import torch_values as tv
from ..torch_values import (TorchGenerator, arg_error, config_pairs, core_errors, device_arg, expect_int,
                            expect_str)

from ._common import _engine_info, _model, _set_default_tokenizer, LIB, G_MODEL, G_TENSOR


_MODEL_KEYS = {
    "vocab_size": "vocab_size", "hidden_size": "hidden_size", "embed_dim": "hidden_size",
    "d_model": "hidden_size", "num_layers": "num_layers", "n_layers": "num_layers",
    "num_heads": "num_heads", "n_heads": "num_heads", "num_kv_heads": "num_kv_heads",
    "intermediate_size": "intermediate_size", "ffn_dim": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings", "max_seq_length": "max_position_embeddings",
    "rope_theta": "rope_theta", "norm_eps": "norm_eps", "tie_word_embeddings": "tie_word_embeddings",
    "arch": "arch", "seed": "seed", "bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id",
    "pad_token_id": "pad_token_id", "init_std": "init_std", "dtype": None, "device": None,
}
# Small sensible defaults: a vocabulary large enough for GPT-2-style ids (the guide's 15339, 50256).
_MODEL_DEFAULTS = {"vocab_size": 50304, "hidden_size": 64, "num_layers": 2, "num_heads": 4,
                   "max_position_embeddings": 1024}
_MODEL_KINDS = {"transformer": None, "decoder": None, "llama": "llama", "gpt2": "gpt2"}


@builtin("torch_model_create", group=G_MODEL, library=LIB, min_args=1, max_args=2, ctx=True)
def torch_model_create(ctx: Any, kind: Any, config: Any = None) -> DecoderModel:
    """(torch_model_create "transformer" {"vocab_size":49152 "hidden_size":64 "num_layers":2})

    A fresh decoder-only transformer with random weights (seeded: same config, same weights). Keys:
    vocab_size, hidden_size (embed_dim, d_model), num_layers, num_heads, num_kv_heads, intermediate_size
    (ffn_dim), max_position_embeddings (max_seq_length), rope_theta, norm_eps, tie_word_embeddings,
    arch ("llama" or "gpt2"), seed, init_std (weights' standard deviation, 0.02), bos/eos/pad_token_id,
    dtype, device.
    """
    fname = "torch_model_create"
    if not isinstance(kind, str) or kind not in _MODEL_KINDS:
        raise LispEError(f"{fname}: argument 'type': unknown model type {describe(kind)}; valid: "
                         + ", ".join(f'"{k}"' for k in _MODEL_KINDS))
    values: dict[str, Any] = dict(_MODEL_DEFAULTS)
    if _MODEL_KINDS[kind]:
        values["arch"] = _MODEL_KINDS[kind]
    dtype, device = None, "cpu"
    for key, v in config_pairs(fname, "config", config, ctx):
        if key not in _MODEL_KEYS:
            raise LispEError(f"{fname}: unknown config key \"{key}\"{did_you_mean(key, _MODEL_KEYS)}; "
                             "valid keys: " + ", ".join(sorted(_MODEL_KEYS)))
        if key == "dtype":
            dtype = _model_dtype(fname, v)
        elif key == "device":
            device = str(device_arg(fname, "device", v))
        elif key == "tie_word_embeddings":
            if v is not None and v is not True:
                raise LispEError(f"{fname}: config \"{key}\" must be true or nil, got {describe(v)}")
            values[key] = v is True
        else:
            values[_MODEL_KEYS[key]] = v
    if "hidden_size" in values and "intermediate_size" not in values:
        values["intermediate_size"] = 4 * values["hidden_size"] if tv.is_int(values["hidden_size"]) else None
    for key in ("rope_theta", "norm_eps", "init_std"):
        if key in values and tv.is_int(values[key]):
            values[key] = float(values[key])
    for key, v in values.items():
        if key in ("arch", "tie_word_embeddings"):
            continue
        if key in ("rope_theta", "norm_eps", "init_std"):
            if not isinstance(v, float) or v <= 0:
                raise LispEError(f"{fname}: config \"{key}\" must be a positive number, got {describe(v)}")
        elif key in ("bos_token_id", "eos_token_id", "pad_token_id", "seed"):
            if not (tv.is_int(v) and v >= 0):
                raise LispEError(f"{fname}: config \"{key}\" must be a non-negative integer, got {describe(v)}")
        elif not (tv.is_int(v) and v > 0):
            raise LispEError(f"{fname}: config \"{key}\" must be a positive integer, got {describe(v)}")
    _sandbox_kernels(ctx)
    with core_errors(fname):
        return create_model(values, dtype=dtype, device=device)


def _model_dtype(fname: str, name: Any) -> torch.dtype:
    if not isinstance(name, str):
        raise arg_error(fname, "dtype", 'a dtype name: "float32", "bfloat16" or "float16"', name)
    with core_errors(fname):
        return resolve_dtype(name)


_LOAD_KEYS = ("device", "dtype", "quantize", "group_size", "prompt_cache", "prefill_chunk_size", "packed_weights",
              "cuda_graphs", "model_cache", "revision", "file", "quant", "activations")


@builtin("torch_hf_load_model", group=G_MODEL, library=LIB, min_args=1, max_args=2, ctx=True)
def torch_hf_load_model(ctx: Any, path: Any, config: Any = None) -> DecoderModel:
    """(torch_hf_load_model "SmolLM2-135M-Instruct")

    Loads a model: a local Hugging Face folder (config.json + *.safetensors + tokenizer.json), a .gguf
    file, the embedded "SmolLM2-135M-Instruct", or a Hugging Face Hub id "org/name" (downloaded to, or
    read from, huggingface_hub's cache; HF_HOME, HF_HUB_OFFLINE and HF_TOKEN apply; in the sandbox a
    download needs --allow-net huggingface.co and the cache folder in --allow-read/--allow-write).
    Hub keys: "revision" (branch, tag or commit), "file" (the .gguf file of a GGUF repository) or
    "quant" (e.g. "Q4_K_M": the .gguf file whose name carries it). Config keys: "device", "dtype", "quantize"
    ("int8"/"int4") and "group_size", "prompt_cache" (true: a call whose prompt starts with the previous
    call's prompt + output, e.g. a chat's next turn, runs only the new part), "prefill_chunk_size"
    (default 1024), "packed_weights" (default true; nil: batches and beams on CPU do without
    oneDNN-packed float32 weight copies, saving their memory at 1.7-3x slower matmuls), "cuda_graphs"
    (default true: on a GPU each decode step replays a captured CUDA graph; nil runs it op by op),
    "model_cache" (default true: a .gguf file's dequantized weights and tokenizer are written to the
    model cache at the first load and memory-mapped at the next ones; "read" uses entries already there
    but never writes or deletes any; nil loads without it), "activations" ("int16", the default, or
    "int8": with "quantize", the native int4, GGUF Q4_K/Q6_K and int8-groups-of-32 kernels round their
    inputs to 8 bits as llama.cpp does: faster, less exact). The model's tokenizer becomes the default
    tokenizer.
    """
    from ..torch_quant import load_options

    fname = "torch_hf_load_model"
    path = expect_str(fname, "path", path)
    device, dtype, quantize, group_size, prompt_cache, chunk, packed = "cpu", None, None, None, False, 1024, True
    graphs, model_cache, activations = True, True, None
    hub: dict[str, Any] = {}
    for key, v in config_pairs(fname, "config", config, ctx):
        if key in ("revision", "file", "quant"):
            if not isinstance(v, str) or not v:
                raise arg_error(fname, key, "a non-empty string", v)
            hub[key] = v
        elif key == "device":
            device = str(device_arg(fname, "device", v))
        elif key == "dtype":
            dtype = _model_dtype(fname, v)
        elif key == "quantize":
            quantize = v
        elif key == "activations":
            from ..torch_quant import activations_arg

            activations = activations_arg(fname, key, v)
        elif key == "group_size":
            group_size = v
        elif key == "model_cache" and v == "read":
            model_cache = "read"
        elif key in ("prompt_cache", "packed_weights", "cuda_graphs", "model_cache"):
            if v is not None and v is not True:
                raise LispEError(f"{fname}: config \"{key}\" must be true or nil, got {describe(v)}")
            if key == "prompt_cache":
                prompt_cache = v is True
            elif key == "packed_weights":
                packed = v is True
            elif key == "model_cache":
                model_cache = v is True
            else:
                graphs = v is True
        elif key == "prefill_chunk_size":
            if not (tv.is_int(v) and v > 0) and v is not None:
                raise LispEError(f"{fname}: config \"prefill_chunk_size\": expected a positive integer "
                                 f"(or nil for one pass), got {describe(v)}")
            chunk = v
        else:
            raise LispEError(f"{fname}: unknown config key \"{key}\"{did_you_mean(key, _LOAD_KEYS)}; "
                             "valid keys: " + ", ".join(f'"{k}"' for k in _LOAD_KEYS))
    quantize, group_size = load_options(fname, quantize, group_size)
    check = _path_check(ctx, fname)
    shown = path
    if path not in EMBEDDED_MODELS:
        path = _local_or_hub(ctx, path, fname, hub, check)
        shown = Path(path).name
    if model_cache and not _may_write_model_cache(ctx):
        model_cache = "read"  # sandboxed: use entries already there, never write or delete any
    _sandbox_kernels(ctx)
    with core_errors(fname), tv.loading(shown):
        model = load_model(path, dtype=dtype, device=device, quantize=quantize, group_size=group_size,
                           model_cache=model_cache, check_path=check, activations=activations)
    model.prompt_cache, model.prefill_chunk_size, model.packed_weights = prompt_cache, chunk, packed
    model.cuda_graphs = graphs
    if model.tokenizer is not None:
        _set_default_tokenizer(ctx, model.tokenizer)
    return model


def _local_or_hub(ctx: Any, path: str, fname: str, hub: dict[str, Any], check: Any) -> str:
    """The local file or folder to load: `path` itself when it exists, else the Hub id's files
    (`models.hub`, downloaded with huggingface_hub's progress bar when allowed). Decided before the
    "loading ..." line, so a missing folder is reported as missing, never as being loaded."""
    from ...models import hub as hub_ids
    from ...models.loading import locate_model

    local = None
    try:
        local = _resolve_path(ctx, path, fname)
    except LispEError:
        if not hub_ids.is_hub_id(path):
            raise
    if local is not None and local.exists():
        if hub:
            raise LispEError(f"{fname}: config " + " and ".join(f'"{k}"' for k in hub)
                             + f" apply to Hugging Face Hub ids, and {path!r} is a local path")
        return str(local)
    if not hub_ids.is_hub_id(path):
        raise LispEError(f"{fname}: no model at {path!r}: give a Hugging Face folder, a .gguf file, a Hub id "
                         "(\"org/name\"), or one of: " + ", ".join(EMBEDDED_MODELS))

    def net_check(host: str) -> Any:
        return ctx.interp.check_net_access(host)
    with core_errors(fname):
        return str(locate_model(path, check, net_check=net_check, **hub))


def _resolve_path(ctx: Any, path: str, fname: str) -> Path:
    """A relative path is taken from the script's folder (then the working directory). Sandboxed:
    `check_file_access` resolves it (script folder, no `~`, symlinks followed) or refuses it."""
    if ctx.interp.sandbox:
        return Path(_path_check(ctx, fname)(path))
    p = Path(path).expanduser()
    if not p.is_absolute() and ctx.interp.script_dir and (Path(ctx.interp.script_dir) / p).exists():
        p = Path(ctx.interp.script_dir) / p
    return Path(ctx.interp.check_file_access(str(p)))


def _path_check(ctx: Any, fname: str) -> Any:
    """What the model loaders pass every file they open through (config.json, tokenizer files, the
    shards an index names, a folder's .gguf): the interpreter's check when sandboxed (its refusal
    names `fname`), else None."""
    if not ctx.interp.sandbox:
        return None
    check_file_access = ctx.interp.check_file_access

    def check(path: Any) -> str:
        try:
            return check_file_access(path)
        except LispEError as exc:
            raise LispEError(f"{fname}: {exc.message}") from None
    return check


def _may_write_model_cache(ctx: Any) -> bool:
    """Whether this interpreter may write the model cache folder (always, outside the sandbox)."""
    if not ctx.interp.sandbox:
        return True
    from ...models import model_cache

    root = model_cache.cache_root()
    return root is not None and ctx.interp.may_write(root)


def _sandbox_kernels(ctx: Any) -> None:
    """Sandboxed without write permission on the native kernels' cache folder, and the kernels not
    built yet: decide for this process that they are not used (building them writes the cache
    folder; a layer picks its kernel when it is made, so the decision must come before any quantized
    layer exists: a model is loaded or created first). A library already built is only read, and used."""
    if ctx.interp.sandbox:
        from ...models import native

        if "ok" not in native._state and not ctx.interp.may_write(native.cache_dir()):
            cxx = native.compiler()
            if cxx is None or not native.library_path(cxx).exists():
                native._state.update(ok=False, reason="sandbox: the kernel cache folder may not be written")


@builtin("torch_model_to_dtype", group=G_MODEL, library=LIB)
def torch_model_to_dtype(model: Any, dtype: Any) -> DecoderModel:
    """(torch_model_to_dtype model "float16")

    Converts the model's weights in place to "float32", "bfloat16" or "float16" and returns it.
    """
    fname = "torch_model_to_dtype"
    m = _model(fname, model)
    target = _model_dtype(fname, dtype)
    with core_errors(fname):
        m.to(dtype=target)
    return model


@builtin("torch_model_to_device", group=G_MODEL, library=LIB)
def torch_model_to_device(model: Any, device: Any) -> Any:
    """(torch_model_to_device model "cuda")

    Moves the model (in place) to "cpu", "cuda", "cuda:N" or "mps"; an unavailable device is an error.
    A generator given here moves its model and follows it.
    """
    fname = "torch_model_to_device"
    m = _model(fname, model)
    dev = device_arg(fname, "device", device)
    with core_errors(fname):
        m.to(device=dev)
    if isinstance(model, TorchGenerator):
        model.device = dev
    return model


@builtin("torch_model_info", group=G_MODEL, library=LIB)
@_engine_info
def torch_model_info(model: Any) -> dict:
    """(torch_model_info model)

    A dictionary: architecture, parameters (the true count: a quantized layer counts its logical
    weights, however packed), storage ("float32", or e.g. "int4+Q8_0+float32": what holds the
    parameters, most first), parameters_by_storage ({"int4":106168320 ...}), weight_bytes (the bytes
    holding them, scales included), dtype (the dtype the model computes in: its embedding's), device,
    vocab_size, context_length, hidden_size,
    num_layers, num_heads, num_kv_heads, has_tokenizer, has_chat_template, prompt_cache,
    prefill_chunk_size, packed_weights, cuda_graphs, quantization ("int8", "int4" or nil),
    quantization_group_size (int4's or int8's groups; nil for int8 with one scale per output channel),
    activations ("int16" or "int8": what the native int4, GGUF Q4_K/Q6_K and int8-groups-of-32 kernels
    round their inputs to, "int16" meaning float32 for the int8 ones; nil without such layers),
    quantized_kernels ("native": the AVX2 int8/int4 kernels built on this machine, "torch": torch's,
    "reference": none fits), model_cache (the model cache folder its weights were mapped from or written
    to at load, else nil), weights_mb (memory held by the weights, shared tensors once), mapped_mb (weights
    read from a memory-mapped file, e.g. a quantized GGUF load's embedding blocks), resident_mb and
    peak_resident_mb (the process's resident memory now and at its highest), anonymous_mb (the part of
    resident_mb that is the process's own memory, not pages of mapped files; nil outside Linux).
    """
    from ...models.footprint import footprint
    from ...models.memory import memory_report

    m = _model("torch_model_info", model)
    c = m.config
    quantized = getattr(m, "quantization", None)
    mem = {key: (None if v is None else round(v / 2 ** 20, 1)) for key, v in memory_report(m).items()}
    counts = footprint(m)
    return {
        "weights_mb": mem["weights_bytes"], "mapped_mb": mem["mapped_bytes"],
        "resident_mb": mem["rss_bytes"], "peak_resident_mb": mem["peak_rss_bytes"],
        "anonymous_mb": mem["anon_rss_bytes"],
        "architecture": c.arch, "model_type": c.model_type or c.arch, "parameters": counts["parameters"],
        "storage": counts["storage"], "parameters_by_storage": dict(counts["by_storage"]),
        "weight_bytes": counts["weight_bytes"],
        "dtype": str(m.dtype).removeprefix("torch."), "device": str(m.device),
        "vocab_size": c.vocab_size, "context_length": c.max_position_embeddings,
        "hidden_size": c.hidden_size, "num_layers": c.num_layers, "num_heads": c.num_heads,
        "num_kv_heads": c.num_kv_heads, "has_tokenizer": True if m.tokenizer is not None else None,
        "has_chat_template": True if m.chat_template else None,
        "prompt_cache": True if m.prompt_cache else None, "prefill_chunk_size": m.prefill_chunk_size,
        "packed_weights": True if m.packed_weights else None,
        "cuda_graphs": True if m.cuda_graphs else None,
        "quantization": quantized.mode if quantized is not None else None,
        "quantization_group_size": quantized.group_size if quantized is not None else None,
        "activations": getattr(quantized, "activations", None),
        "quantized_kernels": model_kernels(m),
        "model_cache": m.model_cache_entry,
    }


@builtin("torch_cuda_is_available", group=G_MODEL, library=LIB)
def torch_cuda_is_available() -> Any:
    """(torch_cuda_is_available)

    true when a CUDA GPU can be used, else nil.
    """
    return True if torch.cuda.is_available() else None


@builtin("torch_mps_is_available", "torch_mps_available", group=G_MODEL, library=LIB)
def torch_mps_is_available() -> Any:
    """(torch_mps_is_available)

    true on Apple Silicon with Metal (MPS) support, else nil.
    """
    mps = getattr(torch.backends, "mps", None)
    return True if mps is not None and mps.is_available() else None


@builtin("torch_get_best_device", group=G_MODEL, library=LIB)
def torch_get_best_device() -> str:
    """(torch_get_best_device)

    "cuda" when a GPU is available, else "mps" on Apple Silicon, else "cpu".
    """
    return tv.best_device()


@builtin("torch_manual_seed", group=G_TENSOR, library=LIB)
def torch_manual_seed(seed: Any) -> Any:
    """(torch_manual_seed 42)

    Seeds torch's global random generator (tensor_randn, torch_multinomial, sampling without a "seed").
    """
    torch.manual_seed(expect_int("torch_manual_seed", "seed", seed, 0))
    return True
