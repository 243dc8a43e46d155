"""What the chaos run watches beside the data: /healthz answering while the supervisor is up
(max response time), RSS of the supervisor and its workers, and orphan processes (any
descendant of a supervisor still alive once that supervisor is gone)."""

from __future__ import annotations

import os
import threading
import time

import httpx


class Healthz(threading.Thread):
    """Polls GET /healthz every 0.25 s while `up` is set. A request that overlaps a supervisor
    stop or start (the generation moved) is not counted."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="healthz")
        self.url = url + "/healthz"
        self.up = threading.Event()
        self.stop = threading.Event()
        self.generation = 0
        self.max_s = 0.0
        self.polls = 0
        self.failures: list[str] = []

    def pause(self) -> None:
        self.up.clear()
        self.generation += 1

    def resume(self) -> None:
        self.generation += 1
        self.up.set()

    def run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while not self.stop.wait(0.25):
                if not self.up.is_set():
                    continue
                gen, t0 = self.generation, time.monotonic()
                try:
                    ok = client.get(self.url).status_code == 200
                    err = "" if ok else "not 200"
                except httpx.HTTPError as exc:
                    ok, err = False, f"{type(exc).__name__}: {exc}"
                took = time.monotonic() - t0
                if gen != self.generation or not self.up.is_set():
                    continue
                self.polls += 1
                self.max_s = max(self.max_s, took)
                if not ok:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {err}")


def rss_kb(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return rest[0], int(rest[19])
    except (OSError, IndexError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


class Tracker(threading.Thread):
    """Remembers every descendant of the current supervisor (`root`, set on each start), by pid
    and start time (a reused pid is another process); `alive()` names those still running.
    (The workers' environment cannot mark them: setproctitle overwrites it.)"""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="tracker")
        self.root: int | None = None
        self.seen: dict[tuple[int, int], str] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def scan(self) -> None:
        todo = [self.root] if self.root else []
        while todo:
            pid = todo.pop()
            for c in _children(pid):
                st = _stat(c)
                if st is None:
                    continue
                with self.lock:
                    if (c, st[1]) not in self.seen:
                        try:
                            with open(f"/proc/{c}/cmdline", "rb") as f:
                                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                        except OSError:
                            cmd = "?"
                        self.seen[(c, st[1])] = cmd
                todo.append(c)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.scan()

    def alive(self) -> list[tuple[int, str]]:
        with self.lock:
            seen = dict(self.seen)
        out = []
        for (pid, start), cmd in seen.items():
            st = _stat(pid)
            if st is not None and st[1] == start and st[0] != "Z":
                out.append((pid, cmd))
        return out

    def wait_gone(self, timeout: float) -> list[tuple[int, str]]:
        """Wait up to `timeout` for every process seen to exit; what is left."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.alive()
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)
