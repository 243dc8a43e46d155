"""Bench: drain a WAL backlog of row changes through the postgres source, beside pg_recvlogical.

Creates the slots first, then writes N row changes (default 1,000,000 inserts in transactions
of 100 rows, server-side) into a fresh table `tg_pg_bench_<suffix>` of database tg_pg_test, and
drains that same backlog:

  recvlogical  `pg_recvlogical` with test_decoding to /dev/null (the server's raw decode rate)
  source       PostgresSource.read() until N events (decode + event dicts + hand-off), committing
               each chunk as the pipeline would
  pipeline     real `tidegate serve` pipelines postgres -> file sink (fsync per batch), with the
               default batch settings and with max_inflight 4, timed from the first event out
               to the last (and from resume, incl. worker start-up)

and prints events/s with the ratio to pg_recvlogical (target: source and pipeline >= 50%).
Run: .venv/bin/python bench/bench_pg_source.py [--rows N] [--tx 100] [--no-pipeline]
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
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psycopg2  # noqa: E402

from shared.spec.model import PostgresSourceConfig  # noqa: E402
from worker.sources.base import SourceContext  # noqa: E402
from worker.sources.postgres.source import PostgresSource, default_name  # noqa: E402

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


def sql(conn, q: str, args=None):  # type: ignore[no-untyped-def]
    with conn.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchall() if cur.description else None


async def make_slot(table: str, pipeline: str) -> None:
    src = PostgresSource(
        PostgresSourceConfig(dsn=DSN, tables=[f"public.{table}"], snapshot="never"), SourceContext(pipeline=pipeline)
    )
    await src.open(None)
    await src.close()


async def drain_source(table: str, pipeline: str, rows: int) -> float:
    src = PostgresSource(
        PostgresSourceConfig(dsn=DSN, tables=[f"public.{table}"], snapshot="never"), SourceContext(pipeline=pipeline)
    )
    await src.open(None)
    n = 0
    t0 = time.perf_counter()
    try:
        while n < rows:
            chunk = await src.read()
            if chunk is not None:
                n += len(chunk.events)
                if chunk.tx_end:
                    await src.commit(chunk.events[-1]["source"]["position"])
        return time.perf_counter() - t0
    finally:
        await src.close()
        await src.drop()


def recvlogical(slot: str, end_lsn: str) -> float | None:
    exe = shutil.which("pg_recvlogical")
    if not exe:
        return None
    t0 = time.perf_counter()
    subprocess.run([exe, "-d", DSN, "-S", slot, "--start", "-E", end_lsn, "-f", "/dev/null", "--no-loop"], check=True)
    return time.perf_counter() - t0


class PipelineRun:
    """A `tidegate serve` with a postgres -> file pipeline, created (slot) before the backlog, stopped."""

    def __init__(self, sup: Any, tmp: Path, table: str, **batch: Any) -> None:
        self.sup, self.tmp = sup, tmp
        self.name = f"tg-pg-bench-{secrets.token_hex(3)}"
        self.out = self.tmp / f"{self.name}.jsonl"
        self.spec = {
            "metadata": {"name": self.name},
            "spec": {
                "source": {
                    "type": "postgres",
                    "config": {"dsn": DSN, "tables": [f"public.{table}"], "snapshot": "never"},
                },
                "sinks": [{"type": "file", "config": {"id": "out", "path": str(self.out)}}],
                "batch": batch,
            },
        }

    def prepare(self) -> None:
        self.sup.create(self.spec)
        self.sup.wait_status(self.name, "running", timeout=60)
        self.sup.action(self.name, "stop")
        self.sup.wait_status(self.name, "stopped", timeout=60)

    def run(self, rows: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        self.sup.action(self.name, "resume")
        first = None
        while True:
            ops = self.sup.info(self.name)["ops"]
            out = ops.get("events_out") or 0
            now = time.perf_counter()
            if first is None and out > 0:
                first = (now, out)
            if out >= rows:
                break
            if ops.get("last_error") and self.sup.info(self.name)["status"] == "failed":
                raise RuntimeError(f"pipeline failed: {ops['last_error']}")
            time.sleep(0.1)
        assert first is not None
        steady = (now - first[0]) / max(1, out - first[1]) * rows if out > first[1] else now - t0
        return now - t0, steady

    def close(self) -> None:
        self.sup.client.delete(f"/pipelines/{self.name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--tx", type=int, default=100)
    ap.add_argument("--no-pipeline", action="store_true", help="skip the tidegate serve pipeline run")
    a = ap.parse_args()
    suffix = secrets.token_hex(3)
    table = f"tg_pg_bench_{suffix}"
    src_pipe, recv_slot = f"tg-pg-bench-src-{suffix}", f"tg_pg_bench_recv_{suffix}"
    admin = psycopg2.connect(ADMIN)
    admin.autocommit = True
    if not sql(admin, "SELECT 1 FROM pg_database WHERE datname = %s", (DB,)):
        sql(admin, f"CREATE DATABASE {DB}")
    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    pipes: list[tuple[str, PipelineRun]] = []
    sup = tmp = None
    if not a.no_pipeline:
        from tests.support.supervisor import Supervisor

        tmp = Path(tempfile.mkdtemp(prefix="tg_pg_bench_"))
        sup = Supervisor(tmp)
        pipes = [
            ("pipeline -> file sink (defaults)", PipelineRun(sup, tmp, table)),
            ("pipeline -> file sink (max_inflight 4)", PipelineRun(sup, tmp, table, max_inflight=4)),
        ]
    results: list[tuple[str, float | None]] = []
    try:
        sql(
            conn,
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, k int NOT NULL, name varchar(64) NOT NULL, "
            "amount numeric(12,2) NOT NULL, created timestamptz NOT NULL)",
        )
        sql(conn, FILL.format(t=table))
        asyncio.run(make_slot(table, src_pipe))
        sql(conn, "SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (recv_slot,))
        if sup is not None:
            sup.start()
            for _label, p in pipes:
                p.prepare()
        print(f"filling {table}: {a.rows} inserts in transactions of {a.tx} ...", flush=True)
        t0 = time.perf_counter()
        sql(conn, f"CALL {table}_fill(%s, %s)", (a.rows, a.tx))
        end_lsn = sql(conn, "SELECT pg_current_wal_lsn()::text")[0][0]
        print(f"  written in {time.perf_counter() - t0:.1f}s; WAL end {end_lsn}", flush=True)
        results.append(("pg_recvlogical test_decoding > /dev/null", recvlogical(recv_slot, end_lsn)))
        results.append(("postgres source (plugin: read() loop)", asyncio.run(drain_source(table, src_pipe, a.rows))))
        for label, p in pipes:
            total, steady = p.run(a.rows)
            results.append((label, steady))
            results.append((label.replace(")", ", incl. worker start)"), total))
    finally:
        for _label, p in pipes:
            try:
                p.close()
            except Exception as exc:  # noqa: BLE001
                print(f"could not delete {p.name}: {exc}", file=sys.stderr)
        if sup is not None:
            sup.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for slot in (recv_slot, default_name(src_pipe)):
            try:
                sql(
                    conn,
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                    (slot,),
                )
            except psycopg2.Error as exc:
                print(f"could not drop slot {slot}: {exc}", file=sys.stderr)
        sql(conn, f"DROP PUBLICATION IF EXISTS {default_name(src_pipe)}")
        sql(conn, f"DROP TABLE IF EXISTS {table}")
        sql(conn, f"DROP PROCEDURE IF EXISTS {table}_fill")
        conn.close()
        admin.close()
    ref = dict(results)["pg_recvlogical test_decoding > /dev/null"]
    print(f"\n{'what':46} {'seconds':>8} {'events/s':>10} {'vs recvlogical':>15}")
    for name, secs in results:
        if secs is None:
            print(f"{name:46} {'n/a':>8}")
            continue
        ratio = f"{ref / secs:15.0%}" if ref else f"{'n/a':>15}"
        print(f"{name:46} {secs:8.2f} {a.rows / secs:10,.0f} {ratio}")
    if ref:
        ours = dict(results)["postgres source (plugin: read() loop)"]
        print(f"\nsource / pg_recvlogical: {ref / ours:.0%} (target >= 50%)")
        for label, _p in pipes:
            print(f"{label} / pg_recvlogical: {ref / dict(results)[label]:.0%} (target >= 50%)")


if __name__ == "__main__":
    main()
