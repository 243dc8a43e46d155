"""PipelineManager: desired vs actual state of every pipeline, the restart
policy, and the operations the API and signals ask for. Runs on the loop
thread only. This module holds the manager's fields, its start (adopting the
stored pipelines, or the leased ones) and shutdown, and its read side (ops,
checkpoints, error info); the rest is mixed in: the worker side
(`supervisor.lifecycle`), the operations (`supervisor.operations`, with
`NotFound` and `Conflict`, re-exported here) and the lease side
(`supervisor.leased`). Imports: stdlib + shared + supervisor (never worker).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from shared.errors import ErrorInfo
from shared.spec.load import decode_spec
from shared.states import Desired, Status
from shared.store import StoreUnavailable
from shared.store.base import StateStore
from shared.store.sqlite import PipelineRow
from supervisor.leased import LeaseSide
from supervisor.lifecycle import WorkerSide
from supervisor.managed import Managed
from supervisor.operations import Conflict, NotFound, OperationsSide

if TYPE_CHECKING:
    from supervisor.leases import LeaseKeeper

__all__ = ["Conflict", "NotFound", "PipelineManager"]


class PipelineManager(WorkerSide, OperationsSide, LeaseSide):
    def __init__(
        self,
        store: StateStore,
        *,
        state_dir: str,
        log_format: str,
        log_level: str,
        check_processor: Callable[[str], str | None] | None = None,
        state_url: str | None = None,
        leases: LeaseKeeper | None = None,
    ) -> None:
        self.store: Any = store
        self.state_url = state_url
        self.leases = leases  # shared state store: this node runs only the pipelines it leases
        self.stopping = False
        self._lease_task: asyncio.Task[None] | None = None
        self.state_dir = state_dir
        self.log_format = log_format
        self.log_level = log_level
        self.check_processor = check_processor
        self.pipelines: dict[str, Managed] = {}
        self.ready = False
        self.log = structlog.get_logger().bind(component="manager")
        self._monitor: asyncio.Task[None] | None = None
        self.on_change: Callable[[], None] | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        held = None if self.leases is None else await self.leases.acquire_free()
        for row in self.store.list_pipelines():
            if held is None or row.name in held:
                self._adopt_row(row)
        for name in set(held or ()) - set(self.pipelines):
            assert self.leases is not None  # held is None without leases
            self.leases.forget(name)  # deleted in between
        self.ready = True
        loop = asyncio.get_running_loop()
        self._monitor = loop.create_task(self.monitor_loop(), name="monitor_loop")
        if self.leases is not None:
            self.log.info("leases_acquired", node=self.leases.node, pipelines=sorted(held or ()))
            self._lease_task = loop.create_task(self.lease_loop(), name="lease_loop")

    def _adopt_row(self, row: PipelineRow) -> Managed:
        spec = decode_spec(row.spec)
        desired = Desired(row.desired)
        m = Managed(row.name, spec, desired, last_error=row.last_error)
        self.pipelines[row.name] = m
        if desired in (Desired.RUNNING, Desired.PAUSED):
            self._spawn(m)
        else:
            m.status = Status.STOPPED if desired == Desired.STOPPED else Status.FAILED
        return m

    async def shutdown(self) -> None:
        self.stopping = True
        if self._monitor:
            self._monitor.cancel()
        for m in self.pipelines.values():
            if m.restart_task:
                m.restart_task.cancel()
        # leases are still renewed while the workers drain, then given up at once
        await asyncio.gather(*(self._stop_worker(m, "shutdown") for m in list(self.pipelines.values())))
        if self._lease_task is not None:
            self._lease_task.cancel()
        if self.leases is not None:
            async with self.leases.lock:
                try:
                    await self.leases.release_all()
                except StoreUnavailable as exc:
                    self.log.warning("lease_release_failed", error=str(exc))

    # ------------------------------------------------------------- read side
    def checkpoints(self, name: str) -> dict[str, dict[str, str]]:
        if name not in self.pipelines:
            self.foreign(name)  # NotFound unless another node owns it
        return {sid: {"position": pos, "updated_at": at} for sid, (pos, at) in self.store.checkpoints(name).items()}

    def ops(self, m: Managed, stored: bool = True) -> dict[str, Any]:
        """PipeInfo.ops; `stored=False` leaves out what is read from the store
        (checkpoints, gaps): the form published into the lease row."""
        t = m.totals()
        running = m.handle is not None and m.ready_at is not None
        out = {
            "pid": m.handle.pid if m.handle is not None else None,
            "restarts": m.restarts,
            "uptime_s": round(time.monotonic() - m.ready_at, 3) if running and m.ready_at else 0.0,
            "last_error": m.last_error,
            "events_in": t.events_in,
            "events_out": t.events_out,
            "batches": t.batches,
            "inflight": t.inflight,
            "lag_ms": t.lag_ms,
            "sink_errors": dict(m.sink_errors),
            "source": m.source,
        }
        if stored:
            out["sink_gaps"] = self.store.gaps(m.name)
            out["checkpoints"] = self.checkpoints(m.name)
        if self.leases is not None:
            out["owner"] = {"node": self.leases.node, "api_addr": self.leases.api_addr, "live": True}
        return out

    def error_info(self, m: Managed) -> ErrorInfo | None:
        return ErrorInfo(kind="pipeline", message=m.last_error) if m.last_error else None
