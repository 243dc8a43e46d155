"""SinkRunner backlog of a best-effort sink (CONTRACT section 7): past `backlog_events` it
skips queued batches the commit policy no longer needs, never the one being written, and
records each skip as a gap from the first skipped event's own position to the last one's
(inclusive); consecutive skipped batches extend one gap.

The sink is an in-process recorder whose writes wait for a permit the test hands out, so
the test decides which batch is being written when the backlog overflows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from shared.spec.model import FileSinkConfig
from tests.support.health import Recording, batch
from worker.delivery import SinkRunner
from worker.sinks.base import Sink, SinkBatch, SinkContext

Gap = tuple[str, str, str, bool]


class Gated(Sink):
    """Each write (or grouped write) waits for one permit, then records the batches' seqs."""

    def __init__(self, grouped: bool = False) -> None:
        cfg = FileSinkConfig(id="rec", path="/dev/null", required=False)
        super().__init__(cfg, SinkContext(pipeline="p", position_key=int))
        self.permits = asyncio.Semaphore(0)
        self.calls: list[list[int]] = []
        if grouped:
            self.write_many = self._many

    async def write(self, b: SinkBatch) -> None:
        await self.permits.acquire()
        self.calls.append([b.seq])

    async def _many(self, bs: list[SinkBatch]) -> None:
        await self.permits.acquire()
        self.calls.append([b.seq for b in bs])


class Case:
    def __init__(
        self, *, waited: bool = False, committed: str | None = "100", limit: int = 3, grouped: bool = False
    ) -> None:
        self.sink = Gated(grouped)
        self.committed = committed
        self.gaps: list[Gap] = []
        self.delivered: list[int] = []
        gate = asyncio.Event()
        gate.set()
        self.r = SinkRunner(
            self.sink,
            waited=waited,
            key=int,
            gate=gate,
            checkpoint=None,
            on_delivered=lambda r, b: self.delivered.append(b.seq),
            committed=lambda: self.committed,
            health=Recording(gaps=self.gaps),
            log=structlog.get_logger(),
        )
        self.r.backlog_limit = limit

    def submit(self, *seqs: int) -> None:
        for s in seqs:
            self.r.submit(batch(s))

    def queued(self) -> list[int]:
        return [b.seq for b in self.r.queue]

    async def until(self, pred: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + 5
        while not pred():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.002)


def running(body: Callable[[Case], Awaitable[None]], **kw: Any) -> Case:
    """Run `body` with the runner's loop going; return the case for assertions."""

    async def go() -> Case:
        case = Case(**kw)
        task = asyncio.create_task(case.r.run())
        try:
            await body(case)
        finally:
            task.cancel()
        return case

    return asyncio.run(go())


def test_a_fresh_sink_skips_whole_batches_behind_its_head_as_one_growing_gap() -> None:
    case = Case()
    case.submit(1, 2, 3, 4)
    assert case.gaps == [("rec", "4", "6", False), ("rec", "7", "9", True), ("rec", "10", "12", True)]
    assert case.queued() == [1] and case.r.queued_events == 3  # the head is never skipped


def test_only_batches_at_or_below_the_committed_position_are_skipped() -> None:
    case = Case(committed="6")
    case.submit(1, 2, 3, 4)
    assert case.gaps == [("rec", "4", "6", False)]
    assert case.queued() == [1, 3, 4] and case.r.queued_events == 9  # over the limit, still needed
    case.committed = "12"
    case.submit(5)
    assert case.gaps[1:] == [("rec", "7", "9", True), ("rec", "10", "12", True)]
    assert case.queued() == [1, 5]


def test_a_waited_for_sink_never_skips() -> None:
    case = Case(waited=True, limit=1)
    case.submit(1, 2, 3, 4)
    assert case.gaps == [] and case.queued() == [1, 2, 3, 4] and case.r.queued_events == 12


def test_a_batch_delivered_in_between_starts_a_new_gap() -> None:
    async def body(case: Case) -> None:
        case.submit(1)
        await case.until(lambda: case.r.writing == 1, "batch 1 being written")
        case.submit(2, 3)
        case.sink.permits.release()
        await case.until(lambda: case.delivered == [1], "batch 1 delivered")
        case.submit(4)
        await case.until(lambda: case.r.writing == 1, "batch 4 being written")
        case.submit(5)
        case.sink.permits.release()
        await case.until(lambda: case.delivered == [1, 4], "batch 4 delivered")

    case = running(body)
    assert case.gaps == [("rec", "4", "6", False), ("rec", "7", "9", True), ("rec", "13", "15", False)]
    assert case.sink.calls == [[1], [4]]


def test_a_group_being_written_is_never_skipped() -> None:
    async def body(case: Case) -> None:
        case.r.backlog_limit = 100
        case.submit(1, 2)
        await case.until(lambda: case.r.writing == 2, "batches 1-2 written as one group")
        case.r.backlog_limit = 3
        case.submit(3)
        assert case.queued() == [1, 2]  # 6 events over a limit of 3: only the unwritten one goes
        case.sink.permits.release()
        await case.until(lambda: case.delivered == [1, 2], "the group delivered")

    case = running(body, grouped=True)
    assert case.gaps == [("rec", "7", "9", False)] and case.sink.calls == [[1, 2]]


def test_a_delivery_trims_what_the_commit_no_longer_needs() -> None:
    async def body(case: Case) -> None:
        case.submit(1)
        await case.until(lambda: case.r.writing == 1, "batch 1 being written")
        case.submit(2, 3)
        assert case.gaps == []  # not committed yet: kept although over the limit
        case.committed = "100"
        case.sink.permits.release()
        await case.until(lambda: case.delivered == [1], "batch 1 delivered")
        assert case.gaps == [("rec", "7", "9", False)]  # batch 2 is the new head
        case.sink.permits.release()
        await case.until(lambda: case.delivered == [1, 2], "batch 2 delivered")

    case = running(body, committed="0")
    assert case.sink.calls == [[1], [2]] and case.r.queued_events == 0


def test_a_replayed_batch_the_sink_already_has_is_dropped_without_a_gap() -> None:
    case = Case()
    case.r.checkpoint = "6"  # after a restart: batches 1 and 2 (events 1..6) are read again
    case.submit(1, 2, 3, 4)
    assert case.gaps == [("rec", "7", "9", False), ("rec", "10", "12", True)]
    assert case.queued() == [1]
