"""Shared helpers of the lispe_torch bindings: argument checks, default tokenizers, configs."""
from __future__ import annotations

import weakref
from typing import Any

import torch

from ...engines import Engine, LocalEngine, engine_for
from ...errors import LispEError
from ...generation import GenerationConfig
from ...generation.advice import sampling_warning
from ...models import DecoderModel
from ...models.tokenizer import Tokenizer
from .. import torch_values as tv
from ..torch_values import TorchGenerator, arg_error, config_pairs, core_errors

LIB = "lispe_torch"
G_MODEL, G_TOK, G_GEN, G_TENSOR, G_COMPAT = ("torch-models", "torch-tokenizers", "torch-generation",
                                             "torch-tensors", "torch-compat")

tv.register()

# The default tokenizer of each interpreter (set by torch_hf_load_model and tokenizer_load).
_DEFAULT_TOKENIZER: "weakref.WeakKeyDictionary[Any, Tokenizer]" = weakref.WeakKeyDictionary()


# ===================================================================================== helpers
def _model(fname: str, value: Any, arg: str = "model") -> DecoderModel:
    """A model argument: a model, or a generator (its model). A remote model is refused: only the
    functions that go through its engine (`_engine`) run on a server."""
    if isinstance(value, TorchGenerator):
        value = value.model
    if isinstance(value, DecoderModel):
        return value
    if isinstance(value, Engine):
        raise LispEError(f"{fname}: argument '{arg}': {value.describe()} runs only generation and "
                         f"tokenizer calls; {fname} needs a local model")
    raise arg_error(fname, arg, "a model (from torch_model_create or torch_hf_load_model)", value)


def _engine(fname: str, value: Any, arg: str = "model") -> Engine:
    """The generation engine of a model, a remote model or a generator (lispe_py.engines)."""
    if isinstance(value, TorchGenerator):
        value = value.model
    if isinstance(value, (DecoderModel, Engine)):
        return engine_for(value)
    raise arg_error(fname, arg, "a model (from torch_hf_load_model or torch_remote_model)", value)


def _generator(fname: str, value: Any) -> TorchGenerator:
    if not isinstance(value, TorchGenerator):
        raise arg_error(fname, "generator", "a generator (from torch_generator_create)", value)
    return value


def _engine_info(fn: Any) -> Any:
    """torch_model_info for any engine: a model whose engine is not the local one (a remote model)
    answers with its engine's info(); a local model's dictionary is `fn`'s."""
    import functools

    @functools.wraps(fn)
    def info(model: Any) -> dict:
        engine = _engine("torch_model_info", model)
        if not isinstance(engine, LocalEngine):
            return engine.info()
        return fn(model)
    return info


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
        if isinstance(first, (DecoderModel, TorchGenerator, Engine)):
            tok = _engine(fname, first, "tokenizer").tokenizer
            if tok is None:
                raise LispEError(f"{fname}: argument 'tokenizer': this model has no tokenizer")
            return tok, args[1:]
        raise arg_error(fname, "tokenizer", "a tokenizer (from tokenizer_load)", first)
    return _default_tokenizer(fname, ctx), args


def _model_tokenizer(ctx: Any, model: DecoderModel) -> Tokenizer | None:
    """The tokenizer for a model: its own, else the interpreter's default one."""
    return model.tokenizer if model.tokenizer is not None else _DEFAULT_TOKENIZER.get(ctx.interp)


def _call_config(fname: str, gen: TorchGenerator, config: Any, ctx: Any) -> GenerationConfig:
    """The generator's config with a per-call Lisp config applied (the generator is not changed);
    warns (once per generator) when the call ignores sampling parameters (`_advise_sampling`)."""
    pairs = config_pairs(fname, "config", config, ctx)
    with core_errors(fname):
        cfg = gen.config.update(pairs) if pairs else gen.config
    _advise_sampling(fname, gen, cfg)
    return cfg


# Generators already warned about sampling parameters their calls ignore.
_ADVISED: "weakref.WeakSet[TorchGenerator]" = weakref.WeakSet()


def _advise_sampling(fname: str, gen: TorchGenerator, cfg: GenerationConfig) -> None:
    """A `Warning:` line on stderr, once per generator, when a generation call decodes without sampling
    (greedy or beam search) while sampling parameters are set (temperature, top_k, top_p, min_p,
    typical_p): transformers warns so too. The call runs as configured; torch_generator_info's
    "effective_strategy" and "ignored_parameters" say the same at any time."""
    if gen in _ADVISED:
        return
    message = sampling_warning(cfg)
    if message is not None:
        _ADVISED.add(gen)
        tv.warn(message, fname, once=False)


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
