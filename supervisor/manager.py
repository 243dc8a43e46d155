"""PipelineManager: desired vs actual state of every pipeline, the restart
policy, and the operations the API and signals ask for. Runs on the loop
thread only. Imports: stdlib + shared + supervisor (never worker).
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any, Callable, assert_never

import structlog

from shared.errors import ErrorInfo
from shared.protocol import (EXIT_CONFIG, EXIT_FAILED, EXIT_LEASE_LOST, Counters, Failed, Pause, Paused, Ready, Resume,
                             Resumed, Status as StatusMsg, Stop, Stopped)
from shared.spec.load import SpecInvalid, decode_spec, encode_spec, to_document, validate_document
from shared.spec.model import PipelineSpec, type_tag
from shared.spec.patch import merge_patch
from shared.states import Desired, Status
from shared.store import StoreUnavailable
from shared.store.sqlite import PipelineRow, SqliteStore
from supervisor.leased import LeaseSide
from supervisor.process import WorkerHandle, describe_exit
from supervisor.managed import Managed

if TYPE_CHECKING:
    from supervisor.leases import LeaseKeeper

# a worker reports every 0.25 s; silence this long means its loop is stuck
HEARTBEAT_TIMEOUT_S = float(os.environ.get("TIDEGATE_HEARTBEAT_TIMEOUT_S", "15"))
STOP_GRACE_S = 20.0
ACK_TIMEOUT_S = 10.0


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


class PipelineManager(LeaseSide):
    def __init__(self, store: SqliteStore, *, state_dir: str, log_format: str, log_level: str,
                 check_processor: Callable[[str], str | None] | None = None, state_url: str | None = None,
                 leases: "LeaseKeeper | None" = None) -> None:
        self.store: Any = store
        self.state_url = state_url
        self.leases = leases          # shared state store: this node runs only the pipelines it leases
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
            self.leases.forget(name)   # deleted in between
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

    # -------------------------------------------------------------- workers
    def _spawn(self, m: Managed) -> None:
        if self.leases is not None and self.leases.fence(m.name) is None:
            self.log.error("spawn_without_lease", pipeline=m.name)   # never run a pipeline we do not lease
            return
        h = WorkerHandle(m.name, self._on_report, self._on_exit)
        m.handle = h
        # a worker started paused moves no data from its first instant: show it paused
        m.status = Status.PAUSED if m.desired == Desired.PAUSED else Status.STARTING
        m.ready_at = None
        m.cur = Counters()
        m.failed_by_worker = False
        m.intent = None
        h.start(encode_spec(m.spec), self.state_dir, self.log_format, self.log_level,
                paused=m.desired == Desired.PAUSED, state_url=self.state_url,
                lease=None if self.leases is None else self.leases.fence(m.name))
        self.log.info("worker_spawned", pipeline=m.name, worker_pid=h.pid)
        self._changed(m)

    def _changed(self, m: Managed) -> None:
        m.changed.set()
        m.changed = asyncio.Event()
        if self.on_change:
            self.on_change()

    def _on_report(self, h: WorkerHandle, msg: Any) -> None:
        m = self.pipelines.get(h.name)
        if m is None or m.handle is not h:
            return
        match msg:
            case Ready(paused=paused):
                m.ready_at = time.monotonic()
                if m.intent is None:
                    m.status = Status.PAUSED if paused else Status.RUNNING
            case StatusMsg():
                m.cur = msg.counters
                m.sink_errors = dict(msg.sink_errors)
                m.source = dict(msg.source)
                if msg.last_error is not None:
                    m.last_error = msg.last_error.message
            case Paused():
                if m.intent is None:
                    m.status = Status.PAUSED
            case Resumed():
                if m.intent is None:
                    m.status = Status.RUNNING
            case Failed(error=err):
                m.failed_by_worker = True
                m.last_error = err.message
            case Stopped():
                pass
            case _:
                assert_never(msg)
        self._changed(m)

    def _on_exit(self, h: WorkerHandle, code: int | None) -> None:
        m = self.pipelines.get(h.name)
        if m is None or m.handle is not h:
            return
        m.base = m.totals()
        m.base.inflight = 0
        m.cur = Counters()
        m.handle = None
        ran = time.monotonic() - h.started_at
        intent, m.intent = m.intent, None
        self.log.info("worker_exited", pipeline=m.name, worker_pid=h.pid, code=code, intent=intent)
        if intent in ("stop", "delete"):
            m.status = Status.STOPPED
        elif intent in ("restart", "shutdown"):
            pass   # the caller decides what comes next
        elif code == EXIT_LEASE_LOST:   # fenced: another node runs it now; not a crash of the pipeline
            self._lease_lost(m, m.last_error or "the worker found its lease lost")
            return
        elif m.failed_by_worker or code in (EXIT_FAILED, EXIT_CONFIG):
            self._fail(m, m.last_error or describe_exit(code))
        else:
            reason = describe_exit(code)
            m.last_error = reason if not m.last_error else f"{reason} (last error: {m.last_error})"
            delay = m.policy.on_crash(time.monotonic(), ran)
            if delay is None:
                self._fail(m, f"crashed 5 times within 5 minutes; {reason}")
            else:
                m.restarts += 1
                m.status = Status.STARTING
                self.log.warning("worker_crashed", pipeline=m.name, reason=reason, restart_in_s=round(delay, 2))
                m.restart_task = asyncio.get_running_loop().create_task(self._restart_later(m, delay),
                                                                         name=f"restart[{m.name}]")
        self._changed(m)

    def _fail(self, m: Managed, reason: str) -> None:
        m.status = Status.FAILED
        m.desired = Desired.FAILED
        m.last_error = reason
        self.store.set_desired(m.name, Desired.FAILED.value, reason)
        self.log.error("pipeline_failed", pipeline=m.name, error=reason)

    async def _restart_later(self, m: Managed, delay: float) -> None:
        await asyncio.sleep(delay)
        m.restart_task = None
        if m.handle is None and m.desired in (Desired.RUNNING, Desired.PAUSED) and m.name in self.pipelines:
            self._spawn(m)

    def _cancel_restart(self, m: Managed) -> None:
        if m.restart_task is not None:
            m.restart_task.cancel()
            m.restart_task = None

    async def _stop_worker(self, m: Managed, intent: str, drop: bool = False) -> None:
        h = m.handle
        if h is None:
            return
        m.intent = intent
        if intent != "shutdown":
            m.status = Status.STOPPING
        self._changed(m)
        if not h.send(Stop(drop_source_state=drop)):
            h.signal(15)
        if not await h.wait(STOP_GRACE_S):
            self.log.warning("worker_stop_timeout", pipeline=m.name, worker_pid=h.pid)
            h.signal(9)
            await h.wait(5.0)
        if m.handle is h:   # exit callback did not run (should not happen)
            m.handle = None

    async def monitor_loop(self) -> None:
        """Kill hung workers (no heartbeat) so the restart policy takes over."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for m in list(self.pipelines.values()):
                h = m.handle
                if h is not None and not h.exited.is_set() and now - h.last_heard > HEARTBEAT_TIMEOUT_S \
                        and m.intent is None:
                    self.log.error("worker_hung", pipeline=m.name, worker_pid=h.pid,
                                   silent_s=round(now - h.last_heard, 1))
                    m.last_error = f"worker sent no heartbeat for {HEARTBEAT_TIMEOUT_S:.0f}s; killed"
                    h.last_heard = now
                    asyncio.get_running_loop().create_task(h.terminate(5.0))

    # ----------------------------------------------------------- operations
    def get(self, name: str) -> Managed:
        m = self.pipelines.get(name)
        if m is None:
            raise NotFound(f"pipeline {name!r} not found")
        return m

    def validate(self, doc: Any) -> PipelineSpec:
        return validate_document(doc, check_processor=self.check_processor)

    async def create(self, doc: Any) -> Managed:
        spec = self.validate(doc)
        name = spec.metadata.name
        if name in self.pipelines:
            raise Conflict(f"pipeline {name!r} already exists")
        if self.leases is not None:   # shared store: it may exist elsewhere; it is leased to us at creation
            if self.store.get_pipeline(name) is not None:
                raise Conflict(f"pipeline {name!r} already exists; " + self._owner_note(name, self.store.lease(name)))
            async with self.leases.lock:
                token = await self.leases.claim(name)
            if token is None or name in self.pipelines:
                raise Conflict(f"pipeline {name!r} already exists (being created); "
                               + self._owner_note(name, self.store.lease(name)))
        m = Managed(name, spec, Desired.RUNNING)
        try:
            self.store.put_pipeline(name, encode_spec(spec), Desired.RUNNING.value)
        except StoreUnavailable:
            if self.leases is not None:
                self.leases.forget(name)   # its lease expires by itself
            raise
        self.pipelines[name] = m
        self._spawn(m)
        return m

    async def apply(self, doc: Any) -> tuple[Managed, str]:
        """Create, or update when the spec differs (config files, SIGHUP, `tidegate apply`)."""
        spec = self.validate(doc)
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
        merged = merge_patch(to_document(m.spec), patch)
        meta = merged.get("metadata") if isinstance(merged, dict) else None
        if isinstance(meta, dict) and meta.get("name") != name:
            raise Conflict(f"pipeline {name!r} cannot be renamed to {meta.get('name')!r}; create a new one")
        spec = self.validate(merged)
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
                async with self.leases.lock:   # no renewal in between: the lease row is expired for good
                    self.store.delete_pipeline(name)
                    self.leases.forget(name)
            else:
                self.store.delete_pipeline(name)
            self.pipelines.pop(name, None)
        self._changed(m)

    async def _drop_source_state(self, m: Managed) -> None:
        """No worker runs: start one in drop mode so the source removes its server-side state."""
        if type_tag(m.spec.spec.source) == "generator":
            return
        h = WorkerHandle(m.name, lambda _h, _msg: None, lambda _h, _code: None)
        h.start(encode_spec(m.spec), self.state_dir, self.log_format, self.log_level, paused=True, mode="drop",
                state_url=self.state_url)
        if not await h.wait(30.0):
            h.signal(9)
            await h.wait(5.0)

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

    # ------------------------------------------------------------- read side
    def checkpoints(self, name: str) -> dict[str, dict[str, str]]:
        if name not in self.pipelines:
            self.foreign(name)   # NotFound unless another node owns it
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
