"""`Constraint`: a logits processor that applies a token automaton to every row of a batch.

Rows are tracked by content: each row's state is stored under the tuple of tokens it has generated,
so a row's state is found again whatever the caller did to the batch in between (beam search
reorders, duplicates and drops rows every step without telling its processors). A new row is
resolved from its parent (the same tokens minus the last one) in one automaton step, or replayed
from the start if its parent is unknown. `reorder(index)` is still offered to keep `is_complete(row)`
/ `can_continue(row)` / `finished_rows()` aligned when a caller reorders without calling the
processor again.

Per step the Python work is one dictionary lookup per row plus one `torch.stack` of cached masks: no
work proportional to the vocabulary once a state's mask is cached.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch

from ..processors import LogitsProcessor
from .automata import DEAD, Automaton

ENDED = -2        # the row produced an EOS: it is finished, the constraint no longer applies
NEG_INF = -math.inf


class Constraint(LogitsProcessor):
    """Disallowed tokens -> -inf, per row, following an automaton; EOS only when the output is complete.

    - While the text is complete (a full match) the EOS ids are allowed as well.
    - When it is complete and no token can follow, only the EOS ids are allowed: generation stops.
    - Rows that already produced an EOS are left unchanged (the decode loop pads them), and so are
      rows holding a token the constraint did not allow (only possible when something else forced it).
    """

    name = "constraint"

    def __init__(self, automaton: Automaton, eos_token_ids: Iterable[int], kind: str, spec_text: str):
        self.automaton = automaton
        self.kind = kind
        self.spec_text = spec_text
        self.eos = sorted({int(e) for e in eos_token_ids})
        self._eos_set = set(self.eos)
        self._start: int | None = None
        self._by_key: dict[tuple, int] = {}
        self._keys: list[tuple] = []
        self._states: list[int] = []
        self._banned: dict[tuple[int, int], torch.Tensor | None] = {}

    # ------------------------------------------------------------------ description
    def describe(self) -> str:
        return f"({self.kind} {self.spec_text})"

    # ------------------------------------------------------------------ state tracking
    def reset(self) -> None:
        """Forget every row (the next call starts a new generation)."""
        self._start = None
        self._by_key = {}
        self._keys = []
        self._states = []

    def _advance(self, state: int, token: int) -> int:
        if state == ENDED:
            return ENDED
        if token in self._eos_set:
            return ENDED
        if state == DEAD:
            return DEAD
        return self.automaton.advance(state, token)

    def _resolve(self, key: tuple) -> int:
        state = self._by_key.get(key)
        if state is not None:
            return state
        if key:
            parent = self._by_key.get(key[:-1])
            if parent is not None:
                return self._advance(parent, key[-1])
        state = self.automaton.initial()
        for tok in key:
            state = self._advance(state, tok)
        return state

    def states_for(self, input_ids: torch.Tensor) -> list[int]:
        """Each row's automaton state for these sequences (the first call fixes the prompt length)."""
        if self._start is None or input_ids.shape[-1] < self._start:
            self.reset()
            self._start = int(input_ids.shape[-1])
        rows = input_ids[:, self._start:].tolist()
        by_key: dict[tuple, int] = {}
        keys, states = [], []
        for row in rows:
            key = tuple(row)
            s = by_key.get(key)
            if s is None:
                s = by_key[key] = self._resolve(key)
            keys.append(key)
            states.append(s)
        self._by_key, self._keys, self._states = by_key, keys, states
        return states

    # ------------------------------------------------------------------ masks
    def _banned_row(self, state: int, vocab: int, device: torch.device) -> torch.Tensor | None:
        """Bool [vocab] of tokens to ban in this state (None: leave the row unchanged)."""
        key = (state, vocab)
        if key in self._banned:
            out = self._banned[key]
            return out if out is None or out.device == device else out.to(device)
        if state in (ENDED, DEAD):
            # ended with an EOS, or holding a token the constraint never allowed (a finished row fed
            # padding, a beam candidate kept at -inf): nothing to enforce, and banning everything
            # would turn the row's scores into NaNs for the sampler
            out = None
        else:
            allowed = torch.zeros(vocab, dtype=torch.bool)
            eos = torch.tensor([e for e in self.eos if e < vocab], dtype=torch.long)
            m = self.automaton.mask(state)
            n = min(vocab, m.shape[0])
            allowed[:n] = m[:n]
            if self.automaton.is_complete(state):
                allowed[eos] = True
            # nothing allowed (complete, no EOS id): the row is finished, see `finished_rows`
            out = None if not bool(allowed.any()) else ~allowed
        self._banned[key] = out
        return out if out is None else out.to(device)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        states = self.states_for(input_ids)
        vocab, device = scores.shape[-1], scores.device
        rows = [self._banned_row(s, vocab, device) for s in states]
        if all(r is None for r in rows):
            return scores
        if any(r is None for r in rows):
            free = torch.zeros(vocab, dtype=torch.bool, device=device)
            rows = [free if r is None else r for r in rows]
        banned = rows[0].unsqueeze(0) if len(rows) == 1 else torch.stack(rows)
        return scores.masked_fill(banned, NEG_INF)

    # ------------------------------------------------------------------ queries
    def reorder(self, index: Sequence[int] | torch.Tensor) -> None:
        """Row i becomes old row index[i] (as `model.reorder_cache`)."""
        idx = index.tolist() if isinstance(index, torch.Tensor) else list(index)
        self._keys = [self._keys[i] for i in idx]
        self._states = [self._states[i] for i in idx]

    def state(self, row: int) -> int:
        return self._states[row]

    def is_complete(self, row: int) -> bool:
        """Row's text (as of the last call) is a full match (or the row already ended with an EOS)."""
        s = self._states[row]
        return s == ENDED or (s >= 0 and self.automaton.is_complete(s))

    def can_continue(self, row: int) -> bool:
        """Some token may still follow the row's text."""
        s = self._states[row]
        return s >= 0 and self.automaton.can_continue(s)

    def stop_criterion(self, input_ids: torch.Tensor, new_tokens: torch.Tensor) -> torch.Tensor:
        """A stop criterion for `generate(..., stopping=[c.stop_criterion])`: True for the rows whose
        text (`input_ids`, the new token included) is complete and can take no further token, so
        they end right there, without spending a step on an EOS (and also when the model has none).

        Beam search calls it on candidate rows that this processor has not seen; they are resolved
        from their parents, and remembered for the next call.
        """
        if self._start is None:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        out = []
        for row in input_ids[:, self._start:].tolist():
            key = tuple(row)
            s = self._by_key.get(key)
            if s is None:
                s = self._by_key[key] = self._resolve(key)
            out.append(s >= 0 and self.automaton.is_complete(s) and not self.automaton.can_continue(s))
        return torch.tensor(out, dtype=torch.bool, device=input_ids.device)

    def finished_rows(self, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Bool [rows]: complete with nothing that can follow (or ended). Pass `input_ids` to first
        bring the rows up to date with tokens appended since the last call."""
        if input_ids is not None:
            self.states_for(input_ids)
        return torch.tensor([self.is_complete(r) and not self.can_continue(r)
                             for r in range(len(self._states))], dtype=torch.bool)
