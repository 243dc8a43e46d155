"""Child-only set-up of a worker process: title, parent-death signal, rlimits,
malloc arenas, logging, then `asyncio.run` of the runtime. This is the worker's
composition root. Imports: stdlib + shared + worker.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import gc
import os
import resource
import signal
import sys
import time
from typing import Any

from shared import logs
from shared.protocol import EXIT_PARENT_GONE
from shared.spec.load import decode_spec

PR_SET_PDEATHSIG = 1
M_ARENA_MAX = -8
# Measured here: the demo worker (generator -> JavaScript -> file) maps 130 MiB
# (peak 180 MiB) of virtual memory with MALLOC_ARENA_MAX=2; client libraries
# (librdkafka's threads, aio-pika, psycopg2) add a few hundred MiB at most. 2 GiB
# leaves room for large batches while no worker can exhaust the host. JavaScript
# processors run in sandbox children with their own limits (budget 0 here).
BASE_AS_MB = int(os.environ.get("TIDEGATE_WORKER_BASE_AS_MB", "2048"))


def _libc() -> Any:
    return ctypes.CDLL("libc.so.6", use_errno=True)


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    try:
        _libc().prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except OSError:
        pass


def limit_malloc_arenas(n: int = 2) -> None:
    try:
        _libc().mallopt(M_ARENA_MAX, n)
    except (OSError, AttributeError):
        pass


def address_space_limit(spec: Any) -> int:
    """RLIMIT_AS for this worker: a measured base plus what processors may use."""
    extra = 0
    try:
        from worker.processors import javascript

        budget = getattr(javascript, "address_space_budget", None)
        if budget is not None and spec.spec.processors:
            extra = int(budget(list(spec.spec.processors)))
        else:
            budget = None
    except ImportError:
        budget = None
    if budget is None:
        extra = sum(p.limits.mem_mb for p in spec.spec.processors) * 2 * 1024 * 1024
    return BASE_AS_MB * 1024 * 1024 + extra


def set_rlimits(spec: Any) -> None:
    limit = address_space_limit(spec)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def lock_pipeline(state_dir: str, name: str, timeout: float = 30.0) -> int:
    """One live worker per pipeline per state dir: a leftover worker of a killed
    supervisor (it exits within 2 s) must be gone before a new one writes."""
    d = os.path.join(state_dir, "locks")
    os.makedirs(d, exist_ok=True)
    fd = os.open(os.path.join(d, f"{name}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"pipeline {name}: another worker still holds {d}/{name}.lock") from None
            time.sleep(0.05)


def main(
    conn: Any,
    spec_bytes: bytes,
    state_dir: str,
    log_format: str,
    log_level: str,
    start_paused: bool,
    supervisor_pid: int,
    mode: str = "run",
    state_url: str | None = None,
    lease: tuple[str, int] | None = None,
) -> None:
    set_parent_death_signal()
    spec = decode_spec(spec_bytes)
    name = spec.metadata.name
    try:
        import setproctitle

        setproctitle.setproctitle(f"tidegate: {'probe' if mode == 'probe' else 'pipeline'} {name}")
    except ImportError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the supervisor, which stops us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if os.getppid() == 1 or not _alive(supervisor_pid):
        os._exit(EXIT_PARENT_GONE)
    limit_malloc_arenas()
    logs.configure(log_format, log_level)
    from worker import runtime

    if mode == "drop":  # the pipeline is being deleted while no worker runs: drop its source state only
        os._exit(asyncio.run(runtime.drop_source(spec_bytes, state_dir, state_url)))
    if mode == "probe":  # no worker runs the pipeline: one reading of its source's health
        from shared.channel import worker_channel
        from shared.protocol import SourceProbed
        from worker.probe import probe_source

        worker_channel(conn).send(SourceProbed(source=probe_source(spec_bytes, state_dir, state_url)))
        os._exit(0)
    lock_pipeline(state_dir, name)
    set_rlimits(spec)
    # The data path allocates many short-lived dicts: keep start-up objects out of
    # the cyclic GC's scans and run it less often (msgspec decode is GC-bound).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # The loop thread is CPU-busy (sources, batching) while sink and state-store
    # threads wait on I/O; each hand-back needs the GIL. CPython's default 5 ms
    # switch interval made every hand-off wait for it (measured: +30% events/s
    # generator -> file at 0.5 ms).
    sys.setswitchinterval(0.0005)
    code = asyncio.run(runtime.main(conn, spec_bytes, state_dir, start_paused, state_url, lease))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
