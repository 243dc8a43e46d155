"""LeaseCoordinator: which stored pipelines this node runs. With a local store,
all of them; with a shared state store (`--state-url`), those it leases
(`supervisor.leases.LeaseKeeper`, which only it holds): the lease loop (renew
and publish every TTL/3, take free leases), losing a pipeline (its worker
killed at once), claiming one at creation, control requests for a pipeline
another node owns (409 naming it, or taken over now when no live node holds
it), and the views of pipelines other nodes own. Loop thread only.
Imports: stdlib + msgspec + structlog + shared + supervisor.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from shared.spec.load import decode_spec
from shared.states import Desired, initial_status, runs
from shared.store import StoreUnavailable
from supervisor.leases import ForeignView, foreign_view
from supervisor.managed import Conflict, Managed, NotFound, Registry
from supervisor.workers import Workers

if TYPE_CHECKING:
    from shared.store.sqlite import PipelineRow
    from supervisor.leases import LeaseKeeper

_enc = msgspec.json.Encoder()


class LeaseCoordinator:
    def __init__(self, registry: Registry, store: Any, workers: Workers, leases: LeaseKeeper | None = None) -> None:
        self.registry = registry
        self.store = store
        self.workers = workers
        self.leases = leases  # shared state store: this node runs only the pipelines it leases
        self.stopping = False  # shutdown: no more leases taken
        self._lease_task: asyncio.Task[None] | None = None
        self.log = structlog.get_logger().bind(component="manager")
        workers.on_lease_lost = self.lease_lost

    # ------------------------------------------------------- start and stop
    async def start(self) -> None:
        """Adopt the stored pipelines this node runs (all, or the free leases it takes)."""
        lk = self.leases
        held = None if lk is None else await lk.acquire_free()
        for row in self.store.list_pipelines():
            if held is None or row.name in held:
                self.adopt_row(row)
        if lk is None:
            return
        for name in set(held or ()) - set(self.registry):
            lk.forget(name)  # deleted in between
        self.log.info("leases_acquired", node=lk.node, pipelines=sorted(held or ()))
        self._lease_task = asyncio.get_running_loop().create_task(self.lease_loop(), name="lease_loop")

    def adopt_row(self, row: PipelineRow) -> Managed:
        """Run a stored pipeline as its desired state says."""
        desired = Desired(row.desired)
        m = Managed(row.name, decode_spec(row.spec), desired, last_error=row.last_error)
        self.registry.add(m)
        if runs(desired):
            self.workers.spawn(m)
        else:
            m.status = initial_status(desired)
        return m

    async def release(self) -> None:
        """Shutdown, once the workers are stopped: give every lease up at once."""
        if self._lease_task is not None:
            self._lease_task.cancel()
        if self.leases is not None:
            async with self.leases.lock:
                try:
                    await self.leases.release_all()
                except StoreUnavailable as exc:
                    self.log.warning("lease_release_failed", error=str(exc))

    # ------------------------------------------------------------ the loop
    async def lease_loop(self) -> None:
        """Every TTL/3: renew our leases (publishing status), take free ones."""
        assert self.leases is not None
        while True:
            await asyncio.sleep(self.leases.renew_every_s)
            try:
                await self.lease_tick()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one tick
                self.log.exception("lease_tick_failed", error=str(exc))

    async def lease_tick(self) -> None:
        lk = self.leases
        assert lk is not None
        async with lk.lock:
            pub = {n: (m.status.value, _enc.encode(self.published_ops(m)).decode()) for n, m in self.registry.items()}
            try:
                lost = await lk.renew(pub)
            except StoreUnavailable as exc:
                self.log.warning("lease_renew_failed", error=str(exc))
                for name in lk.overdue():
                    m = self.registry.get(name)
                    if m is not None:
                        self.lease_lost(m, f"lease not renewed for {lk.ttl_s:g}s ({exc})")
                    lk.forget(name)
                return
            for name in lost:
                m = self.registry.get(name)
                if m is not None:
                    self.lease_lost(m, self._taken_by(name))
            if self.stopping:
                return
            try:
                got = await lk.acquire_free()
            except StoreUnavailable as exc:
                self.log.warning("lease_acquire_failed", error=str(exc))
                return
            for name in got:
                self._adopt(name)

    def owner(self) -> dict[str, Any] | None:
        """PipeInfo.ops.owner of a pipeline this node runs (None: no shared state store)."""
        if self.leases is None:
            return None
        return {"node": self.leases.node, "api_addr": self.leases.api_addr, "live": True}

    def published_ops(self, m: Managed) -> dict[str, Any]:
        """The ops published into the lease row (no checkpoints, gaps: those are read from the store)."""
        out = m.ops()
        out["owner"] = self.owner()
        return out

    def _taken_by(self, name: str) -> str:
        try:
            row = self.store.lease(name)
        except StoreUnavailable:
            row = None
        if row is None:
            return "lease lost"
        return f"lease lost: node {row.owner!r} ({row.api_addr}) holds it now (token {row.token})"

    def _adopt(self, name: str) -> None:
        """We just leased `name`: run it as its desired state says."""
        assert self.leases is not None
        row = self.store.get_pipeline(name)
        if row is None or name in self.registry:
            if row is None:
                self.leases.forget(name)  # deleted meanwhile; the lease expires by itself
            return
        self.log.info("lease_acquired", pipeline=name, node=self.leases.node, fencing_token=self.leases.held.get(name))
        self.registry.changed(self.adopt_row(row))

    def lease_lost(self, m: Managed, why: str) -> None:
        """Another node runs this pipeline now (or may): kill our worker at once (nothing
        is lost: checkpoints are at-least-once) and forget the pipeline."""
        self.log.error("lease_lost", pipeline=m.name, reason=why)
        self.workers.cancel_restart(m)
        if self.leases is not None:
            self.leases.forget(m.name)
        self.workers.kill(m, "lease_lost")
        m.last_error = why
        self.registry.remove(m.name)
        self.registry.changed(m)

    # ------------------------------------------------ creation and deletion
    async def claim_new(self, name: str) -> None:
        """Creation of `name` (not in the registry): with a shared store, lease it to
        this node now; Conflict when it exists elsewhere or is being created."""
        if self.leases is None:
            return
        if self.store.get_pipeline(name) is not None:
            raise Conflict(f"pipeline {name!r} already exists; " + self.owner_note(name, self.store.lease(name)))
        async with self.leases.lock:
            token = await self.leases.claim(name)
        if token is None or name in self.registry:
            raise Conflict(
                f"pipeline {name!r} already exists (being created); " + self.owner_note(name, self.store.lease(name))
            )

    def forget(self, name: str) -> None:
        """A claimed pipeline was not stored after all: its lease expires by itself."""
        if self.leases is not None:
            self.leases.forget(name)

    async def delete_stored(self, name: str) -> None:
        """Deletion: the stored pipeline goes, and with it this node's lease."""
        if self.leases is None:
            self.store.delete_pipeline(name)
            return
        async with self.leases.lock:  # no renewal in between: the lease row is expired for good
            self.store.delete_pipeline(name)
            self.leases.forget(name)

    # --------------------------------------------- other nodes' pipelines
    async def owned(self, name: str) -> Managed:
        """The pipeline, for a control request: ours, or taken over now when no live node
        holds its lease; Conflict (naming the owner) when another live node does."""
        m = self.registry.get(name)
        if m is not None or self.leases is None:
            return self.registry.require(name)
        if self.store.get_pipeline(name) is None:
            raise NotFound(f"pipeline {name!r} not found")
        lease = self.store.lease(name)
        if lease is None or not lease.live or lease.owner == self.leases.node:
            async with self.leases.lock:
                if await self.leases.claim(name) is not None:
                    self._adopt(name)
            m = self.registry.get(name)
            if m is not None:
                return m
            lease = self.store.lease(name)
        raise Conflict(self.owner_note(name, lease))

    def owner_note(self, name: str, lease: Any) -> str:
        if lease is None or not lease.live:
            return f"pipeline {name!r} has no live owner at the moment; retry"
        return (
            f"pipeline {name!r} is run by supervisor node {lease.owner!r} (API {lease.api_addr}); "
            f"send this request there"
        )

    def foreign(self, name: str) -> ForeignView:
        """GET of a pipeline another node owns (shared state store only)."""
        row = self.store.get_pipeline(name) if self.leases is not None else None
        if row is None:
            raise NotFound(f"pipeline {name!r} not found")
        return foreign_view(row, self.store.lease(name), self.store)

    def foreigners(self) -> list[ForeignView]:
        if self.leases is None:
            return []
        leases = self.store.leases()
        return [
            foreign_view(row, leases.get(row.name), self.store)
            for row in self.store.list_pipelines()
            if row.name not in self.registry
        ]
