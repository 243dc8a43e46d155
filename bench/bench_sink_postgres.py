"""Postgres sink throughput beside the raw psycopg2 upsert loop, same server, same run.

Generator-like events (`after = {id, payload}`, ~200 bytes of native JSON) go
through PostgresSink.write() in batches of 2000 (one transaction per batch,
with the checkpoint upsert). The raw loop upserts the same rows with psycopg2
`execute_values` + commit per 2000, batch by batch *interleaved* with the
sink's writes (paired timing: the server and the machine are shared, so load
hits both alike); the ratio is against it. `executemany` (one statement per
row) is quoted on fewer rows. The raw loop's time includes building its row
tuples from the events, as the sink must. A scratch database
`tg_pgsink_bench_<hex>` is created and dropped.

Then generator -> postgres through a real `tidegate serve` (measured from the
first checkpoint) at max_inflight 1 (the default) and 8, beside generator ->
file (fsync never), the runtime's own ceiling, and the raw loop.

Run: .venv/bin/python bench/bench_sink_postgres.py [--events N] [--pipeline-events M]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # noqa: E402
from _common import BATCH, fed, file_sink_ceiling, pipeline_rate, print_pipeline_table, run_and_median  # noqa: E402
from psycopg2.extras import execute_values  # noqa: E402

from shared.spec.model import PostgresSinkConfig  # noqa: E402
from worker.envelope import encode  # noqa: E402
from worker.sinks.base import SinkBatch, SinkContext  # noqa: E402
from worker.sinks.postgres import PostgresSink  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PAYLOAD = "x" * 10
UPSERT = "INSERT INTO {t} (id, payload) VALUES %s ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload"


def batches(total: int, size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    for start in range(1, total + 1, size):
        yield [
            {
                "op": "c",
                "ts_ms": 1732800000000 + n,
                "source": {
                    "connector": "generator",
                    "db": "demo",
                    "schema": None,
                    "table": "events",
                    "position": str(n),
                    "tx_id": str(n),
                    "ts_ms": 1732800000000 + n,
                },
                "before": None,
                "after": {"id": n, "payload": PAYLOAD},
            }
            for n in range(start, min(start + size, total + 1))
        ]


def raw_batch(conn: Any, table: str, evs: list[dict[str, Any]], many: bool) -> float:
    t0 = time.perf_counter()
    rows = [(e["after"]["id"], e["after"]["payload"]) for e in evs]
    sql = UPSERT.format(t=table)
    with conn.cursor() as cur:
        if many:
            cur.executemany(sql.replace("VALUES %s", "VALUES (%s, %s)"), rows)
        else:
            execute_values(cur, sql, rows, page_size=len(rows))
    conn.commit()
    return time.perf_counter() - t0


async def paired(dsn: str, total: int) -> dict[str, tuple[float, float]]:
    conn = psycopg2.connect(dsn)
    sink = PostgresSink(
        PostgresSinkConfig(id="bench", dsn=dsn, table="sink_t"), SinkContext(pipeline="bench", position_key=int)
    )
    await sink.open()
    raw_t: list[float] = []
    sink_t: list[float] = []
    for seq, evs in enumerate(batches(total), 1):
        raw_t.append(raw_batch(conn, "raw_t", evs, many=False))
        batch = SinkBatch(seq=seq, events=evs, last_position=evs[-1]["source"]["position"])
        t0 = time.perf_counter()
        await sink.write(batch)
        sink_t.append(time.perf_counter() - t0)
    await sink.close()
    conn.close()
    return {"sink write()": run_and_median(sink_t, total), "raw execute_values": run_and_median(raw_t, total)}


async def fed_raw(dsn: str, table: str, total: int) -> float:
    """The raw loop fed by the generator source: make the events, execute_values + commit per
    batch; events/s of the whole loop (the like-for-like reference for generator -> postgres)."""
    conn = psycopg2.connect(dsn)
    t0 = time.perf_counter()
    async for evs, _ in fed(total):
        raw_batch(conn, table, evs, many=False)
    conn.close()
    return total / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--many-events", type=int, default=20_000, help="rows for the executemany reference")
    ap.add_argument(
        "--pipeline-events",
        type=int,
        default=1_000_000,
        help="events for generator -> postgres through tidegate serve (0: skip)",
    )
    args = ap.parse_args()
    n = args.events
    size = len(encode(next(batches(1))[0]))
    name = f"tg_pgsink_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(ADMIN)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    pipe: dict[str, float] = {}
    try:
        with psycopg2.connect(dsn) as c, c.cursor() as cur:
            for t in ("raw_many", "raw_t", "sink_t", "pipe1", "pipe8", "fed_t"):
                cur.execute(f"CREATE TABLE {t} (id bigint PRIMARY KEY, payload text)")
        conn = psycopg2.connect(dsn)
        many_s = sum(raw_batch(conn, "raw_many", evs, many=True) for evs in batches(args.many_events))
        conn.close()
        r = asyncio.run(paired(dsn, n))
        with psycopg2.connect(dsn) as c, c.cursor() as cur:
            cur.execute("SELECT count(*) FROM sink_t")
            assert cur.fetchone()[0] == n
        if args.pipeline_events:
            with tempfile.TemporaryDirectory() as tmp:
                pn = args.pipeline_events
                fed_rate = asyncio.run(fed_raw(dsn, "fed_t", pn))
                for inflight in (1, 8):
                    pipe[f"generator -> file (fsync never), max_inflight {inflight}"] = file_sink_ceiling(
                        tmp, "f", pn, {"max_inflight": inflight}
                    )
                for inflight in (1, 8):
                    pipe[f"generator -> postgres, max_inflight {inflight}"] = pipeline_rate(
                        {"type": "postgres", "config": {"id": "pg", "dsn": dsn, "table": f"pipe{inflight}"}},
                        pn,
                        {"max_inflight": inflight},
                    )
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
    ours = r["sink write()"]
    print(
        f"\nPostgres sink, {n:,} events of {size} bytes (row: id + 10-char text), batches of {BATCH}, "
        "one transaction per batch"
    )
    print("events/s over the whole run, and from the median batch time (robust to the stalls of a shared machine)")
    print(f"{'':<24}{'run ev/s':>10}{'sink/this':>11}{'median ev/s':>13}{'sink/this':>11}")
    for label, (run_r, med_r) in r.items():
        ratios = ("", "") if label == "sink write()" else (f"{ours[0] / run_r:.0%}", f"{ours[1] / med_r:.0%}")
        print(f"{label:<24}{run_r:>10,.0f}{ratios[0]:>11}{med_r:>13,.0f}{ratios[1]:>11}")
    many = args.many_events / many_s
    print(f"{'raw executemany':<24}{many:>10,.0f}{ours[0] / many:>11.0%}   ({args.many_events:,} rows)")
    if pipe:
        print(
            f"\nraw execute_values fed by the generator source ({args.pipeline_events:,} events, making them "
            f"included): {fed_rate:,.0f}/s, the like-for-like reference for generator -> postgres"
        )
        refs = {k: ("fed raw execute_values", fed_rate) for k in pipe if k.startswith("generator -> postgres")}
        print_pipeline_table(pipe, args.pipeline_events, 48, refs)
        raw = r["raw execute_values"][0]
        print("the same runs beside the raw loop on pre-made events (above):")
        for label, rate in pipe.items():
            if label.startswith("generator -> postgres"):
                print(f"  {label:<46}{rate / raw:>6.0%} of raw execute_values ({raw:,.0f}/s)")


if __name__ == "__main__":
    main()
