"""Operations: what the API asks of a pipeline, also used by config files and
SIGHUP: create, apply, patch and replace a spec, delete, pause, resume, stop,
restart, clear checkpoints. Those on an existing pipeline act on one this node
owns (or takes over, `LeaseCoordinator.owned`), under its lock; pause and
resume wait (bounded) for the worker's acknowledgement. The errors they raise
are `NotFound` and `Conflict` (`supervisor.managed`). Desired states are stored
here; workers are started and stopped through `Workers`. Loop thread only.
Imports: stdlib + shared + supervisor (never worker).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import structlog

from shared.protocol import Pause, Resume, SnapshotCommand, SnapshotReply
from shared.spec.load import SpecInvalid, encode_spec, to_document, validate_document
from shared.spec.model import MysqlSourceConfig, PipelineSpec, PostgresSourceConfig
from shared.spec.patch import merge_patch
from shared.states import Desired, Status
from shared.store import StoreUnavailable
from supervisor.coordinator import LeaseCoordinator
from supervisor.managed import Conflict, Managed, Registry
from supervisor.workers import Workers

ACK_TIMEOUT_S = 10.0
ADDED_TABLE_WAIT_S = 60.0  # a pipeline PATCHed with a new table: how long its snapshot waits for the worker


def added_tables(old: PipelineSpec, new: PipelineSpec) -> list[str]:
    """Tables a spec change adds to a postgres or mysql source with `snapshot: initial` (CONTRACT
    section 13: they are snapshotted incrementally, the others are not read again)."""
    a, b = old.spec.source.config, new.spec.source.config
    if type(a) is not type(b) or not isinstance(b, PostgresSourceConfig | MysqlSourceConfig) or b.snapshot != "initial":
        return []
    assert isinstance(a, PostgresSourceConfig | MysqlSourceConfig)
    default = "public" if isinstance(b, PostgresSourceConfig) else ""  # mysql names are db.table already

    def full(t: str) -> str:
        return t if "." in t or not default else f"{default}.{t}"

    before = {full(t) for t in a.tables}
    if not before:  # FOR ALL TABLES (every table of the dsn's database): nothing is added
        return []
    return [t for t in b.tables if full(t) not in before]


class Operations:
    def __init__(
        self,
        registry: Registry,
        store: Any,
        workers: Workers,
        coordinator: LeaseCoordinator,
        check_processor: Callable[[str], str | None] | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.workers = workers
        self.coordinator = coordinator
        self.check_processor = check_processor  # JavaScript processors' syntax check at validation

    def validate(self, doc: Any) -> PipelineSpec:
        return validate_document(doc, check_processor=self.check_processor)

    async def validated(self, doc: Any) -> PipelineSpec:
        """`validate` in a thread: a 10 MiB document is walked without stalling the loop (/healthz)."""
        return await asyncio.to_thread(self.validate, doc)

    async def create(self, doc: Any) -> Managed:
        spec = await self.validated(doc)
        name = spec.metadata.name
        if name in self.registry:
            raise Conflict(f"pipeline {name!r} already exists")
        await self.coordinator.claim_new(name)  # shared store: it may exist elsewhere; leased to us now
        m = Managed(name, spec, Desired.RUNNING)
        try:
            self.store.put_pipeline(name, encode_spec(spec), Desired.RUNNING.value)
        except StoreUnavailable:
            self.coordinator.forget(name)
            raise
        self.registry.add(m)
        self.workers.spawn(m)
        return m

    async def apply(self, doc: Any) -> tuple[Managed, str]:
        """Create, or update when the spec differs (config files, SIGHUP, `tidegate apply`)."""
        spec = await self.validated(doc)
        m = self.registry.get(spec.metadata.name)
        if m is None:
            return await self.create(doc), "created"
        if encode_spec(m.spec) == encode_spec(spec):
            return m, "unchanged"
        await self.replace(m, spec)
        return m, "updated"

    async def patch(self, name: str, patch: Any) -> Managed:
        m = await self.coordinator.owned(name)
        if not isinstance(patch, dict):
            raise SpecInvalid([("$", "a merge patch must be an object")])
        while True:  # validation runs in a thread: a PATCH that landed meanwhile is merged, not lost
            base = m.spec
            merged = merge_patch(to_document(base), patch)
            meta = merged.get("metadata") if isinstance(merged, dict) else None
            if isinstance(meta, dict) and meta.get("name") != name:
                raise Conflict(f"pipeline {name!r} cannot be renamed to {meta.get('name')!r}; create a new one")
            spec = await self.validated(merged)
            if m.spec is base:
                break
        await self.replace(m, spec)
        return m

    async def replace(self, m: Managed, spec: PipelineSpec) -> None:
        async with m.lock:
            if m.desired == Desired.FAILED:
                m.desired = Desired.RUNNING
                m.policy.reset()
            added = added_tables(m.spec, spec) if self.store.checkpoints(m.name) else []
            m.spec = spec
            self.store.put_pipeline(m.name, encode_spec(spec), m.desired.value)
            self.store.drop_sink_checkpoints(m.name, {s.config.id for s in spec.spec.sinks})
            if m.desired == Desired.STOPPED:
                return
            self.workers.cancel_restart(m)
            await self.workers.stop(m, "restart")
            self.workers.spawn(m)
        if added:
            asyncio.get_running_loop().create_task(self._snapshot_added(m, added), name=f"snapshot-added[{m.name}]")

    async def _snapshot_added(self, m: Managed, tables: list[str]) -> None:
        """Once the restarted worker runs, snapshot the added tables (and only those)."""
        log = structlog.get_logger().bind(component="manager", pipeline=m.name)
        await self._wait_for(m, lambda: m.status == Status.RUNNING, ADDED_TABLE_WAIT_S)
        try:
            cfg = m.spec.spec.source.config
            chunk = cfg.snapshot_chunk if isinstance(cfg, PostgresSourceConfig | MysqlSourceConfig) else 10000
            reply = await self.snapshot(m.name, "start", tables=tables, chunk_rows=chunk)
        except Exception as exc:  # noqa: BLE001 - logged; the user can POST the snapshot
            log.warning("added_table_snapshot_failed", tables=tables, error=str(exc))
            return
        if reply.code >= 400:
            log.warning("added_table_snapshot_failed", tables=tables, error=reply.message)
        else:
            log.info("added_table_snapshot_started", tables=tables, snapshot=reply.snapshot.get("id"))

    async def delete(self, name: str) -> None:
        m = await self.coordinator.owned(name)
        async with m.lock:
            self.workers.cancel_restart(m)
            m.desired = Desired.STOPPED
            if m.handle is not None:
                await self.workers.stop(m, "delete", drop=True)
            else:
                await self.workers.drop_source_state(m)
            await self.coordinator.delete_stored(name)
            self.registry.remove(name)
        self.registry.changed(m)

    async def pause(self, name: str) -> Managed:
        m = await self.coordinator.owned(name)
        async with m.lock:
            if m.status in (Status.STOPPED, Status.FAILED) or m.desired in (Desired.STOPPED, Desired.FAILED):
                raise Conflict(f"pipeline {name!r} is {m.status.value}; resume it first")
            if m.desired != Desired.PAUSED:
                m.desired = Desired.PAUSED
                self.store.set_desired(name, Desired.PAUSED.value, m.last_error)
            if m.handle is None:
                m.status = Status.PAUSED
                return m
            if m.status != Status.PAUSED:
                m.handle.send(Pause())
                await self._wait_for(m, lambda: m.status == Status.PAUSED or m.handle is None)
        return m

    async def resume(self, name: str) -> Managed:
        m = await self.coordinator.owned(name)
        async with m.lock:
            was = m.desired
            m.desired = Desired.RUNNING
            self.store.set_desired(name, Desired.RUNNING.value, m.last_error)
            if was == Desired.FAILED:
                m.policy.reset()
            if m.handle is None:
                self.workers.cancel_restart(m)
                self.workers.spawn(m)
                return m
            if m.status == Status.PAUSED or was == Desired.PAUSED:
                m.handle.send(Resume())
                await self._wait_for(m, lambda: m.status in (Status.RUNNING, Status.FAILED) or m.handle is None)
        return m

    async def stop(self, name: str) -> Managed:
        m = await self.coordinator.owned(name)
        async with m.lock:
            self.workers.cancel_restart(m)
            m.desired = Desired.STOPPED
            self.store.set_desired(name, Desired.STOPPED.value, m.last_error)
            await self.workers.stop(m, "stop")
            m.status = Status.STOPPED
            self.registry.changed(m)
        return m

    async def restart(self, name: str) -> Managed:
        m = await self.coordinator.owned(name)
        async with m.lock:
            self.workers.cancel_restart(m)
            m.desired = Desired.RUNNING
            m.policy.reset()
            self.store.set_desired(name, Desired.RUNNING.value, m.last_error)
            await self.workers.stop(m, "restart")
            self.workers.spawn(m)
        return m

    async def clear_checkpoints(self, name: str) -> None:
        m = await self.coordinator.owned(name)
        async with m.lock:
            if m.status != Status.STOPPED:
                raise Conflict(f"pipeline {name!r} is {m.status.value}; stop it before deleting its checkpoints")
            self.store.clear_checkpoints(name)

    async def snapshot(
        self, name: str, action: str, snap_id: str = "", tables: list[str] | None = None, chunk_rows: int = 10000
    ) -> SnapshotReply:
        """Start, pause, resume or cancel an incremental snapshot (CONTRACT section 13): the
        worker's answer (its `code` is the HTTP status)."""
        m = await self.coordinator.owned(name)
        h = m.handle
        if h is None or m.status not in (Status.RUNNING, Status.PAUSED):
            raise Conflict(f"pipeline {name!r} is {m.status.value}; snapshots are run by a running pipeline")
        request = secrets.token_hex(8)
        snap_id = snap_id or "snap-" + secrets.token_hex(6)
        h.send(SnapshotCommand(request, action, snap_id, list(tables or []), chunk_rows))
        await self._wait_for(m, lambda: request in m.replies or m.handle is not h)
        reply: SnapshotReply | None = m.replies.pop(request, None)
        if reply is None:
            raise Conflict(f"pipeline {name!r}: the worker did not answer the snapshot request; try again")
        return reply

    def snapshots(self, name: str) -> list[dict[str, Any]]:
        self.registry.require(name)  # NotFound
        return [json.loads(d)["snapshot"] for d in self.store.snapshots(name)]

    async def _wait_for(self, m: Managed, pred: Callable[[], bool], timeout: float = ACK_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(m.changed.wait(), left)
            except TimeoutError:
                return False
        return True
