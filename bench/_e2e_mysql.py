"""The MariaDB backlog drain row of bench/bench_e2e.py.

Each run: a fresh database with one table; a pipeline mysql -> file (defaults) created, fed one
warm-up row (so it holds a checkpoint) and stopped; then the backlog (N inserts in transactions of
BENCH_TX rows, from two connections). The references read that same backlog: a
python-mysql-replication loop over its rows (its own process, bench/_e2e_refs.py) and
`mariadb-binlog --read-from-remote-server` to /dev/null; then the pipeline is resumed and timed
from `POST .../resume` until the file holds the N lines (worker start-up included).

Imports: the standard library, pymysql, the bench/_e2e_* helpers.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pymysql
from _e2e_serve import delete, resume_until, serve, spec, stop_after
from _e2e_util import Row, load1, median, rate_text, ratio_text, reference, say_run

HOST, PORT, USER = "127.0.0.1", 3306, "root"
CONN = {"host": HOST, "port": PORT, "user": USER, "password": ""}
COLUMNS = (
    "(id BIGINT PRIMARY KEY, k INT NOT NULL, name VARCHAR(64) NOT NULL, "
    "amount DECIMAL(12,2) NOT NULL, created DATETIME NOT NULL)"
)


def master_status(cur: Any) -> tuple[str, int]:
    cur.execute("SHOW MASTER STATUS")
    f, p = cur.fetchone()[:2]
    return f, int(p)


def fill(db: str, rows: int, tx: int, writers: int = 2) -> None:
    """The backlog: `rows` inserts, one multi-row INSERT (one transaction) of `tx` rows at a time."""

    def work(k: int) -> None:
        c = pymysql.connect(**CONN, autocommit=True)
        with c.cursor() as cur:
            for first in range(1 + k * tx, rows + 1, tx * writers):
                args: list[object] = []
                for i in range(first, min(first + tx, rows + 1)):
                    args += [i, i % 1000, f"name-{i:010d}-abcdefghij", f"{i % 100000}.{i % 100:02d}"]
                values = ",".join(["(%s,%s,%s,%s,'2024-01-02 03:04:05')"] * (len(args) // 4))
                cur.execute(f"INSERT INTO {db}.t VALUES {values}", args)
        c.close()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def mariadb_binlog(cur: Any, start: tuple[str, int], end: tuple[str, int]) -> float:
    exe = shutil.which("mariadb-binlog") or shutil.which("mysqlbinlog")
    if not exe:
        raise SystemExit("mariadb-binlog is not installed (mariadb-client)")
    cur.execute("SHOW BINARY LOGS")
    files = [r[0] for r in cur.fetchall()]
    files = files[files.index(start[0]) : files.index(end[0]) + 1]
    cmd = [exe, "--read-from-remote-server", f"--host={HOST}", f"--port={PORT}", f"--user={USER}"]
    cmd += [f"--start-position={start[1]}", f"--stop-position={end[1]}", *files]
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def _run(cur: Any, sup: Any, tmp: Path, k: int, rows: int, tx: int) -> tuple[float, float, float]:
    db = f"tg_e2e_my_{secrets.token_hex(3)}"
    cur.execute(f"CREATE DATABASE {db}")
    try:
        cur.execute(f"CREATE TABLE {db}.t {COLUMNS}")
        name, out = f"my-drain-{k}", tmp / f"my-drain-{k}.jsonl"
        source = {"type": "mysql", "config": {"dsn": f"mysql://{USER}@{HOST}:{PORT}/{db}", "tables": [f"{db}.t"]}}
        source["config"]["snapshot"] = "never"
        warm = f"INSERT INTO {db}.t VALUES (0, 0, 'warm-up', 0, '2024-01-02 03:04:05')"
        stop_after(sup, spec(name, source, out), out, lambda: cur.execute(warm))
        start = master_status(cur)
        fill(db, rows, tx)
        end = master_status(cur)
        args = {"conn": CONN, "db": db, "table": "t", "file": start[0], "pos": start[1], "rows": rows}
        pmr = reference("pmr", json.dumps(args))["seconds"]
        binlog = mariadb_binlog(cur, start, end)
        secs = resume_until(sup, name, out, 1 + rows)
        delete(sup, name)
        out.unlink()
        return rows / secs, rows / pmr, rows / binlog
    finally:
        cur.execute(f"DROP DATABASE IF EXISTS {db}")


def drain_row(runs: int, rows: int, tx: int) -> Row:
    row = Row(f"MariaDB backlog drain -> file ({rows:,} inserts, {tx} a transaction)")
    tg: list[float] = []
    pmr: list[float] = []
    binlog: list[float] = []
    conn = pymysql.connect(**CONN, autocommit=True)
    try:
        with conn.cursor() as cur, serve("my") as (sup, tmp):
            for k in range(runs):
                row.loads.append(load1())
                a, b, c = _run(cur, sup, tmp, k, rows, tx)
                tg.append(a)
                pmr.append(b)
                binlog.append(c)
                refs = f"python-mysql-replication {rate_text(b)}, mariadb-binlog {rate_text(c)}"
                say_run(k, rate_text(a), refs, row.loads[-1])
    finally:
        conn.close()
    t, p, b = median(tg), median(pmr), median(binlog)
    row.tidegate = rate_text(t)
    row.reference = f"python-mysql-replication loop {rate_text(p)}; `mariadb-binlog` {rate_text(b)}"
    row.ratio = f"{ratio_text(t, p)} / {ratio_text(t, b)}"
    return row
