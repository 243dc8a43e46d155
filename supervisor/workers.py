"""Workers: the worker processes of the pipelines in the Registry. Spawning a
pipeline's worker, its reports and its exit (stopped, failed, lease lost, or
crashed and restarted after the backoff of `supervisor.restart`, whose
`exit_meaning` says which), stopping a worker (Stop, or SIGTERM when its pipe
is gone; SIGKILL after a grace), the drop-mode run that removes a deleted
pipeline's source state, and the monitor loop that kills hung workers. Owns
the worker handles, the restart tasks and the crash counting; loop thread only.
Imports: stdlib + shared + supervisor (never worker).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, assert_never

import structlog

from shared.protocol import (
    Counters,
    Failed,
    Heartbeat,
    Paused,
    Ready,
    ReplayDone,
    Resumed,
    SnapshotReply,
    SourceProbed,
    Stop,
    Stopped,
)
from shared.spec.load import encode_spec
from shared.spec.model import type_tag
from shared.states import Desired, Status, initial_status, runs
from supervisor import dlq
from supervisor.managed import Managed, Registry
from supervisor.process import WorkerHandle, describe_exit
from supervisor.restart import ExitMeaning, crash_error, exit_meaning, given_up_error

# a worker reports every 0.25 s; silence this long means its loop is stuck
HEARTBEAT_TIMEOUT_S = float(os.environ.get("TIDEGATE_HEARTBEAT_TIMEOUT_S", "15"))
STOP_GRACE_S = 20.0

Fence = Callable[[str], tuple[str, int] | None]


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker is started with."""

    state_dir: str
    log_format: str
    log_level: str
    state_url: str | None = None


async def run_once(
    m: Managed, config: WorkerConfig, mode: str, timeout: float, on_report: Callable[[Any], None] | None = None
) -> bool:
    """A worker process in `mode` (drop, probe) for `m`'s spec, to its exit: False when it had to
    be killed after `timeout` seconds. `on_report` gets what it sends."""
    h = WorkerHandle(m.name, lambda _h, msg: on_report(msg) if on_report else None, lambda _h, _code: None)
    c = config
    h.start(encode_spec(m.spec), c.state_dir, c.log_format, c.log_level, True, mode=mode, state_url=c.state_url)
    if await h.wait(timeout):
        return True
    h.signal(signal.SIGKILL)
    await h.wait(5.0)
    return False


class Workers:
    def __init__(self, registry: Registry, store: Any, config: WorkerConfig, fence: Fence | None = None) -> None:
        self.registry = registry
        self.store = store  # a pipeline failed for good is stored so
        self.config = config
        self.fence = fence  # shared state store: this node's lease of a pipeline (None: not leased)
        # set by whoever owns the leases: a worker that exited because its lease is gone
        self.on_lease_lost: Callable[[Managed, str], None] = lambda m, why: None
        self.log = structlog.get_logger().bind(component="manager")

    # ------------------------------------------------------------- spawning
    def spawn(self, m: Managed) -> None:
        lease = None if self.fence is None else self.fence(m.name)
        if self.fence is not None and lease is None:
            self.log.error("spawn_without_lease", pipeline=m.name)  # never run a pipeline we do not lease
            return
        h = WorkerHandle(m.name, self._on_report, self._on_exit)
        m.handle = h
        m.status = initial_status(m.desired)  # a worker started paused moves no data from its first instant
        m.ready_at = None
        m.cur = Counters()
        m.failed_by_worker = False
        m.intent = None
        c = self.config
        paused = m.desired == Desired.PAUSED
        h.start(
            encode_spec(m.spec),
            c.state_dir,
            c.log_format,
            c.log_level,
            paused=paused,
            state_url=c.state_url,
            lease=lease,
        )
        self.log.info("worker_spawned", pipeline=m.name, worker_pid=h.pid)
        self.registry.changed(m)

    def _on_report(self, h: WorkerHandle, msg: Any) -> None:
        m = self.registry.get(h.name)
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
            case ReplayDone():
                dlq.on_done(msg)
            case SnapshotReply():
                m.replies[msg.request] = msg
            case SourceProbed():
                pass  # probe-mode workers answer supervisor.probes, not this
            case _:
                assert_never(msg)
        self.registry.changed(m)

    # ----------------------------------------------------------------- exits
    def _on_exit(self, h: WorkerHandle, code: int | None) -> None:
        m = self.registry.get(h.name)
        if m is None or m.handle is not h:
            return
        m.base = m.totals()
        m.base.inflight = 0
        m.cur = Counters()
        m.handle = None
        ran = time.monotonic() - h.started_at
        intent, m.intent = m.intent, None
        self.log.info("worker_exited", pipeline=m.name, worker_pid=h.pid, code=code, intent=intent)
        meaning = exit_meaning(intent, code, m.failed_by_worker)
        match meaning:
            case ExitMeaning.STOPPED:
                m.status = Status.STOPPED
            case ExitMeaning.HANDED_BACK:
                pass
            case ExitMeaning.LEASE_LOST:
                self.on_lease_lost(m, m.last_error or "the worker found its lease lost")
                return
            case ExitMeaning.FAILED:
                self._fail(m, m.last_error or describe_exit(code))
            case ExitMeaning.CRASHED:
                self._crashed(m, code, ran)
            case _:
                assert_never(meaning)
        self.registry.changed(m)

    def _crashed(self, m: Managed, code: int | None, ran: float) -> None:
        reason = describe_exit(code)
        m.last_error = crash_error(reason, m.last_error)
        delay = m.policy.on_crash(time.monotonic(), ran)
        if delay is None:
            self._fail(m, given_up_error(reason))
            return
        m.restarts += 1
        m.status = Status.STARTING
        self.log.warning("worker_crashed", pipeline=m.name, reason=reason, restart_in_s=round(delay, 2))
        m.restart_task = asyncio.get_running_loop().create_task(
            self._restart_later(m, delay), name=f"restart[{m.name}]"
        )

    def _fail(self, m: Managed, reason: str) -> None:
        m.status = Status.FAILED
        m.desired = Desired.FAILED
        m.last_error = reason
        self.store.set_desired(m.name, Desired.FAILED.value, reason)
        self.log.error("pipeline_failed", pipeline=m.name, error=reason)

    async def _restart_later(self, m: Managed, delay: float) -> None:
        await asyncio.sleep(delay)
        m.restart_task = None
        if m.handle is None and runs(m.desired) and m.name in self.registry:
            self.spawn(m)

    def cancel_restart(self, m: Managed) -> None:
        if m.restart_task is not None:
            m.restart_task.cancel()
            m.restart_task = None

    # -------------------------------------------------------------- stopping
    async def stop(self, m: Managed, intent: str, drop: bool = False) -> None:
        """Stop `m`'s worker (if any) and wait for it; `intent` says what its exit means."""
        h = m.handle
        if h is None:
            return
        m.intent = intent
        if intent != "shutdown":
            m.status = Status.STOPPING
        self.registry.changed(m)
        if not h.send(Stop(drop_source_state=drop)):
            h.signal(15)
        if not await h.wait(STOP_GRACE_S):
            self.log.warning("worker_stop_timeout", pipeline=m.name, worker_pid=h.pid)
            h.signal(9)
            await h.wait(5.0)
        if m.handle is h:  # exit callback did not run (should not happen)
            m.handle = None

    async def stop_all(self) -> None:
        """Supervisor shutdown: no more restarts; every worker drains and stops."""
        ms = self.registry.values()
        for m in ms:
            if m.restart_task:
                m.restart_task.cancel()
        await asyncio.gather(*(self.stop(m, "shutdown") for m in ms))

    def kill(self, m: Managed, intent: str) -> None:
        """SIGKILL `m`'s worker now (lease lost: another node may run it already)."""
        h = m.handle
        if h is not None:
            m.intent = intent
            h.signal(signal.SIGKILL)

    # ---------------------------------------------------------------- others
    async def monitor_loop(self) -> None:
        """Kill hung workers (no heartbeat) so the restart policy takes over."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for m in self.registry.values():
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

    async def drop_source_state(self, m: Managed) -> None:
        """No worker runs: start one in drop mode so the source removes its server-side state."""
        if type_tag(m.spec.spec.source) == "generator":
            return
        await run_once(m, self.config, "drop", 30.0)
