"""Lisp <-> Python conversions and the Lisp-visible types of the `lispe_torch` library.

Importing this module imports torch; only `lispe_py.libs.lispe_torch` imports it (at `(use 'lispe_torch)`).

What lives here (and nothing about sampling: that is `lispe_py.generation`'s job):
- argument checks that raise `LispEError("<function>: <argument>: ...")`;
- conversions: Lisp integers/lists/matrices/tensors -> LongTensor or id lists, Lisp configs
  (dictionaries or association lists `(("k" v) ...)`, later pairs win) -> `(key, value)` pairs for
  `GenerationConfig.update`, Lisp lambdas -> Python callables (through `ctx.call`);
- `TorchGenerator`, the value `torch_generator_create` returns: a model, a device and a validated
  `GenerationConfig`, replaced only by a config that validated;
- the printed forms and `(type x)` names of tensors, models, generators and tokenizers, and the `@` /
  `size` hooks of tensors.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import warnings
from typing import Any, Callable, Iterator

import torch

from ..builtins._common import describe
from ..errors import LispEError
from ..generation import GenerationConfig, GenerationError
from ..models import DecoderModel, ModelError
from ..models.tokenizer import Tokenizer
from ..values import Floats, Integers, Numbers, Strings, register_type

TENSOR_DTYPES: dict[str, torch.dtype] = {
    "int64": torch.long, "long": torch.long, "int32": torch.int32, "int": torch.int32,
    "float32": torch.float32, "float": torch.float32, "float64": torch.float64, "double": torch.float64,
    "float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16, "bool": torch.bool,
}

# Config keys whose Lisp `nil` means false (LispE has no separate false value), not "the default".
BOOL_KEYS = ("do_sample", "early_stopping")
FUNCTION_KEYS = ("callback", "logits_processor", "stop_when", "on_step")
# Function keys that also take a list of functions.
FUNCTION_LIST_KEYS = ("logits_processor", "stop_when", "on_step")


#: The range of a 64-bit tensor element (torch.long).
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


# ------------------------------------------------------------------------------------ errors
def arg_error(fname: str, arg: str, what: str, value: Any) -> LispEError:
    """`fname: argument 'arg': expected what, got <type> <value>`."""
    return LispEError(f"{fname}: argument '{arg}': expected {what}, got {describe(value)}")


@contextlib.contextmanager
def core_errors(fname: str) -> Iterator[None]:
    """Turn the core's errors into LispE errors naming `fname`; show its warnings on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except LispEError:
            raise
        except (GenerationError, ModelError) as exc:
            raise LispEError(f"{fname}: {exc}") from None
        except torch.cuda.OutOfMemoryError:
            raise LispEError(f"{fname}: out of GPU memory: reduce max_length or the batch size, or use "
                             f"the \"cpu\" device") from None
        finally:
            for w in caught:
                warn(str(w.message), fname)


_WARNED: set[str] = set()


def warn(message: str, fname: str | None = None, once: bool = True) -> None:
    """A `Warning: fname: message` line on stderr, once per distinct message (every time with
    once=False: the caller decides, e.g. once per generator)."""
    if not once or message not in _WARNED:
        _WARNED.add(message)
        print(f"Warning: {fname + ': ' if fname else ''}{message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ progress
def progress_enabled() -> bool:
    """Progress lines go to stderr unless LISPE_TORCH_PROGRESS=0."""
    return os.environ.get("LISPE_TORCH_PROGRESS", "1") != "0"


@contextlib.contextmanager
def loading(what: str) -> Iterator[None]:
    """`Loading X ...` then `... done (N s)` on stderr around a long step."""
    show = progress_enabled()
    start = time.perf_counter()
    if show:
        print(f"[lispe_torch] loading {what} ...", file=sys.stderr, flush=True)
    yield
    if show:
        print(f"[lispe_torch] loaded {what} in {time.perf_counter() - start:.1f} s",
              file=sys.stderr, flush=True)


class TokenProgress:
    """Counts generated tokens; after 2 s, keeps one `generating: n/max tokens` line up to date on a
    terminal's stderr (nothing when stderr is not a terminal)."""

    def __init__(self, total: int):
        self.total = total
        self.count = 0
        self.start = time.perf_counter()
        self.shown = False
        self.tty = progress_enabled() and sys.stderr.isatty()

    def __call__(self, token_id: int, piece: str) -> None:
        self.count += 1
        if not self.tty:
            return
        elapsed = time.perf_counter() - self.start
        if elapsed > 2.0:
            self.shown = True
            rate = self.count / elapsed
            sys.stderr.write(f"\r[lispe_torch] generating: {self.count}/{self.total} tokens "
                             f"({rate:.1f} tokens/s)")
            sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 70 + "\r")
            sys.stderr.flush()


# ------------------------------------------------------------------------------------ scalars
def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def expect_int(fname: str, arg: str, x: Any, lo: int | None = None) -> int:
    if isinstance(x, torch.Tensor) and x.dim() == 0 and not x.is_floating_point():
        x = int(x)
    if not is_int(x):
        raise arg_error(fname, arg, "an integer", x)
    if lo is not None and x < lo:
        raise LispEError(f"{fname}: argument '{arg}' must be >= {lo}, got {x}")
    return x


def expect_real(fname: str, arg: str, x: Any) -> float:
    if isinstance(x, torch.Tensor) and x.dim() == 0:
        x = x.item()
    if not is_real(x):
        raise arg_error(fname, arg, "a number", x)
    return float(x)


def expect_str(fname: str, arg: str, x: Any) -> str:
    if not isinstance(x, str):
        raise arg_error(fname, arg, "a string", x)
    return x


def expect_tensor(fname: str, arg: str, x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise arg_error(fname, arg, "a tensor", x)
    return x


def as_tensor_arg(fname: str, arg: str, x: Any) -> torch.Tensor:
    """A tensor argument; Lisp numbers and lists are converted (so `(tensor_add t 1)` works)."""
    if isinstance(x, torch.Tensor):
        return x
    if is_real(x) or isinstance(x, list):
        return to_tensor(fname, arg, x)
    raise arg_error(fname, arg, "a tensor, a number or a list of numbers", x)


def dtype_arg(fname: str, arg: str, name: Any) -> torch.dtype:
    if not isinstance(name, str) or name not in TENSOR_DTYPES:
        raise LispEError(f"{fname}: argument '{arg}': unknown dtype {describe(name)}; valid dtypes: "
                         + ", ".join(f'"{n}"' for n in TENSOR_DTYPES))
    return TENSOR_DTYPES[name]


def shape_arg(fname: str, arg: str, value: Any) -> list[int]:
    """A shape: an integer or a list of non-negative integers (`(integers 2 3)`, `'(2 3)`, a tensor)."""
    if isinstance(value, torch.Tensor) and not value.is_floating_point() and value.dim() <= 1:
        value = value.tolist()
    if is_int(value):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(is_int(v) and v >= 0 for v in value):
        raise arg_error(fname, arg, "a shape: a list of non-negative integers like (integers 2 3)", value)
    return [int(v) for v in value]


def dim_arg(fname: str, arg: str, t: torch.Tensor, dim: Any) -> int:
    d = expect_int(fname, arg, dim)
    n = max(t.dim(), 1)
    if not -n <= d < n:
        raise LispEError(f"{fname}: argument '{arg}': dimension {d} is out of range for a "
                         f"{t.dim()}-D tensor (valid: {-n}..{n - 1})")
    return d


# ------------------------------------------------------------------------------------ tensors
def _nested(fname: str, arg: str, value: Any) -> tuple[list, bool]:
    """A rectangular nested Python list of numbers from Lisp data, and whether any number is a float."""
    has_float = False

    def walk(v: Any, depth: int) -> Any:
        nonlocal has_float
        if isinstance(v, torch.Tensor):
            if v.is_floating_point():
                has_float = True
            return v.tolist()
        if isinstance(v, bool) or v is None:
            raise arg_error(fname, arg, "numbers or lists of numbers", v)
        if isinstance(v, int):
            if not _INT64_MIN <= v <= _INT64_MAX:
                raise arg_error(fname, arg, "integers that fit 64 bits (-2^63 to 2^63-1)", v)
            return int(v)
        if isinstance(v, float):
            has_float = True
            return float(v)
        if isinstance(v, list):
            if isinstance(v, (Floats, Numbers)):
                has_float = True
            if isinstance(v, Strings):
                raise arg_error(fname, arg, "numbers or lists of numbers", v)
            return [walk(x, depth + 1) for x in v]
        raise arg_error(fname, arg, "numbers or lists of numbers", v)

    data = walk(value, 0)
    _check_rectangular(fname, arg, data)
    return data, has_float


def _check_rectangular(fname: str, arg: str, data: Any) -> None:
    if not isinstance(data, list) or not data:
        return
    kinds = {isinstance(x, list) for x in data}
    if len(kinds) > 1:
        raise LispEError(f"{fname}: argument '{arg}': mixes numbers and lists at the same level")
    if kinds == {True}:
        lengths = {len(x) for x in data}
        if len(lengths) > 1:
            raise LispEError(f"{fname}: argument '{arg}': rows have different lengths "
                             f"({', '.join(str(len(x)) for x in data)}); a tensor must be rectangular "
                             f"(torch_generate_batch takes ragged prompts)")
        for x in data:
            _check_rectangular(fname, arg, x)


def to_tensor(fname: str, arg: str, value: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A tensor from Lisp data: integers -> int64, any float -> float32; nested lists must be rectangular."""
    if isinstance(value, torch.Tensor):
        return value if dtype is None else value.to(dtype)
    if is_real(value):
        if is_int(value) and not _INT64_MIN <= value <= _INT64_MAX:
            raise arg_error(fname, arg, "an integer that fits 64 bits (-2^63 to 2^63-1)", value)
        return torch.tensor(value, dtype=dtype or (torch.long if is_int(value) else torch.float32))
    if not isinstance(value, list):
        raise arg_error(fname, arg, "numbers, a list of numbers, a matrix or a tensor", value)
    data, has_float = _nested(fname, arg, value)
    if dtype is None:
        dtype = torch.float32 if has_float else torch.long
    try:
        return torch.tensor(data, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise LispEError(f"{fname}: argument '{arg}': {exc}") from None


def ids_arg(fname: str, arg: str, value: Any) -> torch.Tensor | list:
    """Token ids for the core: a LongTensor (1-D or 2-D), or a ragged list of id lists (left-padded by
    the core). Float or >2-D tensors are refused here (embeddings are handled by the caller)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.dtype == torch.bool:
            raise LispEError(f"{fname}: argument '{arg}': expected integer token ids, got a "
                             f"{str(value.dtype).removeprefix('torch.')} tensor of shape "
                             f"{list(value.shape)}")
        if value.dim() not in (1, 2):
            raise LispEError(f"{fname}: argument '{arg}': expected a 1-D or 2-D tensor of token ids, "
                             f"got shape {list(value.shape)}")
        return value.long()
    if is_int(value):
        return torch.tensor([value], dtype=torch.long)
    if isinstance(value, list):
        if not value:
            raise LispEError(f"{fname}: argument '{arg}': no token ids (empty list)")
        if all(is_int(x) for x in value):
            return torch.tensor([int(x) for x in value], dtype=torch.long)
        if all(isinstance(r, (list, torch.Tensor)) for r in value):
            rows = []
            for i, r in enumerate(value):
                r = r.tolist() if isinstance(r, torch.Tensor) else r
                if not r or not all(is_int(x) for x in r):
                    raise LispEError(f"{fname}: argument '{arg}': row {i} must be a non-empty list of "
                                     f"integer token ids, got {describe(r)}")
                rows.append([int(x) for x in r])
            if len({len(r) for r in rows}) == 1:
                return torch.tensor(rows, dtype=torch.long)
            return rows
    raise arg_error(fname, arg, "token ids: integers, a list, a matrix or a tensor", value)


def tensor_to_lisp(t: torch.Tensor) -> Any:
    """A tensor as Lisp data: 0-D -> number, 1-D -> integers/floats, more -> nested lists of them."""
    t = t.detach()
    if t.dim() == 0:
        return scalar(t)
    if t.dim() == 1:
        values = t.cpu().tolist()
        if t.is_floating_point():
            return Floats(float(v) for v in values)
        if t.dtype == torch.bool:
            return [True if v else None for v in values]
        return Integers(int(v) for v in values)
    return [tensor_to_lisp(row) for row in t]


def scalar(t: torch.Tensor) -> Any:
    v = t.item()
    if isinstance(v, bool):
        return True if v else None
    return v


def ids_to_list(fname: str, arg: str, value: Any) -> list[int] | list[list[int]]:
    """Token ids as a Python list (1-D) or list of lists (2-D), for decoding."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.dim() not in (1, 2):
            raise LispEError(f"{fname}: argument '{arg}': expected a 1-D or 2-D tensor of token ids, "
                             f"got a {str(value.dtype).removeprefix('torch.')} tensor of shape "
                             f"{list(value.shape)}")
        return value.tolist()
    if is_int(value):
        return [value]
    if isinstance(value, list) and all(is_int(x) for x in value):
        return [int(x) for x in value]
    if isinstance(value, list) and value and all(isinstance(r, list) and all(is_int(x) for x in r)
                                                 for r in value):
        return [[int(x) for x in r] for r in value]
    raise arg_error(fname, arg, "token ids: integers, a list of lists of integers or a tensor", value)


# ------------------------------------------------------------------------------------ configs
def config_pairs(fname: str, arg: str, value: Any, ctx: Any) -> list[tuple[str, Any]]:
    """A Lisp config as `(key, value)` pairs in order (later pairs win when applied).

    Accepts a dictionary `{"k":v}` or an association list `(("k" v) ...)`; nil is an empty config.
    Values are converted: typed lists -> lists, lambdas -> Python callables, nil for a boolean key ->
    false.
    """
    if value is None:
        return []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = []
        for item in value:
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
                raise LispEError(
                    f"{fname}: argument '{arg}': a config is a dictionary {{\"key\":value}} or a list of "
                    f"(\"key\" value) pairs; got the entry {describe(item)}")
            items.append((item[0], item[1]))
    else:
        from ..builtins.sets import LispSet
        if isinstance(value, LispSet):  # {"max_length" 30}: braces without key:value read as a set
            raise LispEError(f"{fname}: argument '{arg}': a config is a dictionary, got {describe(value)}; "
                             f"a dictionary writes each pair as key:value, e.g. {{\"max_length\":30}}")
        raise arg_error(fname, arg, "a config: a dictionary or a list of (\"key\" value) pairs", value)
    out = []
    for key, v in items:
        if not isinstance(key, str):
            raise LispEError(f"{fname}: argument '{arg}': config keys are strings, got {describe(key)}")
        out.append((key, config_value(key, v, ctx)))
    return out


def config_value(key: str, v: Any, ctx: Any) -> Any:
    """One config value converted from Lisp to what `GenerationConfig` validates."""
    if key in BOOL_KEYS and v is None:
        return False
    if key in FUNCTION_KEYS and v is not None:
        if isinstance(v, list) and key in FUNCTION_LIST_KEYS and not _is_partial_call(v):
            return [lisp_function(key, f, ctx) for f in v]
        return lisp_function(key, v, ctx)
    if isinstance(v, torch.Tensor):
        return v.tolist() if v.dim() else v.item()
    if isinstance(v, list):
        return [config_value(key, x, ctx) if isinstance(x, (list, torch.Tensor)) else x for x in v]
    return v


def step_params_to_lisp(params: dict) -> dict:
    """An on_step hook's parameters as a Lisp dictionary: "tokens" one integers list per row,
    "text" one string per row (nil without a tokenizer), "finished" true/nil per row."""
    out = dict(params)
    out["tokens"] = [Integers(row) for row in params.get("tokens", [])]
    if params.get("text") is not None:
        out["text"] = Strings(params["text"])
    out["finished"] = [True if f else None for f in params.get("finished", [])]
    return out


def _is_partial_call(v: list) -> bool:
    from ..values import Symbol

    return bool(v) and isinstance(v[0], Symbol)


#: What each function key is called with: (the signature it needs, its number of arguments).
FUNCTION_SIGNATURES = {
    "callback": ("(lambda (token-id text-piece) ...)", 2),
    "logits_processor": ("(lambda (ids scores) ...)", 2),
    "stop_when": ("(lambda (text) ...)", 1),
    "on_step": ("(lambda (step params) ...)", 2),
}


def _check_signature(key: str, fn: Any, ctx: Any) -> None:
    """A user function that cannot take the arguments `key` passes is an error now, before any
    generation: it names the key, the signature needed and what `fn` takes."""
    from ..runtime import Lambda
    from ..values import Symbol

    target = fn
    if isinstance(fn, Symbol):
        try:
            target = ctx.function_named(fn.name)
        except LispEError:
            return  # an unknown name is reported when called, by the call itself
    if target.__class__ is not Lambda:
        return  # builtins and partial calls check their own arguments when called
    signature, n = FUNCTION_SIGNATURES[key]
    code = target.code
    if code.accepts(n):
        return
    params = code.params_text()
    what = "a lambda" if code.kind == "lambda_" else f"the function '{target.name}'"
    raise GenerationError(f"{key}: expected a function like {signature}, got {what} of "
                          f"{code.arity_text().replace('argument', 'parameter')}"
                          f"{' ' + params if params else ''}")


def _in_function_key(key: str, exc: LispEError) -> LispEError:
    """An error raised inside the function given as `key`, its message prefixed with the key and
    the signature that key needs; its position (inside the function) is kept."""
    from ..errors import LispEThrow

    if isinstance(exc, LispEThrow):  # (throw ...) out of a callback is the user's own signal
        return exc
    prefix = f"in {key} {FUNCTION_SIGNATURES[key][0]}: "
    if exc.message.startswith(prefix):
        return exc
    out = LispEError(prefix + exc.message, exc.filename, exc.line, exc.column, exc.source_line)
    out.__cause__ = exc.__cause__
    return out


def lisp_function(key: str, fn: Any, ctx: Any) -> Callable[..., Any]:
    """A Python callable that runs a Lisp function value (lambda, builtin, quoted name, partial call).

    A user function whose parameters cannot take the arguments `key` passes is refused here; an
    error raised while it runs names `key` and the signature it needs (FUNCTION_SIGNATURES).
    """
    from ..runtime import is_function
    from ..values import Symbol

    if not (is_function(fn) or isinstance(fn, Symbol) or (isinstance(fn, list) and _is_partial_call(fn))):
        raise GenerationError(f"{key} must be a function like {FUNCTION_SIGNATURES[key][0]}, "
                              f"got {describe(fn)}")
    _check_signature(key, fn, ctx)

    def run(*args: Any) -> Any:
        try:
            return ctx.call(fn, *args)
        except LispEError as exc:
            raise _in_function_key(key, exc) from None

    if key == "stop_when":
        from ..values import truthy

        def call(text: str) -> bool:                    # (lambda (text) ...) -> true ends the row
            return truthy(run(text))
    elif key == "on_step":
        def call(step: int, params: dict) -> Any:       # (lambda (step params) ...) -> nil or changes
            return run(step, step_params_to_lisp(params))
    else:
        def call(*args: Any) -> Any:
            return run(*args)

    call.lisp_name = getattr(fn, "name", None) or (fn.name if isinstance(fn, Symbol) else "lambda")
    call.__name__ = str(call.lisp_name)
    return call


# ------------------------------------------------------------------------------------ devices
_DEVICE_RE = re.compile(r"cpu|cuda(:\d+)?|mps")


def device_arg(fname: str, arg: str, value: Any) -> torch.device:
    """A torch device from "cpu", "cuda", "cuda:N" or "mps"; an unavailable device is an error."""
    if isinstance(value, torch.device):
        return value
    if not isinstance(value, str) or not _DEVICE_RE.fullmatch(value):
        raise LispEError(f"{fname}: argument '{arg}': unknown device {describe(value)}; use \"cpu\", "
                         f"\"cuda\", \"cuda:N\" or \"mps\"")
    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LispEError(f"{fname}: argument '{arg}': device \"{value}\" is not available: this "
                             f"machine has no CUDA GPU (check with (torch_cuda_is_available)); use \"cpu\"")
        index = int(value.split(":")[1]) if ":" in value else 0
        if index >= torch.cuda.device_count():
            raise LispEError(f"{fname}: argument '{arg}': device \"{value}\" does not exist: this "
                             f"machine has {torch.cuda.device_count()} CUDA device(s)")
    if value == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LispEError(f"{fname}: argument '{arg}': device \"mps\" is not available on this machine; "
                         f"use \"cpu\"")
    return torch.device(value)


def best_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


# ------------------------------------------------------------------------------------ generator
class TorchGenerator:
    """What `torch_generator_create` returns: a model, its device and a validated GenerationConfig.

    The config is only ever replaced by a new, validated one (`GenerationConfig.update` builds it), so a
    rejected config leaves the generator exactly as it was.
    """

    lisp_type = "torch_generator_"

    def __init__(self, model: DecoderModel, device: torch.device, config: GenerationConfig | None = None):
        self.model = model
        self.device = device
        self.config = config or GenerationConfig()

    def configure(self, pairs: list[tuple[str, Any]]) -> None:
        """Apply config pairs (later pairs win); raises GenerationError and changes nothing on error.

        The model's engine checks it now (an id outside the vocabulary warns; a remote model refuses
        what its server cannot run). `model` is a DecoderModel or an engine (a remote model).
        """
        from ..engines import engine_for

        config = self.config.update(pairs)
        engine_for(self.model).check_config(config)
        self.config = config


# ------------------------------------------------------------------------------------ printing
def human_count(n: int) -> str:
    """134515008 -> "134.5M"."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def model_repr(model: DecoderModel) -> str:
    """`#<torch_model llama 134.5M vocab=... float32 cpu>`; a quantized model adds its quantization and
    what holds its parameters: `quantization=int4 storage=int4:106.2M+Q8_0:28.3M+float32:35.1K`."""
    from ..models.footprint import footprint

    c = model.config
    counts = footprint(model)
    text = (f"#<torch_model {c.arch} {human_count(counts['parameters'])} vocab={c.vocab_size} "
            f"layers={c.num_layers} hidden={c.hidden_size} context={c.max_position_embeddings} "
            f"{_dtype_name(model.dtype)} {model.device}")
    quantized = getattr(model, "quantization", None)
    if quantized is not None or len(counts["by_storage"]) > 1:
        if quantized is not None:
            text += f" quantization={quantized.mode}"
        text += " storage=" + "+".join(f"{k}:{human_count(n)}" for k, n in counts["by_storage"].items())
    return text + ">"


def generator_repr(gen: TorchGenerator) -> str:
    cfg = gen.config
    from ..engines import engine_for

    parts = [f"model={engine_for(gen.model).describe()}",
             f"strategy={_strategy_note(cfg)}", f"max_length={cfg.max_length}",
             f"temperature={cfg.temperature:g}", f"top_k={cfg.top_k}", f"top_p={cfg.top_p:g}"]
    defaults = GenerationConfig()
    for key in ("repetition_penalty", "num_beams", "min_new_tokens", "min_p", "typical_p",
                "presence_penalty", "frequency_penalty", "no_repeat_ngram_size", "length_penalty",
                "early_stopping", "num_return_sequences", "eos_token_id", "pad_token_id", "bos_token_id",
                "seed", "stop", "bad_words"):
        v = getattr(cfg, key)
        if v != getattr(defaults, key):
            parts.append(f"{key}={_short(v)}")
    if not cfg.do_sample:
        parts.append("do_sample=false")
    if cfg.callback is not None:
        parts.append("callback")
    for key in ("logits_processor", "stop_when", "on_step"):
        if getattr(cfg, key):
            parts.append(f"{key}={len(getattr(cfg, key))}")
    parts.append(f"device={gen.device}")
    return "#<generator " + " ".join(parts) + ">"


def _strategy_note(cfg: GenerationConfig) -> str:
    """The strategy a call decodes with, and what it leaves aside: `greedy`, `greedy (ignores
    temperature top_k top_p)`, `greedy (top_p with do_sample=false)`, `top_k (ignores top_p)`."""
    from ..generation.advice import effective_strategy, greedy_because, ignored_sampling

    notes = []
    why = greedy_because(cfg)
    if why is not None:
        notes.append(f"{cfg.strategy} with {why}")
    ignored = ignored_sampling(cfg)
    if ignored:
        notes.append("ignores " + " ".join(ignored))
    return effective_strategy(cfg) + (f" ({'; '.join(notes)})" if notes else "")


def _short(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "(" + " ".join(_short(x) for x in v) + ")"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def tokenizer_repr(tok: Tokenizer) -> str:
    return f"#<tokenizer vocab={tok.vocab_size} bos={tok.bos_token} eos={tok.eos_token}>"


def tensor_repr(t: torch.Tensor) -> str:
    return repr(t.detach())


def _tensor_at(self: torch.Tensor, index: Any) -> Any:
    """`(@ t i)`: row/element i of a tensor; a 0-D result comes back as a Lisp number."""
    if self.dim() == 0:
        raise LispEError("at: a 0-D tensor (a single number) cannot be indexed")
    i = expect_int("at", "index", index)
    n = self.shape[0]
    if not -n <= i < n:
        raise LispEError(f"at: index {i} is out of range for a tensor of size {n}")
    out = self[i]
    return scalar(out) if out.dim() == 0 else out


def _tensor_size(self: torch.Tensor) -> int:
    """`(size t)`: the length of the first dimension (1 for a 0-D tensor)."""
    return int(self.shape[0]) if self.dim() else 1


def _tensor_operand_check(self: torch.Tensor, name: str, a: Any, b: Any) -> None:
    """Arithmetic and comparison between a tensor and a Lisp integer: the integer must fit a 64-bit
    tensor element (-2^63 .. 2^63-1); torch would wrap 2^63 around to -2^63 without a word, and
    refuse larger ones with a Python OverflowError."""
    for x in (a, b):
        if is_int(x) and not _INT64_MIN <= x <= _INT64_MAX:
            from ..errors import shorten
            from ..printer import int_to_str

            raise LispEError(f"{name}: the integer {shorten(int_to_str(x), 60)} does not fit a tensor element "
                             f"(64-bit integers: {_INT64_MIN} to {_INT64_MAX})")


def register() -> None:
    """Declare the library's types to the printer and `(type x)`; give tensors `@` and `size`."""
    register_type(torch.Tensor, "tensor_", tensor_repr)
    register_type(DecoderModel, "torch_model_", model_repr)
    register_type(TorchGenerator, "torch_generator_", generator_repr)
    register_type(Tokenizer, "tokenizer_", tokenizer_repr)
    # `@` and `size` look for these hooks on library values (lispe_py/builtins/lists.py).
    torch.Tensor.lisp_at = _tensor_at
    torch.Tensor.lisp_size = _tensor_size
    # `+ - * / %` and comparisons call it before a tensor's operator (lispe_py/builtins/arith.py).
    torch.Tensor.lisp_operand_check = _tensor_operand_check
