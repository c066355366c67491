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
      node_tok_list   {node: token ids ending there}
      levels          per depth d >= 1: (nodes, parents, bytes) arrays
    """

    def __init__(self, token_bytes: Sequence[bytes | None]):
        self.vocab_size = len(token_bytes)
        self.token_bytes: list[bytes | None] = list(token_bytes)
        order = sorted((i for i, b in enumerate(token_bytes) if b), key=self.token_bytes.__getitem__)
        strings = [self.token_bytes[i] for i in order]
        ids = np.asarray(order, dtype=np.int64)
        lens = np.asarray([len(b) for b in strings], dtype=np.int64)
        width = int(lens.max()) if len(strings) else 0
        # padded byte matrix (pad 256 never equals a byte) -> longest common prefix with the previous
        arr = np.full((len(strings), width + 1), 256, dtype=np.int16)
        if strings:
            flat = np.frombuffer(b"".join(strings), dtype=np.uint8)
            rows = np.repeat(np.arange(len(strings)), lens)
            cols = np.arange(flat.size) - np.repeat(np.cumsum(lens) - lens, lens)
            arr[rows, cols] = flat
        lcp = np.zeros(len(strings), dtype=np.int64)
        if len(strings) > 1:
            lcp[1:] = np.argmax(arr[1:] != arr[:-1], axis=1)   # equal rows: 0, fixed below
            same = ~(arr[1:] != arr[:-1]).any(axis=1)
            lcp[1:][same] = lens[1:][same]
        count = lens - lcp                           # new trie nodes created by each string
        first = 1 + np.concatenate([[0], np.cumsum(count)[:-1]]) if len(strings) else count
        total = 1 + int(count.sum())
        owner = np.repeat(np.arange(len(strings)), count)
        k = lcp[owner] + (np.arange(total - 1) - (first[owner] - 1))
        byte = np.zeros(total, dtype=np.int64)
        depth = np.zeros(total, dtype=np.int64)
        parent = np.full(total, -1, dtype=np.int64)
        byte[1:] = arr[owner, k]
        depth[1:] = k + 1
        parent[1:] = np.arange(total - 1)            # a string's own nodes chain one after another
        # the first node of each string hangs under the previous string's node at depth lcp
        path = [0] * (width + 2)
        heads = []
        ends = []
        for f, c, l, n in zip(first.tolist(), count.tolist(), lcp.tolist(), lens.tolist()):
            if c:
                heads.append((f, path[l]))
                path[l + 1:l + 1 + c] = range(f, f + c)
            ends.append(path[n])
        token_node = np.full(self.vocab_size, -1, dtype=np.int64)
        token_node[ids] = ends
        if heads:
            h = np.asarray(heads, dtype=np.int64)
            parent[h[:, 0]] = h[:, 1]
        n_nodes = total
        self.n_nodes = n_nodes
        self.parent, self.byte, self.depth = parent, byte, depth
        self.max_depth = int(depth.max()) if n_nodes > 1 else 0
        by_depth = np.argsort(depth, kind="stable")
        bounds = np.searchsorted(depth[by_depth], np.arange(self.max_depth + 2))
        self.levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for d in range(1, self.max_depth + 1):
            nodes = by_depth[bounds[d]:bounds[d + 1]]
            self.levels.append((nodes, parent[nodes], byte[nodes]))
        size = np.ones(n_nodes, dtype=np.int64)         # subtree sizes, deepest level first
        for nodes, parents, _ in reversed(self.levels):
            np.add.at(size, parents, size[nodes])
        self.end = np.arange(n_nodes, dtype=np.int64) + size
        self.end_list: list[int] = self.end.tolist()
        self.byte_list: list[int] = byte.tolist()
        tn = token_node.copy()
        tn[tn < 0] = n_nodes
        self.token_node = tn
        self.node_tok_list: dict[int, list[int]] = {n: [t] for t, n in zip(ids.tolist(), ends)}
        if len(set(ends)) != len(ends):                 # several ids with the same bytes
            self.node_tok_list = {}
            for t, n in zip(ids.tolist(), ends):
                self.node_tok_list.setdefault(n, []).append(t)
        self.has_children = np.zeros(n_nodes, dtype=bool)
        self.has_children[parent[1:]] = True
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
        return self.node_tok_list.get(node, [])


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
