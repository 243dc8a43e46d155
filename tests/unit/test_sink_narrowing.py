"""A sink's permanent per-event refusal narrowed to the refused events (CONTRACT section 12):
the others are delivered in order, each part carrying its own last position; a retryable
failure meanwhile is raised (the runner holds and retries)."""

from __future__ import annotations

import asyncio

import pytest

from shared.errors import SinkError
from worker.sink_narrowing import narrow_sink
from worker.sinks.base import SinkBatch


def _batch(n: int) -> SinkBatch:
    events = [{"after": {"id": i}, "source": {"position": str(i)}} for i in range(n)]
    return SinkBatch(seq=1, events=events, last_position=str(n - 1), native=[b"%d" % i for i in range(n)])


def test_refused_events_are_found_the_rest_delivered_in_order() -> None:
    written: list[tuple[list[int], str, list[bytes] | None]] = []

    async def write(b: SinkBatch) -> None:
        ids = [e["after"]["id"] for e in b.events]
        if {13, 14, 90} & set(ids):
            raise SinkError("pg", "violates check constraint", retryable=False)
        written.append((ids, b.last_position, b.native))

    whole = _batch(100)
    poison = asyncio.run(narrow_sink(whole, write, SinkError("pg", "first", retryable=False), None))
    assert [p.index for p in poison] == [13, 14, 90] and "check constraint" in poison[0].error
    delivered = [i for ids, _, _ in written for i in ids]
    assert delivered == [i for i in range(100) if i not in (13, 14, 90)]
    assert all(last == str(ids[-1]) for ids, last, _ in written[:-1]) and written[-1][1] == "99"
    assert all(native == [b"%d" % i for i in ids] for ids, _, native in written)


def test_a_retryable_failure_while_narrowing_is_raised() -> None:
    async def write(b: SinkBatch) -> None:
        raise SinkError("pg", "connection lost", retryable=True)

    with pytest.raises(SinkError, match="connection lost"):
        asyncio.run(narrow_sink(_batch(4), write, SinkError("pg", "first", retryable=False), None))
