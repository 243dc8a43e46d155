"""The API-facing operations of PipelineManager, also used by config files and
SIGHUP: create, apply, patch and replace a spec, delete, pause, resume, stop,
restart, clear checkpoints. Those on an existing pipeline act on one this node
owns (or takes over, `supervisor.leased`), under its lock; pause and resume
wait (bounded) for the worker's acknowledgement. Also the errors they raise,
`NotFound` and `Conflict` (their HTTP status is chosen in
`supervisor.api.errors`). A mixin: it works on the manager's own fields, on the
loop thread.
Imports: stdlib + shared + supervisor (never worker).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from shared.protocol import Pause, Resume
from shared.spec.load import SpecInvalid, encode_spec, to_document, validate_document
from shared.spec.model import PipelineSpec
from shared.spec.patch import merge_patch
from shared.states import Desired, Status
from shared.store import StoreUnavailable
from supervisor.managed import Managed

if TYPE_CHECKING:
    from supervisor.leases import LeaseKeeper

ACK_TIMEOUT_S = 10.0


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


class OperationsSide:
    """Mixed into PipelineManager, whose fields these are."""

    pipelines: dict[str, Managed]
    store: Any
    leases: LeaseKeeper | None
    check_processor: Callable[[str], str | None] | None
    owned: Callable[[str], Coroutine[Any, Any, Managed]]  # LeaseSide.owned
    _owner_note: Callable[[str, Any], str]
    _spawn: Callable[[Managed], None]
    _stop_worker: Callable[..., Awaitable[None]]
    _drop_source_state: Callable[[Managed], Awaitable[None]]
    _cancel_restart: Callable[[Managed], None]
    _changed: Callable[[Managed], None]

    def get(self, name: str) -> Managed:
        m = self.pipelines.get(name)
        if m is None:
            raise NotFound(f"pipeline {name!r} not found")
        return m

    def validate(self, doc: Any) -> PipelineSpec:
        return validate_document(doc, check_processor=self.check_processor)

    async def validated(self, doc: Any) -> PipelineSpec:
        """`validate` in a thread: a 10 MiB document is walked without stalling the loop (/healthz)."""
        return await asyncio.to_thread(self.validate, doc)

    async def create(self, doc: Any) -> Managed:
        spec = await self.validated(doc)
        name = spec.metadata.name
        if name in self.pipelines:
            raise Conflict(f"pipeline {name!r} already exists")
        if self.leases is not None:  # shared store: it may exist elsewhere; it is leased to us at creation
            if self.store.get_pipeline(name) is not None:
                raise Conflict(f"pipeline {name!r} already exists; " + self._owner_note(name, self.store.lease(name)))
            async with self.leases.lock:
                token = await self.leases.claim(name)
            if token is None or name in self.pipelines:
                raise Conflict(
                    f"pipeline {name!r} already exists (being created); "
                    + self._owner_note(name, self.store.lease(name))
                )
        m = Managed(name, spec, Desired.RUNNING)
        try:
            self.store.put_pipeline(name, encode_spec(spec), Desired.RUNNING.value)
        except StoreUnavailable:
            if self.leases is not None:
                self.leases.forget(name)  # its lease expires by itself
            raise
        self.pipelines[name] = m
        self._spawn(m)
        return m

    async def apply(self, doc: Any) -> tuple[Managed, str]:
        """Create, or update when the spec differs (config files, SIGHUP, `tidegate apply`)."""
        spec = await self.validated(doc)
        m = self.pipelines.get(spec.metadata.name)
        if m is None:
            return await self.create(doc), "created"
        if encode_spec(m.spec) == encode_spec(spec):
            return m, "unchanged"
        await self.replace(m, spec)
        return m, "updated"

    async def patch(self, name: str, patch: Any) -> Managed:
        m = await self.owned(name)
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
            m.spec = spec
            self.store.put_pipeline(m.name, encode_spec(spec), m.desired.value)
            self.store.drop_sink_checkpoints(m.name, {s.config.id for s in spec.spec.sinks})
            if m.desired == Desired.STOPPED:
                return
            self._cancel_restart(m)
            await self._stop_worker(m, "restart")
            self._spawn(m)

    async def delete(self, name: str) -> None:
        m = await self.owned(name)
        async with m.lock:
            self._cancel_restart(m)
            m.desired = Desired.STOPPED
            if m.handle is not None:
                await self._stop_worker(m, "delete", drop=True)
            else:
                await self._drop_source_state(m)
            if self.leases is not None:
                async with self.leases.lock:  # no renewal in between: the lease row is expired for good
                    self.store.delete_pipeline(name)
                    self.leases.forget(name)
            else:
                self.store.delete_pipeline(name)
            self.pipelines.pop(name, None)
        self._changed(m)

    async def pause(self, name: str) -> Managed:
        m = await self.owned(name)
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
        m = await self.owned(name)
        async with m.lock:
            was = m.desired
            m.desired = Desired.RUNNING
            self.store.set_desired(name, Desired.RUNNING.value, m.last_error)
            if was == Desired.FAILED:
                m.policy.reset()
            if m.handle is None:
                self._cancel_restart(m)
                self._spawn(m)
                return m
            if m.status == Status.PAUSED or was == Desired.PAUSED:
                m.handle.send(Resume())
                await self._wait_for(m, lambda: m.status in (Status.RUNNING, Status.FAILED) or m.handle is None)
        return m

    async def stop(self, name: str) -> Managed:
        m = await self.owned(name)
        async with m.lock:
            self._cancel_restart(m)
            m.desired = Desired.STOPPED
            self.store.set_desired(name, Desired.STOPPED.value, m.last_error)
            await self._stop_worker(m, "stop")
            m.status = Status.STOPPED
            self._changed(m)
        return m

    async def restart(self, name: str) -> Managed:
        m = await self.owned(name)
        async with m.lock:
            self._cancel_restart(m)
            m.desired = Desired.RUNNING
            m.policy.reset()
            self.store.set_desired(name, Desired.RUNNING.value, m.last_error)
            await self._stop_worker(m, "restart")
            self._spawn(m)
        return m

    async def clear_checkpoints(self, name: str) -> None:
        m = await self.owned(name)
        async with m.lock:
            if m.status != Status.STOPPED:
                raise Conflict(f"pipeline {name!r} is {m.status.value}; stop it before deleting its checkpoints")
            self.store.clear_checkpoints(name)

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
