"""Decoding: `generate`, `stream`, `generate_text`, `generate_batch`, `sequence_logprobs`.

One decode loop serves every non-beam strategy (beam search lives in `beam.py`): the prompt is
prefilled once into the model's static KV cache, then one token per step. A step's Python work is
constant: it never loops over the vocabulary or the sequence (stop strings and streaming use bounded
windows, see `detok.py`).

Inputs: a list of ids, a list of lists (ragged: left-padded here), or a 1-D/2-D LongTensor (2-D may
come with an `attention_mask`; without one, leading `pad_token_id`s of a row are taken as its left
padding, as transformers infers it). Outputs keep that shape: 1-D in -> 1-D out (unless several
sequences are returned), 2-D in -> 2-D out, prompt + new tokens. Rows that finish early, and left
padding, hold `pad_token_id` in the output. With `num_return_sequences = n`, row i's sequences are
output rows i*n .. i*n+n-1 (transformers' layout).

Decoding control (config keys, see docs/guided.md): `stop_when` predicates see each row's new text
(one incremental decoder per row, called when the text grew) and end that row; `on_step` hooks run
after every step with the per-step parameters and may return changes, applied from the next step by
rebuilding the chain (`Plan.changes` records them; `Plan.schedule` replays recorded ones);
`Plan.recorder` observes (logits, scores, tokens) per step for metrics.py and trace.py. Without
these the loop does no extra work.

Seeds: with `seed` set, each row draws from its own generator seeded with `seed` (copy j of a row
with several return sequences uses `seed + j`), and every step draws exactly one uniform number per
row (inverse-CDF sampling), so a prompt gives the same tokens alone or inside a batch.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from .beam import beam_search
from .config import STEP_KEYS, GenerationConfig, GenerationError, SpecialTokens, resolve_special_tokens
from .detok import IncrementalDecoder
from .processors import LogitsChain, LogitsProcessor, build_chain

Event = tuple[int, str]
StopCriterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------- inputs
@dataclass
class Prompt:
    """A batch of prompts ready for the model: left-padded ids, pad counts, and the input's shape."""

    ids: torch.Tensor            # [B, P] long, padding holds a valid id (special.input_pad)
    pad_lengths: torch.Tensor    # [B] long: leading padding positions per row
    one_d: bool                  # the caller gave a single 1-D prompt
    embeds: torch.Tensor | None = None   # [B, P, hidden]: the prompt as embeddings (ids are placeholders)

    @property
    def padded(self) -> bool:
        return bool((self.pad_lengths > 0).any())

    @property
    def text_start(self) -> torch.Tensor:
        """[B] where each row's prompt token ids begin: after its padding, or at the end (embeddings:
        no prompt ids, so processors and decoders see only the new tokens, as in transformers)."""
        if self.embeds is None:
            return self.pad_lengths
        return torch.full_like(self.pad_lengths, self.ids.shape[1])


def _config(config: GenerationConfig | dict | None, overrides: dict) -> GenerationConfig:
    if config is None:
        config = GenerationConfig()
    elif not isinstance(config, GenerationConfig):
        config = GenerationConfig.from_dict(config)
    return config.update(overrides) if overrides else config


def _model_info(model: Any) -> tuple[int, int, torch.device]:
    cfg = model.config
    return int(cfg.vocab_size), int(cfg.max_position_embeddings), model.device


def prepare_prompt(input_ids: Any, special: SpecialTokens, vocab_size: int, device: torch.device,
                   attention_mask: Any = None) -> Prompt:
    """Normalise any accepted input into a left-padded batch; GenerationError on bad ids."""
    one_d = False
    if isinstance(input_ids, torch.Tensor):
        if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise GenerationError(f"input_ids must be integer token ids, got a {input_ids.dtype} tensor")
        if input_ids.dim() == 1:
            one_d = True
            rows = [input_ids.tolist()]
        elif input_ids.dim() == 2:
            rows = input_ids.tolist()
        else:
            raise GenerationError(f"input_ids must be 1-D or 2-D, got shape {tuple(input_ids.shape)}")
    elif isinstance(input_ids, (list, tuple)):
        if all(_is_id(x) for x in input_ids):
            one_d = True
            rows = [list(input_ids)]
        elif all(isinstance(r, (list, tuple, torch.Tensor)) for r in input_ids):
            rows = [r.tolist() if isinstance(r, torch.Tensor) else list(r) for r in input_ids]
        else:
            raise GenerationError("input_ids must be integer token ids: a list of integers or a list of such lists")
    else:
        raise GenerationError(f"input_ids must be a tensor or a list of token ids, got {type(input_ids).__name__}")
    if not rows:
        raise GenerationError("input_ids is empty: no prompt to continue")

    masks: list[list[int]] | None = None
    if attention_mask is not None:
        am = attention_mask.tolist() if isinstance(attention_mask, torch.Tensor) else attention_mask
        if one_d and am and not isinstance(am[0], (list, tuple)):
            am = [am]
        if len(am) != len(rows) or any(len(a) != len(r) for a, r in zip(am, rows)):
            raise GenerationError("attention_mask must have the shape of input_ids")
        masks = [[int(bool(x)) for x in a] for a in am]

    cleaned: list[list[int]] = []
    for i, row in enumerate(rows):
        if not all(_is_id(x) for x in row):
            raise GenerationError(f"prompt {i}: token ids must be integers")
        row = [int(x) for x in row]
        if masks is not None:
            keep = masks[i]
            if any(keep[j] > keep[j + 1] for j in range(len(keep) - 1)):
                raise GenerationError("attention_mask: only left padding is supported")
            row = [t for t, k in zip(row, keep) if k]
        elif not one_d:
            # in a 2-D input, leading pad ids are left padding (if pad is no EOS, as transformers)
            if special.pad not in special.eos:
                n = 0
                while n < len(row) and row[n] == special.pad:
                    n += 1
                row = row[n:]
        if not row:
            if special.bos is None:
                raise GenerationError(f"prompt {i} is empty and the model has no bos_token_id to start from")
            row = [special.bos]
        bad = [t for t in row if not 0 <= t < vocab_size]
        if bad:
            raise GenerationError(f"prompt {i}: token ids {bad[:5]} are outside the vocabulary "
                                  f"(0..{vocab_size - 1})")
        cleaned.append(row)

    width = max(len(r) for r in cleaned)
    ids = torch.full((len(cleaned), width), special.input_pad, dtype=torch.long)
    pads = torch.empty(len(cleaned), dtype=torch.long)
    for i, row in enumerate(cleaned):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        pads[i] = width - len(row)
    return Prompt(ids.to(device), pads.to(device), one_d)


def prepare_embeds(inputs_embeds: Any, hidden: int, special: SpecialTokens, device: torch.device) -> Prompt:
    """A prompt given as embeddings [B, T, hidden] (or [T, hidden] for one row)."""
    e = inputs_embeds
    if not isinstance(e, torch.Tensor) or not e.is_floating_point():
        raise GenerationError(f"inputs_embeds must be a float tensor [batch, seq, {hidden}], "
                              f"got {type(e).__name__ if not isinstance(e, torch.Tensor) else e.dtype}")
    one_d = e.dim() == 2
    if one_d:
        e = e[None]
    if e.dim() != 3 or e.shape[-1] != hidden or e.shape[0] == 0 or e.shape[1] == 0:
        raise GenerationError(f"inputs_embeds must be [batch, seq, {hidden}], got {list(inputs_embeds.shape)}")
    if not bool(torch.isfinite(e).all()):
        raise GenerationError("inputs_embeds contains NaN or infinite values")
    b, t, _ = e.shape
    ids = torch.full((b, t), special.input_pad, dtype=torch.long, device=device)
    return Prompt(ids, torch.zeros(b, dtype=torch.long, device=device), one_d, e.to(device))


def _is_id(x: Any) -> bool:
    return (isinstance(x, numbers.Integral) and not isinstance(x, bool)) or (
        isinstance(x, torch.Tensor) and x.dim() == 0 and not x.is_floating_point())


def resolve_bad_words(config: GenerationConfig, tokenizer: Any) -> list[list[int]] | None:
    """config.bad_words as id sequences. A string bans its tokens both as written and after a space
    (" word"), since BPE vocabularies spell a word differently at the start and inside a text."""
    if not config.bad_words:
        return None
    out: list[list[int]] = []
    for w in config.bad_words:
        if isinstance(w, str):
            if tokenizer is None:
                raise GenerationError(f"bad_words {w!r}: a string needs the model's tokenizer")
            for variant in (w, " " + w):
                ids = list(tokenizer.encode(variant, add_special_tokens=False))
                if ids and ids not in out:
                    out.append(ids)
        else:
            seq = [w] if isinstance(w, int) else list(w)
            if seq not in out:
                out.append(seq)
    return out


# ---------------------------------------------------------------------------- the call plan
@dataclass
class Plan:
    """Everything one generation call needs, validated before the model runs."""

    config: GenerationConfig
    special: SpecialTokens
    prompt: Prompt
    vocab_size: int
    max_new: int
    chain: LogitsChain
    tokenizer: Any
    greedy: bool
    stopping: tuple = ()                      # extra stop criteria (see `generate`)
    result: torch.Tensor | None = None        # set by the run: the output tensor
    new_lengths: torch.Tensor | None = None   # set by the run: new tokens per output row (EOS included)
    # what rebuilding the chain needs when an `on_step` hook changes parameters mid-run
    extra: tuple = ()                         # processors after the user's (constraints), kept as is
    bad_words_ids: Any = None
    ignore: torch.Tensor | None = None
    # observers and replay (metrics.py, trace.py); None in a plain call: the loop does nothing extra
    recorder: Any = None                      # recorder(step, logits, scores, tokens, unfinished)
    schedule: dict | None = None              # {step: {key: value}} applied after that step (replay)
    changes: list = field(default_factory=list)   # set by the run: [(step, {key: value})] applied


def make_plan(model: Any, input_ids: Any, config: GenerationConfig, attention_mask: Any = None,
              tokenizer: Any = None, extra_processors: Iterable[LogitsProcessor] = (),
              stopping: Iterable[StopCriterion] = (), inputs_embeds: Any = None) -> Plan:
    """Validate a call (config against the model, prompt ids, context length) and build its chain."""
    vocab, context, device = _model_info(model)
    special = resolve_special_tokens(config, getattr(model, "special_tokens", None), vocab)
    if inputs_embeds is not None:
        if input_ids is not None or attention_mask is not None:
            raise GenerationError("give a prompt as input_ids or as inputs_embeds, not both "
                                  "(attention_mask goes with input_ids)")
        prompt = prepare_embeds(inputs_embeds, int(model.config.hidden_size), special, device)
    else:
        prompt = prepare_prompt(input_ids, special, vocab, device, attention_mask)
    p = prompt.ids.shape[1]
    if p + config.max_length > context:
        raise GenerationError(
            f"prompt of {p} tokens + max_length {config.max_length} new tokens exceeds the model's "
            f"context of {context} tokens")
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if config.stop and tokenizer is None:
        raise GenerationError("stop strings need the model's tokenizer (the model has none)")
    rows = prompt.ids.shape[0] * (config.beams if config.strategy == "beam_search"
                                  else config.num_return_sequences)
    ignore = (prompt.text_start.repeat_interleave(rows // prompt.ids.shape[0])
              if prompt.padded or prompt.embeds is not None else None)
    if config.stop_when and tokenizer is None:
        raise GenerationError("stop_when needs the model's tokenizer (the model has none)")
    if config.on_step and config.strategy == "beam_search":
        raise GenerationError("on_step hooks work with the greedy and sampling strategies, not beam_search")
    constraint = config_constraint(config, tokenizer, special.eos)
    extra_processors = tuple(extra_processors)
    if constraint is not None:
        extra_processors = extra_processors + (constraint,)
        stopping = tuple(stopping) + (constraint.stop_criterion,)
    if config.stop_when and config.strategy == "beam_search":
        # beams are reordered every step: decode each candidate's new text (the decode loop keeps
        # one incremental decoder per row instead, see _StopWhen)
        stopping = tuple(stopping) + (_BeamStopWhen(config.stop_when, tokenizer, prompt,
                                                     config.beams),)
    bad_words_ids = resolve_bad_words(config, tokenizer)
    chain = build_chain(config, prompt_length=p, eos_token_ids=special.eos, ignore_lengths=ignore,
                        bad_words_ids=bad_words_ids, extra=extra_processors)
    return Plan(config, special, prompt, vocab, config.max_length, chain, tokenizer, config.is_greedy,
                tuple(stopping), extra=extra_processors, bad_words_ids=bad_words_ids, ignore=ignore)


def config_constraint(config: GenerationConfig, tokenizer: Any, eos: Sequence[int]) -> Any:
    """The Constraint processor for the config's constraint key (regex, choices, ...), or None.

    It runs after the user's processors and before the sampling filters, and its stop criterion ends
    a row as soon as its text is complete and nothing more can follow."""
    from .config import CONSTRAINT_KEYS
    for kind in CONSTRAINT_KEYS:
        spec = getattr(config, kind)
        if spec is not None:
            if tokenizer is None:
                raise GenerationError(f"the {kind!r} constraint needs the model's tokenizer (the model has none)")
            from .constraints import build_constraint
            return build_constraint(kind, spec, tokenizer, eos)
    return None


# ---------------------------------------------------------------------------- sampling
class _Sampler:
    """Draws one token per row from softmax(scores) by inverse CDF: one uniform per row per step."""

    def __init__(self, rows: int, seed: int | None, copies: int, device: torch.device):
        self.device = device
        self.generators: list[torch.Generator] | None = None
        if seed is not None:
            self.generators = []
            for r in range(rows):
                g = torch.Generator(device=device)
                g.manual_seed(seed + r % copies)
                self.generators.append(g)

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        rows = scores.shape[0]
        if self.generators is None:
            u = torch.rand(rows, 1, device=self.device, dtype=torch.float64)
        else:
            u = torch.cat([torch.rand(1, generator=g, device=self.device, dtype=torch.float64)
                           for g in self.generators]).view(rows, 1)
        cdf = torch.softmax(scores, dim=-1, dtype=torch.float64).cumsum_(dim=-1)
        tok = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
        return tok.clamp_(max=scores.shape[-1] - 1).view(rows)


# ---------------------------------------------------------------------------- public API
def generate(model: Any, input_ids: Any, config: GenerationConfig | dict | None = None, *,
             attention_mask: Any = None, tokenizer: Any = None,
             processors: Iterable[LogitsProcessor] = (), stopping: Iterable[StopCriterion] = (),
             inputs_embeds: Any = None, **overrides: Any) -> torch.Tensor:
    """Prompt + new tokens as a LongTensor (1-D in -> 1-D out, 2-D -> 2-D) for any strategy.

    With `inputs_embeds` [B, T, hidden] (input_ids None) the prompt is given as embeddings and, as in
    transformers, the output holds only the new tokens and the processors see only those.

    `config` is a GenerationConfig or a dict; `overrides` are config keys for this call only.
    `processors` are extra logits processors (e.g. constraints) run after the user's functions.
    `stopping` are extra stop criteria `(ids [rows, cur_len], new_tokens [rows]) -> bool [rows]`,
    called once per step with each row's ids including the new token (True ends that row, which
    keeps the token, like an EOS).
    With a `callback` in the config, `callback(token_id, piece)` is called for each new token; with
    `stop_when`, `predicate(new_text) -> bool` ends a row; with `on_step`, `hook(step, params)` may
    return parameter changes for the next steps (docs/guided.md).
    """
    config = _config(config, overrides)
    plan = make_plan(model, input_ids, config, attention_mask, tokenizer, processors, stopping,
                     inputs_embeds)
    return _execute(model, plan)


def _execute(model: Any, plan: Plan) -> torch.Tensor:
    if plan.config.callback is not None:
        _check_single(plan, "callback")
        for tok, piece in _token_events(model, plan, _decoder(plan)):
            plan.config.callback(tok, piece)
    else:
        _run(model, plan)
    if plan.prompt.embeds is not None:   # no prompt ids to return: the new tokens only
        plan.result = plan.result[..., plan.prompt.ids.shape[1]:]
    return plan.result


def stream(model: Any, input_ids: Any, config: GenerationConfig | dict | None = None, *,
           tokenizer: Any = None, processors: Iterable[LogitsProcessor] = (),
           stopping: Iterable[StopCriterion] = (), **overrides: Any) -> Iterator[Event]:
    """Yield `(token_id, text_piece)` for each new token of a single prompt, as it is produced.

    The pieces concatenate to the new text (special tokens such as the EOS give ""); a piece may be
    "" while a multi-byte character is incomplete (its text comes with a later token). Beam search
    yields its best sequence at the end. The config's `callback`, if any, is not called.
    The model's KV cache belongs to the running stream: finish (or drop) one stream before starting
    another generation on the same model.
    """
    config = _config(config, overrides)
    plan = make_plan(model, input_ids, config, None, tokenizer, processors, stopping)
    _check_single(plan, "stream")
    if plan.tokenizer is None:
        raise GenerationError("stream needs the model's tokenizer (the model has none)")
    return _token_events(model, plan, _decoder(plan))


def generate_text(model: Any, prompt: str | Sequence[int], config: GenerationConfig | dict | None = None,
                  *, tokenizer: Any = None, **overrides: Any) -> str | list[str]:
    """Encode `prompt`, generate, and return only the new text (cut after a stop string, if any).

    Returns a list of strings when several sequences are returned. Special tokens are left out.
    """
    texts = _texts(model, [prompt], config, tokenizer, overrides)
    return texts[0] if len(texts) == 1 else texts


def generate_batch(model: Any, prompts: Sequence[str | Sequence[int]],
                   config: GenerationConfig | dict | None = None, *, tokenizer: Any = None,
                   **overrides: Any) -> list[str]:
    """New text for each prompt of a ragged batch (left-padded internally), in one batched run.

    With `num_return_sequences` n, prompt i's texts are at i*n .. i*n+n-1.
    """
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence) or not prompts:
        raise GenerationError("generate_batch needs a non-empty list of prompts")
    return _texts(model, list(prompts), config, tokenizer, overrides)


def _texts(model: Any, prompts: list, config: Any, tokenizer: Any, overrides: dict) -> list[str]:
    config = _config(config, overrides)
    tokenizer = _tokenizer(model, tokenizer)
    encoded = []
    for p in prompts:
        if isinstance(p, str):
            encoded.append(list(tokenizer.encode(p)))
        elif isinstance(p, (list, tuple)):
            encoded.append(list(p))
        else:
            raise GenerationError(f"a prompt is a string or a list of token ids, got {type(p).__name__}")
    plan = make_plan(model, encoded, config, None, tokenizer)
    out = _execute(model, plan)
    out = out.view(-1, out.shape[-1])
    width = plan.prompt.ids.shape[1]
    n = out.shape[0] // len(encoded)
    texts = []
    for i, (row, length) in enumerate(zip(out.tolist(), plan.new_lengths.tolist())):
        prompt_ids = plan.prompt.ids[i // n, int(plan.prompt.pad_lengths[i // n]):].tolist()
        texts.append(new_text(tokenizer, prompt_ids, row[width:width + length], config.stop))
    return texts


def active_chain(model: Any, config: GenerationConfig | dict | None = None, **overrides: Any) -> LogitsChain:
    """The processor chain `config` gives on `model`, e.g. to print it: `active_chain(m, cfg).describe()`.

    Prompt-dependent parts (where new tokens start, left padding) are filled in per call by `generate`.
    """
    config = _config(config, overrides)
    vocab = int(model.config.vocab_size)
    special = resolve_special_tokens(config, getattr(model, "special_tokens", None), vocab)
    tokenizer = getattr(model, "tokenizer", None)
    constraint = config_constraint(config, tokenizer, special.eos)
    return build_chain(config, prompt_length=0, eos_token_ids=special.eos,
                       bad_words_ids=resolve_bad_words(config, tokenizer),
                       extra=(constraint,) if constraint is not None else ())


def sequence_logprobs(model: Any, ids: Any) -> torch.Tensor:
    """Log-probability of each token given the ones before it: [T-1] for 1-D ids, [B, T-1] for 2-D.

    Perplexity is `exp(-mean)`. Uses the model's full forward (no cache), in float32.
    """
    vocab, context, device = _model_info(model)
    t = ids if isinstance(ids, torch.Tensor) else torch.tensor(ids, dtype=torch.long)
    if t.is_floating_point() or t.dim() not in (1, 2):
        raise GenerationError("sequence_logprobs takes a 1-D or 2-D list/tensor of token ids")
    one_d = t.dim() == 1
    t = t.view(1, -1) if one_d else t
    if t.shape[1] < 2:
        raise GenerationError("sequence_logprobs needs at least two tokens")
    if t.shape[1] > context:
        raise GenerationError(f"{t.shape[1]} tokens exceed the model's context of {context}")
    if bool(((t < 0) | (t >= vocab)).any()):
        raise GenerationError(f"token ids outside the vocabulary (0..{vocab - 1})")
    t = t.to(device)
    with torch.inference_mode():
        logits = model.forward_full(t)
        lp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, t[:, 1:, None])[..., 0]
    return lp[0] if one_d else lp


# ---------------------------------------------------------------------------- text helpers
def new_text(tokenizer: Any, prompt: Sequence[int], new_ids: Sequence[int],
             stop: Sequence[str] | None) -> str:
    """The text of `new_ids` after `prompt` (decoded with the prompt as context, so a leading space is
    right), without special tokens, cut just after the first stop string."""
    dec = IncrementalDecoder(tokenizer, prompt)
    for t in new_ids:
        dec.push(t)
    dec.flush()
    return cut_at_stop(dec.text, stop)


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """`text` up to and including the earliest stop string."""
    if not stop:
        return text
    ends = [text.find(s) + len(s) for s in stop if s in text]
    return text[:min(ends)] if ends else text


def _tokenizer(model: Any, tokenizer: Any) -> Any:
    tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tok is None:
        raise GenerationError("this model has no tokenizer: pass token ids or load a tokenizer")
    return tok


def _check_single(plan: Plan, what: str) -> None:
    if plan.prompt.ids.shape[0] != 1 or (plan.config.strategy != "beam_search"
                                         and plan.config.num_return_sequences != 1):
        raise GenerationError(f"{what} works with a single prompt and one returned sequence")


def _decoder(plan: Plan) -> IncrementalDecoder | None:
    if plan.tokenizer is None:
        return None
    return IncrementalDecoder(plan.tokenizer, plan.prompt.ids[0, int(plan.prompt.text_start[0]):].tolist())


# ---------------------------------------------------------------------------- decode loops
def _token_events(model: Any, plan: Plan, decoder: IncrementalDecoder | None) -> Iterator[Event]:
    """Run the plan, yielding (token, piece) for row 0 as tokens are chosen; plan.result at the end.

    The last event's piece includes any text held back (a character left incomplete at the end)."""
    def piece(t: int, last: bool) -> str:
        if decoder is None:
            return ""
        text = decoder.push(t)
        return text + decoder.flush() if last else text

    if plan.config.strategy == "beam_search":
        out = _run(model, plan)
        row = out if out.dim() == 1 else out[0]
        p = plan.prompt.ids.shape[1]
        new = row[p:p + int(plan.new_lengths[0])].tolist()
        for i, t in enumerate(new):
            yield t, piece(t, i == len(new) - 1)
        return
    loop = _DecodeLoop(model, plan)
    while not loop.finished:
        with torch.inference_mode():
            nxt, last = loop.step()
        # the consumer runs outside inference mode, between two steps
        t = int(nxt[0])
        yield t, piece(t, last)
    plan.result = loop.output()


def _run(model: Any, plan: Plan) -> torch.Tensor:
    if plan.config.strategy == "beam_search":
        with torch.inference_mode():
            out, plan.new_lengths = beam_search(model, plan)
        plan.result = out.clone()
        return plan.result
    loop = _DecodeLoop(model, plan)
    with torch.inference_mode():
        while not loop.finished:
            loop.step()
    plan.result = loop.output()
    return plan.result


class _DecodeLoop:
    """The greedy / sampling loop, one `step()` per new token (all rows at once).

    The prompt is prefilled on the first step; afterwards each step feeds one token per row through
    the KV cache, applies the chain, picks the next tokens, and updates which rows are finished.
    """

    def __init__(self, model: Any, plan: Plan):
        cfg, special, prompt = plan.config, plan.special, plan.prompt
        self.model, self.plan = model, plan
        copies = cfg.num_return_sequences
        self.ids = prompt.ids.repeat_interleave(copies, dim=0) if copies > 1 else prompt.ids
        self.pad_lengths = prompt.pad_lengths.repeat_interleave(copies) if copies > 1 else prompt.pad_lengths
        rows, self.p = self.ids.shape
        device = self.device = self.ids.device
        total = self.p + plan.max_new
        with torch.inference_mode():
            model.setup_cache(rows, total)
            self.tokens = torch.full((rows, total), special.input_pad, dtype=torch.long, device=device)
            self.tokens[:, :self.p] = self.ids
            self.kv_mask = None
            if prompt.padded:
                slots = torch.arange(total, device=device)
                self.kv_mask = slots[None, :] >= self.pad_lengths[:, None]
            self.eos = torch.tensor(special.eos, dtype=torch.long, device=device) if special.eos else None
            self.unfinished = torch.ones(rows, dtype=torch.bool, device=device)
            self.lengths = torch.full((rows,), plan.max_new, dtype=torch.long, device=device)
        self.copies = copies
        self.greedy = plan.greedy
        self.sampler = None if plan.greedy else _Sampler(rows, cfg.seed, copies, device)
        self.chain = plan.chain if len(plan.chain) else None
        self.stops = _StopStrings(plan, self.ids) if cfg.stop else None
        self.stop_when = _StopWhen(plan, self.ids, cfg.stop_when) if cfg.stop_when else None
        self.recorder = plan.recorder
        # per-step parameter control: user hooks, or the changes a transcript recorded (replay)
        self.hooks = cfg.on_step or ()
        self.schedule = plan.schedule or {}
        self.texts = _RowTexts(plan, self.ids) if self.hooks and plan.tokenizer is not None else None
        self.pad_in = special.input_pad
        self.step_count = 0
        self.cur = self.p
        self.finished = False
        self.next_input: torch.Tensor | None = None

    def _logits(self) -> torch.Tensor:
        model, device = self.model, self.device
        if self.next_input is None:          # prefill (in chunks, reusing a cached prefix: model.prefill)
            position_ids = None
            if self.kv_mask is not None:
                pos = torch.arange(self.p, device=device)
                position_ids = (pos[None, :] - self.pad_lengths[:, None]).clamp(min=0)
            embeds = self.plan.prompt.embeds
            if embeds is not None:
                copies = self.copies
                embeds = embeds.repeat_interleave(copies, dim=0) if copies > 1 else embeds
                return model.prefill(None, inputs_embeds=embeds)
            return model.prefill(self.ids, position_ids=position_ids, kv_mask=self.kv_mask)
        slot = self.cur - 1
        position_ids = (slot - self.pad_lengths)[:, None] if self.kv_mask is not None else None
        return model.decode(self.next_input, slot, position_ids, self.kv_mask,
                            steps_left=self.plan.max_new - self.step_count)

    def step(self) -> tuple[torch.Tensor, bool]:
        """Choose the next token of every row; returns (tokens [rows], whether this was the last step)."""
        logits = self._logits()
        cur = self.cur
        scores = self.chain(self.tokens[:, :cur], logits) if self.chain is not None else logits
        nxt = scores.argmax(dim=-1) if self.greedy else self.sampler(scores)
        nxt = torch.where(self.unfinished, nxt, self.pad_in)
        if self.recorder is not None:
            self.recorder(self.step_count, logits, scores, nxt, self.unfinished)
        self.tokens[:, cur] = nxt
        done = torch.zeros_like(self.unfinished) if self.eos is None else torch.isin(nxt, self.eos)
        if self.stops is not None:
            done = done | self.stops.check(nxt, self.unfinished)
        if self.stop_when is not None:
            done = done | self.stop_when.check(nxt, self.unfinished)
        for criterion in self.plan.stopping:
            done = done | criterion(self.tokens[:, :cur + 1], nxt).to(torch.bool)
        just = done & self.unfinished
        alive = self.unfinished
        self.step_count += 1
        self.cur += 1
        if bool(just.any()):
            self.lengths = torch.where(just, self.step_count, self.lengths)
            self.unfinished = self.unfinished & ~just
            if not bool(self.unfinished.any()):
                self.finished = True
        if self.step_count == self.plan.max_new:
            self.finished = True
        self.next_input = nxt
        if self.hooks or self.schedule:
            self._control(nxt, alive)
        return nxt, self.finished

    # ------------------------------------------------------------------ per-step parameter control
    def params(self) -> dict[str, Any]:
        """The per-step parameters an `on_step` hook sees (and may change): STEP_KEYS and the chain."""
        cfg = self.plan.config
        out: dict[str, Any] = {k: getattr(cfg, k) for k in STEP_KEYS}
        out["strategy"] = cfg.strategy
        out["chain"] = self.plan.chain.describe()
        return out

    def _control(self, nxt: torch.Tensor, alive: torch.Tensor) -> None:
        """After step n: call the hooks (or apply the recorded changes); changes apply from step n+1."""
        n = self.step_count - 1
        changes: dict[str, Any] = dict(self.schedule.get(n, {}))
        if self.hooks:
            if self.texts is not None:
                self.texts.push(nxt, alive)
            params = self.params()
            params["step"] = n
            new = self.tokens[:, self.p:self.cur]
            lengths = torch.clamp(self.lengths, max=self.step_count).tolist()
            params["tokens"] = [row[:k] for row, k in zip(new.tolist(), lengths)]
            params["text"] = None if self.texts is None else list(self.texts.text)
            params["finished"] = [not a for a in self.unfinished.tolist()]
            for hook in self.hooks:
                changes.update(check_step_changes(hook(n, dict(params))))
        if changes and not self.finished:
            self._apply(n, changes)

    def _apply(self, n: int, changes: dict[str, Any]) -> None:
        plan = self.plan
        try:
            cfg = plan.config.update(changes)
        except GenerationError as exc:
            raise GenerationError(f"on_step: {exc}") from None
        plan.config = cfg
        plan.chain = build_chain(cfg, prompt_length=self.p, eos_token_ids=plan.special.eos,
                                 ignore_lengths=plan.ignore, bad_words_ids=plan.bad_words_ids,
                                 extra=plan.extra)
        self.chain = plan.chain if len(plan.chain) else None
        self.greedy = cfg.is_greedy
        if not self.greedy and self.sampler is None:
            self.sampler = _Sampler(self.ids.shape[0], cfg.seed, self.copies, self.device)
        plan.changes.append((n, dict(changes)))

    def output(self) -> torch.Tensor:
        """The output rows (prompt + new tokens, pad_token_id after a row's end and in its padding)."""
        special, prompt, cur = self.plan.special, self.plan.prompt, self.cur
        with torch.inference_mode():
            lengths = torch.clamp(self.lengths, max=self.step_count)
            out = self.tokens[:, :cur]
            if special.pad != self.pad_in or prompt.padded or bool((lengths < self.step_count).any()):
                col = torch.arange(cur, device=self.device)[None, :]
                fill = (col < self.pad_lengths[:, None]) | (col >= self.p + lengths[:, None])
                out = out.masked_fill(fill, special.pad)
        self.plan.new_lengths = lengths.clone()
        out = out.clone()        # a normal tensor (not an inference tensor) for the caller
        return out[0] if prompt.one_d and out.shape[0] == 1 else out


def check_step_changes(value: Any) -> dict[str, Any]:
    """An `on_step` hook's return value as parameter changes: None (no change) or a dict of
    STEP_KEYS; anything else is a GenerationError that says what a hook may return."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GenerationError(
            f"on_step must return nil or a dictionary of parameter changes like {{\"temperature\":0.5}}, "
            f"got {value!r}")
    bad = [k for k in value if k not in STEP_KEYS]
    if bad:
        raise GenerationError(
            f"on_step returned {bad[0]!r}, which cannot change during generation; it may change: "
            f"{', '.join(STEP_KEYS)}")
    return dict(value)


class _RowTexts:
    """The new text of every row, kept up to date token by token (bounded work per step)."""

    def __init__(self, plan: Plan, ids: torch.Tensor):
        pads = plan.prompt.text_start.repeat_interleave(ids.shape[0] // plan.prompt.ids.shape[0])
        self.decoders = [IncrementalDecoder(plan.tokenizer, row[int(pl):].tolist())
                         for row, pl in zip(ids, pads)]
        self.text = [""] * ids.shape[0]

    def push(self, nxt: torch.Tensor, alive: torch.Tensor) -> list[bool]:
        """Add each live row's token; returns which rows' text changed."""
        changed = [False] * len(self.text)
        for r, (tok, a) in enumerate(zip(nxt.tolist(), alive.tolist())):
            if a:
                piece = self.decoders[r].push(tok)
                if piece:
                    self.text[r] += piece
                    changed[r] = True
        return changed


class _StopWhen:
    """`stop_when` predicates on each row's new text, called when a row's text has grown."""

    def __init__(self, plan: Plan, ids: torch.Tensor, predicates: Sequence[Callable[[str], Any]]):
        self.predicates = predicates
        self.texts = _RowTexts(plan, ids)

    def check(self, nxt: torch.Tensor, unfinished: torch.Tensor) -> torch.Tensor:
        changed = self.texts.push(nxt, unfinished)
        hit = torch.zeros_like(unfinished)
        for r, c in enumerate(changed):
            if c and any(p(self.texts.text[r]) for p in self.predicates):
                hit[r] = True
        return hit


class _BeamStopWhen:
    """`stop_when` for beam search: candidates are reordered every step, so each one's new text is
    decoded whole (O(new tokens) per candidate per step)."""

    def __init__(self, predicates: Sequence[Callable[[str], Any]], tokenizer: Any, prompt: Prompt,
                 beams: int):
        self.predicates, self.tokenizer, self.beams = predicates, tokenizer, beams
        self.width = prompt.ids.shape[1]
        self.prompts = [prompt.ids[i, int(pl):].tolist() for i, pl in enumerate(prompt.text_start)]

    def __call__(self, ids: torch.Tensor, new_tokens: torch.Tensor) -> torch.Tensor:
        rows = ids.shape[0]
        per_prompt = rows // len(self.prompts)
        hit = torch.zeros(rows, dtype=torch.bool, device=ids.device)
        for r, row in enumerate(ids[:, self.width:].tolist()):
            text = new_text(self.tokenizer, self.prompts[r // per_prompt], row, None)
            if text and any(p(text) for p in self.predicates):
                hit[r] = True
        return hit


class _StopStrings:
    """Per-row stop-string detection over the text each new token adds (bounded work per step)."""

    def __init__(self, plan: Plan, ids: torch.Tensor):
        self.stop = plan.config.stop
        self.keep = max(len(s) for s in self.stop) - 1
        pads = plan.prompt.text_start.repeat_interleave(ids.shape[0] // plan.prompt.ids.shape[0])
        self.decoders = [IncrementalDecoder(plan.tokenizer, row[int(pl):].tolist())
                         for row, pl in zip(ids, pads)]
        self.tails = [""] * ids.shape[0]

    def check(self, nxt: torch.Tensor, unfinished: torch.Tensor) -> torch.Tensor:
        hit = torch.zeros_like(unfinished)
        for r, (tok, alive) in enumerate(zip(nxt.tolist(), unfinished.tolist())):
            if not alive:
                continue
            piece = self.decoders[r].push(tok)
            if piece:
                text = self.tails[r] + piece
                if any(s in text for s in self.stop):
                    hit[r] = True
                self.tails[r] = text[-self.keep:] if self.keep else ""
        return hit
