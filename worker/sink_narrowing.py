"""A sink's permanent refusal narrowed to the events it refuses (CONTRACT section 12):
with `on_error: dlq|skip`, a batch the sink refused for good (SinkError with
retryable=False: a constraint violation, HTTP 4xx but 408/429, ...) is written again in
halves, recursively; an event still refused alone is poison for that sink, every other
event is delivered in order. A retryable failure while narrowing is raised (the runner
holds and retries the whole batch, as for any retryable failure: at least once).
Imports: stdlib + shared + worker.sinks.base.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from shared.errors import SinkError
from worker.narrowing import Poison
from worker.sinks.base import SinkBatch


def _position(event: dict[str, Any]) -> str | None:
    pos = (event.get("source") or {}).get("position")
    return None if pos is None else str(pos)


def part_of(whole: SinkBatch, lo: int, hi: int, before: str | None) -> SinkBatch:
    """Events [lo, hi) as a batch whose last position is its own last event's (a sink that
    stores its checkpoint with the data never stores one past what it has)."""
    last = whole.last_position if hi == len(whole.events) else (_position(whole.events[hi - 1]) or before)
    native = None if whole.native is None else whole.native[lo:hi]
    return SinkBatch(
        seq=whole.seq, events=whole.events[lo:hi], last_position=last or whole.last_position, native=native
    )


async def narrow_sink(
    whole: SinkBatch, write: Callable[[SinkBatch], Awaitable[None]], first: SinkError, before: str | None
) -> list[Poison]:
    """Deliver what `write` accepts of `whole`; return the refused events (index, error)."""
    poison: list[Poison] = []
    todo: list[tuple[int, int, SinkError | None]] = [(0, len(whole.events), first)]
    while todo:
        lo, hi, err = todo.pop()
        if hi <= lo:
            continue
        if err is None:
            try:
                await write(part_of(whole, lo, hi, before))
                continue
            except SinkError as exc:
                if exc.retryable:
                    raise
                err = exc
        if hi - lo == 1:
            poison.append(Poison(lo, "", err.message))
            continue
        mid = (lo + hi) // 2
        todo.append((mid, hi, None))
        todo.append((lo, mid, None))
    return poison
