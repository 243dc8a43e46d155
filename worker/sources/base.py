"""The source contract.

A source is built cheaply (constructor does no I/O), then `open(position)`ed at
a resume position: the position of the last event already committed, or None
for a fresh start (CONTRACT section 4). Everything the source keeps derives from
that position. Imports: shared + the source's own client library.

Rules every source keeps:
- `read()` returns promptly (within ~100 ms) with a Chunk or None, so pause/stop
  are honoured; blocking client calls run on a thread, never on the loop.
- Each event's `source.position` is unique and totally ordered by
  `position_key`; resuming after position P yields exactly the events after P.
- `Chunk.tx_end` says that the chunk's last event ends a source transaction (or
  that the source has no transactions). Inside a chunk a change of
  `source.tx_id` between neighbours is a boundary too.
- `commit(position)` is called with the pipeline's committed position (durable
  in the state store): the only position a source may acknowledge upstream.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
import structlog


@dataclass(slots=True)
class Chunk:
    events: list[dict[str, Any]]
    tx_end: bool = True
    # optional pre-encoded compact JSON of each event (native envelope); None = encode in the batcher
    encoded: list[bytes] | None = None
    # the source has nothing more to give right now: a batch need not wait for max_ms
    caught_up: bool = False


@dataclass(slots=True)
class SourceContext:
    pipeline: str
    log: Any = field(default_factory=lambda: structlog.get_logger())
    state_dir: str = "."
    backfills: Any = None  # worker.backfill.Backfills (incremental snapshots), shared by every instance


C = TypeVar("C", bound=msgspec.Struct)


class Source(abc.ABC, Generic[C]):
    def __init__(self, config: C, ctx: SourceContext) -> None:
        self.config = config
        self.ctx = ctx

    @abc.abstractmethod
    async def open(self, position: str | None) -> None:
        """Connect and position the reader strictly after `position`."""

    @abc.abstractmethod
    async def read(self) -> Chunk | None:
        """The next events, or None when nothing arrived within a short wait."""

    async def commit(self, position: str) -> None:
        """The pipeline's committed position moved to `position` (durable)."""

    async def close(self) -> None:
        """Release connections. Called once, also after a failed open."""

    async def drop(self) -> None:
        """The pipeline is being deleted: remove server-side state we created (slots...)."""

    @staticmethod
    @abc.abstractmethod
    def position_key(position: str) -> Any:
        """A sortable key giving positions their total order."""

    @staticmethod
    def position_after(position: str | None) -> str | None:
        """The position of the event right after `position` when a source can name it
        without reading (positions are opaque: None, the default, means it cannot)."""
        return None

    def backfill_check(self, tables: list[str]) -> tuple[list[str], int, str | None]:
        """Incremental snapshots (CONTRACT section 13) of these tables: their canonical names, the
        rows estimated, and why they cannot be snapshotted (None: they can)."""
        return [], 0, f"the {type(self).__name__} does not support incremental snapshots"

    def failed(self) -> Exception | None:
        """A permanent problem the source's health poll found while the pipeline runs (postgres:
        the server invalidated the slot): the pipeline fails with it (worker.walguard)."""
        return None

    def stats(self) -> dict[str, Any]:
        """Extra facts for `ops.source` (for example snapshot progress)."""
        return {}

    def health_probe(self, committed: str | None) -> Any:
        """A worker.sources.health.Probe of what the database holds for this pipeline while
        no worker reads it (a stopped pipeline's slot still pins WAL), built from the config
        and the committed position without opening the source; None when there is nothing."""
        return None


PositionKey = Callable[[str], Any]
