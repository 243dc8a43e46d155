"""The sink contract.

A sink is built cheaply (no I/O in the constructor), `open()`ed, then `write()`
is called with one batch at a time, in order. `write` returns only once every
event of the batch is durably acknowledged by the destination; it raises
`shared.errors.SinkError` otherwise (`retryable=True`: the runtime backs off
with jitter and calls `write` again with the same batch; `retryable=False`:
the pipeline fails with that message). Imports: shared + the sink's client.

A sink may also offer `write_many(batches)`: deliver several consecutive
batches with one wait for acknowledgements (same contract as `write`, all or
nothing: a retry sends them all again). The runtime uses it when more than one
batch is queued for the sink (`max_inflight` > 1), so the wait for one group's
acknowledgements overlaps with the reading of the next batches.

Sinks that store their own checkpoint transactionally with the data (Postgres,
Kafka exactly-once) return it from `open()`; the runtime then never re-feeds
what is at or below it.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog

from shared.spec.model import SinkConfigBase
from worker.envelope import Encoder


@dataclass(slots=True)
class SinkContext:
    pipeline: str
    position_key: Callable[[str], Any]
    log: Any = field(default_factory=lambda: structlog.get_logger())
    state_dir: str = "."
    # changes when the pipeline starts over as new (re-created, checkpoints deleted): a
    # sink that stores its own checkpoint keys it by `checkpoint_scope`, never trusting an old one
    epoch: str = ""

    def checkpoint_scope(self, sink_id: str) -> str:
        return f"{sink_id}@{self.epoch}" if self.epoch else sink_id


@dataclass(slots=True)
class SinkBatch:
    """One batch as a sink sees it (after processors, after per-sink skipping)."""

    seq: int  # batch number in this worker run, 1-based, in order
    events: list[dict[str, Any]]  # the JSON objects to deliver
    last_position: str  # source position of the batch's last source event
    native: list[bytes] | None = None  # compact JSON of each event when unchanged by processors
    # a DLQ replay: deliver even at or below the sink's own checkpoint, and leave that checkpoint
    replay: bool = False


def merge_batches(batches: list[SinkBatch]) -> SinkBatch:
    """Consecutive batches as one (for a sink that applies a group as one transaction)."""
    last = batches[-1]
    natives = [b.native for b in batches]
    native = None if any(n is None for n in natives) else [x for n in natives for x in n]  # type: ignore[union-attr]
    return SinkBatch(
        seq=last.seq, events=[e for b in batches for e in b.events], last_position=last.last_position, native=native
    )


C = TypeVar("C", bound=SinkConfigBase)


class Sink(abc.ABC, Generic[C]):
    # optional: `async (list[SinkBatch]) -> None`, several batches under one acknowledgement wait
    write_many: Callable[[list[SinkBatch]], Awaitable[None]] | None = None

    def can_replay(self) -> str | None:
        """None when a DLQ replay can be given to this sink, else why not."""
        return None

    def __init__(self, config: C, ctx: SinkContext) -> None:
        self.config = config
        self.ctx = ctx
        self.id: str = config.id
        self.encoder = Encoder(config.envelope, ctx.pipeline, config.id)

    async def open(self) -> str | None:
        """Connect; return this sink's own stored checkpoint if it keeps one."""
        return None

    @abc.abstractmethod
    async def write(self, batch: SinkBatch) -> None:
        """Deliver every event of the batch, durably, or raise SinkError."""

    async def close(self) -> None:
        """Flush and release connections."""
