"""Generators and text generation."""
from __future__ import annotations

from typing import Any

import torch

from ...builtins._common import describe
from ...builtins.registry import builtin
from ...errors import LispEError
from ...engines import LocalEngine
from ...generation import GenerationConfig, GenerationError, active_chain
from ...generation import sequence_logprobs
from ...generation.advice import effective_strategy, ignored_sampling
from ...values import Integers, Strings
from .. import torch_values as tv
from ..torch_values import (TorchGenerator, arg_error, config_pairs, core_errors, device_arg, ids_arg,
                            ids_to_list, tensor_to_lisp)

from ._common import (_engine, _model, _generator, _model_tokenizer, _call_config, _with_progress, _prompt_embeddings,
                      _advise_sampling,
                      LIB, G_GEN)


@builtin("torch_generator_create", group=G_GEN, library=LIB, min_args=1, max_args=2)
def torch_generator_create(model: Any, device: Any = None) -> TorchGenerator:
    """(torch_generator_create model "cpu")

    A text generator for a model on a device ("cpu", "cuda", "cuda:N", "mps"; default: the model's).
    The model is moved to that device. The generator starts with the default config (greedy,
    max_length 50 new tokens, temperature 1, top_k 50, top_p 1).
    """
    fname = "torch_generator_create"
    engine = _engine(fname, model)
    if not isinstance(engine, LocalEngine):     # a remote model: it runs where its server is
        if device is not None:
            raise LispEError(f"{fname}: argument 'device': {engine.describe()} runs on its server; "
                             f"give no device")
        return TorchGenerator(engine, "remote")
    m = engine.model
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

    The generator's settings as a dictionary (every config key; unset ones are nil), plus "device",
    "effective_strategy" (the strategy a call without a strategy argument decodes with: "greedy" for a
    sampling strategy with do_sample nil or temperature 0) and "ignored_parameters" (the sampling
    parameters set away from their defaults that this strategy does not use, e.g. ("temperature"
    "top_k" "top_p") for a greedy generator; nil when none).
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
    ignored = ignored_sampling(gen.config)
    out["effective_strategy"] = effective_strategy(gen.config)
    out["ignored_parameters"] = Strings(ignored) if ignored else None
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
        return active_chain(_model(fname, gen), cfg).describe()


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
    model, engine = gen.model, _engine(fname, gen)
    embeds = None
    if isinstance(input_ids, torch.Tensor) and input_ids.is_floating_point():
        ids: Any = None
        embeds = _prompt_embeddings(fname, _model(fname, gen, "input_ids"), input_ids)
    else:
        ids = ids_arg(fname, "input_ids", input_ids)
    cfg = _with_strategy(fname, gen.config, strategy)
    _advise_sampling(fname, gen, cfg)
    prompt = ids if embeds is None else embeds[..., 0]
    single = isinstance(prompt, torch.Tensor) and (prompt.dim() == 1 or prompt.shape[0] == 1)
    cfg, progress = _with_progress(cfg, single)
    try:
        with core_errors(fname):
            return engine.generate(ids, cfg, tokenizer=_model_tokenizer(ctx, model), inputs_embeds=embeds)
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
            out = _engine(fname, gen).generate_text(p, cfg, tokenizer=tok)
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
        texts = _engine(fname, gen).generate_batch(items, cfg, tokenizer=tok)
    return Strings(texts) if None not in texts else list(texts)   # keep_partial: nil for failed prompts


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
