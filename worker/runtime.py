"""The worker's asyncio side: control_loop (commands from the pipe), status_loop
(heartbeat), and the pipeline run. Imports: stdlib + shared + worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any, assert_never

import msgspec
import structlog

from shared.channel import Channel, worker_channel
from shared.errors import ErrorInfo, PipelineFailed, describe
from shared.protocol import (
    EXIT_CRASH,
    EXIT_FAILED,
    EXIT_LEASE_LOST,
    EXIT_OK,
    EXIT_PARENT_GONE,
    Failed,
    Heartbeat,
    Pause,
    Paused,
    Ready,
    Replay,
    ReplayDone,
    Resume,
    Resumed,
    SnapshotCommand,
    Stop,
    Stopped,
)
from shared.spec.load import decode_spec
from shared.states import Status
from shared.store import LeaseLost, StoreUnavailable, open_store
from worker.assembly import make_source
from worker.pipeline import Pipeline
from worker.replay import replay

STATUS_INTERVAL_S = 0.25  # a change is reported within this
IDLE_HEARTBEAT_S = 2.0  # an unchanged status is sent again after this (well inside the supervisor's timeout)
_enc = msgspec.json.Encoder()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


class Runtime:
    def __init__(self, chan: Channel[Any], pipeline: Pipeline, log: Any) -> None:
        self.chan = chan
        self.pipeline = pipeline
        self.log = log
        self.state = Status.STARTING.value
        self._sent = b""  # the last status sent, encoded
        self._sent_at = 0.0

    def send(self, msg: Any) -> None:
        try:
            self.chan.send(msg)
        except (OSError, EOFError, BrokenPipeError):
            self.parent_gone()

    def parent_gone(self) -> None:
        """The supervisor is gone: exit now (workers never outlive it)."""
        self.log.warning("supervisor_gone")
        os._exit(EXIT_PARENT_GONE)

    # --------------------------------------------------------------- control
    def on_readable(self) -> None:
        try:
            while self.chan.poll():
                cmd = self.chan.recv()
                self.handle(cmd)
        except (EOFError, OSError):
            self.parent_gone()

    def handle(self, cmd: Any) -> None:
        match cmd:
            case Pause():
                asyncio.get_running_loop().create_task(self._pause(), name="pause")
            case Resume():
                self.pipeline.resume()
                self.state = Status.RUNNING.value
                self.send(Resumed())
            case Stop(drop_source_state=drop):
                self.stop(drop)
            case Replay():
                asyncio.get_running_loop().create_task(self._replay(cmd), name="dlq_replay")
            case SnapshotCommand():
                asyncio.get_running_loop().create_task(self._snapshot(cmd), name="snapshot")
            case _:
                assert_never(cmd)

    async def _snapshot(self, cmd: SnapshotCommand) -> None:
        self.send(await self.pipeline.snapshot_command(cmd))

    async def _pause(self) -> None:
        await self.pipeline.pause()
        if not self.pipeline.gate.is_set():
            self.state = Status.PAUSED.value
            self.send(Paused())
            self.send_status()

    async def _replay(self, cmd: Replay) -> None:
        try:
            if self.pipeline.parts is None:
                raise RuntimeError("the pipeline is not open yet")
            ids = None if cmd.all or cmd.ids is None else list(cmd.ids)
            done, failed, left = await replay(self.pipeline, ids, None if cmd.all else cmd.stage)
            self.log.info("dlq_replayed", replayed=done, failed=failed, remaining=left)
            self.send(ReplayDone(request=cmd.request, replayed=done, failed=failed, remaining=left))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - answered: the API says why
            self.log.warning("dlq_replay_failed", error=describe(exc).message)
            self.send(ReplayDone(request=cmd.request, error=describe(exc).message))

    def stop(self, drop: bool = False) -> None:
        self.state = Status.STOPPING.value
        self.pipeline.request_stop(drop)

    # ---------------------------------------------------------------- status
    def _heartbeat(self) -> Heartbeat:
        p = self.pipeline
        h = p.health
        source = msgspec.json.decode(_enc.encode(p.source_stats()))  # plain values only
        now_ms, c = int(time.time() * 1000), h.counters
        for r in p.parts.runners if p.parts else ():  # each sink's distance behind the source
            c.sink_lag_events[r.id], c.sink_lag_ms[r.id] = r.lag(now_ms)
        state, errors = self.state, dict(h.sink_errors)
        return Heartbeat(state=state, counters=h.counters, last_error=h.last_error, sink_errors=errors, source=source)

    def send_status(self, *, if_changed: bool = False) -> None:
        """Report the pipeline's status. `if_changed`: only when it changed since the last
        report, or when IDLE_HEARTBEAT_S have passed (an idle pipeline costs next to nothing)."""
        hb = self._heartbeat()
        now = time.monotonic()
        if if_changed and now - self._sent_at < IDLE_HEARTBEAT_S and _enc.encode(hb) == self._sent:
            return
        self.pipeline.health.counters.rss_bytes = _rss_bytes()
        self._sent, self._sent_at = _enc.encode(hb), now  # hb holds the counters: the new rss too
        self.send(hb)

    async def status_loop(self) -> None:
        while True:
            self.send_status(if_changed=True)
            await asyncio.sleep(STATUS_INTERVAL_S)

    # ------------------------------------------------------------------- run
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.chan.fileno(), self.on_readable)
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        status = loop.create_task(self.status_loop(), name="status_loop")
        run = loop.create_task(self.pipeline.run(), name="pipeline_run")
        ready = loop.create_task(self.pipeline.ready.wait())
        await asyncio.wait({run, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and not run.done():
            paused = not self.pipeline.gate.is_set()
            if self.state != Status.STOPPING.value:
                self.state = Status.PAUSED.value if paused else Status.RUNNING.value
            self.send(Ready(pid=os.getpid(), paused=paused))
            self.log.info("worker_ready", paused=paused)
        ready.cancel()
        code = EXIT_OK
        try:
            await run
        except PipelineFailed as exc:
            self.pipeline.health.error(exc.info())
            self.send_status()
            self.send(Failed(error=exc.info()))
            self.log.error("pipeline_failed", error=exc.message)
            code = EXIT_FAILED
        except LeaseLost as exc:
            # another supervisor took this pipeline over: stop at once, not a failure of the pipeline
            self.pipeline.health.error(ErrorInfo(kind="state", message=str(exc), retryable=True))
            self.send_status()
            self.log.error("lease_lost", error=str(exc))
            code = EXIT_LEASE_LOST
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            info = describe(exc)
            self.log.exception("worker_crashed", error=info.message)
            self.pipeline.health.error(ErrorInfo(kind="internal", message=info.message, retryable=True))
            self.send_status()
            code = EXIT_CRASH
        status.cancel()
        if code == EXIT_OK:
            self.state = Status.STOPPED.value
            self.send_status()
            self.send(Stopped())
            self.log.info("worker_stopped", checkpoints=self.pipeline.sink_positions())
        loop.remove_reader(self.chan.fileno())
        return code


async def main(
    conn: Any,
    spec_bytes: bytes,
    state_dir: str,
    start_paused: bool,
    state_url: str | None = None,
    lease: tuple[str, int] | None = None,
) -> int:
    spec = decode_spec(spec_bytes)
    log = structlog.get_logger().bind(pipeline=spec.metadata.name, pid=os.getpid())
    chan = worker_channel(conn)
    try:
        store = open_store(state_dir, state_url, fence=lease)
    except StoreUnavailable as exc:  # a crash: restarted with backoff by the supervisor
        log.error("state_store_unavailable", error=str(exc))
        return EXIT_CRASH
    pipeline = Pipeline(spec, store, log, state_dir=state_dir, start_paused=start_paused)
    rt = Runtime(chan, pipeline, log)
    t0 = time.monotonic()
    try:
        return await rt.run()
    finally:
        store.close()
        log.debug("worker_exit", ran_s=round(time.monotonic() - t0, 3))


async def drop_source(spec_bytes: bytes, state_dir: str, state_url: str | None = None) -> int:
    """Delete of a pipeline with no running worker: let the source drop what it
    created on the server (a replication slot...). Exit 0, or EXIT_CRASH with the error logged."""
    spec = decode_spec(spec_bytes)
    log = structlog.get_logger().bind(pipeline=spec.metadata.name, pid=os.getpid())
    store = open_store(state_dir, state_url)
    try:
        source = make_source(spec, log, state_dir)
        await source.drop()
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - reported, the delete goes on
        log.warning("source_drop_failed", error=describe(exc).message)
        return EXIT_CRASH
    finally:
        store.close()
