"""Committer: per-sink checkpoints made durable in a real SQLite state store, the committed
position each commit policy allows, and the max_inflight window it frees.

The sinks are SinkRunners over a no-op Sink (no server is imitated): what is tested is
which deliveries advance the committed position, what reaches the store, and when.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

from shared.errors import ErrorInfo
from shared.spec.model import CommitPolicy, FileSinkConfig
from shared.store.sqlite import SCHEMA, SqliteStore
from tests.support.health import Recording, batch
from worker.batcher import Batch
from worker.checkpoints import Committer
from worker.delivery import SinkRunner
from worker.sinks.base import Sink, SinkBatch, SinkContext


class Null(Sink):
    async def write(self, b: SinkBatch) -> None:
        pass


def runner(sid: str, required: bool, checkpoint: str | None) -> SinkRunner:
    cfg = FileSinkConfig(id=sid, path="/dev/null", required=required)
    return SinkRunner(
        Null(cfg, SinkContext(pipeline="p", position_key=int)),
        waited=required,
        key=int,
        gate=asyncio.Event(),
        checkpoint=checkpoint,
        on_delivered=lambda r, b: None,
        committed=lambda: None,
        health=Recording(),
        log=structlog.get_logger(),
    )


class Harness:
    def __init__(self, c: Committer, runners: dict[str, SinkRunner], store: SqliteStore) -> None:
        self.c = c
        self.runners = runners
        self.store = store
        self.commits: list[str] = []
        self.errors: list[ErrorInfo] = []

    async def deliver(self, sid: str, b: Batch) -> None:
        """What a SinkRunner does after a write: hand the batch over; wait until it is stored."""
        self.c.on_delivered(self.runners[sid], b)
        await until(lambda: self.c.durable.get(sid) == b.last_position, f"{sid} at {b.last_position}")

    async def dispatch(self, *batches: Batch) -> None:
        for b in batches:
            assert await self.c.acquire(asyncio.Event())
            self.c.track(b)

    def stored(self) -> dict[str, str]:
        return {sid: pos for sid, (pos, _at) in self.store.checkpoints("p").items()}


async def until(pred: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


@asynccontextmanager
async def committer(
    tmp_path: Path,
    sinks: dict[str, tuple[bool, str | None]],
    mode: str,
    quorum: int | None = None,
    max_inflight: int = 8,
) -> AsyncIterator[Harness]:
    """A started Committer over `sinks` (id -> (required, starting checkpoint)), its loop running."""
    store = SqliteStore(tmp_path).open()
    pool = ThreadPoolExecutor(1, thread_name_prefix="store")
    holder: list[Harness] = []

    async def on_commit(pos: str) -> None:
        holder[0].commits.append(pos)

    errors: list[ErrorInfo] = []
    c = Committer(
        "p",
        store,
        pool,
        CommitPolicy(mode=mode, quorum=quorum),
        max_inflight,
        Recording(infos=errors),
        structlog.get_logger(),
        on_commit=on_commit,
    )
    runners = {sid: runner(sid, req, ck) for sid, (req, ck) in sinks.items()}
    c.start(list(runners.values()), int)
    h = Harness(c, runners, store)
    h.errors = errors
    holder.append(h)
    task = asyncio.create_task(c.loop())
    try:
        yield h
    finally:
        task.cancel()
        pool.shutdown(wait=True)
        store.close()


def test_all_commits_the_oldest_once_every_sink_has_it(tmp_path: Path) -> None:
    async def go() -> None:
        async with committer(tmp_path, {"a": (True, None), "b": (False, None)}, "all") as h:
            b1, b2 = batch(1), batch(2)
            await h.dispatch(b1, b2)
            await h.deliver("a", b1)
            await h.deliver("a", b2)
            assert h.c.committed is None and h.commits == [] and list(h.c.inflight) == [b1, b2]
            assert h.stored() == {"a": "6"}  # stored before the policy allows a commit
            await h.deliver("b", b1)
            assert h.c.committed == "3" and h.commits == ["3"]
            assert list(h.c.inflight) == [b2]
            cnt = h.c.counters
            assert (cnt.batches, cnt.events_out, cnt.batch_events_sum, cnt.inflight) == (1, 3, 3, 1)
            assert sum(cnt.batch_size_hist) == 1 and sum(cnt.batch_ms_hist) == 1
            await h.deliver("b", b2)
            assert h.commits == ["3", "6"] and not h.c.inflight and h.stored() == {"a": "6", "b": "6"}

    asyncio.run(go())


def test_required_ignores_a_best_effort_sink_and_frees_every_batch_up_to_the_commit(tmp_path: Path) -> None:
    async def go() -> None:
        async with committer(tmp_path, {"a": (True, None), "b": (False, None)}, "required") as h:
            b1, b2, b3 = batch(1), batch(2), batch(3)
            await h.dispatch(b1, b2, b3)
            await h.deliver("b", b3)
            assert h.c.committed is None and h.commits == [] and len(h.c.inflight) == 3
            await h.deliver("a", b2)
            assert h.c.committed == "6" and h.commits == ["6"]
            assert list(h.c.inflight) == [b3] and h.c.counters.batches == 2 and h.c.counters.events_out == 6

    asyncio.run(go())


def test_quorum_commits_the_nth_most_advanced_sink(tmp_path: Path) -> None:
    sinks: dict[str, tuple[bool, str | None]] = {"a": (True, None), "b": (True, None), "c": (False, None)}

    async def go() -> None:
        async with committer(tmp_path, sinks, "quorum", quorum=2) as h:
            b1, b2, b3 = batch(1), batch(2), batch(3)
            await h.dispatch(b1, b2, b3)
            await h.deliver("a", b3)
            assert h.c.committed is None  # one sink is not a quorum of two
            await h.deliver("c", b1)
            assert h.c.committed == "3" and list(h.c.inflight) == [b2, b3]
            await h.deliver("b", b2)
            assert h.commits == ["3", "6"] and list(h.c.inflight) == [b3]

    asyncio.run(go())


def test_start_takes_the_sinks_checkpoints_and_a_position_never_commits_twice(tmp_path: Path) -> None:
    async def go() -> None:
        async with committer(tmp_path, {"a": (True, "6"), "b": (False, "3")}, "required") as h:
            assert h.c.committed == "6" and h.c.durable == {"a": "6", "b": "3"}
            b3 = batch(3)
            await h.dispatch(b3)
            await h.deliver("b", b3)  # best-effort moved on: the policy position stays at 6
            assert h.commits == [] and h.c.committed == "6" and list(h.c.inflight) == [b3]
            await h.deliver("a", b3)
            assert h.commits == ["9"] and not h.c.inflight

    asyncio.run(go())


def test_the_window_holds_max_inflight_batches_and_a_commit_frees_their_places(tmp_path: Path) -> None:
    async def go() -> None:
        async with committer(tmp_path, {"a": (True, None)}, "all", max_inflight=2) as h:
            b1, b2, b3 = batch(1), batch(2), batch(3)
            await h.dispatch(b1, b2)
            assert not h.c.has_room()
            stopping = asyncio.Event()
            stopping.set()
            assert await h.c.acquire(stopping) is False  # full and stopping: no place taken
            waiting = asyncio.create_task(h.c.acquire(asyncio.Event()))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await h.deliver("a", b1)
            assert await asyncio.wait_for(waiting, 5) is True  # b1's place went to the waiter
            h.c.track(b3)
            assert not h.c.has_room() and h.c.counters.inflight == 2
            await h.deliver("a", b3)
            assert h.c.has_room() and not h.c.inflight and h.commits == ["3", "9"]

    asyncio.run(go())


def test_a_failed_store_write_is_reported_kept_and_retried(tmp_path: Path) -> None:
    async def go() -> None:
        async with committer(tmp_path, {"a": (True, None)}, "all") as h:
            b1 = batch(1)
            await h.dispatch(b1)
            other = sqlite3.connect(tmp_path / "tidegate.db", isolation_level=None)
            other.execute("DROP TABLE checkpoints")
            h.c.on_delivered(h.runners["a"], b1)
            await until(lambda: h.errors, "the store error to be reported")
            info = h.errors[0]
            assert info.kind == "state" and info.retryable and "no such table: checkpoints" in info.message
            assert h.c.committed is None and h.commits == [] and list(h.c.inflight) == [b1]
            other.executescript(SCHEMA)
            other.close()
            await until(lambda: h.c.committed == "3", "the retried write to commit")
            assert h.commits == ["3"] and h.stored() == {"a": "3"} and not h.c.inflight

    asyncio.run(go())


def test_detach_holders_skips_the_best_effort_sink_a_quorum_waits_for(tmp_path: Path) -> None:
    """on_retained_wal: pause_best_effort (worker.walguard): the committed position moves on."""

    async def go() -> None:
        async with committer(tmp_path, {"a": (True, None), "b": (False, None)}, "quorum", quorum=2) as h:
            b1, b2 = batch(1), batch(2)
            await h.dispatch(b1, b2)
            for b in (b1, b2):
                await h.deliver("a", b)
                h.runners["b"].submit(b)  # b is down: its writes never return
            assert h.c.committed is None
            assert h.c.detach_holders() == ["b"]
            await until(lambda: h.c.committed == "6", "the committed position past b's skipped backlog")
            rb = h.runners["b"]
            assert rb.checkpoint == "6" and not rb.queue and h.stored() == {"a": "6", "b": "6"}
            assert rb.health.gaps == [("b", "1", "6", False)]  # type: ignore[attr-defined]
            assert not h.c.inflight and h.commits == ["6"]
            assert h.c.detach_holders() == []  # nothing left behind

    asyncio.run(go())


def test_detach_holders_leaves_a_best_effort_sink_alone_under_required(tmp_path: Path) -> None:
    async def go() -> None:
        async with committer(tmp_path, {"a": (True, None), "b": (False, None)}, "required") as h:
            b1 = batch(1)
            await h.dispatch(b1)
            await h.deliver("a", b1)
            h.runners["b"].submit(b1)
            assert h.c.committed == "3"  # b does not hold it: nothing to detach
            assert h.c.detach_holders() == [] and len(h.runners["b"].queue) == 1

    asyncio.run(go())
