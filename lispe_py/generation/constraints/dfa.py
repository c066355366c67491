"""Byte-level deterministic automata: from a regular expression (via `interegular`) or literal strings.

Tokens are byte strings (a byte-level BPE token may hold half of a UTF-8 character), so every
automaton here reads bytes. A character DFA from `interegular` is turned into a byte DFA whose states
are: a character state; "inside a multi-byte character that the regex names explicitly" (e.g. the `é`
of `caf[éè]`); or "k more continuation bytes, then character state T" for characters the regex only
covers through a negated class or `.` (interegular's `anything_else`). Only valid UTF-8 is accepted
(the second-byte ranges of E0/ED/F0/F4 leads included), so the decoded text of an accepted byte
string is exactly the text the character DFA accepted.

A `ByteDFA` is a numpy table `[states, 256]` of next states with state 0 the absorbing dead state,
trimmed so that every other state can still reach an accepting state: a transition that is not dead
always leaves a way to finish.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from functools import lru_cache
from typing import Any, Iterable

import numpy as np

from ..config import GenerationError

# Size limits: an automaton is built eagerly, so a hostile spec must end in an error before it grows.
MAX_DFA_STATES = 50_000  # states of one byte DFA (its table takes 1 KB a state)
MAX_REGEX_SIZE = 5_000  # positions of a regex once its repetitions are unrolled (a{5000}: 5000)
MAX_FSM_STATES = 30_000  # character-FSM states interegular may create in all while building one regex
MAX_FSM_STEPS = 300_000  # transitions it may follow meanwhile (the work: ~1 s here at most)
MAX_CHAR_STATES = 10_000  # states of the finished character automaton (each becomes 1+ byte states)
MAX_FSM_SECONDS = 1.5  # the time one regex may take to build, whatever the counts (a last resort)
MAX_PATTERN_CHARS = 100_000  # length of a regex's text


class TooLarge(GenerationError):
    """A constraint whose automaton would exceed a size limit (the message names it and the limit)."""


# lead byte -> (total length, allowed range of the second byte)
_LEADS: dict[int, tuple[int, int, int]] = {}
for _b in range(0xC2, 0xE0):
    _LEADS[_b] = (2, 0x80, 0xBF)
_LEADS[0xE0] = (3, 0xA0, 0xBF)
for _b in range(0xE1, 0xF0):
    _LEADS[_b] = (3, 0x80, 0xBF)
_LEADS[0xED] = (3, 0x80, 0x9F)
_LEADS[0xF0] = (4, 0x90, 0xBF)
for _b in range(0xF1, 0xF4):
    _LEADS[_b] = (4, 0x80, 0xBF)
_LEADS[0xF4] = (4, 0x80, 0x8F)


def utf8_status(bs: bytes) -> str:
    """'complete', 'partial' or 'invalid' for a byte string holding at most one UTF-8 character."""
    b0 = bs[0]
    if b0 < 0x80:
        return "complete" if len(bs) == 1 else "invalid"
    lead = _LEADS.get(b0)
    if lead is None:
        return "invalid"
    n, lo, hi = lead
    if len(bs) > n:
        return "invalid"
    if len(bs) >= 2 and not lo <= bs[1] <= hi:
        return "invalid"
    if any(not 0x80 <= x <= 0xBF for x in bs[2:]):
        return "invalid"
    return "complete" if len(bs) == n else "partial"


class ByteDFA:
    """A trimmed byte automaton: `table[state, byte] -> state` (0 = dead), `accepting[state]`, `start`."""

    def __init__(self, table: np.ndarray, accepting: np.ndarray, start: int):
        self.table = table.astype(np.int32)
        self.accepting = accepting.astype(bool)
        self.start = int(start)
        self._trim()
        self.rows: list[list[int]] = self.table.tolist()      # fast per-byte stepping in Python
        self.acc_list: list[bool] = self.accepting.tolist()

    @property
    def n_states(self) -> int:
        return self.table.shape[0]

    def _trim(self) -> None:
        """Send every transition into a state that cannot reach acceptance to the dead state 0."""
        n = self.table.shape[0]
        live = self.accepting.copy()
        live[0] = False
        for _ in range(32):  # a few whole-table passes settle most automata
            reach = live[self.table].any(axis=1)
            reach[0] = False
            new = live | reach
            if (new == live).all():
                self._set_live(live)
                return
            live = new
        # A long chain (a{5000}) would need one whole-table pass per state: walk the transitions
        # backwards from the live states instead (linear in the transitions).
        src, _ = np.nonzero(self.table)
        dst = self.table[self.table != 0]
        keep = src != 0
        src, dst = src[keep], dst[keep]
        order = np.argsort(dst, kind="stable")
        src, dst = src[order], dst[order]
        starts = np.searchsorted(dst, np.arange(n + 1))
        src_list, starts_list = src.tolist(), starts.tolist()
        stack = np.nonzero(live)[0].tolist()
        live_list = live.tolist()
        while stack:
            t = stack.pop()
            for k in range(starts_list[t], starts_list[t + 1]):
                s = src_list[k]
                if not live_list[s]:
                    live_list[s] = True
                    stack.append(s)
        self._set_live(np.asarray(live_list, dtype=bool))

    def _set_live(self, live: np.ndarray) -> None:
        table = np.where(live[self.table], self.table, 0)
        table[0, :] = 0
        self.table = table.astype(np.int32)
        self.live = live
        if not live[self.start]:
            self.start = 0

    @property
    def empty_language(self) -> bool:
        return self.start == 0

    @property
    def accepts_empty(self) -> bool:
        return bool(self.start != 0 and self.accepting[self.start])

    def step(self, state: int, data: bytes) -> int:
        """The state after reading `data` from `state` (0 once dead)."""
        rows = self.rows
        for b in data:
            state = rows[state][b]
            if not state:
                return 0
        return state

    def matches(self, data: bytes) -> bool:
        s = self.step(self.start, data)
        return bool(s and self.acc_list[s])

    def without_empty(self) -> "ByteDFA":
        """The same language minus the empty string (a non-accepting copy of the start state)."""
        if not self.accepts_empty:
            return self
        table = np.vstack([self.table, self.table[self.start][None, :]])
        accepting = np.concatenate([self.accepting, [False]])
        return ByteDFA(table, accepting, table.shape[0] - 1)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_literals(cls, literals: Iterable[str | bytes]) -> "ByteDFA":
        """Accepts exactly the given strings (a trie over their UTF-8 bytes)."""
        children: list[dict[int, int]] = [{}, {}]   # 0 dead, 1 root
        accepting = [False, False]
        for lit in literals:
            data = lit.encode("utf-8") if isinstance(lit, str) else bytes(lit)
            node = 1
            for b in data:
                nxt = children[node].get(b)
                if nxt is None:
                    if len(children) >= MAX_DFA_STATES:
                        raise TooLarge(f"choices: the choices would need more than {MAX_DFA_STATES} automaton "
                                       "states (one per distinct prefix byte); use fewer or shorter choices")
                    nxt = len(children)
                    children.append({})
                    accepting.append(False)
                    children[node][b] = nxt
                node = nxt
            accepting[node] = True
        table = np.zeros((len(children), 256), dtype=np.int32)
        for s, ch in enumerate(children):
            for b, t in ch.items():
                table[s, b] = t
        return cls(table, np.asarray(accepting), 1)

    @classmethod
    def from_regex(cls, pattern: str) -> "ByteDFA":
        """Accepts the UTF-8 encodings of the strings that fully match `pattern` (Python syntax).

        Cached per pattern (a ByteDFA is immutable): `{0,300}` repetitions take seconds to build."""
        return _regex_dfa(pattern)

    @classmethod
    def _build_regex(cls, pattern: str) -> "ByteDFA":
        try:
            import interegular
        except ImportError as e:  # pragma: no cover - dependency missing
            raise GenerationError("regex constraints need the `interegular` package: "
                                  "pip install interegular") from e
        if not isinstance(pattern, str):
            raise GenerationError(f"a regex constraint is a string, got {pattern!r}")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise TooLarge(f"regex {_short(pattern)} is too long: {len(pattern)} characters, the limit is "
                           f"{MAX_PATTERN_CHARS}")
        try:
            parsed = interegular.parse_pattern(pattern)
        except RecursionError:
            raise TooLarge(f"regex {_short(pattern)} nests too deeply") from None
        except Exception as e:  # interegular raises several exception types for unsupported syntax
            raise GenerationError(f"regex {_short(pattern)} is not supported: {e}") from None
        size = _unrolled_size(parsed)
        if size > MAX_REGEX_SIZE:
            raise TooLarge(f"regex {_short(pattern)} is too large: with its repetitions unrolled it has "
                           f"{'over ' + str(MAX_REGEX_SIZE * 10) if size >= MAX_REGEX_SIZE * 10 else size} "
                           f"positions, the limit is {MAX_REGEX_SIZE}; use smaller repetition counts")
        try:
            with _fsm_budget():
                try:
                    fsm = parsed.to_fsm()
                except (_OverBudget, RecursionError):
                    raise
                except Exception as e:
                    raise GenerationError(f"regex {_short(pattern)} is not supported: {e}") from None
                if len(fsm.states) > MAX_CHAR_STATES:
                    raise _OverBudget(f"gives {len(fsm.states)} states, more than {MAX_CHAR_STATES}")
                dfa = cls.from_char_fsm(fsm)
        except _OverBudget as over:
            raise TooLarge(f"regex {_short(pattern)} is too large: building its automaton {over} (a "
                           f"repetition after an open-ended part, such as (a|b)*a(a|b){{18}}, doubles the "
                           f"states at each step)") from None
        except RecursionError:
            raise TooLarge(f"regex {_short(pattern)} nests too deeply") from None
        if dfa.n_states > MAX_DFA_STATES:
            raise TooLarge(f"regex {_short(pattern)} is too large: its byte automaton has {dfa.n_states} states, "
                           f"the limit is {MAX_DFA_STATES}")
        return dfa

    @classmethod
    def from_char_fsm(cls, fsm: Any) -> "ByteDFA":
        """Convert an interegular character FSM into a byte DFA (see the module docstring)."""
        from interegular.fsm import anything_else

        mapping = fsm.alphabet._symbol_mapping
        else_sym = mapping.get(anything_else)
        explicit = {c: s for c, s in mapping.items() if isinstance(c, str)}
        fmap = fsm.map
        finals = set(fsm.finals)

        def trans(s: Any, ch: str) -> Any:
            sym = explicit.get(ch, else_sym)
            return None if sym is None else fmap.get(s, {}).get(sym)

        def else_target(s: Any) -> Any:
            return None if else_sym is None else fmap.get(s, {}).get(else_sym)

        ascii_syms = [explicit.get(chr(b), else_sym) for b in range(128)]
        prefixes: set[bytes] = set()
        for ch in explicit:
            enc = ch.encode("utf-8", "surrogatepass")
            for k in range(1, len(enc)):
                prefixes.add(enc[:k])

        index: dict[tuple, int] = {}
        rows: list[list[int]] = [[0] * 256]
        accepting: list[bool] = [False]
        queue: deque[tuple] = deque()

        def state_of(key: tuple | None) -> int:
            if key is None:
                return 0
            i = index.get(key)
            if i is None:
                i = index[key] = len(rows)
                rows.append([0] * 256)
                accepting.append(key[0] == "c" and key[1] in finals)
                queue.append(key)
            return i

        def char_key(t: Any) -> tuple | None:
            return None if t is None else ("c", t)

        start = state_of(("c", fsm.initial))
        deadline = getattr(_budget, "deadline", None) if getattr(_budget, "left", None) is not None else None
        while queue:
            if deadline is not None and not len(rows) & 63 and time.monotonic() > deadline:
                raise _OverBudget(f"takes more than {MAX_FSM_SECONDS} s")
            key = queue.popleft()
            row = rows[index[key]]
            kind = key[0]
            if kind == "c":
                s = key[1]
                moves = fmap.get(s, {})
                by_sym = {sym: state_of(char_key(t)) for sym, t in moves.items()}
                for b in range(128):
                    sym = ascii_syms[b]
                    if sym is not None:
                        row[b] = by_sym.get(sym, 0)
                target = else_target(s)
                for b, (n, lo, hi) in _LEADS.items():
                    if bytes([b]) in prefixes:
                        row[b] = state_of(("p", s, bytes([b])))
                    elif target is not None:
                        row[b] = state_of(("g", target, n - 1, lo, hi))
            elif kind == "p":
                s, pre = key[1], key[2]
                for b in range(0x80, 0xC0):
                    data = pre + bytes([b])
                    status = utf8_status(data)
                    if status == "complete":
                        row[b] = state_of(char_key(trans(s, data.decode("utf-8"))))
                    elif status == "partial":
                        if data in prefixes:
                            row[b] = state_of(("p", s, data))
                        else:
                            target = else_target(s)
                            if target is not None:
                                remaining = _LEADS[data[0]][0] - len(data)
                                row[b] = state_of(("g", target, remaining, 0x80, 0xBF))
            else:  # "g": k continuation bytes in [lo, hi] (then 80-BF), then character state T
                _, target, k, lo, hi = key
                nxt = ("c", target) if k == 1 else ("g", target, k - 1, 0x80, 0xBF)
                for b in range(lo, hi + 1):
                    row[b] = state_of(nxt)
        table = np.asarray(rows, dtype=np.int32)
        return cls(table, np.asarray(accepting), start)

    @classmethod
    def quoted_repeat(cls, quote: int, item: "ByteDFA", lo: int, hi: int) -> "ByteDFA":
        """`quote item{lo,hi} quote` built directly (hi + 1 copies of `item`'s states), for an `item`
        that ends exactly when it accepts and never starts with `quote` (a JSON string character).

        interegular needs seconds for `{0,300}`; this takes milliseconds. ValueError if `item` does
        not have that shape (the caller then uses the regex route).
        """
        t, acc, n = item.table, item.accepting, item.table.shape[0]
        if acc[item.start] or (t[acc] != 0).any() or t[item.start, quote] != 0:
            raise ValueError("item must be non-empty, end when it accepts, and not start with quote")
        inner = [s for s in range(1, n) if not acc[s]]          # item states before completion
        m = len(inner)
        pos = np.zeros(n, dtype=np.int64)
        pos[inner] = np.arange(m)
        # state ids: 0 dead, 1 before the opening quote, blocks k = 0..hi of m states, final
        block = lambda k: 2 + k * m                              # noqa: E731
        final = block(hi + 1)
        table = np.zeros((final + 1, 256), dtype=np.int32)
        table[1, quote] = block(0) + pos[item.start]
        sub = t[inner]                                           # [m, 256] item transitions
        for k in range(hi + 1):
            if k < hi:
                rows = np.where(sub == 0, 0, np.where(acc[sub], block(k + 1) + pos[item.start],
                                                      block(k) + pos[sub]))
                table[block(k):block(k) + m] = rows
            if k >= lo:
                table[block(k) + pos[item.start], quote] = final
        accepting = np.zeros(final + 1, dtype=bool)
        accepting[final] = True
        return cls(table, accepting, 1)


def _short(pattern: str, n: int = 60) -> str:
    """A regex for an error message, cut to n characters."""
    return repr(pattern) if len(pattern) <= n else repr(pattern[:n]) + f"... ({len(pattern)} characters)"


def _unrolled_size(node: Any, depth: int = 0) -> int:
    """How many character positions a parsed interegular pattern has once its repetitions are unrolled
    (an upper bound on the states of its non-deterministic automaton); capped at 10x MAX_REGEX_SIZE."""
    cap = MAX_REGEX_SIZE * 10
    if depth > 200:
        return cap
    options = getattr(node, "options", None)
    if options is not None:  # Pattern: alternatives
        return min(cap, sum(_unrolled_size(o, depth + 1) for o in options))
    parts = getattr(node, "parts", None)
    if parts is not None:  # Concatenation (lookaheads hold an `inner` pattern)
        return min(cap, sum(_unrolled_size(getattr(p, "inner", p), depth + 1) for p in parts))
    base = getattr(node, "base", None)
    if base is not None:  # Repeated
        lo, hi = node.min, node.max
        count = hi if hi is not None else lo + 1
        return min(cap, _unrolled_size(base, depth + 1) * max(count, 1))
    return 1


class _OverBudget(Exception):
    pass


_budget = threading.local()
_crawl_patched = False
_patch_lock = threading.Lock()


class _fsm_budget:
    """Within the block (this thread only), interegular's FSM constructions may create at most
    MAX_FSM_STATES states and follow MAX_FSM_STEPS transitions in all, for at most MAX_FSM_SECONDS; past
    that they raise _OverBudget. Other callers of interegular are not affected."""

    def __enter__(self):
        _patch_crawl()
        self.saved = (getattr(_budget, "left", None), getattr(_budget, "steps", None),
                      getattr(_budget, "deadline", None))
        _budget.left = MAX_FSM_STATES
        _budget.steps = MAX_FSM_STEPS
        _budget.deadline = time.monotonic() + MAX_FSM_SECONDS
        return self

    def __exit__(self, *exc):
        _budget.left, _budget.steps, _budget.deadline = self.saved
        return False


def _hashable(state: Any) -> Any:
    """A hashable key equal for equal crawl states (interegular's states may be sets of tuples)."""
    try:
        hash(state)
        return state
    except TypeError:
        pass
    if isinstance(state, (set, frozenset)):
        return frozenset(_hashable(x) for x in state)
    if isinstance(state, (list, tuple)):
        return tuple(_hashable(x) for x in state)
    if isinstance(state, dict):
        return frozenset((k, _hashable(v)) for k, v in state.items())
    return id(state)


def _patch_crawl() -> None:
    """Route interegular's `crawl` through a budgeted version (hash-indexed: interegular's own looks each
    new state up in a list, quadratic in the state count) while a budget is active in this thread."""
    global _crawl_patched
    if _crawl_patched:
        return
    with _patch_lock:
        if _crawl_patched:
            return
        from interegular import fsm as ifsm

        original = ifsm.crawl

        def crawl(alphabet, initial, final, follow):
            if getattr(_budget, "left", None) is None:
                return original(alphabet, initial, final, follow)
            states = [initial]
            index = {_hashable(initial): 0}
            finals = set()
            transitions: dict[int, dict] = {}
            oblivion = ifsm.OblivionError
            i = 0
            while i < len(states):
                state = states[i]
                if final(state):
                    finals.add(i)
                row = transitions[i] = {}
                _budget.steps -= len(alphabet.by_transition)
                if _budget.steps < 0:
                    raise _OverBudget(f"follows more than {MAX_FSM_STEPS} transitions")
                if not i & 63 and time.monotonic() > _budget.deadline:
                    raise _OverBudget(f"takes more than {MAX_FSM_SECONDS} s")
                for transition in alphabet.by_transition:
                    try:
                        nxt = follow(state, transition)
                    except oblivion:
                        continue
                    key = _hashable(nxt)
                    j = index.get(key)
                    if j is None:
                        _budget.left -= 1
                        if _budget.left < 0:
                            raise _OverBudget(f"needs more than {MAX_FSM_STATES} states")
                        j = index[key] = len(states)
                        states.append(nxt)
                    row[transition] = j
                i += 1
            return ifsm.FSM(alphabet=alphabet, states=range(len(states)), initial=0, finals=finals,
                            map=transitions, __no_validation__=True)

        ifsm.crawl = crawl
        _crawl_patched = True


_QUOTED_REPEAT = None


@lru_cache(maxsize=256)
def _regex_dfa(pattern: str) -> ByteDFA:
    """A regex's ByteDFA; JSON-schema strings with length bounds take the direct construction."""
    global _QUOTED_REPEAT
    if _QUOTED_REPEAT is None:
        import re
        from .json_schema import STRING_CHAR
        _QUOTED_REPEAT = (re.compile('"' + re.escape(STRING_CHAR) + r'\{(\d+),(\d+)\}"'), STRING_CHAR)
    m = _QUOTED_REPEAT[0].fullmatch(pattern)
    if m and int(m.group(2)) >= int(m.group(1)):
        try:
            return ByteDFA.quoted_repeat(ord('"'), _regex_dfa(_QUOTED_REPEAT[1]), int(m.group(1)),
                                         int(m.group(2)))
        except ValueError:
            pass
    return ByteDFA._build_regex(pattern)
