"""The continuous-batching engine behind `lispe serve`: one worker thread, one shared KV cache.

Rows of the model's static KV cache are the batch. Every iteration of the worker loop:

1. drops rows whose client went away (`Request.cancel()`), and retires them;
2. runs ONE decode step for every active row together (`model.decode`), then lets each request pick
   its rows' next tokens with its own logits processors, sampler and stop rules;
3. admits waiting requests into free rows: their prompts are prefilled into a scratch cache swapped in
   for the call (one prompt alone: the very call a lone `generate` makes; several arriving together:
   one left-padded batch, as `generate_batch` runs it), their keys/values are copied into the shared
   cache and each first token is chosen from the prefill's logits.

All rows share the cache slot written by a step (`cur`); a row's prompt is written so that it ends at
`cur`, i.e. it is LEFT-PADDED inside the shared timeline: its `pad` slots before are hidden by the
kv_mask and its RoPE/absolute positions are `slot - pad` (`position_ids`), exactly how the engine runs a
left-padded batch (docs/internals.md). When the timeline reaches the end of the cache it is either
grown (reallocated, contents copied) or shifted left by the smallest pad; a prompt longer than `cur`
shifts the others right. Active rows are kept in cache rows 0..n-1 (a retired row is replaced by the
last one), so a step computes only live rows.

Exactness: with greedy decoding a request's tokens are those of `generate(model, ids, cfg)` for it
alone (same prefill, masked-out padding contributes nothing; float rounding differs at ~1e-7 only).
With a `seed`, row j of a request samples from its own generator seeded `seed + j`, one uniform per
step, as `generate` does, so seeded sampling is reproducible whatever else runs in the batch.
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..generation.config import GenerationConfig, GenerationError
from ..generation.detok import IncrementalDecoder
from ..generation.generate import Plan, _Sampler, make_plan
from ..models.layers import KVCache

#: smallest cache length allocated (slots); it doubles as needed up to max_model_len
MIN_SLOTS = 256


@dataclass
class Output:
    """One returned sequence of a request (choice j)."""

    index: int
    tokens: list[int] = field(default_factory=list)
    text: str = ""               # the text returned so far (stop strings cut)
    finish_reason: str | None = None
    logprobs: list[tuple[float, list[tuple[int, float]]]] = field(default_factory=list)
    # internal
    decoder: IncrementalDecoder | None = None
    full: str = ""               # decoded text so far (before stop cutting)
    sent: int = 0                # characters of `text` already emitted as deltas
    sampler: Any = None
    row: int = -1                # cache row while active
    pad: int = 0                 # first cache slot of this row's prompt
    pending: int = -1            # the newest token (chosen, not yet in the cache)


class Request:
    """A request as the engine runs it: one prompt, `n` returned sequences.

    `emit(event)` is called from the worker thread with ("delta", Output, text, new_tokens,
    new_logprobs), ("finish", Output) and, last, ("done", None) or ("error", message)."""

    def __init__(self, prompt_ids: Sequence[int], config: GenerationConfig, plan: Plan, n: int,
                 emit: Callable[[tuple], None], logprobs: int | None = None,
                 include_stop: bool = False, ignore_eos: bool = False):
        self.prompt = [int(t) for t in prompt_ids]
        self.config = config
        self.plan = plan
        self.n = n
        self.emit = emit
        self.top = logprobs           # None: no logprobs; k >= 0: the chosen token's + the k best
        self.include_stop = include_stop
        self.ignore_eos = ignore_eos
        self.max_new = config.max_length
        self.outputs = [Output(j) for j in range(n)]
        self.cancelled = False
        self.arrival = time.monotonic()
        self.first_token_time: float | None = None
        self.history: torch.Tensor | None = None    # [n, P + max_new] token ids (prompt, then new), kept
        # only where the logits chain or a stop criterion reads them
        self.step = 0                                # tokens chosen per row so far

    def cancel(self) -> None:
        """Ask the engine to drop this request (its rows are freed at the next step)."""
        self.cancelled = True

    @property
    def finished(self) -> bool:
        return all(o.finish_reason is not None for o in self.outputs)


class EngineMetrics:
    """Counters the /metrics endpoint prints (updated by the worker; read under `lock`)."""

    TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                    7.5, 10.0, 20.0, 40.0, 80.0)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.finished: dict[str, int] = {}
        self.ttft_counts = [0] * (len(self.TTFT_BUCKETS) + 1)
        self.ttft_sum = 0.0
        self.e2e_counts = [0] * (len(self.TTFT_BUCKETS) + 1)
        self.e2e_sum = 0.0
        self.running = 0
        self.waiting = 0

    @staticmethod
    def _observe(buckets: Sequence[float], counts: list[int], value: float) -> None:
        for i, b in enumerate(buckets):
            if value <= b:
                counts[i] += 1
                return
        counts[-1] += 1


class Engine:
    """The scheduler and decode loop. `submit(request)` from any thread; `start()`/`stop()`."""

    def __init__(self, model: Any, max_batch: int = 16, max_model_len: int | None = None,
                 max_prefill_batch: int = 8):
        self.model = model
        self.max_batch = max(1, int(max_batch))
        self.max_prefill_batch = max(1, int(max_prefill_batch))
        # padded prompt rows one batched prefill may hold: quantized layers run up to NATIVE_MAX_ROWS
        # rows through their kernels, more through a float32 copy of the weight made on each call
        from ..models.quantize import NATIVE_MAX_ROWS, quantized_layers
        self.prefill_rows = NATIVE_MAX_ROWS if any(True for _ in quantized_layers(model)) else 1024
        context = int(model.config.max_position_embeddings)
        self.max_model_len = min(context, int(max_model_len)) if max_model_len else context
        self.tokenizer = getattr(model, "tokenizer", None)
        self.device = model.device
        self.waiting: queue.Queue[Request] = queue.Queue()
        self.pending: list[Request] = []      # taken from `waiting`, not admitted yet (FIFO)
        self.active: list[Request] = []
        self.rows: list[Output] = []          # cache row i holds rows[i]
        self.owner: dict[int, Request] = {}   # id(Output) -> its request
        self.cur = 0                          # the next cache slot a decode step writes
        self.slots = 0                        # cache length allocated
        self.scratch: list[KVCache] | None = None
        self.metrics = EngineMetrics()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.steps = 0

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lispe-serve-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the requests in flight, then end the worker thread."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, request: Request) -> None:
        self.waiting.put(request)
        with self.metrics.lock:
            self.metrics.waiting += 1
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        self._warm_up()
        while True:
            self._drain_waiting()
            if not self.active and not self.pending:
                if self._stop:
                    return
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                with torch.inference_mode():
                    self._iteration()
            except Exception as exc:  # noqa: BLE001 - a failed step fails its requests, not the server
                self._fail_all(exc)

    def _warm_up(self) -> None:
        """Make the CPU decode steps' traces before the first request (requests wait in the queue): a
        lone request then runs the traced step from its first token whatever its length (a generation
        alone traces only from TRACE_MIN_STEPS steps on), and batches run theirs where the model has one
        (DecoderModel.decode). Costs ~0.5-2 s once; a failure here only leaves the steps op by op."""
        model = self.model
        if (self.device.type != "cpu" or not getattr(model, "traced_decode", False) or not hasattr(model, "decode")
                or self.max_model_len < 3):
            return
        try:
            with torch.inference_mode():
                self._ensure_slots(min(MIN_SLOTS, self.max_model_len))
                tokens = torch.zeros(min(2, self.max_batch), dtype=torch.long, device=self.device)
                model.decode(tokens[:1], 1)  # nothing reads these slots: admissions overwrite them
                if len(tokens) == 2:  # rows at different starts, as continuous batching runs them
                    pads = torch.tensor([0, 1], dtype=torch.long, device=self.device)
                    kv_mask = model._slots[None, :self.slots] >= pads[:, None]
                    model.decode(tokens, 2, (2 - pads)[:, None], kv_mask)
        except Exception as exc:  # noqa: BLE001 - the server runs without the traces then
            warnings.warn(f"lispe serve: warming the decode steps up failed ({exc})", RuntimeWarning, stacklevel=1)

    def _drain_waiting(self) -> None:
        while True:
            try:
                self.pending.append(self.waiting.get_nowait())
            except queue.Empty:
                return

    def _iteration(self) -> None:
        for req in [r for r in self.active if r.cancelled]:
            for o in req.outputs:
                if o.finish_reason is None:
                    o.finish_reason = "abort"
            self._retire(req)
        self.pending = [r for r in self.pending if not self._dropped_waiting(r)]
        if self.rows:
            self._decode_step()
        self._admit()
        with self.metrics.lock:
            self.metrics.running = len(self.active)
            self.metrics.waiting = len(self.pending) + self.waiting.qsize()

    def _dropped_waiting(self, req: Request) -> bool:
        if req.cancelled:
            self._finish_request(req, "abort")
            return True
        return False

    def _fail_all(self, exc: BaseException) -> None:
        self.error = exc
        message = f"generation failed: {exc}"
        for req in list(self.active) + list(self.pending):
            req.emit(("error", message))
        self.active, self.pending, self.rows, self.owner = [], [], [], {}
        self.cur = 0

    # ------------------------------------------------------------------ cache management
    def _caches(self) -> list[KVCache]:
        return [block.attn.kv_cache for block in self.model.layers]

    def _ensure_slots(self, needed: int) -> None:
        """The cache holds at least `needed` slots (and max_batch rows), contents kept."""
        if needed <= self.slots:
            return
        size = max(MIN_SLOTS, self.slots)
        while size < needed:
            size *= 2
        size = min(size, self.max_model_len)
        if size < needed:
            raise GenerationError(f"{needed} slots exceed the model's context of {self.max_model_len}")
        old = [(c.k, c.v) for c in self._caches()] if self.slots else None
        self.model.setup_cache(self.max_batch, size)
        n, cur = len(self.rows), self.cur
        if old is not None and n:
            for cache, (k, v) in zip(self._caches(), old):
                cache.k[:n, :, :cur] = k[:n, :, :cur]
                cache.v[:n, :, :cur] = v[:n, :, :cur]
        del old
        self.slots = int(self.model.max_seq_len)

    def _shift(self, d: int) -> None:
        """Move every active row's slots by d (> 0: later, < 0: earlier); pads and cur follow."""
        if d == 0:
            return
        n = len(self.rows)
        lo = min(o.pad for o in self.rows)
        hi = self.cur
        for cache in self._caches():
            for buf in (cache.k, cache.v):
                buf[:n, :, lo + d:hi + d] = buf[:n, :, lo:hi].clone()
        for o in self.rows:
            o.pad += d
        self.cur += d

    def _make_room(self) -> None:
        """Before a decode step: slot `cur` must exist."""
        if self.cur < self.slots:
            return
        m = min(o.pad for o in self.rows)
        if self.slots < self.max_model_len and m < self.slots // 2:
            self._ensure_slots(self.slots + 1)
        elif m > 0:
            self._shift(-m)
        else:  # cannot happen: every request fits max_model_len, so the oldest row has a pad
            raise GenerationError("the KV cache is full")

    @contextlib.contextmanager
    def _scratch_cache(self, length: int, rows: int):
        """Swap a cache of `rows` rows and at least `length` slots into the model's layers for a prefill
        (the shared cache is left alone)."""
        model = self.model
        have = self.scratch[0].k.shape if self.scratch is not None else None
        if have is None or have[2] < length or have[0] < rows:
            rows = max(rows, have[0] if have is not None else 1)
            c = model.config
            size = MIN_SLOTS
            while size < length:
                size *= 2
            self.scratch = None
            self.scratch = [KVCache(rows, c.num_kv_heads, size, c.head_dim, model.dtype, model.device)
                            for _ in model.layers]
        saved = self._caches()
        for block, cache in zip(model.layers, self.scratch):
            block.attn.kv_cache = cache
        try:
            yield self.scratch
        finally:
            for block, cache in zip(model.layers, saved):
                block.attn.kv_cache = cache

    # ------------------------------------------------------------------ admission
    def _admit(self) -> None:
        """Admit waiting requests (oldest first) while their rows fit; their prompts are prefilled
        together (left-padded, as `generate_batch` runs a ragged batch), or alone when only one."""
        batch: list[Request] = []
        free = self.max_batch - len(self.rows)
        longest = 0
        while self.pending and self.pending[0].n <= free and len(batch) < self.max_prefill_batch:
            req = self.pending[0]
            longest2 = max(longest, len(req.prompt))
            if batch and longest2 * (len(batch) + 1) > self.prefill_rows:
                break   # the next step admits it
            self.pending.pop(0)
            longest = longest2
            free -= req.n
            batch.append(req)
        if not batch:
            return
        try:
            self._start(batch)
        except GenerationError as exc:
            for req in batch:
                if req not in self.active:
                    req.emit(("error", str(exc)))

    def _start(self, batch: list[Request]) -> None:
        lengths = [len(r.prompt) for r in batch]
        p = max(lengths)
        self._ensure_slots(p + 1)
        if not self.rows:
            self.cur = p
        elif self.cur < p:
            self._shift(p - self.cur)
        b = len(batch)
        if b == 1:    # exactly the call `generate` makes for this prompt alone
            ids = torch.tensor([batch[0].prompt], dtype=torch.long, device=self.device)
            with self._scratch_cache(p, 1) as scratch:
                logits = self.model.prefill(ids)
        else:
            pads = torch.tensor([p - n for n in lengths], dtype=torch.long, device=self.device)
            ids = torch.tensor([[r.plan.special.input_pad] * (p - len(r.prompt)) + r.prompt for r in batch],
                               dtype=torch.long, device=self.device)
            pos = torch.arange(p, device=self.device)
            kv_mask = pos[None, :] >= pads[:, None]
            position_ids = (pos[None, :] - pads[:, None]).clamp(min=0)
            with self._scratch_cache(p, b) as scratch:
                logits = self.model.prefill(ids, position_ids=position_ids, kv_mask=kv_mask)
        for i, req in enumerate(batch):
            n = lengths[i]
            base = len(self.rows)
            start = self.cur - n
            for j, o in enumerate(req.outputs):
                r = base + j
                for cache, sc in zip(self._caches(), scratch):
                    cache.k[r, :, start:self.cur] = sc.k[i, :, p - n:p]
                    cache.v[r, :, start:self.cur] = sc.v[i, :, p - n:p]
                o.row, o.pad = r, start
                self.rows.append(o)
                self.owner[id(o)] = req
                if self.tokenizer is not None:
                    o.decoder = IncrementalDecoder(self.tokenizer, req.prompt)
                if not req.plan.greedy:
                    seed = req.config.seed
                    o.sampler = _Sampler(1, None if seed is None else seed + j, 1, self.device)
            if len(req.plan.chain) or req.plan.stopping:  # what the logits chain and stop criteria read
                req.history = torch.empty((req.n, n + req.max_new), dtype=torch.long, device=self.device)
                req.history[:, :n] = torch.tensor(req.prompt, dtype=torch.long, device=self.device)
            self.active.append(req)
            with self.metrics.lock:
                self.metrics.prompt_tokens += n
        for i, req in enumerate(batch):
            self._choose(req, req.outputs, logits[i:i + 1].expand(req.n, -1))

    # ------------------------------------------------------------------ decoding
    def _decode_step(self) -> None:
        self._make_room()
        rows = self.rows
        n = len(rows)
        tokens = torch.tensor([o.pending for o in rows], dtype=torch.long, device=self.device)
        pads = [o.pad for o in rows]
        slot = self.cur
        if any(pads):
            pad = torch.tensor(pads, dtype=torch.long, device=self.device)
            kv_mask = self.model._slots[None, :self.slots] >= pad[:, None]
            position_ids = (slot - pad)[:, None]
        else:
            kv_mask = position_ids = None
        steps_left = None
        if n == 1:
            req = self.owner[id(rows[0])]
            steps_left = req.max_new - req.step
        logits = self.model.decode(tokens, slot, position_ids, kv_mask, steps_left=steps_left)
        self.cur += 1
        self.steps += 1
        by_req: dict[int, tuple[Request, list[Output], list[int]]] = {}
        for i, o in enumerate(rows):
            req = self.owner[id(o)]
            entry = by_req.setdefault(id(req), (req, [], []))
            entry[1].append(o)
            entry[2].append(i)
        # Where every request of the step picks its rows' argmax of the raw logits (greedy, no logits
        # processor), one argmax over all the rows serves them all (the same ids as one per request).
        picks = None
        if all(req.plan.greedy and not len(req.plan.chain) for req, _, _ in by_req.values()):
            picks = logits.argmax(dim=-1).tolist()
        for req, outs, idx in by_req.values():
            if len(idx) == n:
                rows_logits = logits
            elif idx[-1] - idx[0] == len(idx) - 1:  # a request's rows are usually adjacent: a view, no copy
                rows_logits = logits[idx[0]:idx[-1] + 1]
            else:
                rows_logits = logits[idx]
            self._choose(req, outs, rows_logits, None if picks is None else [picks[i] for i in idx])

    def _choose(self, req: Request, outs: list[Output], logits: torch.Tensor,
                picks: list[int] | None = None) -> None:
        """Pick the next token of each of `outs` (live rows of `req`) from their logits [k, V]
        (`picks`: their argmax, already taken for the whole step, when `req` is greedy without
        logits processors)."""
        plan = req.plan
        k = len(outs)
        step = req.step
        p = len(req.prompt)
        rows = slice(None) if k == req.n else [o.index for o in outs]
        reads_history = bool(len(plan.chain) or plan.stopping)  # (else no tensor work per token)
        if picks is not None:
            nxt = torch.tensor(picks, dtype=torch.long, device=self.device) if reads_history else None
        else:
            if len(plan.chain):
                scores = plan.chain(req.history[rows, :p + step], logits)
            else:
                scores = logits
            if plan.greedy:
                nxt = scores.argmax(dim=-1)
            else:
                nxt = torch.cat([o.sampler(scores[i:i + 1]) for i, o in enumerate(outs)])
            picks = nxt.tolist()
        lps = None
        if req.top is not None:
            lps = torch.log_softmax(logits.float(), dim=-1)
        if reads_history:
            req.history[rows, p + step] = nxt
        stopped = [False] * k
        if plan.stopping:
            new_hist = req.history[rows, :p + step + 1]
            hits = torch.zeros(k, dtype=torch.bool)
            for criterion in plan.stopping:
                hits = hits | criterion(new_hist, nxt).to(torch.bool).cpu()
            stopped = hits.tolist()
        req.step += 1
        if req.first_token_time is None:
            req.first_token_time = time.monotonic()
            with self.metrics.lock:
                EngineMetrics._observe(EngineMetrics.TTFT_BUCKETS, self.metrics.ttft_counts,
                                       req.first_token_time - req.arrival)
                self.metrics.ttft_sum += req.first_token_time - req.arrival
        eos = set(plan.special.eos) if not req.ignore_eos else set()
        stops = req.config.stop
        for i, (o, t) in enumerate(zip(outs, picks)):
            o.tokens.append(t)
            o.pending = t
            new_lp = None
            if lps is not None:
                row = lps[i]
                top = []
                if req.top:
                    vals, ids = row.topk(req.top)
                    top = list(zip(ids.tolist(), vals.tolist()))
                new_lp = (float(row[t]), top)
                o.logprobs.append(new_lp)
            reason = None
            if t in eos:
                reason = "stop"
            elif stopped[i]:
                reason = "stop"
            elif req.step >= req.max_new:
                reason = "length"
            piece = o.decoder.push(t) if o.decoder is not None else ""
            if reason is not None and o.decoder is not None:
                piece += o.decoder.flush()
            before = len(o.full)
            o.full += piece
            o.text = o.full
            if stops and piece:
                cut = _find_stop(o.full, stops, before)
                if cut is not None:
                    start, end = cut
                    o.text = o.full[:end] if req.include_stop else o.full[:start]
                    o.full = o.full[:end]
                    reason = "stop"
            if reason is None and stops:
                hold = max(len(s) for s in stops) - 1
                ready = max(o.sent, len(o.full) - hold)
            else:
                ready = len(o.text)
            delta = o.text[o.sent:ready]
            o.sent = max(o.sent, ready)
            req.emit(("delta", o, delta, [t], [new_lp] if new_lp is not None else []))
            if reason is not None:
                o.finish_reason = reason
                req.emit(("finish", o))
        with self.metrics.lock:
            self.metrics.generation_tokens += k
        if any(o.finish_reason is not None for o in outs):
            self._retire_rows([o for o in outs if o.finish_reason is not None])
            if req.finished:
                self._finish_request(req, None)

    # ------------------------------------------------------------------ retiring
    def _retire_rows(self, outs: list[Output]) -> None:
        for o in outs:
            if o.row < 0:
                continue
            r = o.row
            last = self.rows[-1]
            if last is not o:
                lo = last.pad
                for cache in self._caches():
                    cache.k[r, :, lo:self.cur] = cache.k[last.row, :, lo:self.cur]
                    cache.v[r, :, lo:self.cur] = cache.v[last.row, :, lo:self.cur]
                self.rows[r] = last
                last.row = r
            self.rows.pop()
            self.owner.pop(id(o), None)
            o.row = -1
        if not self.rows:
            self.cur = 0

    def _retire(self, req: Request) -> None:
        self._retire_rows([o for o in req.outputs if o.row >= 0])
        self._finish_request(req, None)

    def _finish_request(self, req: Request, reason: str | None) -> None:
        if reason is not None:
            for o in req.outputs:
                if o.finish_reason is None:
                    o.finish_reason = reason
        if req in self.active:
            self.active.remove(req)
        now = time.monotonic()
        with self.metrics.lock:
            for o in req.outputs:
                key = o.finish_reason or "abort"
                self.metrics.finished[key] = self.metrics.finished.get(key, 0) + 1
            EngineMetrics._observe(EngineMetrics.TTFT_BUCKETS, self.metrics.e2e_counts, now - req.arrival)
            self.metrics.e2e_sum += now - req.arrival
        req.emit(("done", None))


def _find_stop(text: str, stops: Sequence[str], before: int) -> tuple[int, int] | None:
    """(start, end) of the earliest stop string in `text` that ends after position `before`."""
    best = None
    for s in stops:
        i = text.find(s, max(0, before - len(s) + 1))
        if i >= 0 and (best is None or i < best[0]):
            best = (i, i + len(s))
    return best


def build_request_plan(model: Any, prompt_ids: Sequence[int], config: GenerationConfig,
                       extra: Sequence[Any] = ()) -> Plan:
    """Validate one prompt + config against the model (GenerationError when they cannot run) and
    build its logits chain, constraint and stop criteria, as `generate` would for it alone."""
    return make_plan(model, [list(prompt_ids)], config, extra_processors=tuple(extra))
