"""One pipeline, end to end: source -> batcher -> processors -> every sink -> commit policy ->
checkpoints (the state store) -> source.commit(committed). The data path and control live here;
opening and closing in `worker.assembly`. Imports: stdlib + shared + worker (never supervisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from shared.errors import ConfigError, ErrorInfo, FatalSinkError, PipelineFailed, SourceError
from shared.spec.model import PipelineSpec
from shared.store import LeaseLost
from worker.assembly import Parts, Wiring, open_pipeline
from worker.backfill import Backfills, answer
from worker.backoff import sleep_or_stop
from worker.batcher import Batch, Batcher
from worker.health import Health, gap_writer
from worker.parking import park_poison
from worker.processing import unchanged_encodings
from worker.walguard import WalGuard

STOP_DRAIN_S = 10.0
READ_AHEAD_CHUNKS = 4
_REOPEN = object()
_WAKE = object()  # a stop wakes the batch loop at once


class Pipeline:
    """Runs the loops over the parts `open_pipeline` builds; its state is its control and health."""

    def __init__(self, spec: PipelineSpec, store: Any, log: Any, *, state_dir: str, start_paused: bool = False) -> None:
        self.spec = spec
        self.name = spec.metadata.name
        self.store = store
        self.log = log
        self.batch_spec = spec.spec.batch
        self.store_pool = ThreadPoolExecutor(1, thread_name_prefix="store")
        self.health = Health(log, gap_writer(store, self.store_pool, self.name))
        self.gate = asyncio.Event()  # set = running, clear = paused
        if not start_paused:
            self.gate.set()
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.backfills = Backfills(self._save_snapshot, log)
        parts = (self.store_pool, log, state_dir, self.gate, self.stopping, self.health, self._on_lease_lost)
        self.wiring = Wiring(spec, store, *parts, self.backfills)
        self.parts: Parts | None = None
        self.drop_source_state = False
        self.lease_lost: LeaseLost | None = None
        self.coordinating = False
        self._refused = False  # a batch was refused a place in the window by a stop
        self._queue: asyncio.Queue[Any] | None = None  # reader -> batch loop
        self.pause_requested = start_paused  # a DLQ replay (which holds deliveries) leaves it paused

    @property
    def p(self) -> Parts:
        assert self.parts is not None, "the pipeline is not open"
        return self.parts

    def _on_lease_lost(self, exc: LeaseLost) -> None:
        """Another node took this pipeline over: stop now; run() then raises `exc`."""
        self.lease_lost = exc
        self.health.error(ErrorInfo(kind="state", message=str(exc), retryable=True))
        self.request_stop()

    def _save_snapshot(self, snap_id: str, doc: str) -> Any:
        fut = self.store_pool.submit(self.store.save_snapshot, self.name, snap_id, doc)
        warn = self.log.warning
        fut.add_done_callback(
            lambda f: f.exception() and warn("backfill_store_failed", snapshot=snap_id, error=str(f.exception()))
        )
        return fut

    async def snapshot_command(self, cmd: Any) -> Any:
        """An incremental snapshot request from the supervisor: the SnapshotReply, once stored."""
        source = self.parts.source.current if self.parts is not None and self.ready.is_set() else None
        reply = answer(cmd, self.backfills, source)
        await asyncio.wrap_future(self.store_pool.submit(lambda: None))  # after its own write (one thread)
        return reply

    async def _dispatch(self, batch: Batch) -> None:
        p = self.p
        if self._refused or not await p.commits.acquire(self.stopping):
            # stopping: this batch is not committed and is read again at the next start, and so
            # is every later one: none may be delivered past it (its checkpoint would skip it)
            self._refused = True
            return
        self.coordinating = True
        try:
            c = self.health.counters
            c.events_in += len(batch.events)
            if p.chain:
                try:
                    out = await p.chain.run(batch.encoded, partial(sleep_or_stop, self.stopping), batch.events)
                    poison = p.chain.take_poison()
                    if poison:
                        await park_poison(p.parker, p.chain, batch, poison)
                    batch.out_events = out
                    batch.out_native = unchanged_encodings(batch.events, batch.encoded, out)
                finally:
                    c.processor_ms, c.processor_ms_by_id = p.chain.busy_ms, dict(p.chain.busy_by_id)
            p.commits.track(batch)
            for r in p.runners:
                r.submit(batch)
        finally:
            self.coordinating = False

    # ---------------------------------------------------------------- loops
    async def _reader_loop(self, queue: asyncio.Queue[Any]) -> None:
        source = self.p.source
        while not self.stopping.is_set():
            await self.gate.wait()
            try:
                chunk = await source.current.read()
            except SourceError as exc:
                if not exc.retryable:  # what was read before it is delivered first (_batch_loop)
                    await queue.put(exc)
                    return
                self.health.error(exc.info())
                self.log.warning("source_failed", error=exc.message)
                await queue.put(_REOPEN)
                return
            except ConfigError as exc:
                raise PipelineFailed(exc.info()) from exc
            if chunk is not None and (chunk.events or chunk.tx_end):
                await queue.put(chunk)

    async def _batch_loop(self, tasks: asyncio.TaskGroup) -> None:
        b = self.batch_spec
        batcher = Batcher(b.max_events, b.max_bytes, b.max_ms, b.respect_source_tx)
        # read-ahead of a few chunks only: events consumed soon after they are made are still
        # in the CPU cache when they are batched, written and freed (measured: generator -> file
        # +25% events/s with 4 chunks of 250 against 32)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=READ_AHEAD_CHUNKS)
        self._queue = queue
        reader = tasks.create_task(self._guard(self._reader_loop(queue)), name="reader_loop")
        commits = self.p.commits
        caught_up, failed = False, None  # the source said it has nothing more right now / failed for good
        while not self.stopping.is_set():
            await self.gate.wait()
            if not queue.empty():
                item = queue.get_nowait()
            else:
                deadline = batcher.deadline()
                # never a zero timeout: a due batch waiting for its transaction's end must still read
                timeout = 1.0 if deadline is None else max(0.002, deadline - time.monotonic())
                if caught_up and commits.inflight and batcher.pending:
                    timeout = 0.002  # a caught-up batch goes as soon as the window is empty
                try:
                    async with asyncio.timeout(timeout):  # unlike wait_for, never swallows a cancel
                        item = await queue.get()
                except TimeoutError:
                    item = None
            if item is None:
                due = batcher.due()
                if due is None and caught_up and not commits.inflight:
                    due = batcher.flush()
                if due is not None:
                    await self._dispatch(due)
                continue
            if item is _WAKE:
                continue
            if isinstance(item, SourceError):  # the source failed for good: deliver what came before
                failed = item
                break
            if item is _REOPEN:
                batcher.discard()
                await self._reopen_source(queue)
                reader = tasks.create_task(self._guard(self._reader_loop(queue)), name="reader_loop")
                continue
            for batch in batcher.add(item):
                await self._dispatch(batch)
            # latency: when the source has nothing more right now and no batch is in flight, the
            # open batch goes at once (at a transaction boundary) instead of waiting for max_ms;
            # while one is in flight, it keeps filling (large batches under load)
            caught_up = item.caught_up and queue.empty()
            if caught_up and not commits.inflight:
                now = batcher.flush()
                if now is not None:
                    await self._dispatch(now)
        reader.cancel()
        last = batcher.flush()
        if last is not None and self.p.commits.has_room() and self.lease_lost is None:
            await self._dispatch(last)
        elif last is not None and failed is not None:  # it waits for its place in the window
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_DRAIN_S):
                    await self._dispatch(last)
        if failed is not None:
            await self._drain(STOP_DRAIN_S)
            raise PipelineFailed(failed.info()) from failed

    async def _drain(self, timeout: float | None, *, give_up_on_sink_errors: bool = True) -> bool:
        """Wait for in-flight batches to be committed. A stop does not wait for a sink that
        is failing (nothing is lost: uncommitted batches are read again at the next start)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.p.commits.inflight:
            if (
                (deadline is not None and time.monotonic() > deadline)
                or self.lease_lost is not None
                or (give_up_on_sink_errors and self.health.sink_errors)
            ):
                return False
            await asyncio.sleep(0.02)
        return True

    async def _reopen_source(self, queue: asyncio.Queue[Any]) -> None:
        while not queue.empty():
            queue.get_nowait()
        await self._drain(None, give_up_on_sink_errors=False)
        committed = self.p.commits.committed
        await self.p.source.reopen(committed)
        self.log.info("source_reopened", position=committed)

    async def run(self) -> None:
        """Build, then move data until stopped; raise PipelineFailed on a fatal error."""
        try:
            self.parts = p = await open_pipeline(self.wiring)
        except BaseException:
            self.store_pool.shutdown(wait=True)
            raise
        self.ready.set()
        self.log.info("pipeline_started", committed=p.commits.committed, checkpoints=self.sink_positions())
        try:
            async with asyncio.TaskGroup() as tg:
                sink_tasks = [tg.create_task(self._guard(r.run()), name=f"sink_loop[{r.id}]") for r in p.runners]
                sink_tasks.append(tg.create_task(self._guard(p.commits.loop()), name="checkpoint_loop"))
                guard = WalGuard(self.spec, p, self.health, self.log).run(self.stopping)  # slot lost, WAL retained
                sink_tasks.append(tg.create_task(self._guard(guard), name="wal_guard"))
                await self._batch_loop(tg)
                # stopping: let in-flight batches reach their sinks and be checkpointed
                self.gate.set()
                if not await self._drain(STOP_DRAIN_S):
                    self.log.warning(
                        "stop_without_drain",
                        inflight=len(p.commits.inflight),
                        sink_errors=dict(self.health.sink_errors),
                    )
                for t in sink_tasks:
                    t.cancel()
            if self.lease_lost is not None:
                raise self.lease_lost
        except* PipelineFailed as eg:
            raise eg.exceptions[0] from None
        except* LeaseLost as eg:
            raise eg.exceptions[0] from None
        finally:
            await p.close(self.log, self.drop_source_state)
            self.store_pool.shutdown(wait=True)

    async def _guard(self, coro: Any) -> None:
        """Run a child loop; when it fails, the batch loop also ends by itself (a TaskGroup's
        cancellation of the body can be lost in a wait that completes at the same moment)."""
        try:
            await coro
        except FatalSinkError as exc:
            self.health.sink_failed(exc.err.sink_id, exc.err.message)
            self._halt()
            raise PipelineFailed(exc.err.info()) from exc
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._halt()
            raise

    def _halt(self) -> None:
        self.stopping.set()
        self.gate.set()
        if self._queue is not None and not self._queue.full():
            self._queue.put_nowait(_WAKE)  # a full queue: the batch loop is not waiting on it

    # -------------------------------------------------------------- control
    async def pause(self) -> None:
        """Halt source reading, batch coordination and deliveries; return once still."""
        self.pause_requested = True
        self.gate.clear()
        runners = self.parts.runners if self.parts else []
        while self.coordinating or any(r.busy for r in runners):
            await asyncio.sleep(0.01)

    def resume(self) -> None:
        self.pause_requested = False
        self.gate.set()

    def request_stop(self, drop_source_state: bool = False) -> None:
        self.drop_source_state = self.drop_source_state or drop_source_state
        self._halt()

    def sink_positions(self) -> dict[str, str | None]:
        return {r.id: r.checkpoint for r in self.parts.runners} if self.parts else {}

    def source_stats(self) -> dict[str, Any]:
        return self.parts.source.stats() if self.parts else {}
