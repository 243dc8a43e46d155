"""Bench: drain a binlog backlog of row changes through the mysql source, beside the references.

Writes N row changes (default 1,000,000 inserts in transactions of 100 rows) into a fresh table
`tg_my_bench_<suffix>.t` on the local MariaDB, then drains that same backlog:

  source    MysqlSource.read() until N events (the plugin alone: decode, event dicts, hand-off)
  bare      a bare mysql-replication loop over the same backlog (`for ev: for row in ev.rows`)
  server    `mariadb-binlog --read-from-remote-server` of the same backlog to /dev/null
  pipeline  a real `tidegate serve` pipeline mysql -> file sink, created and paused before the
            backlog is written and resumed after it: until the file holds N lines

events/s by wall clock, and for source/bare also per CPU second of this process (the machine is
shared: CPU time is the steadier comparison). Target (issue #17): the source at >= 150,000 events/s,
or >= 6x the bare mysql-replication loop on a slower machine.
Run: .venv/bin/python bench/bench_mysql_source.py [--rows N] [--tx 100] [--no-pipeline] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from shared.spec.model import MysqlSourceConfig
from worker.sources.base import SourceContext
from worker.sources.mysql.source import MysqlSource

try:
    from tests.support.supervisor import Supervisor, file_sink
except ImportError:  # the runtime is not there
    Supervisor = None  # type: ignore[assignment,misc]

HOST, PORT, USER = "127.0.0.1", 3306, "root"
CONN = {"host": HOST, "port": PORT, "user": USER, "password": "", "ssl_disabled": True}
Timing = tuple[float, float]  # wall seconds, CPU seconds


def master_status(cur) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    cur.execute("SHOW MASTER STATUS")
    f, p = cur.fetchone()[:2]
    return f, int(p)


def fill(db: str, rows: int, tx: int, writers: int = 2) -> float:
    """Write the backlog from `writers` connections, one 100-row transaction per statement."""

    def work(k: int) -> None:
        c = pymysql.connect(**CONN, autocommit=True)
        with c.cursor() as cur:
            for first in range(1 + k * tx, rows + 1, tx * writers):
                args: list[object] = []
                for i in range(first, min(first + tx, rows + 1)):
                    args += [i, i % 1000, f"name-{i:010d}-abcdefghij", f"{i % 100000}.{i % 100:02d}"]
                cur.execute(
                    f"INSERT INTO {db}.t VALUES "
                    + ",".join(["(%s,%s,%s,%s,'2024-01-02 03:04:05')"] * (len(args) // 4)),
                    args,
                )
        c.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def bare(db: str, start: tuple[str, int], rows: int) -> Timing:
    s = BinLogStreamReader(
        connection_settings=dict(CONN),
        server_id=(1 << 30) + 4242,
        blocking=False,
        resume_stream=True,
        log_file=start[0],
        log_pos=start[1],
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=[db],
        only_tables=["t"],
    )
    n = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for ev in s:
        for _row in ev.rows:
            n += 1
        if n >= rows:
            break
    timing = (time.perf_counter() - t0, time.process_time() - c0)
    s.close()
    assert n == rows, f"bare loop saw {n} rows, wanted {rows}"
    return timing


async def source(db: str, start: tuple[str, int], rows: int) -> Timing:
    cfg = MysqlSourceConfig(dsn=f"mysql://{USER}@{HOST}:{PORT}/{db}", tables=[f"{db}.t"], snapshot="never")
    src = MysqlSource(cfg, SourceContext(pipeline=f"bench-{db}"))
    await src.open(f"{start[0]}:{start[1]}:0")
    n = 0
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        while n < rows:
            chunk = await src.read()
            if chunk is not None:
                n += len(chunk.events)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        await src.close()


def server(start: tuple[str, int], end: tuple[str, int]) -> float | None:
    """mariadb-binlog from `start` to `end` (the master status after the backlog)."""
    exe = shutil.which("mariadb-binlog") or shutil.which("mysqlbinlog")
    if not exe:
        return None
    with pymysql.connect(**CONN) as c, c.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        files = [r[0] for r in cur.fetchall()]
    files = files[files.index(start[0]) : files.index(end[0]) + 1]
    cmd = [
        exe,
        "--read-from-remote-server",
        f"--host={HOST}",
        f"--port={PORT}",
        f"--user={USER}",
        f"--start-position={start[1]}",
        f"--stop-position={end[1]}",
        *files,
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


class Pipeline:
    """mysql -> file sink in a real `tidegate serve`, paused while the backlog is written."""

    def __init__(self, db: str, tmp: str) -> None:
        self.name = "tg-my-bench"
        self.out = Path(tmp) / "out.jsonl"
        self.sup = Supervisor(Path(tmp)).start()
        self.sup.create(
            {
                "metadata": {"name": self.name},
                "spec": {
                    "source": {
                        "type": "mysql",
                        "config": {
                            "dsn": f"mysql://{USER}@{HOST}:{PORT}/{db}",
                            "tables": [f"{db}.t"],
                            "snapshot": "never",
                        },
                    },
                    "sinks": [file_sink("out", self.out, fsync="batch")],
                },
            }
        )
        self.sup.wait_status(self.name, "running", timeout=60)
        self.sup.action(self.name, "pause")
        self.sup.wait_status(self.name, "paused", timeout=60)

    def drain(self, rows: int) -> float:
        t0 = time.perf_counter()
        self.sup.action(self.name, "resume")
        lines, offset = 0, 0
        while lines < rows:
            if time.perf_counter() - t0 > 900:
                raise SystemExit(f"the pipeline wrote {lines} of {rows} lines in 900 s")
            time.sleep(0.05)
            try:
                with open(self.out, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                continue
            offset += len(data)
            lines += data.count(b"\n")
        return time.perf_counter() - t0

    def close(self) -> None:
        self.sup.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--tx", type=int, default=100)
    ap.add_argument("--keep", action="store_true", help="do not drop the bench database")
    ap.add_argument("--no-pipeline", action="store_true", help="skip the tidegate serve pipeline")
    a = ap.parse_args()
    db = f"tg_my_bench_{secrets.token_hex(3)}"
    conn = pymysql.connect(**CONN, autocommit=True)
    cur = conn.cursor()
    tmp = tempfile.mkdtemp(prefix="tg_my_bench_")
    pipe = None
    try:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(
            f"CREATE TABLE {db}.t (id BIGINT PRIMARY KEY, k INT NOT NULL, name VARCHAR(64) NOT NULL, "
            "amount DECIMAL(12,2) NOT NULL, created DATETIME NOT NULL)"
        )
        if Supervisor is not None and not a.no_pipeline:
            pipe = Pipeline(db, tmp)
        start = master_status(cur)
        print(f"writing {a.rows} inserts in transactions of {a.tx} into {db}.t ...", flush=True)
        fill_s = fill(db, a.rows, a.tx)
        end = master_status(cur)
        print(f"  {fill_s:.1f}s; backlog {start[0]}:{start[1]} .. {end[0]}:{end[1]}", flush=True)
        ours = asyncio.run(source(db, start, a.rows))
        ref = bare(db, start, a.rows)
        srv = server(start, end)
        piped = pipe.drain(a.rows) if pipe is not None else None
    finally:
        if pipe is not None:
            pipe.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if not a.keep:
            cur.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.close()
    n = a.rows
    print(f"\n{'what':36} {'wall s':>7} {'events/s':>10} {'vs bare':>8} {'per CPU s':>10} {'vs bare':>8}")

    def line(name: str, wall: float | None, cpu: float | None = None) -> None:
        if wall is None:
            print(f"{name:36} {'n/a':>7}")
            return
        cpu_txt = f"{n / cpu:10,.0f} {ref[1] / cpu:8.0%}" if cpu else ""
        print(f"{name:36} {wall:7.2f} {n / wall:10,.0f} {ref[0] / wall:8.0%} {cpu_txt}")

    line("mysql source (plugin read() loop)", *ours)
    line("bare mysql-replication loop", *ref)
    line("mariadb-binlog -R > /dev/null", srv)
    if pipe is not None:
        line("pipeline mysql -> file sink", piped)
    print(
        f"\nsource / bare mysql-replication: {ref[0] / ours[0]:.1f}x by wall clock, "
        f"{ref[1] / ours[1]:.1f}x per CPU second; source {n / ours[0]:,.0f} events/s "
        "(target >= 150,000 events/s, or >= 6x bare)"
    )
    if srv:
        print(
            f"gap: mariadb-binlog reads this backlog {ours[0] / srv:.0f}x faster than the source "
            "(C, no per-row objects; the source decodes in Python, one generated decoder per table map)"
        )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
