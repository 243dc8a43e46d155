"""PipelineManager: desired vs actual state of every pipeline, the restart
policy, and the operations the API and signals ask for. Runs on the loop
thread only. A thin front that wires the parts owning the state: the
`Registry` of the pipelines this node runs (`supervisor.managed`), their
`Workers` (`supervisor.workers`), the `LeaseCoordinator` that decides which
stored pipelines this node runs (`supervisor.coordinator`) and the
`Operations` (`supervisor.operations`). It keeps start, shutdown, the read side
(ops, checkpoints, error info) and the methods `supervisor.app` and
`supervisor.api` call. `NotFound` and `Conflict` are re-exported here.
Imports: stdlib + shared + supervisor (never worker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.errors import ErrorInfo
from shared.spec.model import PipelineSpec
from shared.store.base import StateStore
from supervisor.coordinator import LeaseCoordinator
from supervisor.leases import ForeignView
from supervisor.managed import Conflict, Managed, NotFound, Registry
from supervisor.operations import Operations
from supervisor.probes import SourceProbes
from supervisor.workers import WorkerConfig, Workers

if TYPE_CHECKING:
    from supervisor.leases import LeaseKeeper

__all__ = ["Conflict", "NotFound", "PipelineManager"]


class PipelineManager:
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
        self.pipelines = Registry()
        self.ready = False
        self._monitor: asyncio.Task[None] | None = None
        self._probes: asyncio.Task[None] | None = None
        config = WorkerConfig(state_dir, log_format, log_level, state_url)
        self.workers = Workers(self.pipelines, store, config, fence=None if leases is None else leases.fence)
        self.probes = SourceProbes(self.pipelines, config)
        self.coordinator = LeaseCoordinator(self.pipelines, store, self.workers, leases)
        self.operations = Operations(self.pipelines, store, self.workers, self.coordinator, check_processor)

    @property
    def on_change(self) -> Callable[[], None] | None:
        return self.pipelines.on_change

    @on_change.setter
    def on_change(self, fn: Callable[[], None] | None) -> None:
        self.pipelines.on_change = fn

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.coordinator.start()
        self.ready = True
        self._monitor = asyncio.get_running_loop().create_task(self.workers.monitor_loop(), name="monitor_loop")
        self._probes = asyncio.get_running_loop().create_task(self.probes.loop(), name="source_probes")

    async def shutdown(self) -> None:
        self.coordinator.stopping = True
        if self._monitor:
            self._monitor.cancel()
        if self._probes:
            self._probes.cancel()
        # leases are still renewed while the workers drain, then given up at once
        await self.workers.stop_all()
        await self.coordinator.release()

    # ------------------------------------------------------------ operations
    def get(self, name: str) -> Managed:
        return self.pipelines.require(name)

    async def owned(self, name: str) -> Managed:
        return await self.coordinator.owned(name)

    def validate(self, doc: Any) -> PipelineSpec:
        return self.operations.validate(doc)

    async def validated(self, doc: Any) -> PipelineSpec:
        return await self.operations.validated(doc)

    async def create(self, doc: Any) -> Managed:
        return await self.operations.create(doc)

    async def apply(self, doc: Any) -> tuple[Managed, str]:
        return await self.operations.apply(doc)

    async def patch(self, name: str, patch: Any) -> Managed:
        return await self.operations.patch(name, patch)

    async def replace(self, m: Managed, spec: PipelineSpec) -> None:
        await self.operations.replace(m, spec)

    async def delete(self, name: str) -> None:
        await self.operations.delete(name)

    async def pause(self, name: str) -> Managed:
        return await self.operations.pause(name)

    async def resume(self, name: str) -> Managed:
        return await self.operations.resume(name)

    async def stop(self, name: str) -> Managed:
        return await self.operations.stop(name)

    async def restart(self, name: str) -> Managed:
        return await self.operations.restart(name)

    async def clear_checkpoints(self, name: str) -> None:
        await self.operations.clear_checkpoints(name)

    async def snapshot(self, name: str, action: str, **kw: Any) -> Any:
        return await self.operations.snapshot(name, action, **kw)

    def snapshots(self, name: str) -> list[dict[str, Any]]:
        return self.operations.snapshots(name)

    # ------------------------------------------------------------- read side

    def foreign(self, name: str) -> ForeignView:
        return self.coordinator.foreign(name)

    def foreigners(self) -> list[ForeignView]:
        return self.coordinator.foreigners()

    def checkpoints(self, name: str) -> dict[str, dict[str, str]]:
        if name not in self.pipelines:
            self.foreign(name)  # NotFound unless another node owns it
        return {sid: {"position": pos, "updated_at": at} for sid, (pos, at) in self.store.checkpoints(name).items()}

    def ops(self, m: Managed, stored: bool = True) -> dict[str, Any]:
        """PipeInfo.ops; `stored=False` leaves out what is read from the store
        (checkpoints, gaps): the form published into the lease row."""
        out = m.ops()
        if stored:
            out["sink_gaps"] = self.store.gaps(m.name)
            out["checkpoints"] = self.checkpoints(m.name)
            out["dlq"] = self.store.dlq_counts(m.name)
            out["snapshots"] = self.snapshots(m.name)
        owner = self.coordinator.owner()
        if owner is not None:
            out["owner"] = owner
        return out

    def error_info(self, m: Managed) -> ErrorInfo | None:
        return ErrorInfo(kind="pipeline", message=m.last_error) if m.last_error else None
