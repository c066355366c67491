"""Context-free grammar constraints: s-expression grammars as Python data, an Earley recognizer over
lexemes, and the token automaton built on it.

## The Python form of a grammar (mirrors the Lisp s-expression)

The Lisp `(grammar (root (seq "(" (star (ref item)) ")")) (item (alt (regex "[0-9]+") "nil")))`
arrives as nested lists/tuples of strings:

    ["grammar",
     ["root", ["seq", "(", ["star", ["ref", "item"]], ")"]],
     ["item", ["alt", ["regex", "[0-9]+"], "nil"]]]

- The leading "grammar" is optional; a dict `{"root": expr, "item": expr}` is accepted too.
- A rule is `[name, expr]` (several exprs after the name are a `seq`). The start rule is `root`, or
  the first rule when there is no `root`.
- An expression is a bare string (a literal, matched exactly) or a list whose first element names the
  operator: `["seq", e...]`, `["alt", e...]`, `["star", e]` (zero or more), `["plus", e]` (one or
  more), `["opt", e]`, `["ref", name]`, `["regex", pattern]` (a terminal matching the Python regex,
  with interegular's syntax: no lookarounds/backreferences, `\\w`/`\\d` are ASCII), `["literal", s]`
  (same as a bare string), `["repeat", e, min, max]` (max None = unbounded).
  Operator and rule names may also be objects with a `.name` (Lisp symbols).

## How it runs

Literals and regexes become *terminals*, each a byte DFA with the empty string removed (a nullable
regex becomes `opt` of its non-empty part); `star`/`plus` compile to left-recursive rules. The parser
is Earley's algorithm (Aycock-Horspool handling of nullable rules) over terminals, with charts
hash-consed: an item's origin is the id of the chart it started in (-1 for "this chart"), so a chart
is an immutable, interned set of items and `advance(chart, terminal)` is memoised. Two positions
with the same pending structure (the 2nd and the 5th element of a list) share one chart.

The automaton's state is an interned set of triples `(chart, terminal, dfa_state)`: the lexemes
that may be in progress. Reading a byte advances each triple's DFA and, where the DFA accepts, may
also close the lexeme (`advance(chart, terminal)`) and start any terminal the new chart expects: the
recognizer is exactly the grammar's language over bytes, with every split of the text into lexemes.

Masks: for each triple, one vectorised walk of the vocabulary trie with that terminal's DFA (cached
per (terminal, dfa_state), shared by all charts) gives the tokens that stay inside the lexeme, and the
trie nodes where the lexeme may close while the token goes on; the subtrees under those nodes are
walked byte by byte from the parser state after the close (memoised, pruned at the first dead byte).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from ..config import GenerationError
from .automata import DEAD, Automaton
from .dfa import ByteDFA, TooLarge
from .vocab import VocabIndex

MAX_GRAMMAR_SYMBOLS = 50_000  # symbols in all the compiled rules (a repeat unrolls its body max times)
MAX_PARSER_STATES = 200_000  # charts, and parser states (sets of lexemes in progress), made while generating

OPERATORS = ("seq", "alt", "star", "plus", "opt", "ref", "regex", "literal", "lit", "repeat")


def _name(x: Any) -> str | None:
    if isinstance(x, str):
        return x
    n = getattr(x, "name", None)
    return n if isinstance(n, str) else None


def _fmt(x: Any) -> str:
    """A grammar value as s-expression text: strings quoted, operator and rule names bare."""
    if isinstance(x, str):
        return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(x, (list, tuple)):
        if not x:
            return "()"
        head = _name(x[0]) if not isinstance(x[0], (list, tuple)) else None
        if head is None:
            return "(" + " ".join(_fmt(v) for v in x) + ")"
        if head == "ref" and len(x) == 2 and _name(x[1]) is not None:
            return f"(ref {_name(x[1])})"
        return "(" + " ".join([head] + [_fmt(v) for v in x[1:]]) + ")"
    if x is None:
        return "nil"
    n = _name(x)
    return n if n is not None else str(x)


def grammar_rules(spec: Any) -> tuple[dict[str, Any], str]:
    """Normalise a grammar spec into (rules by name, start rule name). GenerationError if malformed."""
    rules: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        items = [(k, v) for k, v in spec.items()]
        for k, v in items:
            if _name(k) is None:
                raise GenerationError(f"grammar rule names must be strings, got {k!r}")
            rules[_name(k)] = v
    elif isinstance(spec, (list, tuple)):
        body = list(spec)
        if body and _name(body[0]) == "grammar" and not isinstance(body[0], (list, tuple)):
            body = body[1:]
        for rule in body:
            if not isinstance(rule, (list, tuple)) or len(rule) < 2 or _name(rule[0]) is None \
                    or isinstance(rule[0], (list, tuple)):
                raise GenerationError(f"a grammar rule is (name expr), got {_fmt(rule)}")
            name = _name(rule[0])
            if name in rules:
                raise GenerationError(f"grammar rule {name!r} is defined twice")
            rules[name] = rule[1] if len(rule) == 2 else ["seq", *rule[1:]]
    else:
        raise GenerationError(f"a grammar is a list of rules (name expr) or a dict, got {spec!r}")
    if not rules:
        raise GenerationError("a grammar needs at least one rule")
    start = "root" if "root" in rules else next(iter(rules))
    return rules, start


class Grammar:
    """A grammar compiled to BNF over terminals.

    rules[i] = (lhs, rhs) with nonterminals >= 0 and terminal t encoded as ~t (negative).
    terminals[t] is an epsilon-free ByteDFA; start_rule is the augmented rule S' -> root.
    """

    def __init__(self, spec: Any):
        try:
            self._build(spec)
        except RecursionError:
            raise TooLarge("grammar: the grammar nests too deeply") from None

    def _build(self, spec: Any) -> None:
        self.spec = spec
        self.size = 0
        named, start = grammar_rules(spec)
        self.names: list[str] = []
        self.rules: list[tuple[int, tuple[int, ...]]] = []
        self.terminals: list[ByteDFA] = []
        self.terminal_desc: list[str] = []
        self._terminal_ids: dict[tuple[str, str], int] = {}
        self._named: dict[str, int] = {}
        for name in named:
            self._named[name] = self._new_nt(name)
        aug = self._new_nt("<start>")
        for name, expr in named.items():
            self.rules.append((self._named[name], self._compile(expr, name)))
        self.rules.append((aug, (self._named[start],)))
        self._grow(sum(len(rhs) + 1 for _, rhs in self.rules), start)
        self.start_symbol = aug
        self._prune(start)
        self.start_rule = next(i for i, (lhs, _) in enumerate(self.rules) if lhs == aug)
        n = len(self.names)
        self.by_lhs: list[list[int]] = [[] for _ in range(n)]
        for i, (lhs, _) in enumerate(self.rules):
            self.by_lhs[lhs].append(i)
        self.nullable = [False] * n
        changed = True
        while changed:
            changed = False
            for lhs, rhs in self.rules:
                if not self.nullable[lhs] and all(s >= 0 and self.nullable[s] for s in rhs):
                    self.nullable[lhs] = changed = True

    # ------------------------------------------------------------------ compilation
    def _new_nt(self, name: str) -> int:
        self.names.append(name)
        return len(self.names) - 1

    def _terminal(self, kind: str, text: str) -> int:
        key = (kind, text)
        t = self._terminal_ids.get(key)
        if t is None:
            dfa = ByteDFA.from_literals([text]) if kind == "lit" else ByteDFA.from_regex(text)
            t = self._terminal_ids[key] = len(self.terminals)
            self.terminals.append(dfa.without_empty())
            self.terminal_desc.append(_fmt(text) if kind == "lit" else f"(regex {_fmt(text)})")
        return t

    def _compile(self, expr: Any, where: str) -> tuple[int, ...]:
        """The symbol sequence for `expr` (fresh nonterminals for alt/star/plus/opt/repeat)."""
        if isinstance(expr, str):
            return () if expr == "" else (~self._terminal("lit", expr),)
        if not isinstance(expr, (list, tuple)) or not expr:
            raise GenerationError(f"grammar rule {where!r}: expected a string or an (operator ...) "
                                  f"form, got {_fmt(expr)}")
        op = _name(expr[0])
        args = list(expr[1:])
        if op not in OPERATORS:
            raise GenerationError(f"grammar rule {where!r}: unknown operator {_fmt(expr[0])} in "
                                  f"{_fmt(expr)}; valid: {', '.join(OPERATORS)}")
        if op == "seq":
            out: tuple[int, ...] = ()
            for a in args:
                out += self._compile(a, where)
            return out
        if op in ("literal", "lit", "regex", "ref"):
            if len(args) != 1 or _name(args[0]) is None:
                raise GenerationError(f"grammar rule {where!r}: ({op} x) takes one string/name, "
                                      f"got {_fmt(expr)}")
            arg = _name(args[0])
            if op == "ref":
                if arg not in self._named:
                    raise GenerationError(f"grammar rule {where!r}: (ref {arg}) names no rule; "
                                          f"rules: {', '.join(self._named)}")
                return (self._named[arg],)
            if op in ("literal", "lit"):
                return self._compile(arg, where)
            dfa = ByteDFA.from_regex(arg)
            if dfa.empty_language:
                raise GenerationError(f"grammar rule {where!r}: regex {arg!r} matches nothing")
            t = self._terminal("re", arg)
            if dfa.accepts_empty:
                return (self._alt([(~t,), ()], f"{where}/opt"),)
            return (~t,)
        if not args:
            raise GenerationError(f"grammar rule {where!r}: ({op}) needs an argument")
        if op == "alt":
            return (self._alt([self._compile(a, where) for a in args], f"{where}/alt"),)
        if op == "repeat":
            if len(args) not in (2, 3):
                raise GenerationError(f"grammar rule {where!r}: (repeat expr min max) expected, "
                                      f"got {_fmt(expr)}")
            body = self._compile(args[0], where)
            lo, hi = args[1], args[2] if len(args) == 3 else None
            if not isinstance(lo, int) or lo < 0 or (hi is not None and (not isinstance(hi, int)
                                                                          or hi < lo)):
                raise GenerationError(f"grammar rule {where!r}: repeat bounds must be 0 <= min <= "
                                      f"max, got {lo!r} {hi!r}")
            unrolled = (len(body) + 1) * (hi if hi is not None else lo + 1)
            self.size += unrolled
            if self.size > MAX_GRAMMAR_SYMBOLS:
                raise TooLarge(f"grammar rule {where!r}: {_fmt(expr)} unrolls to {unrolled} symbols; a grammar "
                               f"may have {MAX_GRAMMAR_SYMBOLS} in all (use star or plus for long repetitions)")
            out = body * lo
            if hi is None:
                return out + (self._star(body, where),)
            tail: tuple[int, ...] = ()
            for _ in range(hi - lo):        # nested optionals: (opt (seq body (opt (seq body ...))))
                tail = (self._alt([body + tail, ()], f"{where}/repeat"),)
            return out + tail
        body = self._compile(["seq", *args], where) if len(args) > 1 else self._compile(args[0], where)
        if op == "opt":
            return (self._alt([body, ()], f"{where}/opt"),)
        if op == "star":
            return (self._star(body, where),)
        # plus: P -> P body | body
        nt = self._new_nt(f"{where}/plus")
        self.rules.append((nt, (nt,) + body))
        self.rules.append((nt, body))
        return (nt,)

    def _alt(self, seqs: list[tuple[int, ...]], name: str) -> int:
        nt = self._new_nt(name)
        for s in seqs:
            self.rules.append((nt, s))
        self._grow(sum(len(s) + 1 for s in seqs), name)
        return nt

    def _grow(self, n: int, where: str) -> None:
        self.size += n
        if self.size > MAX_GRAMMAR_SYMBOLS:
            raise TooLarge(f"grammar rule {where.split('/')[0]!r}: the grammar has more than "
                           f"{MAX_GRAMMAR_SYMBOLS} symbols in its rules")

    def _star(self, body: tuple[int, ...], where: str) -> int:
        nt = self._new_nt(f"{where}/star")      # S -> S body | ()   (left recursion: charts repeat)
        self.rules.append((nt, (nt,) + body))
        self.rules.append((nt, ()))
        return nt

    def _prune(self, start: str) -> None:
        """Drop rules using nonterminals that derive no finite string (they would be dead ends)."""
        productive = [False] * len(self.names)
        changed = True
        while changed:
            changed = False
            for lhs, rhs in self.rules:
                if not productive[lhs] and all(s < 0 or productive[s] for s in rhs):
                    productive[lhs] = changed = True
        if not productive[self._named[start]]:
            raise GenerationError(f"grammar: the start rule {start!r} derives no finite text "
                                  f"(every alternative recurses forever)")
        self.rules = [(lhs, rhs) for lhs, rhs in self.rules
                      if productive[lhs] and all(s < 0 or productive[s] for s in rhs)]

    def describe(self) -> str:
        """The grammar as an s-expression: `(grammar (root ...) (item ...))`."""
        named, _ = grammar_rules(self.spec)
        return "(grammar " + " ".join(f"({k} {_fmt(v)})" for k, v in named.items()) + ")"


class Charts:
    """Hash-consed Earley charts over a Grammar (see the module docstring)."""

    def __init__(self, grammar: Grammar):
        self.g = grammar
        self.items: list[frozenset] = []
        self.index: dict[frozenset, int] = {}
        self.by_next: list[dict[int, list[tuple[int, int, int]]]] = []
        self.expected: list[tuple[int, ...]] = []
        self.accept: list[bool] = []
        self._adv: dict[tuple[int, int], int] = {}
        self.initial = -2
        self.initial = self._close([(grammar.start_rule, 0, -1)])

    def _intern(self, items: frozenset) -> int:
        cid = self.index.get(items)
        if cid is not None:
            return cid
        cid = len(self.items)
        if cid >= MAX_PARSER_STATES:
            raise TooLarge(f"grammar constraint: the parser needs more than {MAX_PARSER_STATES} charts; "
                           "simplify the grammar (fewer ambiguous alternatives)")
        self.index[items] = cid
        self.items.append(items)
        rules = self.g.rules
        by_next: dict[int, list[tuple[int, int, int]]] = {}
        expected = set()
        for r, d, o in items:
            rhs = rules[r][1]
            if d < len(rhs):
                by_next.setdefault(rhs[d], []).append((r, d, o if o >= 0 else cid))
                if rhs[d] < 0:
                    expected.add(~rhs[d])
        self.by_next.append(by_next)
        self.expected.append(tuple(sorted(expected)))
        sr = self.g.start_rule
        start_origin = self.initial if self.initial >= 0 else cid
        self.accept.append((sr, 1, start_origin) in items or
                           ((self.initial < 0 or cid == self.initial) and (sr, 1, -1) in items))
        return cid

    def _close(self, seed: Iterable[tuple[int, int, int]]) -> int:
        rules, by_lhs, nullable = self.g.rules, self.g.by_lhs, self.g.nullable
        items = set(seed)
        agenda = list(items)
        while agenda:
            r, d, o = agenda.pop()
            lhs, rhs = rules[r]
            if d == len(rhs):
                if o < 0:
                    continue            # an empty derivation: handled by the nullable advance below
                for r2, d2, o2 in self.by_next[o].get(lhs, ()):
                    it = (r2, d2 + 1, o2)
                    if it not in items:
                        items.add(it)
                        agenda.append(it)
                continue
            b = rhs[d]
            if b >= 0:
                for r3 in by_lhs[b]:
                    it = (r3, 0, -1)
                    if it not in items:
                        items.add(it)
                        agenda.append(it)
                if nullable[b]:
                    it = (r, d + 1, o)
                    if it not in items:
                        items.add(it)
                        agenda.append(it)
        return self._intern(frozenset(items))

    def advance(self, cid: int, t: int) -> int:
        """The chart after a complete lexeme of terminal t (-1 if t is not expected)."""
        key = (cid, t)
        out = self._adv.get(key)
        if out is None:
            seeds = [(r, d + 1, o) for r, d, o in self.by_next[cid].get(~t, ())]
            out = self._close(seeds) if seeds else -1
            self._adv[key] = out
        return out


class GrammarAutomaton(Automaton):
    """Token automaton of a Grammar: states are interned sets of (chart, terminal, dfa_state)."""

    def __init__(self, vocab: VocabIndex, grammar: Grammar):
        super().__init__(vocab)
        self.grammar = grammar
        self.charts = Charts(grammar)
        self.terms = grammar.terminals
        self.x_items: list[frozenset] = []
        self.x_flag: list[bool] = []
        self.x_index: dict[tuple[frozenset, bool], int] = {}
        self.x_step: list[dict[int, int]] = []
        self.x_tok: list[dict[int, int]] = []
        self._chart_start: dict[int, int] = {}
        self._walks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._np_masks: dict[int, np.ndarray] = {}
        self._complete: dict[int, bool] = {}
        c0 = self.charts.initial
        triples = frozenset((c0, t, self.terms[t].start) for t in self.charts.expected[c0])
        self._initial = self._intern(triples, self.charts.accept[c0])

    def _intern(self, triples: frozenset, flag: bool = False) -> int:
        if not triples and not flag:
            return DEAD
        key = (triples, flag)
        x = self.x_index.get(key)
        if x is None:
            if len(self.x_items) >= MAX_PARSER_STATES:
                raise TooLarge(f"grammar constraint: the parser needs more than {MAX_PARSER_STATES} states; "
                               "simplify the grammar (fewer ambiguous alternatives or overlapping terminals)")
            x = self.x_index[key] = len(self.x_items)
            self.x_items.append(triples)
            self.x_flag.append(flag)
            self.x_step.append({})
            self.x_tok.append({})
        return x

    def chart_start(self, cid: int) -> int:
        """The state right after a lexeme closed into chart `cid`: any expected terminal may start."""
        x = self._chart_start.get(cid)
        if x is None:
            triples = frozenset((cid, t, self.terms[t].start) for t in self.charts.expected[cid])
            x = self._chart_start[cid] = self._intern(triples)
        return x

    def step(self, x: int, b: int) -> int:
        """The state after one byte (memoised)."""
        memo = self.x_step[x]
        out = memo.get(b)
        if out is not None:
            return out
        terms, charts = self.terms, self.charts
        new = set()
        for c, t, q in self.x_items[x]:
            dfa = terms[t]
            q2 = dfa.rows[q][b]
            if q2:
                new.add((c, t, q2))
            if dfa.acc_list[q]:
                c2 = charts.advance(c, t)
                if c2 >= 0:
                    for t2 in charts.expected[c2]:
                        d2 = terms[t2]
                        q3 = d2.rows[d2.start][b]
                        if q3:
                            new.add((c2, t2, q3))
        out = memo[b] = self._intern(frozenset(new))
        return out

    # ------------------------------------------------------------------ Automaton API
    def initial(self) -> int:
        return self._initial

    def advance(self, state: int, token: int) -> int:
        if state < 0:
            return DEAD
        memo = self.x_tok[state]
        out = memo.get(token)
        if out is None:
            data = self.vocab.token_bytes[token] if 0 <= token < self.vocab.vocab_size else None
            out = state
            if not data:
                out = DEAD
            else:
                for b in data:
                    out = self.step(out, b)
                    if out < 0:
                        break
            memo[token] = out
        return out

    def is_complete(self, state: int) -> bool:
        if state < 0:
            return False
        out = self._complete.get(state)
        if out is None:
            out = self.x_flag[state]
            if not out:
                for c, t, q in self.x_items[state]:
                    if self.terms[t].acc_list[q]:
                        c2 = self.charts.advance(c, t)
                        if c2 >= 0 and self.charts.accept[c2]:
                            out = True
                            break
            self._complete[state] = out
        return out

    def _walk(self, t: int, q: int) -> tuple[np.ndarray, np.ndarray]:
        key = (t, q)
        w = self._walks.get(key)
        if w is None:
            v = self.vocab
            dfa = self.terms[t]
            nodes = v.walk_table(dfa.table, q)
            inside = nodes[v.token_node] != 0
            node_acc = dfa.accepting[nodes[:-1]]
            node_acc[0] = False
            crossing = np.nonzero(node_acc & v.has_children)[0]
            w = self._walks[key] = (inside, crossing)
        return w

    def mask_np(self, state: int) -> np.ndarray:
        if state < 0:
            return np.zeros(self.vocab.vocab_size, dtype=bool)
        out = self._np_masks.get(state)
        if out is not None:
            return out
        v = self.vocab
        allowed = np.zeros(v.vocab_size, dtype=bool)
        for c, t, q in self.x_items[state]:
            inside, crossing = self._walk(t, q)
            allowed |= inside
            closes_here = self.terms[t].acc_list[q]
            if not (crossing.size or closes_here):
                continue
            c2 = self.charts.advance(c, t)
            if c2 < 0:
                continue
            xs = self.chart_start(c2)
            if xs < 0:
                continue
            if closes_here:
                allowed |= self.mask_np(xs)
            if crossing.size:
                self._walk_subtrees(crossing.tolist(), xs, allowed)
        self._np_masks[state] = allowed
        return allowed

    def _walk_subtrees(self, roots: list[int], xs: int, allowed: np.ndarray) -> None:
        """Mark the tokens under each root node whose remaining bytes are accepted from state xs."""
        end, byte, tokens_at, step = self.vocab.end_list, self.vocab.byte_list, self.vocab.node_tok_list, self.step
        for root in roots:
            stack = [(root, xs)]
            while stack:
                node, x = stack.pop()
                k, stop = node + 1, end[node]
                while k < stop:
                    x2 = step(x, byte[k])
                    if x2 >= 0:
                        toks = tokens_at.get(k)
                        if toks:
                            allowed[toks] = True
                        if end[k] > k + 1:
                            stack.append((k, x2))
                    k = end[k]

    def n_states(self) -> int:
        """Number of parser states interned so far (for tests and benchmarks)."""
        return len(self.x_items)
