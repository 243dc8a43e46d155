"""PipelineManager: desired vs actual state of every pipeline, the restart
policy, and the operations the API and signals ask for. Runs on the loop
thread only. It wires the parts that own the state: the `Registry` of the
pipelines this node runs (`supervisor.managed`), their `Workers`
(`supervisor.workers`), the `LeaseCoordinator` that decides which stored
pipelines this node runs (`supervisor.coordinator`), and the operations
(`supervisor.operations`); it keeps start, shutdown and the read side (ops,
checkpoints, error info). `NotFound` and `Conflict` are re-exported here.
Imports: stdlib + shared + supervisor (never worker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.errors import ErrorInfo
from shared.store.sqlite import SqliteStore
from supervisor.coordinator import LeaseCoordinator
from supervisor.leases import ForeignView
from supervisor.managed import Conflict, Managed, NotFound, Registry
from supervisor.operations import OperationsSide
from supervisor.workers import WorkerConfig, Workers

if TYPE_CHECKING:
    from supervisor.leases import LeaseKeeper

__all__ = ["Conflict", "NotFound", "PipelineManager"]


class PipelineManager(OperationsSide):
    def __init__(
        self,
        store: SqliteStore,
        *,
        state_dir: str,
        log_format: str,
        log_level: str,
        check_processor: Callable[[str], str | None] | None = None,
        state_url: str | None = None,
        leases: LeaseKeeper | None = None,
    ) -> None:
        self.store: Any = store
        self.check_processor = check_processor
        self.pipelines = Registry()
        self.ready = False
        self._monitor: asyncio.Task[None] | None = None
        config = WorkerConfig(state_dir, log_format, log_level, state_url)
        self.workers = Workers(self.pipelines, store, config, fence=None if leases is None else leases.fence)
        self.coordinator = LeaseCoordinator(self.pipelines, store, self.workers, leases)

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

    async def shutdown(self) -> None:
        self.coordinator.stopping = True
        if self._monitor:
            self._monitor.cancel()
        # leases are still renewed while the workers drain, then given up at once
        await self.workers.stop_all()
        await self.coordinator.release()

    # ------------------------------------------------------------- read side
    async def owned(self, name: str) -> Managed:
        return await self.coordinator.owned(name)

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
        owner = self.coordinator.owner()
        if owner is not None:
            out["owner"] = owner
        return out

    def error_info(self, m: Managed) -> ErrorInfo | None:
        return ErrorInfo(kind="pipeline", message=m.last_error) if m.last_error else None
