"""Beam search with transformers' exact semantics, on our static KV cache.

A line-by-line port of transformers' `GenerationMixin._beam_search` (v4.50+ vectorised version) and
its helpers, so the returned ids are identical: log-softmax, then the processor chain (steps 1-4 of
generation.md), accumulated scores, the top `max(2, 1 + n_eos) * num_beams` continuations, finished
hypotheses scored with `sum_logprobs / new_length ** length_penalty` (the EOS counted in the length),
and transformers' early-stopping heuristics for `early_stopping` true / false / "never".
Beam search is deterministic: `do_sample` and the sampling filters do not apply to it.
One deliberate difference: finished hypotheses are padded with `pad_token_id` even when it is 0
(transformers writes `pad_token_id or eos_token_id[0]`, so a pad id of 0 pads with the EOS).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .generate import Plan

_NEG = -1.0e9


def _flatten(t: torch.Tensor) -> torch.Tensor:
    return t.reshape([t.shape[0] * t.shape[1]] + list(t.shape[2:]))


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    while idx.dim() < t.dim():
        idx = idx.unsqueeze(-1)
    return torch.take_along_dim(t, idx, dim=1)


def beam_search(model: Any, plan: "Plan") -> tuple[torch.Tensor, torch.Tensor]:
    """Run beam search for `plan`; returns (output ids, new tokens per output row)."""
    cfg, special, prompt = plan.config, plan.special, plan.prompt
    num_beams, nrs = cfg.beams, cfg.num_return_sequences
    length_penalty, early_stopping = cfg.length_penalty, cfg.early_stopping
    batch, p = prompt.ids.shape
    device = prompt.ids.device
    max_length = p + plan.max_new
    rows = batch * num_beams

    ids = prompt.ids.repeat_interleave(num_beams, dim=0)
    pad_lengths = prompt.pad_lengths.repeat_interleave(num_beams)
    eos = torch.tensor(special.eos, dtype=torch.long, device=device) if special.eos else None
    beams_to_keep = max(2, 1 + len(special.eos)) * num_beams
    top_num_beam_mask = torch.cat((torch.ones(num_beams, dtype=torch.bool),
                                   torch.zeros(beams_to_keep - num_beams, dtype=torch.bool))).to(device)
    stop_check = _BeamStops(plan) if cfg.stop else None

    running_sequences = torch.full((batch, num_beams, max_length), special.pad, dtype=torch.int64,
                                   device=device)
    running_sequences[:, :, :p] = ids.view(batch, num_beams, p)
    sequences = running_sequences.clone()
    running_beam_scores = torch.zeros((batch, num_beams), dtype=torch.float, device=device)
    running_beam_scores[:, 1:] = _NEG
    beam_scores = torch.full((batch, num_beams), _NEG, dtype=torch.float, device=device)
    is_sent_finished = torch.zeros((batch, num_beams), dtype=torch.bool, device=device)
    heuristic_unsatisfied = torch.ones((batch, 1), dtype=torch.bool, device=device)
    running_beam_indices = torch.full((batch, num_beams, max_length - p), -1, dtype=torch.int32,
                                      device=device)
    beam_indices = running_beam_indices.clone()
    batch_offset = torch.arange(batch, device=device).view(-1, 1) * num_beams

    kv_mask = None
    if prompt.padded:
        slots = torch.arange(max_length, device=device)
        kv_mask = slots[None, :] >= pad_lengths[:, None]
    model.setup_cache(rows, max_length)
    pos = torch.arange(p, device=device)
    position_ids = (pos[None, :] - pad_lengths[:, None]).clamp(min=0) if kv_mask is not None else None
    if prompt.embeds is not None:
        logits = model.prefill(None, inputs_embeds=prompt.embeds.repeat_interleave(num_beams, dim=0))
    else:
        logits = model.prefill(ids, position_ids=position_ids, kv_mask=kv_mask)
    chain = plan.chain if len(plan.chain) else None
    vocab = logits.shape[-1]

    cur_len = p
    while True:
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        if chain is not None:
            log_probs = chain(_flatten(running_sequences[:, :, :cur_len]), log_probs)
        log_probs = log_probs.view(batch, num_beams, vocab) + running_beam_scores[:, :, None]
        log_probs = log_probs.reshape(batch, num_beams * vocab)

        # c. the top-K continuations over all beams
        topk_log_probs, topk_indices = torch.topk(log_probs, k=beams_to_keep)
        topk_beam = topk_indices // vocab
        topk_running_beam_indices = _gather(running_beam_indices, topk_beam)
        topk_running_sequences = _gather(running_sequences, topk_beam)
        topk_ids = topk_indices % vocab
        topk_running_sequences[:, :, cur_len] = topk_ids
        topk_running_beam_indices[:, :, cur_len - p] = (topk_beam + batch_offset).to(torch.int32)

        # d. which continuations finish here (max length, EOS, stop string)
        hits = torch.full_like(topk_ids, cur_len + 1 >= max_length, dtype=torch.bool)
        if eos is not None:
            hits |= torch.isin(topk_ids, eos)
        if stop_check is not None:
            hits |= stop_check(topk_running_sequences, cur_len)
        for criterion in plan.stopping:
            hits |= criterion(_flatten(topk_running_sequences[:, :, :cur_len + 1]),
                              topk_ids.reshape(-1)).to(torch.bool).view(batch, beams_to_keep)

        # e. the best unfinished num_beams continuations keep running
        topk_running_log_probs = topk_log_probs + hits.to(torch.float32) * _NEG
        next_topk = torch.topk(topk_running_log_probs, k=num_beams)[1]
        running_sequences = _gather(topk_running_sequences, next_topk)
        running_beam_scores = _gather(topk_running_log_probs, next_topk)
        running_beam_indices = _gather(topk_running_beam_indices, next_topk)

        # f. finished hypotheses among the top num_beams enter the finished set if they score better
        just_finished = hits & top_num_beam_mask[None, :]
        fin_scores = topk_log_probs / ((cur_len + 1 - p) ** length_penalty)
        beams_full = torch.all(is_sent_finished, dim=-1, keepdim=True) & (early_stopping is True)
        fin_scores = fin_scores + beams_full.to(torch.float32) * _NEG
        fin_scores = fin_scores + (~heuristic_unsatisfied).to(torch.float32) * _NEG
        fin_scores = fin_scores + (~just_finished) * _NEG
        merged_sequences = torch.cat((sequences, topk_running_sequences), dim=1)
        merged_scores = torch.cat((beam_scores, fin_scores), dim=1)
        merged_beam_indices = torch.cat((beam_indices, topk_running_beam_indices), dim=1)
        merged_finished = torch.cat((is_sent_finished, just_finished), dim=1)
        top_merged = torch.topk(merged_scores, k=num_beams)[1]
        sequences = _gather(merged_sequences, top_merged)
        beam_scores = _gather(merged_scores, top_merged)
        beam_indices = _gather(merged_beam_indices, top_merged)
        is_sent_finished = _gather(merged_finished, top_merged)

        # g. stopping condition of the search as a whole
        cur_len += 1
        if early_stopping == "never" and length_penalty > 0.0:
            best_len = max_length - p
        else:
            best_len = cur_len - p
        best_running = running_beam_scores[:, :1] / (best_len ** length_penalty)
        worst_finished = torch.where(is_sent_finished, torch.min(beam_scores, dim=1, keepdim=True)[0], _NEG)
        heuristic_unsatisfied = heuristic_unsatisfied & torch.any(best_running > worst_finished, dim=-1,
                                                                  keepdim=True)
        improvement_possible = bool(torch.any(heuristic_unsatisfied))
        open_beam = not (bool(torch.all(is_sent_finished)) and early_stopping is True)
        valid_continuations = not bool(torch.all(hits))
        if not (improvement_possible and open_beam and valid_continuations):
            break

        # next step: reorder the cache to the surviving beams, feed their newest token
        model.reorder_cache(_flatten(running_beam_indices[..., cur_len - 1 - p]).long())
        step_position_ids = (cur_len - 1 - pad_lengths)[:, None] if kv_mask is not None else None
        logits = model.decode(_flatten(running_sequences[:, :, cur_len - 1]), cur_len - 1,
                              step_position_ids, kv_mask)

    sequences = _flatten(sequences[:, :nrs, :])
    beam_indices = _flatten(beam_indices[:, :nrs, :])
    new_lengths = (beam_indices + 1).bool().sum(dim=1)
    out = sequences[:, :p + int(new_lengths.max())]
    if prompt.padded:
        col = torch.arange(out.shape[1], device=device)[None, :]
        out = out.masked_fill(col < prompt.pad_lengths.repeat_interleave(nrs)[:, None], special.pad)
    if prompt.one_d and out.shape[0] == 1:
        out = out[0]
    return out, new_lengths


class _BeamStops:
    """Stop strings on beam candidates: decode a short window of each candidate's new tokens.

    A running beam never contains a completed stop string (it would have finished), so a stop string
    found in the window must end in the newest token.
    """

    def __init__(self, plan: "Plan"):
        self.stop = plan.config.stop
        self.tokenizer = plan.tokenizer
        self.window = 4 * max(len(s) for s in self.stop) + 4
        self.p = plan.prompt.ids.shape[1]

    def __call__(self, seqs: torch.Tensor, cur_len: int) -> torch.Tensor:
        start = max(self.p, cur_len + 1 - self.window)
        windows = seqs[:, :, start:cur_len + 1].reshape(-1, cur_len + 1 - start).tolist()
        hits = [any(s in self.tokenizer.decode(w, skip_special_tokens=True) for s in self.stop)
                for w in windows]
        return torch.tensor(hits, dtype=torch.bool, device=seqs.device).view(seqs.shape[0], seqs.shape[1])
