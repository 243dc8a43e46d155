"""Delivery to one sink: an ordered queue, retries with backoff + jitter, the
sink's own checkpoint, skip-already-delivered, and the bounded backlog of a
best-effort sink (CONTRACT section 7).

Imports: stdlib + shared + worker.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

from shared.errors import FatalSinkError, SinkError
from worker.backoff import backoff
from worker.batcher import Batch
from worker.commit import position_le, skip_delivered
from worker.health import Health
from worker.parking import position_of
from worker.sink_narrowing import narrow_sink
from worker.sinks.base import Sink, SinkBatch, merge_batches


class SinkRunner:
    def __init__(
        self,
        sink: Sink,
        *,
        waited: bool,
        key: Callable[[str], Any],
        gate: asyncio.Event,
        checkpoint: str | None,
        on_delivered: Callable[[SinkRunner, Batch], None],
        committed: Callable[[], str | None],
        health: Health,
        log: Any,
    ) -> None:
        self.sink = sink
        self.id = sink.id
        self.waited = waited
        self.key = key
        self.gate = gate
        self.checkpoint = checkpoint
        self.on_delivered = on_delivered  # the commit side stores the checkpoint
        self.committed = committed  # the pipeline's committed position, now
        self.health = health
        self.log = log
        self.backlog_limit: int = sink.config.backlog_events
        self.queue: collections.deque[Batch] = collections.deque()
        self.queued_events = 0
        self.busy = False
        self.writing = 0  # batches at the head of the queue being written now
        # a sink that can deliver several queued batches with one acknowledgement wait
        self.write_many: Callable[[list[SinkBatch]], Any] | None = getattr(sink, "write_many", None)
        self.delivered_events = 0
        self.error_count = 0
        self._wake = asyncio.Event()
        self._last_gap_seq = -1
        self._skipped_seq = -1  # batches up to this seq were skipped whole (skip_ahead): never written
        # False: the sink's open failed retryably at start; run() keeps opening it first
        self.opened = True
        self.on_error: str = getattr(sink.config, "on_error", "fail")
        self.parker: Any = None  # worker.parking.Parker: where refused events go (dlq | skip)

    # -------------------------------------------------------------- enqueue
    def submit(self, batch: Batch) -> None:
        self.queue.append(batch)
        self.queued_events += len(batch.events)
        self._wake.set()
        if not self.waited:
            self._trim()

    def _trim(self) -> None:
        """A best-effort sink further behind than its backlog skips ahead, but
        only over batches the commit policy no longer needs it for."""
        committed = self.committed()
        head = max(1, self.writing)  # never a batch that may be being written
        while self.queued_events > self.backlog_limit and len(self.queue) > head:
            victim = self.queue[head]
            if not position_le(victim.last_position, committed, self.key):
                break
            del self.queue[head]
            self.queued_events -= len(victim.events)
            if self.checkpoint is not None and position_le(victim.last_position, self.checkpoint, self.key):
                continue  # read again after a restart, and the sink has all of it: no gap
            extend = victim.seq == self._last_gap_seq + 1
            self._last_gap_seq = victim.seq
            self.health.gap(self.id, self._first_skipped(victim), victim.last_position, extend)

    def _first_skipped(self, victim: Batch) -> str:
        """The own position of the first event of `victim` this sink never gets (a batch
        read again after a restart may start at or below the sink's checkpoint)."""
        ck = self.checkpoint
        if ck is None or not position_le(victim.first_position, ck, self.key):
            return victim.first_position
        for ev in skip_delivered(victim.events, ck, self.key):
            pos = (ev.get("source") or {}).get("position")
            if pos is not None:
                return str(pos)
        return victim.first_position

    def skip_ahead(self) -> str | None:
        """Drop the whole backlog of a best-effort sink (source.config.on_retained_wal:
        pause_best_effort), a write being retried included, and move its checkpoint to the last
        dropped position: a gap from its head, never silent. It goes on from the live position.
        Returns the new checkpoint (None: it had nothing to skip)."""
        first = self.head()
        if first is None or not self.queue:
            return None
        last = self.queue[-1]
        extend = self.queue[0].seq == self._last_gap_seq + 1
        self.queue.clear()
        self.queued_events = 0
        self._skipped_seq = self._last_gap_seq = last.seq
        self.checkpoint = last.last_position
        self.health.gap(self.id, first, last.last_position, extend)
        return last.last_position

    def head(self) -> str | None:
        """The own position of the first event this sink was given and has not acknowledged
        (None: it has everything it was given). Stored with the checkpoints, it names the
        `from` of the gap a restart records when this sink is left behind."""
        ck = self.checkpoint
        for batch in self.queue:
            if ck is None or not position_le(batch.last_position, ck, self.key):
                return self._first_skipped(batch)
        return None

    def lag(self, now_ms: int) -> tuple[int, int]:
        """(events, ms) this sink is behind the source: the events read and not acknowledged
        by it, and how old the source time of the oldest of them is (0, 0 when it has all)."""
        if not self.queue:
            return 0, 0
        ts = self.queue[0].source_ts_ms
        return self.queued_events, max(0, now_ms - int(ts)) if ts else 0

    @property
    def idle(self) -> bool:
        return not self.queue and not self.busy

    # ----------------------------------------------------------------- loop
    async def run(self) -> None:
        if not self.opened:
            await self._open_late()
        while True:
            while not self.queue:
                self._wake.clear()
                await self._wake.wait()
            # several queued batches go out together when the sink can wait for all their
            # acknowledgements at once; each is still checkpointed in order, after that wait
            group = list(self.queue) if self.write_many is not None and len(self.queue) > 1 else [self.queue[0]]
            self.writing = len(group)
            try:
                await self._deliver(group)
            finally:
                self.writing = 0
            for batch in group:
                if self.queue and self.queue[0] is batch:
                    self.queue.popleft()
                    self.queued_events -= len(batch.events)
                if batch.seq <= self._skipped_seq:
                    continue  # skipped ahead while it was being written: the checkpoint is past it
                self.checkpoint = batch.last_position  # delivered; the pipeline stores it durably
                self.on_delivered(self, batch)
            if not self.waited:
                self._trim()

    async def _open_late(self) -> None:
        """Open a sink that could not be opened at start, with backoff, while the pipeline
        runs: batches queue meanwhile (a waited-for sink holds the pipeline through the
        commit window; a best-effort one trims its backlog, recording gaps). The sink's own
        checkpoint wins when it is further on than the one it started with."""
        attempt = 0
        while True:
            await self.gate.wait()
            try:
                own = await self.sink.open()
                break
            except SinkError as exc:
                if not exc.retryable:
                    raise FatalSinkError(exc) from exc
                msg = exc.message
            except OSError as exc:
                msg = f"sink '{self.id}': cannot open: {exc.__class__.__name__}: {exc}"
            self.health.sink_error(self.id, msg)
            attempt += 1
            if attempt % 10 == 0:
                self.log.warning("sink_open_failed", sink=self.id, error=msg, attempt=attempt)
            await asyncio.sleep(backoff(attempt))
        if own is not None and not position_le(own, self.checkpoint, self.key):
            self.checkpoint = own
        self.opened = True
        self.health.sink_error(self.id, None)
        self.log.info("sink_opened", sink=self.id, attempts=attempt + 1)

    def _sink_batch(self, batch: Batch) -> SinkBatch | None:
        ck = self.checkpoint
        if ck is not None and position_le(batch.last_position, ck, self.key):
            return None  # everything here was delivered before
        events = batch.out_events if batch.out_events is not None else batch.events
        native = batch.encoded if batch.out_events is None else batch.out_native
        if ck is not None and position_le(batch.first_position, ck, self.key):
            events = skip_delivered(events, ck, self.key)
            native = None
        return SinkBatch(seq=batch.seq, events=events, last_position=batch.last_position, native=native)

    async def _deliver(self, group: list[Batch]) -> None:
        sbs = [sb for sb in map(self._sink_batch, group) if sb is not None]
        if not sbs:
            return
        attempt = 0
        while True:
            await self.gate.wait()
            if group[-1].seq <= self._skipped_seq:
                return  # skipped ahead meanwhile (skip_ahead): give up this write
            self.busy = True
            try:
                if len(sbs) == 1:
                    await self.sink.write(sbs[0])
                else:
                    assert self.write_many is not None
                    await self.write_many(sbs)
                self.busy = False
                self.delivered_events += sum(len(sb.events) for sb in sbs)
                if attempt:
                    self.health.sink_error(self.id, None)
                    self.log.info("sink_recovered", sink=self.id, attempts=attempt)
                return
            except SinkError as exc:
                self.busy = False
                if not exc.retryable:
                    if self.on_error == "fail" or self.parker is None:
                        raise FatalSinkError(exc) from exc
                    narrowed = await self._narrow(sbs, exc)
                    if narrowed is None:
                        if attempt:
                            self.health.sink_error(self.id, None)
                        return
                    exc = narrowed
                msg = exc.message
            except asyncio.CancelledError:
                self.busy = False
                raise
            except Exception as exc:  # noqa: BLE001 - an unexpected client error: retry, say what
                self.busy = False
                msg = f"sink '{self.id}': {exc.__class__.__name__}: {exc}"
            self.error_count += 1
            self.health.sink_error(self.id, msg)
            delay = backoff(attempt)
            if attempt == 0 or attempt % 10 == 0:
                self.log.warning(
                    "sink_write_failed", sink=self.id, error=msg, retry_in_s=round(delay, 2), attempt=attempt + 1
                )
            attempt += 1
            await asyncio.sleep(delay)

    async def _narrow(self, sbs: list[SinkBatch], exc: SinkError) -> SinkError | None:
        """`on_error: dlq|skip`: deliver what the sink accepts, park or skip what it refuses
        for good (durably before the checkpoint moves). A retryable error meanwhile is
        returned: the whole group is retried (at least once)."""
        whole = sbs[0] if len(sbs) == 1 else merge_batches(sbs)
        self.busy = True
        try:
            poison = await narrow_sink(whole, self.sink.write, exc, self.checkpoint)
        except SinkError as again:
            if not again.retryable:
                raise FatalSinkError(again) from again
            return again
        finally:
            self.busy = False
        stage = f"sink:{self.id}"
        bad = [whole.events[p.index] for p in poison]
        if self.on_error == "dlq":
            await self.parker.park([self.parker.entry(stage, p.error, e) for p, e in zip(poison, bad)])
        elif poison:
            self.parker.skip(stage, [position_of(e) for e in bad], poison[0].error)
        self.delivered_events += len(whole.events) - len(poison)
        return None
