"""The lease side of PipelineManager (shared state store, `--state-url`): the
lease loop (renew and publish every TTL/3, take free leases), losing a pipeline
(its worker killed at once), control requests for a pipeline another node owns
(409 naming it, or taken over now when no live node holds it), and the views of
pipelines other nodes own. A mixin: it works on the manager's own fields, on
the loop thread. Imports: stdlib + msgspec + shared + supervisor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from shared.store import StoreUnavailable
from supervisor.leases import ForeignView, foreign_view
from supervisor.managed import Conflict, Managed, NotFound, Registry

if TYPE_CHECKING:
    from shared.store.sqlite import PipelineRow
    from supervisor.leases import LeaseKeeper
    from supervisor.workers import Workers

_enc = msgspec.json.Encoder()


class LeaseSide:
    """Mixed into PipelineManager, whose fields these are."""

    pipelines: Registry
    store: Any
    leases: LeaseKeeper | None
    stopping: bool
    log: Any
    get: Callable[[str], Managed]
    ops: Callable[..., dict[str, Any]]
    _adopt_row: Callable[[PipelineRow], Managed]
    workers: Workers

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
            pub = {
                n: (m.status.value, _enc.encode(self.ops(m, stored=False)).decode()) for n, m in self.pipelines.items()
            }
            try:
                lost = await lk.renew(pub)
            except StoreUnavailable as exc:
                self.log.warning("lease_renew_failed", error=str(exc))
                for name in lk.overdue():
                    if name in self.pipelines:
                        self._lease_lost(self.pipelines[name], f"lease not renewed for {lk.ttl_s:g}s ({exc})")
                    lk.forget(name)
                return
            for name in lost:
                if name in self.pipelines:
                    self._lease_lost(self.pipelines[name], self._taken_by(name))
            if self.stopping:
                return
            try:
                got = await lk.acquire_free()
            except StoreUnavailable as exc:
                self.log.warning("lease_acquire_failed", error=str(exc))
                return
            for name in got:
                self._adopt(name)

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
        if row is None or name in self.pipelines:
            if row is None:
                self.leases.forget(name)  # deleted meanwhile; the lease expires by itself
            return
        self.log.info("lease_acquired", pipeline=name, node=self.leases.node, fencing_token=self.leases.held.get(name))
        self.pipelines.changed(self._adopt_row(row))

    def _lease_lost(self, m: Managed, why: str) -> None:
        """Another node runs this pipeline now (or may): kill our worker at once (nothing
        is lost: checkpoints are at-least-once) and forget the pipeline."""
        self.log.error("lease_lost", pipeline=m.name, reason=why)
        self.workers.cancel_restart(m)
        if self.leases is not None:
            self.leases.forget(m.name)
        self.workers.kill(m, "lease_lost")
        m.last_error = why
        self.pipelines.remove(m.name)
        self.pipelines.changed(m)

    async def owned(self, name: str) -> Managed:
        """The pipeline, for a control request: ours, or taken over now when no live node
        holds its lease; Conflict (naming the owner) when another live node does."""
        m = self.pipelines.get(name)
        if m is not None or self.leases is None:
            return self.get(name)
        if self.store.get_pipeline(name) is None:
            raise NotFound(f"pipeline {name!r} not found")
        lease = self.store.lease(name)
        if lease is None or not lease.live or lease.owner == self.leases.node:
            async with self.leases.lock:
                if await self.leases.claim(name) is not None:
                    self._adopt(name)
            if name in self.pipelines:
                return self.pipelines[name]
            lease = self.store.lease(name)
        raise Conflict(self._owner_note(name, lease))

    def _owner_note(self, name: str, lease: Any) -> str:
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
            if row.name not in self.pipelines
        ]
