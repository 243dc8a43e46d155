"""Shared helpers for the CDC source tests (PostgreSQL and MariaDB -> file sink): read the file
sink, wait for a row, read the checkpoint, SIGKILL a worker, drop at-least-once replays, and a
writer thread of small transactions.

May import: tests.support, tests.support.supervisor (only for types), the standard library.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import wait_until
from tests.support.supervisor import Supervisor, read_jsonl


def checkpoint(sup: Supervisor, name: str, sink: str = "out") -> str | None:
    ck = sup.info(name)["ops"]["checkpoints"].get(sink)
    return ck["position"] if ck else None


def wait_for_row(path: Path, table: str, rid: int, op: str = "c", timeout: float = 60) -> list[dict[str, Any]]:
    """Wait until the file holds event `op` of row `rid` of `table`; return every event in it."""

    def ok() -> list[dict[str, Any]] | None:
        events = read_jsonl(path)
        hit = any(
            e["op"] == op and e["source"]["table"] == table and (e["after"] or {}).get("id") == rid for e in events
        )
        return events if hit else None

    return wait_until(ok, timeout=timeout, message=f"{op} of {table}.{rid} in {path}")


def kill_worker(sup: Supervisor, name: str) -> None:
    """SIGKILL the pipeline's worker and wait for the supervisor to start a new one."""
    pid = sup.worker_pid(name)
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: sup.info(name)["ops"]["pid"] not in (None, pid),
        timeout=30,
        message=f"{name} worker restarted after SIGKILL",
    )


def dedupe(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At-least-once replays repeat whole events (same position): keep the first of each."""
    seen: set[str] = set()
    out = []
    for e in events:
        p = e["source"]["position"]
        if p not in seen:
            seen.add(p)
            out.append(e)
    return out


class Writer(threading.Thread):
    """Small transactions (insert, update, delete) on `table` until stopped. `connect` opens a
    DB-API connection; `begin` says whether each transaction needs an explicit `begin()`."""

    def __init__(self, connect: Callable[[], Any], table: str, first_id: int, begin: bool = False) -> None:
        super().__init__(daemon=True)
        self.connect, self.table, self.begin = connect, table, begin
        self.next, self.stop, self.txs = first_id, threading.Event(), 0

    def run(self) -> None:
        c = self.connect()
        with c.cursor() as cur:
            while not self.stop.is_set():
                i = self.next
                if self.begin:
                    c.begin()
                cur.execute(f"INSERT INTO {self.table} VALUES (%s, %s)", (i, i))
                cur.execute(f"UPDATE {self.table} SET v = v + 1 WHERE id = %s", (i - 7,))
                cur.execute(f"DELETE FROM {self.table} WHERE id = %s", (i - 13,))
                c.commit()
                self.next += 1
                self.txs += 1
                time.sleep(0.002)
        c.close()


def kill_worker_then_supervisor_under_writes(sup: Supervisor, name: str, writer: Writer) -> None:
    """With `writer` running: SIGKILL the worker, then the supervisor, start the supervisor again,
    each step after more writes; the writer is stopped at the end."""
    writer.start()
    try:
        wait_until(lambda: writer.txs > 100, timeout=30, message="writer running")
        kill_worker(sup, name)
        wait_until(lambda: writer.txs > 300, timeout=30, message="more writes")
        sup.kill()
        wait_until(lambda: writer.txs > 450, timeout=30, message="writes while the supervisor is down")
        sup.start()
        wait_until(lambda: writer.txs > 600, timeout=30, message="writes after the restart")
    finally:
        writer.stop.set()
        writer.join()


DEAD_REDIS = {
    "type": "redis",
    "config": {"id": "dead", "required": False, "url": "redis://127.0.0.1:1/0", "stream": "x"},
}


def gap_after_kill(sup: Supervisor, name: str, events: list[dict[str, Any]], key: Callable[[str], Any]) -> None:
    """The best-effort sink `dead` never got `events` (the file sink `out` did): once `out` has
    checkpointed them, SIGKILL the worker; the restarted one records one gap whose `from` is the
    first event's own position (stored by the killed worker) and whose `to` is past the last."""
    last = key(events[-1]["source"]["position"])
    wait_until(
        lambda: (ck := checkpoint(sup, name)) is not None and key(ck) >= last,
        timeout=30,
        message="every row checkpointed by the file sink",
    )
    assert sup.info(name)["ops"]["sink_gaps"] == {}
    kill_worker(sup, name)
    gaps = wait_until(
        lambda: sup.info(name)["ops"]["sink_gaps"].get("dead"),
        timeout=30,
        message=lambda: f"a gap for the dead sink ({sup.info(name)['ops']})",
    )
    assert len(gaps) == 1, gaps
    assert gaps[0]["from"] == events[0]["source"]["position"], (gaps, events[0]["source"])
    assert key(gaps[0]["to"]) >= last, gaps
