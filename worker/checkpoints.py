"""The commit side of a pipeline: the max_inflight window, per-sink checkpoints
made durable in the state store (one transaction for every sink that moved,
off the sinks' write path), and the committed position the policy allows
(CONTRACT section 7). Imports: stdlib + shared + worker.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.errors import ErrorInfo
from shared.protocol import BATCH_MS_BUCKETS, BATCH_SIZE_BUCKETS
from shared.store import LeaseLost, StoreUnavailable
from shared.store.base import StateStore
from worker.backoff import backoff
from worker.batcher import Batch
from worker.commit import committed_position, holders, position_le
from worker.delivery import SinkRunner
from worker.health import Health


class Committer:
    def __init__(
        self,
        pipeline: str,
        store: StateStore,
        store_pool: ThreadPoolExecutor,
        policy: Any,
        max_inflight: int,
        health: Health,
        log: Any,
        *,
        on_commit: Callable[[str], Awaitable[None]],
        on_lease_lost: Callable[[LeaseLost], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.store_pool = store_pool
        self.policy = policy
        self.health = health
        self.counters = health.counters
        self.log = log
        self.on_commit = on_commit  # the source may acknowledge this position upstream
        self.on_lease_lost = on_lease_lost  # shared state store: another node runs the pipeline now
        self.inflight: collections.deque[Batch] = collections.deque()
        self.sem = asyncio.Semaphore(max_inflight)
        self.committed: str | None = None
        self.durable: dict[str, str | None] = {}  # per-sink checkpoints stored in the state store
        self._pending: dict[str, str] = {}  # delivered, not yet stored
        self._wake = asyncio.Event()
        self.key: Any = None
        self.sinks: list[tuple[str, bool]] = []  # (id, required)
        self.unwaited: list[SinkRunner] = []  # sinks the policy does not wait for one by one
        self._heads: dict[str, str | None] = {}  # as last stored

    def start(self, runners: list[SinkRunner], key: Any) -> None:
        """Take the sinks' starting checkpoints; compute the committed position from them."""
        self.key = key
        self.sinks = [(r.id, r.sink.config.required) for r in runners]
        self.durable = {r.id: r.checkpoint for r in runners}
        self.unwaited = [r for r in runners if not r.waited]
        self.committed = self.policy_position()

    def store_later(self, sink_id: str, position: str) -> None:
        """Store a checkpoint no delivery made (a best-effort sink skipped ahead at start)."""
        self._pending[sink_id] = position
        self._wake.set()

    def _changed_heads(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for r in self.unwaited:
            h = r.head()
            if r.id not in self._heads or self._heads[r.id] != h:
                out[r.id] = h
        return out

    def detach_holders(self) -> list[str]:
        """The best-effort sinks that hold the committed position back (so the source cannot
        confirm, and the slot keeps WAL) skip their backlog ahead, gaps recorded; their new
        checkpoints are stored and the committed position moves on. Returns their ids."""
        lagging = {r.id: r.queue[-1].last_position for r in self.unwaited if r.queue}
        ids = holders(self.policy.mode, self.policy.quorum, self.sinks, self.durable, lagging, self.key)
        done = []
        for r in self.unwaited:
            if r.id in ids:
                position = r.skip_ahead()
                if position is not None:
                    self.store_later(r.id, position)
                    done.append(r.id)
        return done

    def policy_position(self) -> str | None:
        return committed_position(self.policy.mode, self.policy.quorum, self.sinks, self.durable, self.key)

    # --------------------------------------------------------------- window
    def has_room(self) -> bool:
        return not self.sem.locked()

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """A place in the max_inflight window, or False once a stop is requested."""
        if not self.sem.locked():
            await self.sem.acquire()
            return True
        acq = asyncio.ensure_future(self.sem.acquire())
        stop = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({acq, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if acq.done() and not acq.cancelled():
            return True
        acq.cancel()
        try:
            await acq
            self.sem.release()  # acquired while being cancelled: give it back
        except asyncio.CancelledError:
            pass
        return False

    def track(self, batch: Batch) -> None:
        self.inflight.append(batch)
        self.counters.inflight = len(self.inflight)

    # ---------------------------------------------------------- checkpoints
    def on_delivered(self, runner: SinkRunner, batch: Batch) -> None:
        """A sink acknowledged a batch: store its checkpoint (coalesced, off the sink's path)."""
        self._pending[runner.id] = batch.last_position
        self.health.delivered(runner.id, runner.delivered_events)
        self._wake.set()

    async def loop(self) -> None:
        """Store delivered checkpoints durably, then advance the committed position.
        A sink goes on writing its next batch meanwhile."""
        attempt = 0
        run = asyncio.get_running_loop().run_in_executor
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            snap, self._pending = self._pending, {}
            heads = self._changed_heads()
            try:
                await run(self.store_pool, self.store.save_checkpoints, self.pipeline, snap, heads)
            except LeaseLost as exc:
                # fenced: nothing more may be checkpointed; the pipeline stops (no drain to wait for)
                if self.on_lease_lost is None:
                    raise
                self.on_lease_lost(exc)
                return
            except (sqlite3.Error, StoreUnavailable) as exc:
                self._pending = {**snap, **self._pending}
                self.health.error(ErrorInfo(kind="state", message=f"state store: {exc}", retryable=True))
                self.log.warning("checkpoint_store_failed", error=str(exc))
                await asyncio.sleep(backoff(attempt))
                attempt += 1
                self._wake.set()
                continue
            attempt = 0
            self._heads.update(heads)
            self.durable.update(snap)
            await self._advance()

    async def _advance(self) -> None:
        new = self.policy_position()
        if new is None or (self.committed is not None and position_le(new, self.committed, self.key)):
            return
        self.committed = new
        c = self.counters
        now_ms = int(time.time() * 1000)
        while self.inflight and position_le(self.inflight[0].last_position, new, self.key):
            b = self.inflight.popleft()
            c.batches += 1
            c.events_out += len(b.out_events if b.out_events is not None else b.events)
            c.batch_events_sum += len(b.events)
            ms = (time.monotonic() - b.opened_at) * 1000
            c.batch_ms_sum += ms
            c.batch_size_hist[bisect.bisect_left(BATCH_SIZE_BUCKETS, len(b.events))] += 1
            c.batch_ms_hist[bisect.bisect_left(BATCH_MS_BUCKETS, ms)] += 1
            if b.source_ts_ms:
                c.lag_ms = max(0, now_ms - int(b.source_ts_ms))
            self.sem.release()
        c.inflight = len(self.inflight)
        await self.on_commit(new)
