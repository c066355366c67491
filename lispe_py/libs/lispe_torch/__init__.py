"""`(use 'lispe_torch)`: the Lisp API of the text generation engine (docs/lispe_torch.md).

Thin bindings: each function checks and converts its Lisp arguments (`torch_values`), calls the models
layer (`lispe_py.models`) or the generation core (`lispe_py.generation`), and turns their errors into
LispE errors naming the function and the argument. No sampling logic lives here. One module per group:
`models`, `tokenizers`, `generation`, `metrics` (scores, traces, logit helpers), `tensors`, `compat`
(the guide's `torch_hf_*` calls); `_common` holds the argument helpers they share.

Importing this package imports torch; the interpreter imports it only when a script runs
`(use 'lispe_torch)`.
"""
from __future__ import annotations

from ..torch_values import TorchGenerator
from . import compat, generation, metrics, models, remote, tensors, tokenizers  # noqa: F401  (register builtins)
from ._common import _DEFAULT_TOKENIZER, G_COMPAT, G_GEN, G_MODEL, G_TENSOR, G_TOK, LIB, _model  # noqa: F401
from .compat import KVContext
from .models import _LOAD_KEYS  # noqa: F401

__all__ = ["KVContext", "TorchGenerator"]

from .. import torch_quant  # noqa: E402,F401  (registers torch_model_quantize with this library)
