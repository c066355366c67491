"""`torch_model_quantize`: weight-only int8/int4 quantization from Lisp, and `torch_model_set_activations`:
the width the native 4-bit kernels round activations to (part of `(use 'lispe_torch)`).

The builtin is registered with `library="lispe_torch"`, so it is visible after `(use 'lispe_torch)` once
this module is imported; `lispe_py.libs.lispe_torch` imports it at its end. The work is done by
`lispe_py.models.quantize.quantize_model` (docs/performance.md); this module only checks the Lisp
arguments and turns the models layer's errors into LispE errors naming the function.
"""
from __future__ import annotations

from typing import Any

from ..builtins._common import describe
from ..builtins.registry import builtin
from ..errors import LispEError
from ..models.quantize import ACTIVATION_BITS, GROUP_SIZES, MODES, PER_CHANNEL, quantize_model, set_activations
from .lispe_torch import G_MODEL, LIB, _model
from .torch_values import arg_error, core_errors, is_int


def quantize_args(fname: str, mode: Any, group_size: Any = None,
                  names: tuple[str, str] = ("argument 'mode'", "argument 'group_size'")) -> tuple[str, int | None]:
    """(mode, group size or None for the default) from Lisp values, or a LispE error naming `fname` and
    the argument (`names`: how the two values are called in the message: arguments here, config keys for
    a load config)."""
    if not isinstance(mode, str) or mode not in MODES:
        raise LispEError(f"{fname}: {names[0]}: unknown quantization {describe(mode)}; valid: "
                         + ", ".join(f'"{m}"' for m in MODES))
    if group_size is None:
        return mode, None
    allowed = GROUP_SIZES + ((PER_CHANNEL,) if mode == "int8" else ())
    if not is_int(group_size) or group_size not in allowed:
        extra = f" or {PER_CHANNEL} (one scale per output channel)" if mode == "int8" else ""
        raise LispEError(f"{fname}: {names[1]}: expected one of " + ", ".join(map(str, GROUP_SIZES))
                         + f"{extra}, got {describe(group_size)}")
    return mode, group_size


def load_options(fname: str, quantize: Any, group_size: Any) -> tuple[str | None, int | None]:
    """The `quantize`/`group_size` values of a load config (torch_hf_load_model), checked: (None, None)
    when neither is given; a group size without "quantize" is an error."""
    if quantize is None and group_size is None:
        return None, None
    if quantize is None:
        raise LispEError(f'{fname}: config "group_size" needs "quantize" ("int8" or "int4")')
    return quantize_args(fname, quantize, group_size, ('config "quantize"', 'config "group_size"'))


def activations_arg(fname: str, name: str, value: Any) -> str:
    """An activation width name ("int16" / "int8") from Lisp, or a LispE error naming `fname` and `name`
    (the builtin's argument or the load config's key)."""
    if not isinstance(value, str) or value not in ACTIVATION_BITS:
        raise arg_error(fname, name, " or ".join(f'"{n}"' for n in ACTIVATION_BITS), value)
    return value


@builtin("torch_model_quantize", group=G_MODEL, library=LIB, min_args=2, max_args=3)
def torch_model_quantize(model: Any, mode: Any, group_size: Any = None) -> Any:
    """(torch_model_quantize model "int8")

    Quantizes the model's linear layers in place (weights only) and returns it: "int8" or "int4", with
    an optional group size. int4: groups of 32 (default), 64 or 128 input columns:
    (torch_model_quantize model "int4" 64). int8: groups of 32, 64 or 128 (a scale and an offset per
    group), or -1 for one scale per output channel; by default groups of 32 where the native kernels
    run (below) and per channel elsewhere. The output head becomes int8 (int4 there costs ~10%
    perplexity); norms, attention and the KV cache keep the model's dtype. On an AVX2 CPU with a C++
    compiler the layers run native kernels built once per machine (~20 s the first time); elsewhere
    they compute in bfloat16 on torch's kernels (int8 groups: a dequantized weight, slower). A model is quantized
    once; a generator given here quantizes its model. To load a quantized model directly (a GGUF's Q4
    blocks kept as they are), see torch_hf_load_model.
    """
    fname = "torch_model_quantize"
    m = _model(fname, model)
    mode, group = quantize_args(fname, mode, group_size)
    quantized = getattr(m, "quantization", None)
    if quantized is not None:
        raise LispEError(f"{fname}: argument 'model': the model is already quantized ({quantized.mode}); "
                         f"load or create it again to quantize it differently")
    with core_errors(fname):
        quantize_model(m, mode, group_size=group, lm_head="auto")
    return model


@builtin("torch_model_set_activations", group=G_MODEL, library=LIB, min_args=2, max_args=2)
def torch_model_set_activations(model: Any, activations: Any) -> Any:
    """(torch_model_set_activations model "int8")

    What the native kernels of a quantized model (torch_model_quantize, or a load with "quantize":
    int4 layers, Q4_K/Q6_K GGUF blocks, int8 layers in groups of 32) round their inputs to: "int16"
    (the default: 1/65534 of each block's largest |x|; float32 for the int8 layers) or "int8"
    (llama.cpp's arithmetic: 1/254, integer products; faster, less exact: greedy ids can part from
    the default's where two logits are close). The load key "activations" does the same at load time.
    Returns the model; an error for a model without such layers (int8 per channel, or a device or CPU
    where the native kernels do not run).
    """
    fname = "torch_model_set_activations"
    m = _model(fname, model)
    activations = activations_arg(fname, "activations", activations)
    with core_errors(fname):
        set_activations(m, activations)
    return model
