"""What the supervisor knows of one pipeline (`Managed`: spec, desired and
actual state, its worker, counters across worker runs, restart policy) and of
all the pipelines this node runs (`Registry`, which also tells the listeners of
a change). Also the errors an operation raises, `NotFound` and `Conflict`
(their HTTP status is chosen in `supervisor.api.errors`). Loop thread only.
Imports: stdlib + shared + supervisor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.protocol import Counters
from shared.spec.model import PipelineSpec
from shared.states import Desired, Status
from supervisor.process import WorkerHandle
from supervisor.restart import RestartPolicy


def _added(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in {*a, *b}}


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


@dataclass
class Managed:
    name: str
    spec: PipelineSpec
    desired: Desired
    status: Status = Status.STARTING
    handle: WorkerHandle | None = None
    restarts: int = 0
    last_error: str | None = None
    ready_at: float | None = None
    base: Counters = field(default_factory=Counters)  # totals of earlier worker runs
    cur: Counters = field(default_factory=Counters)
    sink_errors: dict[str, str] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    restart_task: asyncio.Task[None] | None = None
    intent: str | None = None  # why the current worker is expected to exit
    failed_by_worker: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    replies: dict[str, Any] = field(default_factory=dict)  # SnapshotReply by request id, until taken

    def totals(self) -> Counters:
        b, c = self.base, self.cur
        return Counters(
            events_in=b.events_in + c.events_in,
            events_out=b.events_out + c.events_out,
            batches=b.batches + c.batches,
            inflight=c.inflight,
            lag_ms=c.lag_ms,
            processor_ms=b.processor_ms + c.processor_ms,
            processor_ms_by_id=_added(b.processor_ms_by_id, c.processor_ms_by_id),
            batch_events_sum=b.batch_events_sum + c.batch_events_sum,
            batch_ms_sum=b.batch_ms_sum + c.batch_ms_sum,
            rss_bytes=c.rss_bytes,
            sink_events={
                k: b.sink_events.get(k, 0) + c.sink_events.get(k, 0) for k in {*b.sink_events, *c.sink_events}
            },
            sink_error_count={
                k: b.sink_error_count.get(k, 0) + c.sink_error_count.get(k, 0)
                for k in {*b.sink_error_count, *c.sink_error_count}
            },
            skipped=b.skipped + c.skipped,
            dlq_parked={k: b.dlq_parked.get(k, 0) + c.dlq_parked.get(k, 0) for k in {*b.dlq_parked, *c.dlq_parked}},
            batch_size_hist=[x + y for x, y in zip(b.batch_size_hist, c.batch_size_hist)],
            batch_ms_hist=[x + y for x, y in zip(b.batch_ms_hist, c.batch_ms_hist)],
        )

    def ops(self) -> dict[str, Any]:
        """What this node knows of the pipeline's run (PipeInfo.ops but what is
        read from the store, and the owner)."""
        t = self.totals()
        h = self.handle
        running = h is not None and self.ready_at is not None
        return {
            "pid": h.pid if h is not None else None,
            "restarts": self.restarts,
            "uptime_s": round(time.monotonic() - self.ready_at, 3) if running and self.ready_at else 0.0,
            "last_error": self.last_error,
            "events_in": t.events_in,
            "events_out": t.events_out,
            "batches": t.batches,
            "inflight": t.inflight,
            "lag_ms": t.lag_ms,
            "sink_errors": dict(self.sink_errors),
            "skipped": t.skipped,
            "source": self.source,
            "sink_lag": self.sink_lag(),
        }

    def sink_lag(self) -> dict[str, dict[str, int]]:
        """Per sink, how far the running worker's sink is behind the source (none when no worker runs)."""
        if self.handle is None or self.ready_at is None:
            return {}
        c = self.cur
        return {k: {"events": n, "ms": c.sink_lag_ms.get(k, 0)} for k, n in c.sink_lag_events.items()}


class Registry:
    """The pipelines this node runs, by name. `changed(m)` wakes whoever waits on
    that pipeline (`Managed.changed`) and calls `on_change` (sd_notify status)."""

    def __init__(self) -> None:
        self._by_name: dict[str, Managed] = {}
        self.on_change: Callable[[], None] | None = None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __getitem__(self, name: str) -> Managed:
        return self._by_name[name]

    def get(self, name: str) -> Managed | None:
        return self._by_name.get(name)

    def require(self, name: str) -> Managed:
        m = self._by_name.get(name)
        if m is None:
            raise NotFound(f"pipeline {name!r} not found")
        return m

    def values(self) -> list[Managed]:
        return list(self._by_name.values())

    def items(self) -> list[tuple[str, Managed]]:
        return list(self._by_name.items())

    def add(self, m: Managed) -> None:
        self._by_name[m.name] = m

    def remove(self, name: str) -> None:
        self._by_name.pop(name, None)

    def changed(self, m: Managed) -> None:
        m.changed.set()
        m.changed = asyncio.Event()
        if self.on_change:
            self.on_change()
