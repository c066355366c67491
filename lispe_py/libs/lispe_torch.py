"""`(use 'lispe_torch)`: the Lisp API of the text generation engine (docs/lispe_torch.md).

Thin bindings: each function checks and converts its Lisp arguments (`torch_values`), calls the models
layer (`lispe_py.models`) or the generation core (`lispe_py.generation`), and turns their errors into
LispE errors naming the function and the argument. No sampling logic lives here.

Importing this module imports torch; the interpreter imports it only when a script runs
`(use 'lispe_torch)`.
"""
from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..builtins._common import describe
from ..builtins.registry import builtin
from ..errors import LispEError
from ..generation import GenerationConfig, GenerationError, active_chain, generate, generate_batch, generate_text
from ..generation import evaluate, generate_scored, generate_trace, perplexity, replay, sequence_logprobs
from ..generation import trace_diff
from ..generation.trace import Trace
from ..models import DecoderModel, create_model, load_model
from ..models.loading import EMBEDDED_MODELS, embedded_model_path, resolve_dtype
from ..models.quantize import model_kernels
from ..models.tokenizer import Tokenizer
from ..values import Integers, Strings, register_type
from . import torch_values as tv
from .torch_values import (TorchGenerator, arg_error, as_tensor_arg, config_pairs, core_errors,
                           device_arg, dim_arg, dtype_arg, expect_int, expect_real, expect_str,
                           expect_tensor, ids_arg, ids_to_list, shape_arg, tensor_to_lisp, to_tensor)

LIB = "lispe_torch"
G_MODEL, G_TOK, G_GEN, G_TENSOR, G_COMPAT = ("torch-models", "torch-tokenizers", "torch-generation",
                                             "torch-tensors", "torch-compat")

tv.register()

# The default tokenizer of each interpreter (set by torch_hf_load_model and tokenizer_load).
_DEFAULT_TOKENIZER: "weakref.WeakKeyDictionary[Any, Tokenizer]" = weakref.WeakKeyDictionary()


# ===================================================================================== helpers
def _model(fname: str, value: Any, arg: str = "model") -> DecoderModel:
    """A model argument: a model, or a generator (its model)."""
    if isinstance(value, DecoderModel):
        return value
    if isinstance(value, TorchGenerator):
        return value.model
    raise arg_error(fname, arg, "a model (from torch_model_create or torch_hf_load_model)", value)


def _generator(fname: str, value: Any) -> TorchGenerator:
    if not isinstance(value, TorchGenerator):
        raise arg_error(fname, "generator", "a generator (from torch_generator_create)", value)
    return value


def _set_default_tokenizer(ctx: Any, tok: Tokenizer) -> None:
    _DEFAULT_TOKENIZER[ctx.interp] = tok


def _default_tokenizer(fname: str, ctx: Any) -> Tokenizer:
    tok = _DEFAULT_TOKENIZER.get(ctx.interp)
    if tok is None:
        raise LispEError(f"{fname}: no tokenizer is loaded: load a model with (torch_hf_load_model "
                         f"\"SmolLM2-135M-Instruct\") or a tokenizer with (tokenizer_load path), or pass "
                         f"a tokenizer as the first argument")
    return tok


def _split_tokenizer(fname: str, ctx: Any, args: tuple, arity: int) -> tuple[Tokenizer, tuple]:
    """`(f [tok] a ...)`: the tokenizer (explicit, a model's, or the default) and the other arguments."""
    if len(args) == arity + 1:
        first = args[0]
        if isinstance(first, Tokenizer):
            return first, args[1:]
        if isinstance(first, (DecoderModel, TorchGenerator)):
            model = _model(fname, first, "tokenizer")
            if model.tokenizer is None:
                raise LispEError(f"{fname}: argument 'tokenizer': this model has no tokenizer")
            return model.tokenizer, args[1:]
        raise arg_error(fname, "tokenizer", "a tokenizer (from tokenizer_load)", first)
    return _default_tokenizer(fname, ctx), args


def _model_tokenizer(ctx: Any, model: DecoderModel) -> Tokenizer | None:
    """The tokenizer for a model: its own, else the interpreter's default one."""
    return model.tokenizer if model.tokenizer is not None else _DEFAULT_TOKENIZER.get(ctx.interp)


def _call_config(fname: str, gen: TorchGenerator, config: Any, ctx: Any) -> GenerationConfig:
    """The generator's config with a per-call Lisp config applied (the generator is not changed)."""
    pairs = config_pairs(fname, "config", config, ctx)
    with core_errors(fname):
        return gen.config.update(pairs) if pairs else gen.config


def _with_progress(cfg: GenerationConfig, single: bool) -> tuple[GenerationConfig, tv.TokenProgress | None]:
    """Add a progress callback (terminal only) when the user set none and the run allows one."""
    progress = tv.TokenProgress(cfg.max_length)
    if (not progress.tty or cfg.callback is not None or not single or cfg.strategy == "beam_search"
            or cfg.num_return_sequences != 1):
        return cfg, None
    return cfg.update({"callback": progress}), progress


def _prompt_embeddings(fname: str, model: DecoderModel, emb: torch.Tensor) -> torch.Tensor:
    """A float prompt tensor checked as embeddings [batch, seq, hidden] ([seq, hidden]: one row)."""
    hidden = model.config.hidden_size
    if emb.dim() not in (2, 3) or emb.shape[-1] != hidden or emb.shape[-2] == 0:
        raise LispEError(f"{fname}: argument 'input_ids': a float tensor is taken as prompt embeddings "
                         f"[batch, seq, hidden={hidden}], got shape {list(emb.shape)}")
    return emb.detach()


# ===================================================================================== models
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
            raise LispEError(f"{fname}: unknown config key \"{key}\"; valid keys: "
                             + ", ".join(sorted(_MODEL_KEYS)))
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
              "cuda_graphs", "model_cache")


@builtin("torch_hf_load_model", group=G_MODEL, library=LIB, min_args=1, max_args=2, ctx=True)
def torch_hf_load_model(ctx: Any, path: Any, config: Any = None) -> DecoderModel:
    """(torch_hf_load_model "SmolLM2-135M-Instruct")

    Loads a model: a local Hugging Face folder (config.json + *.safetensors + tokenizer.json), a .gguf
    file, or the embedded "SmolLM2-135M-Instruct". Config keys: "device", "dtype", "quantize"
    ("int8"/"int4") and "group_size", "prompt_cache" (true: a call whose prompt starts with the previous
    call's prompt + output, e.g. a chat's next turn, runs only the new part), "prefill_chunk_size"
    (default 1024), "packed_weights" (default true; nil: batches and beams on CPU do without
    oneDNN-packed float32 weight copies, saving their memory at 1.7-3x slower matmuls), "cuda_graphs"
    (default true: on a GPU each decode step replays a captured CUDA graph; nil runs it op by op),
    "model_cache" (default true: a .gguf file's dequantized weights and tokenizer are written to the
    model cache at the first load and memory-mapped at the next ones; "read" uses entries already there
    but never writes or deletes any; nil loads without it). The
    model's tokenizer becomes the default tokenizer.
    """
    from .torch_quant import load_options

    fname = "torch_hf_load_model"
    path = expect_str(fname, "path", path)
    device, dtype, quantize, group_size, prompt_cache, chunk, packed = "cpu", None, None, None, False, 1024, True
    graphs, model_cache = True, True
    for key, v in config_pairs(fname, "config", config, ctx):
        if key == "device":
            device = str(device_arg(fname, "device", v))
        elif key == "dtype":
            dtype = _model_dtype(fname, v)
        elif key == "quantize":
            quantize = v
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
            raise LispEError(f"{fname}: unknown config key \"{key}\"; valid keys: "
                             + ", ".join(f'"{k}"' for k in _LOAD_KEYS))
    quantize, group_size = load_options(fname, quantize, group_size)
    if path not in EMBEDDED_MODELS:
        path = str(_resolve_path(ctx, path, fname))
    if model_cache and not _may_write_model_cache(ctx):
        model_cache = "read"  # sandboxed: use entries already there, never write or delete any
    _sandbox_kernels(ctx)
    with core_errors(fname), tv.loading(Path(path).name):
        model = load_model(path, dtype=dtype, device=device, quantize=quantize, group_size=group_size,
                           model_cache=model_cache, check_path=_path_check(ctx, fname))
    model.prompt_cache, model.prefill_chunk_size, model.packed_weights = prompt_cache, chunk, packed
    model.cuda_graphs = graphs
    if model.tokenizer is not None:
        _set_default_tokenizer(ctx, model.tokenizer)
    return model


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
    from ..models import model_cache

    root = model_cache.cache_root()
    return root is not None and ctx.interp.may_write(root)


def _sandbox_kernels(ctx: Any) -> None:
    """Sandboxed without write permission on the native kernels' cache folder, and the kernels not
    built yet: decide for this process that they are not used (building them writes the cache
    folder; a layer picks its kernel when it is made, so the decision must come before any quantized
    layer exists: a model is loaded or created first). A library already built is only read, and used."""
    if ctx.interp.sandbox:
        from ..models import native

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
def torch_model_info(model: Any) -> dict:
    """(torch_model_info model)

    A dictionary: architecture, parameters, dtype, device, vocab_size, context_length, hidden_size,
    num_layers, num_heads, num_kv_heads, has_tokenizer, has_chat_template, prompt_cache,
    prefill_chunk_size, packed_weights, cuda_graphs, quantization ("int8", "int4" or nil),
    quantization_group_size (int4's or int8's groups; nil for int8 with one scale per output channel),
    quantized_kernels ("native": the AVX2 int8/int4 kernels built on this machine, "torch": torch's,
    "reference": none fits), model_cache (the model cache folder its weights were mapped from or written
    to at load, else nil).
    """
    m = _model("torch_model_info", model)
    c = m.config
    quantized = getattr(m, "quantization", None)
    return {
        "architecture": c.arch, "model_type": c.model_type or c.arch, "parameters": m.num_parameters(),
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


# ===================================================================================== tokenizers
@builtin("tokenizer_load", group=G_TOK, library=LIB, ctx=True)
def tokenizer_load(ctx: Any, path: Any) -> Tokenizer:
    """(tokenizer_load "path/to/tokenizer.json")

    Loads a tokenizer from a tokenizer.json, a model folder, a .gguf file, or the name of the embedded
    model ("SmolLM2-135M-Instruct"); it becomes the default tokenizer.
    """
    fname = "tokenizer_load"
    path = expect_str(fname, "path", path)
    with core_errors(fname):
        check = _path_check(ctx, fname)
        if path in EMBEDDED_MODELS:
            p = embedded_model_path(path)
        else:
            p = _resolve_path(ctx, path, fname)
            if not p.exists():
                raise LispEError(f"{fname}: argument 'path': no file or folder at \"{path}\"")
        if p.is_dir():
            ggufs = sorted(p.glob("*.gguf"))
            if not (p / "tokenizer.json").exists() and ggufs:
                tok = Tokenizer.from_gguf(check(ggufs[0]) if check else str(ggufs[0]))
            else:
                tok = Tokenizer.from_folder(p, check_path=check)
        elif p.suffix == ".gguf":
            tok = Tokenizer.from_gguf(str(p))
        else:
            tok = Tokenizer.from_file(p)
    _set_default_tokenizer(ctx, tok)
    return tok


@builtin("tokenizer_encode", "torch_encode", group=G_TOK, library=LIB, min_args=1, max_args=2, ctx=True)
def tokenizer_encode(ctx: Any, *args: Any) -> Integers:
    """(tokenizer_encode "Hello world")

    Token ids of a text (integers), with the default tokenizer or the one given first:
    (tokenizer_encode tok "Hello world"). A model or generator may stand for its tokenizer.
    """
    fname = "tokenizer_encode"
    tok, (text,) = _split_tokenizer(fname, ctx, args, 1)
    text = expect_str(fname, "text", text)
    with core_errors(fname):
        return Integers(tok.encode(text))


@builtin("tokenizer_decode", "torch_decode", group=G_TOK, library=LIB, min_args=1, max_args=2, ctx=True)
def tokenizer_decode(ctx: Any, *args: Any) -> Any:
    """(tokenizer_decode ids)

    The text of token ids: integers, a list, or a 1-D tensor -> a string; a 2-D tensor or a list of
    lists -> a list of strings (one per row). Special tokens are kept (decode round-trips encode).
    """
    fname = "tokenizer_decode"
    tok, (ids,) = _split_tokenizer(fname, ctx, args, 1)
    rows = ids_to_list(fname, "ids", ids)
    vocab = tok.vocab_size
    flat = [x for r in rows for x in (r if isinstance(r, list) else [r])]
    bad = [x for x in flat if not 0 <= x < vocab]
    if bad:
        raise LispEError(f"{fname}: argument 'ids': token ids {bad[:5]} are outside the tokenizer's "
                         f"vocabulary (0..{vocab - 1})")
    with core_errors(fname):
        if rows and isinstance(rows[0], list):
            return Strings(tok.decode(r) for r in rows)
        return tok.decode(rows)


def _messages(fname: str, value: Any) -> list[dict[str, str]]:
    """Chat messages from `(("user" "text") ...)`, a list of {"role":..,"content":..}, or a string."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise arg_error(fname, "messages", 'a list of messages like (("user" "Hello"))', value)
    out = []
    for m in value:
        if isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m):
            out.append({"role": m[0], "content": m[1]})
        elif isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str):
            out.append({k: v for k, v in m.items() if isinstance(v, str)})
        else:
            raise LispEError(f"{fname}: argument 'messages': a message is (\"role\" \"text\") or "
                             f"{{\"role\":\"user\" \"content\":\"text\"}}, got {describe(m)}")
    return out


@builtin("tokenizer_chat", group=G_TOK, library=LIB, min_args=1, max_args=2, ctx=True)
def tokenizer_chat(ctx: Any, *args: Any) -> Integers:
    """(tokenizer_chat '(("user" "What is the capital of France?")))

    Token ids of a conversation rendered with the model's chat template, ending with the prompt of the
    assistant's turn. Messages: (("system" "...") ("user" "...")) or a list of {"role":.. "content":..}.
    """
    fname = "tokenizer_chat"
    tok, (messages,) = _split_tokenizer(fname, ctx, args, 1)
    msgs = _messages(fname, messages)
    with core_errors(fname):
        return Integers(tok.apply_chat_template(msgs, add_generation_prompt=True))


@builtin("tokenizer_vocab_size", group=G_TOK, library=LIB, min_args=0, max_args=1, ctx=True)
def tokenizer_vocab_size(ctx: Any, *args: Any) -> int:
    """(tokenizer_vocab_size)

    The number of token ids of the default tokenizer, or of the one given: (tokenizer_vocab_size tok).
    """
    tok, _ = _split_tokenizer("tokenizer_vocab_size", ctx, args, 0)
    return tok.vocab_size


# ===================================================================================== generation
@builtin("torch_generator_create", group=G_GEN, library=LIB, min_args=1, max_args=2)
def torch_generator_create(model: Any, device: Any = None) -> TorchGenerator:
    """(torch_generator_create model "cpu")

    A text generator for a model on a device ("cpu", "cuda", "cuda:N", "mps"; default: the model's).
    The model is moved to that device. The generator starts with the default config (greedy,
    max_length 50 new tokens, temperature 1, top_k 50, top_p 1).
    """
    fname = "torch_generator_create"
    m = _model(fname, model)
    dev = m.device if device is None else device_arg(fname, "device", device)
    if m.device != dev:
        with core_errors(fname):
            m.to(device=dev)
    return TorchGenerator(m, dev)


@builtin("torch_generator_config", group=G_GEN, library=LIB, ctx=True)
def torch_generator_config(ctx: Any, generator: Any, config: Any) -> TorchGenerator:
    """(torch_generator_config generator {"max_length":50 "temperature":0.8 "strategy":"top_p"})

    Sets generation parameters from a dictionary or an association list (("key" value) ...) (later
    pairs win); keys not given keep their values. Every key is validated first: on any error the
    generator is unchanged. Keys: see docs/lispe_torch.md (max_length, temperature, top_k, top_p,
    strategy, repetition_penalty, eos_token_id, pad_token_id, do_sample, num_beams, seed, ...).
    """
    fname = "torch_generator_config"
    gen = _generator(fname, generator)
    pairs = config_pairs(fname, "config", config, ctx)
    with core_errors(fname):
        gen.configure(pairs)
    return gen


@builtin("torch_set_generation_params", group=G_GEN, library=LIB, min_args=1, max_args=5)
def torch_set_generation_params(generator: Any, max_length: Any = None, temperature: Any = None,
                                top_k: Any = None, top_p: Any = None) -> TorchGenerator:
    """(torch_set_generation_params generator 50 0.8 40 0.9)

    Sets max_length (new tokens), temperature, top_k and top_p at once; nil leaves a value unchanged.
    All four are validated first: on any error the generator is unchanged.
    """
    fname = "torch_set_generation_params"
    gen = _generator(fname, generator)
    pairs = [(k, v) for k, v in (("max_length", max_length), ("temperature", temperature),
                                 ("top_k", top_k), ("top_p", top_p)) if v is not None]
    with core_errors(fname):
        gen.configure(pairs)
    return gen


@builtin("torch_generator_info", group=G_GEN, library=LIB)
def torch_generator_info(generator: Any) -> dict:
    """(torch_generator_info generator)

    The generator's settings as a dictionary (every config key; unset ones are nil), plus "device".
    """
    gen = _generator("torch_generator_info", generator)
    out: dict[str, Any] = {}
    for key, v in gen.config.to_dict().items():
        if key in tv.FUNCTION_KEYS:
            v = None if not v else True
        elif v is False:
            v = None
        out[key] = Integers(v) if isinstance(v, list) and all(tv.is_int(x) for x in v) else v
    out["device"] = str(gen.device)
    return out


def _with_strategy(fname: str, cfg: GenerationConfig, strategy: Any) -> GenerationConfig:
    """The generator's config with a call's `strategy` argument (None: unchanged), checked."""
    if strategy is None:
        return cfg
    if not isinstance(strategy, str):
        raise arg_error(fname, "strategy", 'a strategy name like "greedy"', strategy)
    try:
        return cfg.update({"strategy": strategy})
    except GenerationError as exc:
        raise LispEError(f"{fname}: argument 'strategy': {exc}") from None


@builtin("torch_generator_chain", group=G_GEN, library=LIB, min_args=1, max_args=2)
def torch_generator_chain(generator: Any, strategy: Any = None) -> str:
    """(torch_generator_chain generator "top_p")

    The logits processors the generator's settings apply, in order, as text:
    "(chain (repetition_penalty 1.1) (temperature 0.7) (top_p 0.9))". strategy, if given, is the one
    a torch_generate call would use.
    """
    fname = "torch_generator_chain"
    gen = _generator(fname, generator)
    cfg = _with_strategy(fname, gen.config, strategy)
    with core_errors(fname):
        return active_chain(gen.model, cfg).describe()


@builtin("torch_generate", group=G_GEN, library=LIB, min_args=2, max_args=3, ctx=True)
def torch_generate(ctx: Any, generator: Any, input_ids: Any, strategy: Any = None) -> torch.Tensor:
    """(torch_generate generator input_ids "greedy")

    Prompt + new token ids as a tensor: 1-D in -> 1-D out, 2-D (a batch) in -> 2-D out. input_ids:
    integers, a list, a matrix, or a tensor. A float [batch, seq, hidden] tensor is taken as prompt
    embeddings; there are no prompt ids then, so the result holds the new tokens only (as
    transformers' generate(inputs_embeds=...)). strategy ("greedy", "top_k", "top_p", "sample",
    "beam_search") overrides the generator's for this call only.
    """
    fname = "torch_generate"
    gen = _generator(fname, generator)
    model = gen.model
    embeds = None
    if isinstance(input_ids, torch.Tensor) and input_ids.is_floating_point():
        ids: Any = None
        embeds = _prompt_embeddings(fname, model, input_ids)
    else:
        ids = ids_arg(fname, "input_ids", input_ids)
    cfg = _with_strategy(fname, gen.config, strategy)
    prompt = ids if embeds is None else embeds[..., 0]
    single = isinstance(prompt, torch.Tensor) and (prompt.dim() == 1 or prompt.shape[0] == 1)
    cfg, progress = _with_progress(cfg, single)
    try:
        with core_errors(fname):
            return generate(model, ids, cfg, tokenizer=_model_tokenizer(ctx, model), inputs_embeds=embeds)
    finally:
        if progress is not None:
            progress.close()


@builtin("torch_generate_text", group=G_GEN, library=LIB, min_args=2, max_args=3, ctx=True)
def torch_generate_text(ctx: Any, generator: Any, prompt: Any, config: Any = None) -> Any:
    """(torch_generate_text generator "Once upon a time" {"max_length":30})

    Encodes the prompt (a string, or token ids), generates, and returns only the new text. The config
    applies to this call only. With "callback", (callback token-id text-piece) is called for each new
    token as it is produced (streaming).
    """
    fname = "torch_generate_text"
    gen = _generator(fname, generator)
    if isinstance(prompt, str):
        p: Any = prompt
    else:
        p = ids_to_list(fname, "prompt", prompt)
        if p and isinstance(p[0], list):
            raise LispEError(f"{fname}: argument 'prompt': one prompt (use torch_generate_batch for several)")
    cfg = _call_config(fname, gen, config, ctx)
    tok = _model_tokenizer(ctx, gen.model)
    if tok is None:
        raise LispEError(f"{fname}: the model has no tokenizer and none is loaded: use (tokenizer_load path)")
    cfg, progress = _with_progress(cfg, True)
    try:
        with core_errors(fname):
            out = generate_text(gen.model, p, cfg, tokenizer=tok)
    finally:
        if progress is not None:
            progress.close()
    return Strings(out) if isinstance(out, list) else out


@builtin("torch_generate_batch", group=G_GEN, library=LIB, min_args=2, max_args=3, ctx=True)
def torch_generate_batch(ctx: Any, generator: Any, prompts: Any, config: Any = None) -> Strings:
    """(torch_generate_batch generator (strings "Hello" "The sky is") {"max_length":20})

    The new text for each prompt of a list (strings or lists of ids, of any lengths: they are
    left-padded internally and generated together). The config applies to this call only.
    """
    fname = "torch_generate_batch"
    gen = _generator(fname, generator)
    if not isinstance(prompts, list) or not prompts:
        raise arg_error(fname, "prompts", "a non-empty list of prompts (strings or lists of ids)", prompts)
    items = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            items.append(p)
        elif isinstance(p, (list, torch.Tensor)):
            ids = ids_to_list(fname, "prompts", p)
            if not ids or isinstance(ids[0], list):
                raise LispEError(f"{fname}: argument 'prompts': prompt {i} must be a string or a "
                                 f"non-empty list of token ids")
            items.append(ids)
        else:
            raise LispEError(f"{fname}: argument 'prompts': prompt {i} must be a string or a list of "
                             f"token ids, got {describe(p)}")
    cfg = _call_config(fname, gen, config, ctx)
    tok = _model_tokenizer(ctx, gen.model)
    if tok is None:
        raise LispEError(f"{fname}: the model has no tokenizer and none is loaded: use (tokenizer_load path)")
    with core_errors(fname):
        return Strings(generate_batch(gen.model, items, cfg, tokenizer=tok))


@builtin("torch_sequence_logprobs", group=G_GEN, library=LIB)
def torch_sequence_logprobs(model: Any, ids: Any) -> Any:
    """(torch_sequence_logprobs model ids)

    The log-probability of each token given the ones before it (floats; one list per row for a
    batch). Perplexity is (exp (- (/ (sum lp) (size lp)))).
    """
    fname = "torch_sequence_logprobs"
    m = _model(fname, model)
    t = ids_arg(fname, "ids", ids)
    if not isinstance(t, torch.Tensor):
        raise LispEError(f"{fname}: argument 'ids': rows must have the same length")
    with core_errors(fname):
        lp = sequence_logprobs(m, t)
    return tensor_to_lisp(lp.float())


# ===================================================================================== metrics, traces
def _one_prompt(fname: str, prompt: Any) -> Any:
    """A single prompt: a string, or token ids (integers, a list, a 1-D tensor)."""
    if isinstance(prompt, str):
        return prompt
    p = ids_to_list(fname, "prompt", prompt)
    if not p or isinstance(p[0], list):
        raise LispEError(f"{fname}: argument 'prompt': one prompt: a string or a non-empty list of token ids")
    return p


def _tokenizer_or_none(ctx: Any, model: DecoderModel) -> Tokenizer | None:
    return _model_tokenizer(ctx, model)


def _top_to_lisp(top: list) -> list:
    return [[i, t, lp] for i, t, lp in top]


@builtin("torch_generate_scored", group=G_GEN, library=LIB, min_args=2, max_args=4, ctx=True)
def torch_generate_scored(ctx: Any, generator: Any, prompt: Any, config: Any = None, top_n: Any = 5) -> dict:
    """(torch_generate_scored generator "Once upon a time" {"max_length":10} 5)

    Generates from one prompt (greedy or sampling) and scores every new token. A dictionary: "ids",
    "text", "tokens" (one dictionary per token: "id", "text", "logprob" (after the processor chain,
    the distribution the token was chosen from), "raw_logprob" (the model's log_softmax), "top" and
    "raw_top" (the top_n alternatives as (id text logprob))), "sequence_logprob" (sum of logprob),
    "raw_sequence_logprob" and "perplexity" (exp of minus the mean raw_logprob).
    """
    fname = "torch_generate_scored"
    gen = _generator(fname, generator)
    p = _one_prompt(fname, prompt)
    n = expect_int(fname, "top_n", top_n, 0)
    cfg = _call_config(fname, gen, config, ctx)
    with core_errors(fname):
        r = generate_scored(gen.model, p, cfg, top_n=n, tokenizer=_tokenizer_or_none(ctx, gen.model))
    tokens = []
    for t in r["tokens"]:
        d = {"id": t["id"], "text": t["text"], "logprob": t["logprob"], "raw_logprob": t["raw_logprob"]}
        if "top" in t:
            d["top"] = _top_to_lisp(t["top"])
            d["raw_top"] = _top_to_lisp(t["raw_top"])
        tokens.append(d)
    return {"ids": Integers(r["ids"]), "text": r["text"], "tokens": tokens,
            "sequence_logprob": r["sequence_logprob"], "raw_sequence_logprob": r["raw_sequence_logprob"],
            "perplexity": r["perplexity"]}


def _text_arg(fname: str, arg: str, value: Any) -> Any:
    if isinstance(value, str):
        return value
    ids = ids_to_list(fname, arg, value)
    if ids and isinstance(ids[0], list):
        raise LispEError(f"{fname}: argument '{arg}': one text: a string or a list of token ids")
    return ids


@builtin("torch_perplexity", group=G_GEN, library=LIB, ctx=True)
def torch_perplexity(ctx: Any, model: Any, text: Any) -> float:
    """(torch_perplexity model "The cat sat on the mat.")

    The perplexity of a text (a string, encoded with the model's tokenizer, or token ids) under the
    model: exp of minus the mean log-probability of each token given the previous ones.
    """
    fname = "torch_perplexity"
    m = _model(fname, model)
    t = _text_arg(fname, "text", text)
    with core_errors(fname):
        return perplexity(m, t, tokenizer=_tokenizer_or_none(ctx, m))


@builtin("torch_evaluate", group=G_GEN, library=LIB, ctx=True)
def torch_evaluate(ctx: Any, model: Any, texts: Any) -> dict:
    """(torch_evaluate model (strings "The cat sat." "Paris is in France."))

    Perplexity over a list of texts (strings or token-id lists): a dictionary with "perplexity" (over
    all tokens, token-weighted), "mean_logprob", "tokens" (scored tokens) and "texts" (one dictionary
    per text: "index", "tokens", "logprob", "perplexity").
    """
    fname = "torch_evaluate"
    m = _model(fname, model)
    if not isinstance(texts, list) or not texts:
        raise arg_error(fname, "texts", "a non-empty list of texts (strings or lists of token ids)", texts)
    items = [_text_arg(fname, "texts", t) for t in texts]
    with core_errors(fname):
        return evaluate(m, items, tokenizer=_tokenizer_or_none(ctx, m))


@builtin("torch_generate_trace", group=G_GEN, library=LIB, min_args=2, max_args=3, ctx=True)
def torch_generate_trace(ctx: Any, generator: Any, prompt: Any, config: Any = None) -> list:
    """(torch_generate_trace generator "Once upon a time" {"strategy":"top_p" "max_length":20})

    Generates from one prompt and returns a replayable transcript, an s-expression:
    (trace (format 1) (model ...) (prompt ids...) (seed n) (config ("key" value)...) (chain ...)
    (steps (step token logprob kept)...) (changes ...) (functions ...) (text "...")). A sampling
    config without a seed gets one (recorded), so the trace always replays.
    """
    fname = "torch_generate_trace"
    gen = _generator(fname, generator)
    p = _one_prompt(fname, prompt)
    cfg = _call_config(fname, gen, config, ctx)
    with core_errors(fname):
        return generate_trace(gen.model, p, cfg, tokenizer=_tokenizer_or_none(ctx, gen.model)).to_sexp()


def _trace_arg(fname: str, arg: str, value: Any) -> Trace:
    if not isinstance(value, (list, str)):
        raise arg_error(fname, arg, "a trace (from torch_generate_trace) or its printed form", value)
    with core_errors(fname):
        return Trace.loads(value) if isinstance(value, str) else Trace.from_sexp(value)


@builtin("torch_replay", group=G_GEN, library=LIB, min_args=2, max_args=3, ctx=True)
def torch_replay(ctx: Any, generator: Any, trace: Any, config: Any = None) -> list:
    """(torch_replay generator trace)

    Runs a trace's generation again (its prompt, config, seed and recorded on_step changes; the
    generator's own settings are not used) and returns the new trace: the same tokens, so
    (torch_trace_diff trace (torch_replay generator trace)) is nil. The trace may be its printed
    string. config may only give the function keys a trace cannot hold: "logits_processor",
    "stop_when", "callback".
    """
    fname = "torch_replay"
    gen = _generator(fname, generator)
    t = _trace_arg(fname, "trace", trace)
    pairs = dict(config_pairs(fname, "config", config, ctx))
    with core_errors(fname):
        return replay(gen.model, t, pairs, tokenizer=_tokenizer_or_none(ctx, gen.model)).to_sexp()


@builtin("torch_trace_diff", group=G_GEN, library=LIB)
def torch_trace_diff(first: Any, second: Any) -> Any:
    """(torch_trace_diff trace1 trace2)

    nil when the two traces chose the same tokens, else a dictionary: "step" (the first divergent
    step), "reason" ("token", "length" when one stopped earlier, or "prompt"), "first" and "second"
    (that step of each trace as (token logprob kept), nil where a trace has ended).
    """
    fname = "torch_trace_diff"
    a, b = _trace_arg(fname, "first", first), _trace_arg(fname, "second", second)
    d = trace_diff(a, b)
    if d is None:
        return None
    return {"step": d["step"], "reason": d["reason"],
            "first": None if d["first"] is None else list(d["first"]),
            "second": None if d["second"] is None else list(d["second"])}


def _token_ids_arg(fname: str, scores: torch.Tensor, ids: Any) -> torch.Tensor:
    lst = ids_to_list(fname, "ids", ids)
    if lst and isinstance(lst[0], list):
        raise LispEError(f"{fname}: argument 'ids': a list of token ids")
    vocab = scores.shape[-1]
    bad = [i for i in lst if not 0 <= i < vocab]
    if bad:
        raise LispEError(f"{fname}: argument 'ids': token ids {bad[:5]} are outside the scores' "
                         f"vocabulary (0..{vocab - 1})")
    return torch.tensor(lst, dtype=torch.long, device=scores.device)


def _scores_arg(fname: str, scores: Any) -> torch.Tensor:
    t = expect_tensor(fname, "scores", scores)
    if not t.is_floating_point() or t.dim() == 0:
        raise LispEError(f"{fname}: argument 'scores': expected float scores [..., vocab], got "
                         f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}")
    return t


@builtin("torch_ban_tokens", group=G_GEN, library=LIB)
def torch_ban_tokens(scores: Any, ids: Any) -> torch.Tensor:
    """(torch_ban_tokens scores (integers 13 42))

    The scores with the given token ids set to -inf (never chosen): for logits_processor lambdas,
    (lambda (ids scores) (torch_ban_tokens scores (integers 13))).
    """
    fname = "torch_ban_tokens"
    t = _scores_arg(fname, scores)
    return t.index_fill(-1, _token_ids_arg(fname, t, ids), float("-inf"))


@builtin("torch_bias_tokens", group=G_GEN, library=LIB)
def torch_bias_tokens(scores: Any, ids: Any, bias: Any) -> torch.Tensor:
    """(torch_bias_tokens scores (integers 13 42) 2.5)

    The scores with bias added to the given token ids (negative: less likely): for logits_processor
    lambdas, (lambda (ids scores) (torch_bias_tokens scores (integers 13) 5.0)).
    """
    fname = "torch_bias_tokens"
    t = _scores_arg(fname, scores)
    b = expect_real(fname, "bias", bias)
    idx = _token_ids_arg(fname, t, ids)
    out = t.clone()
    out[..., idx] += b
    return out


# ===================================================================================== tensors
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


# ===================================================================================== compatibility
class KVContext:
    """`torch_hf_enable_kv_cache`'s value: a model's KV cache driven step by step by torch_hf_forward.

    Each forward with the context appends its tokens after the previous ones. Generation on the same
    model reuses the cache buffers, so it ends the context (the next forward with it is an error).
    """

    lisp_type = "torch_kv_cache_"

    def __init__(self, model: DecoderModel, capacity: int):
        self.model = model
        self.capacity = capacity
        self.pos = 0
        self.batch = 0

    def forward(self, fname: str, ids: torch.Tensor) -> torch.Tensor:
        model = self.model
        b, t = ids.shape
        if self.pos == 0:
            model.setup_cache(b, self.capacity)
            self.batch = b
        elif b != self.batch:
            raise LispEError(f"{fname}: this KV cache holds a batch of {self.batch}, got {b} rows")
        elif model.kv_len != self.pos:
            raise LispEError(f"{fname}: the KV cache was reused by another generation on this model; "
                             f"create a new one with torch_hf_enable_kv_cache")
        if self.pos + t > self.capacity:
            raise LispEError(f"{fname}: the KV cache is full ({self.capacity} tokens)")
        pos = torch.arange(self.pos, self.pos + t, device=model.device)
        with torch.inference_mode():
            logits = model(ids.to(model.device), pos)
        self.pos += t
        return logits.clone()


register_type(KVContext, "torch_kv_cache_",
                 lambda c: f"#<kv_cache {c.model.config.arch} {c.pos}/{c.capacity} tokens>")


@builtin("torch_hf_enable_kv_cache", group=G_COMPAT, library=LIB, min_args=1, max_args=2)
def torch_hf_enable_kv_cache(model: Any, enable: Any = True) -> Any:
    """(torch_hf_enable_kv_cache model true)

    A KV cache context for step-by-step decoding with torch_hf_forward (nil when enable is nil).
    """
    m = _model("torch_hf_enable_kv_cache", model)
    if not enable:
        return None
    return KVContext(m, min(m.config.max_position_embeddings, 4096))


def _batch_ids_in_vocab(fname: str, m: Any, input_ids: Any) -> torch.Tensor:
    """The `input_ids` argument as a [batch, seq] LongTensor whose ids are all in `m`'s vocabulary."""
    ids = ids_arg(fname, "input_ids", input_ids)
    if not isinstance(ids, torch.Tensor):
        raise LispEError(f"{fname}: argument 'input_ids': rows must have the same length")
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    vocab = m.config.vocab_size
    if bool(((ids < 0) | (ids >= vocab)).any()):
        raise LispEError(f"{fname}: argument 'input_ids': token ids outside the vocabulary (0..{vocab - 1})")
    return ids


@builtin("torch_hf_forward", group=G_COMPAT, library=LIB, min_args=2, max_args=3)
def torch_hf_forward(model: Any, input_ids: Any, context: Any = None) -> torch.Tensor:
    """(torch_hf_forward model (tensor_unsqueeze (torch_tensor ids) 0))

    Logits [batch, seq, vocab] for token ids (1-D ids are taken as one row). With a KV cache context
    from torch_hf_enable_kv_cache, the tokens continue the cached sequence.
    """
    fname = "torch_hf_forward"
    m = _model(fname, model)
    ids = _batch_ids_in_vocab(fname, m, input_ids)
    if context is not None:
        if not isinstance(context, KVContext) or context.model is not m:
            raise arg_error(fname, "context", "a KV cache of this model (torch_hf_enable_kv_cache)", context)
        with core_errors(fname):
            return context.forward(fname, ids)
    if ids.shape[1] > m.config.max_position_embeddings:
        raise LispEError(f"{fname}: {ids.shape[1]} tokens exceed the model's context "
                         f"({m.config.max_position_embeddings})")
    with core_errors(fname), torch.inference_mode():
        return m.forward_full(ids.to(m.device)).clone()


@builtin("torch_hf_embeddings", group=G_COMPAT, library=LIB)
def torch_hf_embeddings(model: Any, input_ids: Any) -> torch.Tensor:
    """(torch_hf_embeddings model ids)

    The model's input embeddings of token ids: [batch, seq, hidden] (1-D ids give a batch of one).
    """
    fname = "torch_hf_embeddings"
    m = _model(fname, model)
    ids = _batch_ids_in_vocab(fname, m, input_ids)
    with torch.no_grad():
        return m.embed(ids.to(m.device)).detach().float().cpu()


_HF_OPTION_KEYS = ("greedy", "topk", "topp", "temperature", "top_k", "top_p", "repetition_penalty",
                   "callback", "data", "seed", "strategy")


@builtin("torch_hf_generate", group=G_COMPAT, library=LIB, min_args=4, max_args=5, ctx=True)
def torch_hf_generate(ctx: Any, model: Any, input_ids: Any, eos_id: Any, max_length: Any,
                      options: Any = None) -> Any:
    """(torch_hf_generate model prompt_ids eos_id 100 {"topk":50})

    lispe_torch's one-call generation: prompt + new ids (integers). Without options it samples from
    the full distribution; options: "greedy" true, "topk" K, "topp" P, "temperature", "top_k",
    "top_p", "repetition_penalty", "seed", and "callback" (called as (callback token-id data) with the
    "data" value).
    """
    fname = "torch_hf_generate"
    m = _model(fname, model)
    ids = ids_arg(fname, "input_ids", input_ids)
    eos = None if eos_id is None else expect_int(fname, "eos_id", eos_id, 0)
    n = expect_int(fname, "max_length", max_length, 1)
    opts = dict(config_pairs(fname, "options", options, ctx))
    for key in opts:
        if key not in _HF_OPTION_KEYS:
            raise LispEError(f"{fname}: unknown option \"{key}\"; valid options: "
                             + ", ".join(f'"{k}"' for k in _HF_OPTION_KEYS))
    cfg: dict[str, Any] = {"strategy": "sample", "top_k": 0, "max_length": n, "eos_token_id": eos}
    if "topk" in opts:
        cfg.update(strategy="top_k", top_k=opts["topk"])
    if "topp" in opts:
        cfg.update(strategy="top_p", top_p=opts["topp"])
    for key in ("temperature", "top_k", "top_p", "repetition_penalty", "seed", "strategy"):
        if key in opts:
            cfg[key] = opts[key]
    if opts.get("greedy"):
        cfg["strategy"] = "greedy"
    if opts.get("callback") is not None:
        fn, data = opts["callback"], opts.get("data")
        cfg["callback"] = lambda tok, piece: fn(tok, data)
    with core_errors(fname):
        out = generate(m, ids, GenerationConfig.from_dict(cfg), tokenizer=_model_tokenizer(ctx, m))
    return Integers(out.tolist()) if out.dim() == 1 else out


__all__ = ["KVContext", "TorchGenerator"]


from . import torch_quant  # noqa: E402,F401  (registers torch_model_quantize with this library)
