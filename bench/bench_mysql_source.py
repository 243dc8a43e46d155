"""Bench: drain a binlog backlog of row changes through the mysql source, beside the references.

Writes N row changes (default 1,000,000 inserts in transactions of 100 rows) into a fresh table
`tg_my_bench_<suffix>.t` on the local MariaDB, then drains that same backlog:

  source    MysqlSource.read() until N events (the plugin alone: decode + event dicts + hand-off)
  pipeline  (when the runtime exists) a real `tidegate serve` pipeline mysql -> file sink
  bare      a bare mysql-replication loop over the same backlog (for ev: for row in ev.rows)
  server    `mariadb-binlog --read-from-remote-server` of the same backlog to /dev/null

and prints events/s with the ratio to the bare loop (target >= 80%) and to mariadb-binlog.
Run: .venv/bin/python bench/bench_mysql_source.py [--rows N] [--tx 100] [--keep]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pymysql  # noqa: E402
from pymysqlreplication import BinLogStreamReader  # noqa: E402
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent  # noqa: E402

from shared.spec.model import MysqlSourceConfig  # noqa: E402
from worker.sources.base import SourceContext  # noqa: E402
from worker.sources.mysql import MysqlSource  # noqa: E402

HOST, PORT, USER = "127.0.0.1", 3306, "root"


def master_status(cur) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    cur.execute("SHOW MASTER STATUS")
    f, p = cur.fetchone()[:2]
    return f, int(p)


def fill(cur, db: str, rows: int, tx: int) -> tuple[tuple[str, int], tuple[str, int], float]:  # type: ignore[no-untyped-def]
    cur.execute(f"CREATE DATABASE {db}")
    cur.execute(f"CREATE TABLE {db}.t (id BIGINT PRIMARY KEY, k INT NOT NULL, name VARCHAR(64) NOT NULL, "
                "amount DECIMAL(12,2) NOT NULL, created DATETIME NOT NULL)")
    start = master_status(cur)
    t0 = time.perf_counter()
    values = ",".join(["(%s,%s,%s,%s,'2024-01-02 03:04:05')"] * tx)
    stmt = f"INSERT INTO {db}.t VALUES {values}"
    for first in range(1, rows + 1, tx):
        args = []
        for i in range(first, min(first + tx, rows + 1)):
            args += [i, i % 1000, f"name-{i:010d}-abcdefghij", f"{i % 100000}.{i % 100:02d}"]
        if len(args) != 4 * tx:
            cur.execute(f"INSERT INTO {db}.t VALUES " + ",".join(["(%s,%s,%s,%s,'2024-01-02 03:04:05')"]
                                                               * (len(args) // 4)), args)
        else:
            cur.execute(stmt, args)
    return start, master_status(cur), time.perf_counter() - t0


def bare(db: str, start: tuple[str, int], rows: int) -> float:
    s = BinLogStreamReader(
        connection_settings={"host": HOST, "port": PORT, "user": USER, "password": ""},
        server_id=(1 << 30) + 4242, blocking=False, resume_stream=True, log_file=start[0], log_pos=start[1],
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent], only_schemas=[db], only_tables=["t"])
    n = 0
    t0 = time.perf_counter()
    for ev in s:
        for _row in ev.rows:
            n += 1
        if n >= rows:
            break
    dt = time.perf_counter() - t0
    s.close()
    assert n == rows, f"bare loop saw {n} rows, wanted {rows}"
    return dt


def server(start: tuple[str, int], end: tuple[str, int]) -> float | None:
    exe = shutil.which("mariadb-binlog") or shutil.which("mysqlbinlog")
    if not exe:
        return None
    cur_files = []
    with pymysql.connect(host=HOST, port=PORT, user=USER) as c, c.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        files = [r[0] for r in cur.fetchall()]
    cur_files = files[files.index(start[0]): files.index(end[0]) + 1]
    cmd = [exe, "--read-from-remote-server", f"--host={HOST}", f"--port={PORT}", f"--user={USER}",
           f"--start-position={start[1]}", f"--stop-position={end[1]}", *cur_files]
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


async def source(db: str, start: tuple[str, int], rows: int) -> float:
    cfg = MysqlSourceConfig(dsn=f"mysql://{USER}@{HOST}:{PORT}/{db}", tables=[f"{db}.t"], snapshot="never")
    src = MysqlSource(cfg, SourceContext(pipeline=f"bench-{db}"))
    await src.open(f"{start[0]}:{start[1]}:0")
    n = 0
    t0 = time.perf_counter()
    try:
        while n < rows:
            chunk = await src.read()
            if chunk is not None:
                n += len(chunk.events)
        return time.perf_counter() - t0
    finally:
        await src.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--tx", type=int, default=100)
    ap.add_argument("--keep", action="store_true", help="do not drop the bench database")
    a = ap.parse_args()
    db = f"tg_my_bench_{secrets.token_hex(3)}"
    conn = pymysql.connect(host=HOST, port=PORT, user=USER, autocommit=True)
    cur = conn.cursor()
    try:
        print(f"filling {db}.t: {a.rows} inserts in transactions of {a.tx} ...", flush=True)
        start, end, fill_s = fill(cur, db, a.rows, a.tx)
        print(f"  written in {fill_s:.1f}s; backlog {start[0]}:{start[1]} .. {end[0]}:{end[1]}", flush=True)
        results: list[tuple[str, float | None]] = []
        results.append(("mysql source (plugin: read() loop)", asyncio.run(source(db, start, a.rows))))
        results.append(("bare mysql-replication loop", bare(db, start, a.rows)))
        results.append(("mariadb-binlog -R > /dev/null", server(start, end)))
    finally:
        if not a.keep:
            cur.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.close()
    ref = dict(results)["bare mysql-replication loop"]
    print(f"\n{'what':40} {'seconds':>8} {'events/s':>10} {'vs bare':>8}")
    for name, secs in results:
        if secs is None:
            print(f"{name:40} {'n/a':>8}")
            continue
        rate = a.rows / secs
        print(f"{name:40} {secs:8.2f} {rate:10,.0f} {ref / secs:8.0%}")
    ours = dict(results)["mysql source (plugin: read() loop)"]
    print(f"\nsource / bare mysql-replication: {ref / ours:.0%} (target >= 80%)")
    srv = dict(results)["mariadb-binlog -R > /dev/null"]
    if srv:
        print(f"gap to mariadb-binlog: it reads this backlog {ours / srv:.1f}x faster than the source")


if __name__ == "__main__":
    main()
