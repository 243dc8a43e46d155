"""SinkRunner: grouped writes (`write_many`) and their retries, checkpoints in order.

The sinks here are small in-process recorders of the Sink interface (no server is
imitated): what is tested is the runtime's order, grouping and retry rules.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from shared.errors import SinkError
from shared.spec.model import FileSinkConfig
from tests.support.health import Recording, batch
from worker.delivery import SinkRunner
from worker.sinks.base import Sink, SinkBatch, SinkContext


class Recorder(Sink):
    """Records each call; fails the first `fail` calls with a retryable error."""

    def __init__(self, grouped: bool, fail: int = 0) -> None:
        super().__init__(FileSinkConfig(id="rec", path="/dev/null"), SinkContext(pipeline="p", position_key=int))
        self.calls: list[list[int]] = []
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()
        if grouped:
            self.write_many = self._many

    async def _go(self, seqs: list[int]) -> None:
        await self.release.wait()
        self.calls.append(seqs)
        if self.fail:
            self.fail -= 1
            raise SinkError(self.id, "broker away; will retry", retryable=True)

    async def write(self, b: SinkBatch) -> None:
        await self._go([b.seq])

    async def _many(self, bs: list[SinkBatch]) -> None:
        await self._go([b.seq for b in bs])


def runner(sink: Sink, delivered: list[tuple[int, str]], errors: list[Any]) -> SinkRunner:
    gate = asyncio.Event()
    gate.set()
    return SinkRunner(
        sink,
        waited=True,
        key=int,
        gate=gate,
        checkpoint=None,
        on_delivered=lambda r, b: delivered.append((b.seq, r.checkpoint)),
        committed=lambda: None,
        health=Recording(errors=errors),
        log=structlog.get_logger(),
    )


async def drive(sink: Recorder, n: int) -> tuple[SinkRunner, list[tuple[int, str]], list[Any]]:
    delivered: list[tuple[int, str]] = []
    errors: list[Any] = []
    r = runner(sink, delivered, errors)
    sink.release.clear()  # the first write waits: the rest queue up behind it
    task = asyncio.create_task(r.run())
    for seq in range(1, n + 1):
        r.submit(batch(seq))
    await asyncio.sleep(0)
    sink.release.set()
    deadline = time.monotonic() + 5
    while len(delivered) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    task.cancel()
    return r, delivered, errors


def test_queued_batches_go_out_as_one_group_and_checkpoint_in_order() -> None:
    sink = Recorder(grouped=True)
    r, delivered, _ = asyncio.run(drive(sink, 5))
    assert sink.calls == [[1, 2, 3, 4, 5]]
    assert delivered == [(1, "3"), (2, "6"), (3, "9"), (4, "12"), (5, "15")]
    assert r.idle and r.queued_events == 0 and r.delivered_events == 15


def test_a_sink_without_write_many_gets_one_batch_at_a_time() -> None:
    sink = Recorder(grouped=False)
    _, delivered, _ = asyncio.run(drive(sink, 4))
    assert sink.calls == [[1], [2], [3], [4]]
    assert [s for s, _ in delivered] == [1, 2, 3, 4]


def test_a_failed_group_is_sent_again_whole_and_nothing_is_checkpointed_before() -> None:
    sink = Recorder(grouped=True, fail=2)
    r, delivered, errors = asyncio.run(drive(sink, 3))
    assert sink.calls == [[1, 2, 3]] * 3
    assert [s for s, _ in delivered] == [1, 2, 3]
    assert errors[:2] == ["sink 'rec': broker away; will retry"] * 2 and errors[-1] is None  # cleared on recovery
    assert r.error_count == 2 and r.delivered_events == 9


def test_a_backlog_overflow_gap_names_the_first_and_last_skipped_events_own_positions() -> None:
    gaps: list[tuple[str, str, str, bool]] = []
    gate = asyncio.Event()
    r = SinkRunner(
        Recorder(grouped=False),
        waited=False,
        key=int,
        gate=gate,
        checkpoint="4",  # batch 2 (events 4..6) is read again after a restart: 4 was delivered
        on_delivered=lambda r, b: None,
        committed=lambda: "100",
        health=Recording(gaps=gaps),
        log=structlog.get_logger(),
    )
    r.backlog_limit = 3
    for seq in (1, 2, 3, 4):
        r.submit(batch(seq))
    assert gaps == [("rec", "5", "6", False), ("rec", "7", "9", True), ("rec", "10", "12", True)]
    assert all(not g[1].startswith("after") for g in gaps)


def test_the_generator_names_the_position_after_another() -> None:
    from worker.sources.generator import GeneratorSource

    assert GeneratorSource.position_after("59076") == "59077"
    assert GeneratorSource.position_after(None) == "1"
