"""Postgres sink throughput beside the raw psycopg2 upsert loop, same server, same run.

Generator-like events (`after = {id, payload}`, ~200 bytes of native JSON) go
through PostgresSink.write() in batches of 2000 (one transaction per batch,
with the checkpoint upsert). References, also one transaction per 2000 rows:
psycopg2 `execute_values` upsert (the fast raw loop: the ratio is against it)
and `executemany` upsert (one statement per row; measured on fewer rows).
Only write()/execute+commit time is counted; raw and sink runs alternate
(best of `--rounds`), because the server is shared. A scratch database
`tg_pgsink_bench_<hex>` is created and dropped.

Run: .venv/bin/python bench/bench_sink_postgres.py [--events N]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # noqa: E402
from psycopg2.extras import execute_values  # noqa: E402

from shared.spec.model import PostgresSinkConfig  # noqa: E402
from worker.envelope import encode  # noqa: E402
from worker.sinks.base import SinkBatch, SinkContext  # noqa: E402
from worker.sinks.postgres import PostgresSink  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 2000
PAYLOAD = "x" * 10
UPSERT = ("INSERT INTO {t} (id, payload) VALUES %s ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload")


def batches(total: int, size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    for start in range(1, total + 1, size):
        yield [{"op": "c", "ts_ms": 1732800000000 + n,
                "source": {"connector": "generator", "db": "demo", "schema": None, "table": "events",
                           "position": str(n), "tx_id": str(n), "ts_ms": 1732800000000 + n},
                "before": None, "after": {"id": n, "payload": PAYLOAD}}
               for n in range(start, min(start + size, total + 1))]


def raw_loop(dsn: str, table: str, total: int, many: bool) -> float:
    conn = psycopg2.connect(dsn)
    spent = 0.0
    sql = UPSERT.format(t=table)
    for evs in batches(total):
        t0 = time.perf_counter()
        rows = [(e["after"]["id"], e["after"]["payload"]) for e in evs]
        with conn.cursor() as cur:
            if many:
                cur.executemany(sql.replace("VALUES %s", "VALUES (%s, %s)"), rows)
            else:
                execute_values(cur, sql, rows, page_size=len(rows))
        conn.commit()
        spent += time.perf_counter() - t0
    conn.close()
    return total / spent


async def sink_loop(dsn: str, table: str, total: int) -> float:
    # the checkpoint lives in the target database, keyed by pipeline + sink id: one id per table
    sink = PostgresSink(PostgresSinkConfig(id=table, dsn=dsn, table=table),
                        SinkContext(pipeline="bench", position_key=int))
    await sink.open()
    spent = 0.0
    for seq, evs in enumerate(batches(total), 1):
        batch = SinkBatch(seq=seq, events=evs, last_position=evs[-1]["source"]["position"])
        t0 = time.perf_counter()
        await sink.write(batch)
        spent += time.perf_counter() - t0
    await sink.close()
    return total / spent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--many-events", type=int, default=20_000, help="rows for the executemany reference")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    n = args.events
    size = len(encode(next(batches(1))[0]))
    name = f"tg_pgsink_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(ADMIN)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    refs: list[float] = []
    ours: list[float] = []
    try:
        with psycopg2.connect(dsn) as c, c.cursor() as cur:
            tables = ["raw_many"] + [f"{k}_{i}" for i in range(args.rounds) for k in ("raw", "sink")]
            for t in tables:
                cur.execute(f"CREATE TABLE {t} (id bigint PRIMARY KEY, payload text)")
        many = raw_loop(dsn, "raw_many", args.many_events, many=True)
        for i in range(args.rounds):       # interleaved, best of each: the server is shared
            refs.append(raw_loop(dsn, f"raw_{i}", n, many=False))
            ours.append(asyncio.run(sink_loop(dsn, f"sink_{i}", n)))
            with psycopg2.connect(dsn) as c, c.cursor() as cur:
                cur.execute(f"SELECT count(*) FROM sink_{i}")
                assert cur.fetchone()[0] == n
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
    ref, best = max(refs), max(ours)
    print(f"\nPostgres sink, {n:,} events of {size} bytes (row: id + 10-char text), batches of {BATCH}, "
          "one transaction per batch")
    print(f"(best of {args.rounds} interleaved rounds; all: sink {[round(x) for x in ours]}, "
          f"raw {[round(x) for x in refs]})")
    print(f"{'':<24}{'events/s':>12}{'sink/raw':>10}")
    print(f"{'sink write()':<24}{best:>12,.0f}")
    print(f"{'raw execute_values':<24}{ref:>12,.0f}{best / ref:>10.0%}")
    print(f"{'raw executemany':<24}{many:>12,.0f}{best / many:>10.0%}   ({args.many_events:,} rows)")


if __name__ == "__main__":
    main()
