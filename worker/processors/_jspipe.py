"""Parent side of the JavaScript sandbox: spawn the child, exchange frames under deadlines.

`SandboxProcess` starts `_jssandbox.py` in a fresh interpreter (`python -I`, no inherited
fds, no preexec hooks: safe from a threaded worker), then `exchange()` writes one frame and
reads frames until a reply, passing console lines to a callback. It enforces what the
child cannot: the wall-clock deadline and a CPU watchdog (from /proc) for native-level
runaways the QuickJS interrupt handler does not see (a catastrophic regex, for example).
Either breach SIGKILLs the child. Batch data does not go through the pipe: both sides
map one shared memfd (grown on demand by whichever side writes a bigger payload) and
the `B`/`R` frames carry only the length; a 1 MB pipe round trip costs ~2 ms here, the
memfd copy ~0.2 ms. Imports: stdlib only.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable

HEADER = struct.Struct(">cI")
SIZE = struct.Struct(">Q")
SHM_INITIAL = 1 << 20
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_jssandbox.py")
PIPE_SIZE = 1 << 20
EXIT_MEMORY = 4
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Deadline(Exception):
    """The wall-clock deadline passed; the child was killed."""


class CpuExceeded(Exception):
    """The CPU watchdog saw the child exceed its budget; the child was killed."""

    def __init__(self, used_s: float) -> None:
        super().__init__(f"{used_s:.3f} s of CPU")
        self.used_s = used_s


class Died(Exception):
    """The child exited or broke the protocol."""

    def __init__(self, reason: str, signum: int | None = None, code: int | None = None) -> None:
        super().__init__(reason)
        self.signum, self.code = signum, code


def _set_pipe_size(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass  # default 64 KiB pipes still work, just with more wake-ups


class SandboxProcess:
    """One sandbox child. Spawn it from a long-lived thread (the worker's processor thread):
    the child's PR_SET_PDEATHSIG fires when the spawning *thread* exits."""

    def __init__(self, pipeline: str, name: str) -> None:
        # A minimal environment: the worker's may hold expanded secrets the child has no use for.
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "TZ")}
        env["MALLOC_ARENA_MAX"] = "2"
        # Keep freed heap for the next batch instead of trimming and re-faulting it (~4x fewer
        # page faults per call); the heap stays bounded by mem_mb and the child's RLIMIT_AS.
        env["GLIBC_TUNABLES"] = (
            "glibc.malloc.trim_threshold=268435456:glibc.malloc.top_pad=16777216:glibc.malloc.mmap_threshold=33554432"
        )
        self.shm_fd = os.memfd_create("tidegate-js", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.shm_fd, SHM_INITIAL)
            self.mm = mmap.mmap(self.shm_fd, SHM_INITIAL)
            self.proc = subprocess.Popen(
                [sys.executable, "-I", CHILD, str(self.shm_fd), pipeline, name, str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                close_fds=True,
                bufsize=0,
                pass_fds=(self.shm_fd,),
            )
        except BaseException:
            os.close(self.shm_fd)
            raise
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.w, self.r = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        for fd in (self.w, self.r):
            _set_pipe_size(fd)
            os.set_blocking(fd, False)
        self.pid = self.proc.pid
        self._buf = bytearray()
        self._out: list[memoryview] = []
        self.peak_rss_kb: int | None = None  # known once the child is reaped

    # ------------------------------------------------------------------ lifecycle
    def _reap(self, timeout: float = 0.0) -> bool:
        """Reap the child with wait4 (keeping its peak RSS, which Popen.wait would drop)."""
        if self.proc.returncode is not None:
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.proc.returncode = self.proc.returncode if self.proc.returncode is not None else 0
                return True
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                self.peak_rss_kb = usage.ru_maxrss
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def alive(self) -> bool:
        return not self._reap()

    def kill(self) -> None:
        if not self._reap():
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            self._reap(timeout=10)
        if self.shm_fd >= 0:
            self.mm.close()
            os.close(self.shm_fd)
            self.shm_fd = -1
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass

    def cpu_seconds(self) -> float | None:
        """utime + stime of the child from /proc (None where /proc is missing)."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / _CLK_TCK
        except (OSError, IndexError, ValueError):
            return None

    def death(self) -> Died:
        """Describe how the child ended (waits briefly for it to be reaped)."""
        if not self._reap(timeout=2):
            self.kill()
            return Died("sandbox process stopped answering and was killed")
        code = self.proc.returncode
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return Died(f"sandbox process killed by {name}", signum=-code)
        return Died(f"sandbox process exited with code {code}", code=code)

    # ----------------------------------------------------------------- shared data
    def put(self, data: bytes) -> bytes:
        """Copy a batch into the shared memory; return the frame payload that announces it."""
        if len(data) > len(self.mm):
            size = max(len(data), 2 * len(self.mm))
            os.ftruncate(self.shm_fd, size)
            self.mm.close()
            self.mm = mmap.mmap(self.shm_fd, size)
        self.mm[: len(data)] = data
        return SIZE.pack(len(data))

    def take(self, payload: bytes) -> bytes:
        """The result the child left in the shared memory (it may have grown the memfd)."""
        (size,) = SIZE.unpack(payload)
        if size > len(self.mm):
            self.mm.close()
            self.mm = mmap.mmap(self.shm_fd, os.fstat(self.shm_fd).st_size)
        return self.mm[:size]

    # ------------------------------------------------------------------- exchange
    def wait_started(self, deadline: float) -> None:
        """Wait for the child's `S` frame."""
        while True:
            frame = self._next_frame()
            if frame is not None:
                if frame[0] != b"S":
                    self.kill()
                    raise Died(f"sandbox protocol error: unexpected frame {frame[0]!r}")
                return
            now = time.monotonic()
            if now >= deadline:
                self.kill()
                raise Deadline()
            if select.select([self.r], [], [], deadline - now)[0] and not self._read_some():
                raise self.death()

    def send(self, kind: bytes, payload: bytes) -> None:
        """Queue one frame and write what the pipe takes now (the rest goes out in `exchange`)."""
        self._out += [memoryview(HEADER.pack(kind, len(payload))), memoryview(payload)]
        self._out = self._write_some(self._out)

    def exchange(
        self,
        kind: bytes,
        payload: bytes,
        deadline: float,
        on_log: Callable[[bytes], None],
        cpu_budget_s: float | None = None,
        start_cpu: float | None = None,
    ) -> tuple[bytes, bytes]:
        """Send one frame, return the first reply frame that is not a console line.

        `start_cpu`: the child's CPU seconds when the call began (default: now)."""
        self.send(kind, payload)
        poller = select.poll()
        poller.register(self.r, select.POLLIN)
        writing = bool(self._out)
        if writing:
            poller.register(self.w, select.POLLOUT)
        if cpu_budget_s is not None and start_cpu is None:
            start_cpu = self.cpu_seconds()
        tick = 0.1 if cpu_budget_s is None else min(0.1, max(0.01, cpu_budget_s / 6))
        while True:
            frame = self._next_frame()
            if frame is not None:
                if frame[0] == b"L":
                    on_log(frame[1])
                    continue
                return frame
            now = time.monotonic()
            if now >= deadline:
                self.kill()
                raise Deadline()
            if start_cpu is not None and cpu_budget_s is not None:
                used = self.cpu_seconds()
                if used is not None and used - start_cpu > cpu_budget_s:
                    self.kill()
                    raise CpuExceeded(used - start_cpu)
            for fd, ev in poller.poll(min(deadline - now, tick) * 1000):
                if fd == self.w:
                    if not ev & (select.POLLERR | select.POLLHUP):
                        self._out = self._write_some(self._out)
                        if self._out:
                            continue
                    self._out = []
                    poller.unregister(self.w)
                elif ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    if not self._read_some():
                        raise self.death()

    def _write_some(self, views: list[memoryview]) -> list[memoryview]:
        if not views:
            return views
        try:
            n = os.writev(self.w, views)
        except BlockingIOError:
            return views
        except (BrokenPipeError, ConnectionResetError):
            return []  # the child is gone; the read side reports how
        while views and n >= len(views[0]):
            n -= len(views[0])
            views = views[1:]
        if views and n:
            views[0] = views[0][n:]
        return views

    def _read_some(self) -> bool:
        try:
            data = os.read(self.r, PIPE_SIZE)
        except BlockingIOError:
            return True
        if not data:
            return False
        self._buf += data
        return True

    def _next_frame(self) -> tuple[bytes, bytes] | None:
        buf = self._buf
        if len(buf) < HEADER.size:
            return None
        kind, size = HEADER.unpack_from(buf)
        end = HEADER.size + size
        if len(buf) < end:
            return None
        body = bytes(buf[HEADER.size : end])
        del buf[:end]
        return kind, body
