"""PostgreSQL rows of bench/bench_e2e.py: the database helpers, and the backlog drain row.

Drain, each run: a fresh table; a pipeline postgres -> file (defaults) created, fed one warm-up row
(so it holds a checkpoint) and stopped; a test_decoding slot for `pg_recvlogical`; then the backlog
(N inserts, server-side, in transactions of BENCH_TX rows). `pg_recvlogical` drains it to a file
(timed from its start to its exit at the backlog's end LSN), then the pipeline is resumed and timed
from `POST .../resume` until the file holds the N lines (worker start-up included).

Imports: the standard library, psycopg2, the bench/_e2e_* helpers.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg2
from _e2e_serve import delete, resume_until, serve, spec, stop_after
from _e2e_util import LineCounter, Row, load1, median, rate_text, ratio_text, say_run

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB = "tg_pg_test"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB}"

FILL = """CREATE PROCEDURE {t}_fill(n int, tx int) LANGUAGE plpgsql AS $$
DECLARE i int := 0;
BEGIN
  WHILE i < n LOOP
    INSERT INTO {t} SELECT g, g % 1000, 'name-' || lpad(g::text, 10, '0') || '-abcdefghij',
                           (g % 100000) + (g % 100) / 100.0, '2024-01-02 03:04:05+00'
                    FROM generate_series(i + 1, least(i + tx, n)) g;
    COMMIT;
    i := i + tx;
  END LOOP;
END $$"""
COLUMNS = (
    "(id bigint PRIMARY KEY, k int NOT NULL, name varchar(64) NOT NULL, "
    "amount numeric(12,2) NOT NULL, created timestamptz NOT NULL)"
)
WARM = "INSERT INTO {t} VALUES (0, 0, 'warm-up', 0, now())"


class Pg:
    """An autocommit connection to the bench database (created when missing), and what a run
    made in it (tables, slots, publications), dropped by close()."""

    def __init__(self) -> None:
        admin = psycopg2.connect(ADMIN)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,))
            if not cur.fetchall():
                cur.execute(f"CREATE DATABASE {DB}")
        admin.close()
        self.conn = psycopg2.connect(DSN)
        self.conn.autocommit = True
        self.tables: list[str] = []
        self.slots: list[str] = []
        self.pubs: list[str] = []

    def sql(self, q: str, args: Any = None) -> list[tuple[Any, ...]] | None:
        with self.conn.cursor() as cur:
            cur.execute(q, args)
            return cur.fetchall() if cur.description else None

    def table(self, prefix: str, columns: str = COLUMNS) -> str:
        t = f"{prefix}_{secrets.token_hex(3)}"
        self.sql(f"CREATE TABLE {t} {columns}")
        self.tables.append(t)
        return t

    def slot(self, name: str) -> str:
        self.sql("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (name,))
        self.slots.append(name)
        return name

    def lsn(self) -> str:
        return self.sql("SELECT pg_current_wal_lsn()::text")[0][0]  # type: ignore[index]

    def cleanup(self) -> None:
        for s in self.slots:
            self.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (s,))
        for p in self.pubs:
            self.sql(f"DROP PUBLICATION IF EXISTS {p}")
        for t in self.tables:
            self.sql(f"DROP TABLE IF EXISTS {t}")
            self.sql(f"DROP PROCEDURE IF EXISTS {t}_fill")
        self.tables, self.slots, self.pubs = [], [], []

    def close(self) -> None:
        try:
            self.cleanup()
        finally:
            self.conn.close()


def pg_source(pg: Pg, table: str, name: str) -> dict[str, Any]:
    """The postgres source of pipeline `name` on `table`: slot and publication named (so that the
    bench can drop them whatever happens), everything else at its default but `snapshot: never`."""
    ident = "tg_e2e_" + name.replace("-", "_")
    pg.slots.append(ident)
    pg.pubs.append(ident)
    cfg = {"dsn": DSN, "tables": [f"public.{table}"], "snapshot": "never", "slot": ident, "publication": ident}
    return {"type": "postgres", "config": cfg}


def recvlogical_drain(slot: str, end_lsn: str, out: Path) -> float:
    exe = shutil.which("pg_recvlogical")
    if not exe:
        raise SystemExit("pg_recvlogical is not installed (postgresql-client)")
    t0 = time.perf_counter()
    cmd = [exe, "-d", DSN, "-S", slot, "--start", "-E", end_lsn, "-f", str(out), "--no-loop"]
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def _drain_run(pg: Pg, sup: Any, tmp: Path, k: int, rows: int, tx: int) -> tuple[float, float]:
    t = pg.table("tg_e2e_drain")
    pg.sql(FILL.format(t=t))
    name, out = f"pg-drain-{k}", tmp / f"pg-drain-{k}.jsonl"
    stop_after(sup, spec(name, pg_source(pg, t, name), out), out, lambda: pg.sql(WARM.format(t=t)))
    slot = pg.slot(f"tg_e2e_recv_{t}")
    pg.sql(f"CALL {t}_fill(%s, %s)", (rows, tx))
    end = pg.lsn()
    recv_out = tmp / f"recv-{k}.txt"
    ref = recvlogical_drain(slot, end, recv_out)
    seen = LineCounter(recv_out).poll()
    if seen < rows:
        raise SystemExit(f"pg_recvlogical wrote {seen} lines for a backlog of {rows} rows")
    secs = resume_until(sup, name, out, 1 + rows)
    delete(sup, name)
    pg.cleanup()
    out.unlink()
    recv_out.unlink()
    return rows / secs, rows / ref


def drain_row(runs: int, rows: int, tx: int) -> Row:
    row, tg, ref = Row(f"PostgreSQL backlog drain -> file ({rows:,} inserts, {tx} a transaction)"), [], []
    pg = Pg()
    try:
        with serve("pg") as (sup, tmp):
            for k in range(runs):
                row.loads.append(load1())
                a, b = _drain_run(pg, sup, tmp, k, rows, tx)
                tg.append(a)
                ref.append(b)
                say_run(k, rate_text(a), f"pg_recvlogical {rate_text(b)}", row.loads[-1])
    finally:
        pg.close()
    row.tidegate = rate_text(median(tg))
    row.reference = f"`pg_recvlogical` (test_decoding, to a file) on the same backlog: {rate_text(median(ref))}"
    row.ratio = ratio_text(median(tg), median(ref))
    return row
