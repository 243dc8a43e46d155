"""The latency row of bench/bench_e2e.py: PostgreSQL -> file at a steady rate, commit -> line.

Each run, for `pg_recvlogical` (test_decoding, to a file) and then for a pipeline postgres -> file
(defaults), each on a fresh table: warm up (one row at a time until one shows), then a writer
commits BENCH_LAT_RATE rows/s for BENCH_LAT_SECONDS, BENCH_LAT_TX rows a transaction. A row's
latency = the moment its line is read from the file (a tail woken by inotify) - the moment its
COMMIT returned to the writer, both on this process's perf_counter. p50 and p99 over every row.

Imports: the standard library, psycopg2, the bench/_e2e_* helpers.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
from _e2e_pg import DSN, Pg, pg_source
from _e2e_serve import delete, serve, spec
from _e2e_util import Row, load1, median, say_run

COLUMNS = "(id bigint PRIMARY KEY, payload text NOT NULL)"
INSERT = "INSERT INTO {t} SELECT g, rpad(g::text, 100, 'x') FROM generate_series(%s, %s) g"
TIDEGATE_ID = re.compile(rb'"after":\{"id":(-?\d+)')
RECV_ID = re.compile(rb"id\[bigint\]:(-?\d+)")


def _inotify(path: Path) -> int | None:
    """An inotify fd watching `path` for writes, or None (then the tail polls every ms)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    if libc.inotify_add_watch(fd, os.fsencode(path), 0x2) < 0:  # IN_MODIFY
        os.close(fd)
        return None
    return fd


class Tail(threading.Thread):
    """Reads the lines appended to `path` as they come; `arrived[id]` = when the row's line was read."""

    def __init__(self, path: Path, pattern: re.Pattern[bytes]) -> None:
        super().__init__(daemon=True)
        path.touch()
        self.path, self.pattern = path, pattern
        self.arrived: dict[int, float] = {}
        self.done = threading.Event()
        self.ino = _inotify(path)

    def _wait(self) -> None:
        if self.ino is None:
            time.sleep(0.001)
        elif select.select([self.ino], [], [], 0.1)[0]:
            os.read(self.ino, 65536)

    def run(self) -> None:
        fd, off, rest = os.open(self.path, os.O_RDONLY), 0, b""
        try:
            while not self.done.is_set():
                self._wait()
                data = os.pread(fd, 1 << 22, off)
                if not data:
                    continue
                now = time.perf_counter()
                off += len(data)
                lines = (rest + data).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    m = self.pattern.search(line)
                    if m:
                        self.arrived.setdefault(int(m.group(1)), now)
        finally:
            os.close(fd)
            if self.ino is not None:
                os.close(self.ino)


def warm_up(pg: Pg, table: str, tail: Tail, timeout: float = 120) -> None:
    """One row (ids -1, -2, ...) a second until one of them reaches the file."""
    deadline, k = time.monotonic() + timeout, 0
    while not any(i < 0 for i in tail.arrived):
        if time.monotonic() > deadline:
            raise SystemExit(f"no warm-up row reached {tail.path} in {timeout:.0f}s")
        k += 1
        pg.sql(f"INSERT INTO {table} VALUES (%s, 'warm-up')", (-k,))
        t = time.monotonic() + 1.0
        while time.monotonic() < t and not any(i < 0 for i in tail.arrived):
            time.sleep(0.01)


def write_steady(table: str, rate: int, seconds: int, tx: int) -> tuple[list[tuple[int, int, float]], float]:
    """Commit `rate` rows/s for `seconds`, `tx` rows a transaction, on a schedule (no drift):
    [(first id, last id, perf_counter when COMMIT returned)] and the rate achieved."""
    conn = psycopg2.connect(DSN)
    cur, q = conn.cursor(), INSERT.format(t=table)
    commits: list[tuple[int, int, float]] = []
    interval, total = tx / rate, max(1, rate * seconds // tx)
    t0 = time.perf_counter()
    try:
        for k in range(total):
            delay = t0 + k * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            a = 1 + k * tx
            cur.execute(q, (a, a + tx - 1))
            conn.commit()
            commits.append((a, a + tx - 1, time.perf_counter()))
    finally:
        conn.close()
    return commits, total * tx / (time.perf_counter() - t0)


def measure(pg: Pg, table: str, tail: Tail, rate: int, seconds: int, tx: int) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, rows/s written) of one steady window through `tail`'s file."""
    tail.start()
    try:
        warm_up(pg, table, tail)
        commits, achieved = write_steady(table, rate, seconds, tx)
        last = commits[-1][1]
        deadline = time.monotonic() + 60
        while len([1 for i in tail.arrived if i > 0]) < last and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        tail.done.set()
        tail.join(5)
    lat = sorted(tail.arrived[i] - tc for a, b, tc in commits for i in range(a, b + 1) if i in tail.arrived)
    if len(lat) < last:
        raise SystemExit(f"{tail.path}: only {len(lat)} of {last} rows arrived")
    return lat[len(lat) // 2] * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, achieved


def with_recvlogical(pg: Pg, tmp: Path, k: int, run: Callable[[str, Tail], Any]) -> Any:
    t = pg.table("tg_e2e_lat_recv", COLUMNS)
    slot = pg.slot(f"tg_e2e_lat_{t}")
    out = tmp / f"lat-recv-{k}.txt"
    exe = shutil.which("pg_recvlogical") or "pg_recvlogical"
    tail = Tail(out, RECV_ID)
    proc = subprocess.Popen([exe, "-d", DSN, "-S", slot, "--start", "-f", str(out)])
    try:
        return run(t, tail)
    finally:
        proc.terminate()
        proc.wait(30)
        out.unlink()


def with_pipeline(pg: Pg, sup: Any, tmp: Path, k: int, run: Callable[[str, Tail], Any]) -> Any:
    t = pg.table("tg_e2e_lat_tg", COLUMNS)
    name, out = f"pg-lat-{k}", tmp / f"lat-tg-{k}.jsonl"
    tail = Tail(out, TIDEGATE_ID)
    sup.create(spec(name, pg_source(pg, t, name), out))
    try:
        sup.wait_status(name, "running", timeout=120)
        return run(t, tail)
    finally:
        delete(sup, name)
        out.unlink()


def latency_row(runs: int, rate: int, seconds: int, tx: int) -> Row:
    row = Row(f"latency PostgreSQL -> file at {rate:,} rows/s ({tx} a transaction, {seconds} s)")
    tg: list[tuple[float, float, float]] = []
    ref: list[tuple[float, float, float]] = []
    pg = Pg()
    try:
        with serve("lat") as (sup, tmp):
            for k in range(runs):
                row.loads.append(load1())
                ref.append(with_recvlogical(pg, tmp, k, lambda t, tail: measure(pg, t, tail, rate, seconds, tx)))
                tg.append(with_pipeline(pg, sup, tmp, k, lambda t, tail: measure(pg, t, tail, rate, seconds, tx)))
                pg.cleanup()
                (a50, a99, aw), (b50, b99, bw) = tg[-1], ref[-1]
                say_run(
                    k,
                    f"p50 {a50:.1f} ms, p99 {a99:.1f} ms (writer {aw:,.0f} rows/s)",
                    f"pg_recvlogical p50 {b50:.1f} ms, p99 {b99:.1f} ms (writer {bw:,.0f} rows/s)",
                    row.loads[-1],
                )
    finally:
        pg.close()
    t50, t99 = median([x[0] for x in tg]), median([x[1] for x in tg])
    r50, r99 = median([x[0] for x in ref]), median([x[1] for x in ref])
    row.tidegate = f"p50 {t50:.1f} ms, p99 {t99:.1f} ms"
    row.reference = f"`pg_recvlogical`: p50 {r50:.1f} ms, p99 {r99:.1f} ms"
    row.ratio = f"p50 {t50 / r50:.1f}x, p99 {t99 / r99:.1f}x" if r50 > 0 and r99 > 0 else ""
    return row
