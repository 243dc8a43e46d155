"""The worker side of PipelineManager: spawning a pipeline's worker, its reports
and its exit (stopped, failed, lease lost, or crashed and restarted after the
backoff of `supervisor.restart`), stopping a worker (Stop, or SIGTERM when its
pipe is gone; SIGKILL after a grace), the drop-mode run that removes a deleted
pipeline's source state, and the monitor loop that kills hung workers. A mixin:
it works on the manager's own fields, on the loop thread.
Imports: stdlib + shared + supervisor (never worker).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, assert_never

from shared.protocol import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_LEASE_LOST,
    Counters,
    Failed,
    Heartbeat,
    Paused,
    Ready,
    Resumed,
    Stop,
    Stopped,
)
from shared.spec.load import encode_spec
from shared.spec.model import type_tag
from shared.states import Desired, Status
from supervisor.managed import Managed, Registry
from supervisor.process import WorkerHandle, describe_exit

if TYPE_CHECKING:
    from supervisor.leases import LeaseKeeper

# a worker reports every 0.25 s; silence this long means its loop is stuck
HEARTBEAT_TIMEOUT_S = float(os.environ.get("TIDEGATE_HEARTBEAT_TIMEOUT_S", "15"))
STOP_GRACE_S = 20.0


class WorkerSide:
    """Mixed into PipelineManager, whose fields these are."""

    pipelines: Registry
    store: Any
    leases: LeaseKeeper | None
    state_dir: str
    state_url: str | None
    log_format: str
    log_level: str
    log: Any
    _lease_lost: Callable[[Managed, str], None]

    def _spawn(self, m: Managed) -> None:
        if self.leases is not None and self.leases.fence(m.name) is None:
            self.log.error("spawn_without_lease", pipeline=m.name)  # never run a pipeline we do not lease
            return
        h = WorkerHandle(m.name, self._on_report, self._on_exit)
        m.handle = h
        # a worker started paused moves no data from its first instant: show it paused
        m.status = Status.PAUSED if m.desired == Desired.PAUSED else Status.STARTING
        m.ready_at = None
        m.cur = Counters()
        m.failed_by_worker = False
        m.intent = None
        h.start(
            encode_spec(m.spec),
            self.state_dir,
            self.log_format,
            self.log_level,
            paused=m.desired == Desired.PAUSED,
            state_url=self.state_url,
            lease=None if self.leases is None else self.leases.fence(m.name),
        )
        self.log.info("worker_spawned", pipeline=m.name, worker_pid=h.pid)
        self.pipelines.changed(m)

    def _on_report(self, h: WorkerHandle, msg: Any) -> None:
        m = self.pipelines.get(h.name)
        if m is None or m.handle is not h:
            return
        match msg:
            case Ready(paused=paused):
                m.ready_at = time.monotonic()
                if m.intent is None:
                    m.status = Status.PAUSED if paused else Status.RUNNING
            case Heartbeat():
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
        self.pipelines.changed(m)

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
            pass  # the caller decides what comes next
        elif code == EXIT_LEASE_LOST:  # fenced: another node runs it now; not a crash of the pipeline
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
                m.restart_task = asyncio.get_running_loop().create_task(
                    self._restart_later(m, delay), name=f"restart[{m.name}]"
                )
        self.pipelines.changed(m)

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
        self.pipelines.changed(m)
        if not h.send(Stop(drop_source_state=drop)):
            h.signal(15)
        if not await h.wait(STOP_GRACE_S):
            self.log.warning("worker_stop_timeout", pipeline=m.name, worker_pid=h.pid)
            h.signal(9)
            await h.wait(5.0)
        if m.handle is h:  # exit callback did not run (should not happen)
            m.handle = None

    async def monitor_loop(self) -> None:
        """Kill hung workers (no heartbeat) so the restart policy takes over."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for m in list(self.pipelines.values()):
                h = m.handle
                if (
                    h is not None
                    and not h.exited.is_set()
                    and now - h.last_heard > HEARTBEAT_TIMEOUT_S
                    and m.intent is None
                ):
                    self.log.error(
                        "worker_hung", pipeline=m.name, worker_pid=h.pid, silent_s=round(now - h.last_heard, 1)
                    )
                    m.last_error = f"worker sent no heartbeat for {HEARTBEAT_TIMEOUT_S:.0f}s; killed"
                    h.last_heard = now
                    asyncio.get_running_loop().create_task(h.terminate(5.0))

    async def _drop_source_state(self, m: Managed) -> None:
        """No worker runs: start one in drop mode so the source removes its server-side state."""
        if type_tag(m.spec.spec.source) == "generator":
            return
        h = WorkerHandle(m.name, lambda _h, _msg: None, lambda _h, _code: None)
        h.start(
            encode_spec(m.spec),
            self.state_dir,
            self.log_format,
            self.log_level,
            paused=True,
            mode="drop",
            state_url=self.state_url,
        )
        if not await h.wait(30.0):
            h.signal(9)
            await h.wait(5.0)
