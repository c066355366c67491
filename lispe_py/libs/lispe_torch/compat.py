"""Compatibility with the guide's lower-level `torch_hf_*` calls."""
from __future__ import annotations

from typing import Any

import torch

from ...builtins.registry import builtin
from ...errors import LispEError
from ...hints import did_you_mean
from ...generation import GenerationConfig, generate
from ...models import DecoderModel
from ...values import Integers, register_type
from ..torch_values import arg_error, config_pairs, core_errors, expect_int, ids_arg

from ._common import _model, _model_tokenizer, LIB, G_COMPAT


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
            raise LispEError(f"{fname}: unknown option \"{key}\"{did_you_mean(key, _HF_OPTION_KEYS)}; "
                             "valid options: "
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
