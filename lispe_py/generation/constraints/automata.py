"""Token-level automata: which tokens may follow a state, and the state after a token.

An automaton works on interned integer states and knows nothing about batches, rows or EOS (the
processor in `processor.py` adds those):

    s = a.initial()
    m = a.mask(s)               # torch.BoolTensor [tokenizer vocab]: tokens allowed after s
    s2 = a.advance(s, token)    # DEAD (-1) if the token is not allowed
    a.is_complete(s)            # the text so far is a full match
    a.can_continue(s)           # some token may still follow

Masks and transitions are computed on first use and cached on the automaton, which is itself cached
per tokenizer (see `build_constraint`), so repeated generations under the same constraint cost a
dictionary lookup per step.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from .dfa import ByteDFA
from .vocab import VocabIndex

DEAD = -1


class Automaton:
    """Base class of the token automata (see the module docstring)."""

    def __init__(self, vocab: VocabIndex):
        self.vocab = vocab
        self._masks: dict[int, torch.Tensor] = {}
        self._any: dict[int, bool] = {}

    def initial(self) -> int:
        raise NotImplementedError

    def advance(self, state: int, token: int) -> int:
        raise NotImplementedError

    def mask_np(self, state: int) -> np.ndarray:
        raise NotImplementedError

    def is_complete(self, state: int) -> bool:
        raise NotImplementedError

    def mask(self, state: int) -> torch.Tensor:
        """Allowed next tokens after `state` as a bool tensor over the tokenizer's vocabulary."""
        m = self._masks.get(state)
        if m is None:
            arr = self.mask_np(state)
            m = self._masks[state] = torch.from_numpy(np.ascontiguousarray(arr))
            self._any[state] = bool(arr.any())
        return m

    def can_continue(self, state: int) -> bool:
        """Whether any token may follow `state`."""
        if state not in self._any:
            self.mask(state)
        return self._any[state]


class TokenSetAutomaton(Automaton):
    """`allowed_tokens`: one state; every token of the set may come at every step, any output is complete."""

    def __init__(self, vocab: VocabIndex, token_ids: Iterable[int]):
        super().__init__(vocab)
        self.ids = sorted(set(int(t) for t in token_ids))
        arr = np.zeros(vocab.vocab_size, dtype=bool)
        arr[[t for t in self.ids if t < vocab.vocab_size]] = True
        self._arr = arr

    def initial(self) -> int:
        return 0

    def advance(self, state: int, token: int) -> int:
        return 0 if 0 <= token < self.vocab.vocab_size and self._arr[token] else DEAD

    def mask_np(self, state: int) -> np.ndarray:
        return self._arr

    def is_complete(self, state: int) -> bool:
        return True


class DFAAutomaton(Automaton):
    """`regex` and `choices`: a byte DFA indexed against the vocabulary (outlines-style).

    For each DFA state reached, one vectorised walk of the vocabulary trie gives, for every token,
    the DFA state after its bytes (0 = the token cannot follow); the allowed mask is `end != 0`.
    """

    def __init__(self, vocab: VocabIndex, dfa: ByteDFA):
        super().__init__(vocab)
        self.dfa = dfa
        self._ends: dict[int, np.ndarray] = {}

    def _end(self, state: int) -> np.ndarray:
        end = self._ends.get(state)
        if end is None:
            nodes = self.vocab.walk_table(self.dfa.table, state)
            end = self._ends[state] = nodes[self.vocab.token_node]
        return end

    def initial(self) -> int:
        return self.dfa.start if self.dfa.start else DEAD

    def advance(self, state: int, token: int) -> int:
        if state <= 0 or not 0 <= token < self.vocab.vocab_size:
            return DEAD
        s = int(self._end(state)[token])
        return s if s else DEAD

    def mask_np(self, state: int) -> np.ndarray:
        if state <= 0:
            return np.zeros(self.vocab.vocab_size, dtype=bool)
        return self._end(state) != 0

    def is_complete(self, state: int) -> bool:
        return state > 0 and bool(self.dfa.accepting[state])

    def n_states_indexed(self) -> int:
        """How many DFA states have been indexed so far (for tests and benchmarks)."""
        return len(self._ends)
