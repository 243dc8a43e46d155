"""What the supervisor knows of one pipeline: spec, desired and actual state,
its worker, counters across worker runs, restart policy. Loop thread only.
Imports: stdlib + shared + supervisor.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from shared.protocol import Counters
from shared.spec.model import PipelineSpec
from shared.states import Desired, Status
from supervisor.process import WorkerHandle
from supervisor.restart import RestartPolicy


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

    def totals(self) -> Counters:
        b, c = self.base, self.cur
        return Counters(
            events_in=b.events_in + c.events_in,
            events_out=b.events_out + c.events_out,
            batches=b.batches + c.batches,
            inflight=c.inflight,
            lag_ms=c.lag_ms,
            processor_ms=b.processor_ms + c.processor_ms,
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
            batch_size_hist=[x + y for x, y in zip(b.batch_size_hist, c.batch_size_hist)],
            batch_ms_hist=[x + y for x, y in zip(b.batch_ms_hist, c.batch_ms_hist)],
        )
