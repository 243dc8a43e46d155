"""One worker process: spawn (multiprocess forkserver), its control pipe, its
sentinel. Reports and exits are delivered to callbacks on the loop thread.
Imports: stdlib + multiprocess + shared (never worker).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import multiprocess

from shared.channel import Channel, supervisor_channel
from shared.launch import run_worker

_ctx: Any = None


def context() -> Any:
    """A forkserver context: workers start from a clean parent, not from a fork
    of this process whose loop and Hypercorn threads already run."""
    global _ctx  # noqa: PLW0603 - one forkserver per supervisor process
    if _ctx is None:
        _ctx = multiprocess.get_context("forkserver")
        _ctx.set_forkserver_preload(["shared.launch", "worker.entry", "worker.runtime", "worker.pipeline"])
    return _ctx


class WorkerHandle:
    def __init__(
        self,
        name: str,
        on_report: Callable[[WorkerHandle, Any], None],
        on_exit: Callable[[WorkerHandle, int | None], None],
    ) -> None:
        self.name = name
        self.on_report = on_report
        self.on_exit = on_exit
        self.proc: Any = None
        self.chan: Channel[Any] | None = None
        self.started_at = 0.0
        self.last_heard = 0.0
        self.exited = asyncio.Event()
        self.exitcode: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(
        self,
        spec_bytes: bytes,
        state_dir: str,
        log_format: str,
        log_level: str,
        paused: bool,
        mode: str = "run",
        state_url: str | None = None,
        lease: tuple[str, int] | None = None,
    ) -> None:
        """Spawn from the loop thread (PR_SET_PDEATHSIG follows the spawning thread)."""
        ctx = context()
        parent, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=run_worker,
            name=f"tidegate: pipeline {self.name}",
            args=(child, spec_bytes, state_dir, log_format, log_level, paused, os.getpid(), mode, state_url, lease),
        )
        self.proc.start()
        child.close()
        self.chan = supervisor_channel(parent)
        self.started_at = self.last_heard = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.chan.fileno(), self._readable)
        self._loop.add_reader(self.proc.sentinel, self._sentinel)

    def _readable(self) -> None:
        assert self.chan is not None
        try:
            while self.chan.poll():
                msg = self.chan.recv()
                self.last_heard = time.monotonic()
                self.on_report(self, msg)
        except (EOFError, OSError):
            if self._loop is not None and self.chan is not None:
                self._loop.remove_reader(self.chan.fileno())

    def _sentinel(self) -> None:
        assert self._loop is not None
        self._loop.remove_reader(self.proc.sentinel)
        # drain what the worker said before it went
        if self.chan is not None:
            try:
                self._readable()
                self._loop.remove_reader(self.chan.fileno())
            except (ValueError, OSError):
                pass
        self.proc.join(0)
        self.exitcode = self.proc.exitcode
        if self.chan is not None:
            self.chan.close()
        self.exited.set()
        self.on_exit(self, self.exitcode)

    def send(self, msg: Any) -> bool:
        if self.chan is None or self.exited.is_set():
            return False
        try:
            self.chan.send(msg)
            return True
        except (OSError, EOFError, BrokenPipeError):
            return False

    def signal(self, sig: int) -> None:
        if self.proc is not None and not self.exited.is_set():
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    async def wait(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.exited.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def terminate(self, grace: float = 10.0) -> None:
        """SIGTERM (drain and stop), then SIGKILL after `grace` seconds."""
        self.signal(signal.SIGTERM)
        if not await self.wait(grace):
            self.signal(signal.SIGKILL)
            await self.wait(5.0)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "worker exited"
    if code < 0:
        try:
            return f"worker killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with code {code}"
