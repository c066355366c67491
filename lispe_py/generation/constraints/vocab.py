"""The vocabulary as a byte trie, built once per tokenizer and shared by every constraint.

Every constraint decides which tokens may come next by walking the *bytes* a token stands for through
an automaton. Walking 49k tokens one by one in Python would cost ~100 ms per automaton state, so the
tokens are stored as a trie whose nodes are numbered in preorder (a node's subtree is the contiguous
range `[node, end[node])`), and grouped by depth: an automaton given as a table `[states, 256]` is
walked over the whole vocabulary with one numpy gather per depth level (`walk_table`, ~1-3 ms).

Special tokens (EOS, chat markers, ...) are not text: they are left out of the trie, so no constraint
ever allows them; the constraint processors add the EOS ids themselves when the output is complete.
"""
from __future__ import annotations

import re
import threading
import weakref
from typing import Any, Sequence

import numpy as np

_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def token_byte_strings(tokenizer: Any) -> list[bytes | None]:
    """The bytes each token id stands for; None for special tokens (never part of constrained text).

    Byte-level BPE tokenizers (GPT-2, Llama 3, Qwen, SmolLM) give exact bytes through
    `Tokenizer.token_bytes`. Other vocabularies fall back to the token string with SentencePiece's
    `▁` read as a space and `<0xNN>` byte tokens read as that byte.
    """
    size = int(tokenizer.vocab_size)
    specials = set(int(i) for i in getattr(tokenizer, "all_special_ids", ()) or ())
    out: list[bytes | None] = []
    exact = getattr(tokenizer, "token_bytes", None)
    probe = exact(0) if exact is not None and size else None
    for i in range(size):
        if i in specials:
            out.append(None)
            continue
        if probe is not None:
            b = exact(i)
        else:
            text = tokenizer.id_to_token(i)
            if text is None:
                b = None
            else:
                m = _BYTE_TOKEN.match(text)
                b = bytes([int(m.group(1), 16)]) if m else text.replace("\u2581", " ").encode("utf-8")
        out.append(b if b else None)
    return out


class VocabIndex:
    """Byte trie over a tokenizer's vocabulary, with the arrays the constraint automata walk.

    Attributes (numpy arrays; N nodes, node 0 is the root, V = tokenizer.vocab_size):
      parent[N], byte[N], depth[N], end[N] (preorder subtree end, exclusive)
      token_node[V]   trie node where token id ends, or N (a sentinel "dead" slot) for excluded tokens
      node_tok_ptr[N+1], node_tok_ids  CSR list of the token ids ending at each node
      levels          per depth d >= 1: (nodes, parents, bytes) arrays
    """

    def __init__(self, token_bytes: Sequence[bytes | None]):
        self.vocab_size = len(token_bytes)
        self.token_bytes: list[bytes | None] = list(token_bytes)
        items = sorted((b, i) for i, b in enumerate(token_bytes) if b)
        parent = [-1]
        byte = [0]
        depth = [0]
        path = [0]
        token_node = [-1] * self.vocab_size
        prev = b""
        for b, i in items:
            n = min(len(prev), len(b))
            lcp = 0
            while lcp < n and prev[lcp] == b[lcp]:
                lcp += 1
            del path[lcp + 1:]
            for k in range(lcp, len(b)):
                path.append(len(parent))
                parent.append(path[-2])
                byte.append(b[k])
                depth.append(k + 1)
            token_node[i] = path[len(b)]
            prev = b
        n_nodes = len(parent)
        self.n_nodes = n_nodes
        self.parent = np.asarray(parent, dtype=np.int64)
        self.byte = np.asarray(byte, dtype=np.int64)
        self.depth = np.asarray(depth, dtype=np.int64)
        # preorder subtree ends: a node's subtree stops at the next node that is not deeper
        end = [n_nodes] * n_nodes
        stack: list[int] = []
        for node, d in enumerate(depth):
            while stack and depth[stack[-1]] >= d:
                end[stack.pop()] = node
            stack.append(node)
        self.end = np.asarray(end, dtype=np.int64)
        self.end_list = end
        self.byte_list = byte
        tn = np.asarray(token_node, dtype=np.int64)
        tn[tn < 0] = n_nodes
        self.token_node = tn
        valid = np.nonzero(tn < n_nodes)[0]
        order = valid[np.argsort(tn[valid], kind="stable")]
        counts = np.bincount(tn[order], minlength=n_nodes)
        self.node_tok_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.node_tok_ids = order.astype(np.int64)
        self.node_tok_list: list[list[int]] = [[] for _ in range(n_nodes)]
        for t in valid.tolist():
            self.node_tok_list[token_node[t]].append(t)
        self.has_children = np.zeros(n_nodes, dtype=bool)
        self.has_children[self.parent[1:]] = True
        self.max_depth = int(self.depth.max()) if n_nodes > 1 else 0
        by_depth = np.argsort(self.depth, kind="stable")
        bounds = np.searchsorted(self.depth[by_depth], np.arange(self.max_depth + 2))
        self.levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for d in range(1, self.max_depth + 1):
            nodes = by_depth[bounds[d]:bounds[d + 1]]
            self.levels.append((nodes, self.parent[nodes], self.byte[nodes]))
        self.cache: dict[Any, Any] = {}        # compiled automata keyed by (kind, spec), see build_constraint
        self.lock = threading.Lock()

    def walk_table(self, table: np.ndarray, start: int) -> np.ndarray:
        """State reached at every trie node when walking from `start` (0 = dead, absorbing).

        Returns an int array [N + 1] (the last slot is the dead sentinel of excluded tokens).
        """
        state = np.zeros(self.n_nodes + 1, dtype=table.dtype)
        state[0] = start
        for nodes, parents, bytes_ in self.levels:
            s = table[state[parents], bytes_]
            state[nodes] = s
            if not s.any():
                break
        return state

    def tokens_at(self, node: int) -> list[int]:
        """Token ids whose bytes end exactly at `node`."""
        return self.node_tok_list[node]


_INDEXES: "weakref.WeakKeyDictionary[Any, VocabIndex]" = weakref.WeakKeyDictionary()
_BY_ID: dict[int, VocabIndex] = {}
_LOCK = threading.Lock()


def vocab_index(tokenizer: Any) -> VocabIndex:
    """The (cached) VocabIndex of `tokenizer`: built on first use, then shared by all constraints."""
    with _LOCK:
        try:
            idx = _INDEXES.get(tokenizer)
        except TypeError:                      # not weak-referenceable: cache by identity
            idx = _BY_ID.get(id(tokenizer))
        if idx is not None and idx.vocab_size == int(tokenizer.vocab_size):
            return idx
        idx = VocabIndex(token_byte_strings(tokenizer))
        try:
            _INDEXES[tokenizer] = idx
        except TypeError:
            _BY_ID[id(tokenizer)] = idx
        return idx
