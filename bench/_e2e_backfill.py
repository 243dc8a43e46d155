"""The backfill rows of bench/bench_e2e.py (issue #16): an incremental snapshot through a real
`tidegate serve` at the defaults (`chunk_rows` 10000), PostgreSQL -> file.

1. Throughput: a table of BENCH_BF_ROWS rows (bigint key, 100-byte text) read by
   `POST .../snapshots` into a pipeline that streams nothing else, from the request until the
   snapshot's status is `done` (its last chunk committed in the file), against a plain psycopg2
   loop `SELECT * ... WHERE id > last ORDER BY id LIMIT 10000` over the same table in the same run
   (it reads only; it imports nothing of tidegate).
2. Latency of the change stream during a backfill: a writer commits BENCH_BF_LAT_RATE rows/s into
   a second captured table for BENCH_BF_LAT_SECONDS while the pipeline backfills the big table,
   against the same writer into a pipeline that backfills nothing (commit -> line in the file, as
   the latency row measures it).

Imports: the standard library, psycopg2, the bench/_e2e_* helpers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg2
from _e2e_latency import COLUMNS, TIDEGATE_ID, Tail, measure
from _e2e_pg import DSN, Pg, pg_source
from _e2e_serve import delete, failed_check, serve, spec
from _e2e_util import Row, load1, median, rate_text, ratio_text, say_run

CHUNK = 10_000


def rows_text(r: float) -> str:
    return rate_text(r).replace("ev/s", "rows/s")


def big_table(pg: Pg, rows: int) -> str:
    """Keys -(1e9 + g): never taken for the latency writer's ids (1..) or warm-up rows (-1, -2...)."""
    t = pg.table("tg_e2e_bf", COLUMNS)
    pg.sql(f"INSERT INTO {t} SELECT -1000000000 - g, rpad(g::text, 100, 'x') FROM generate_series(1, {rows}) g")
    pg.sql(f"ANALYZE {t}")
    return t


def select_loop(table: str) -> float:
    """Rows/s of the reference: keyset pagination in chunks of CHUNK, every row fetched."""
    conn = psycopg2.connect(DSN)
    n, last = 0, None
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        while True:
            if last is None:
                cur.execute(f"SELECT * FROM {table} ORDER BY id LIMIT %s", (CHUNK,))
            else:
                cur.execute(f"SELECT * FROM {table} WHERE id > %s ORDER BY id LIMIT %s", (last, CHUNK))
            rows = cur.fetchall()
            if not rows:
                break
            n, last = n + len(rows), rows[-1][0]
    elapsed = time.perf_counter() - t0
    conn.close()
    return n / elapsed


def pipeline(pg: Pg, sup: Any, name: str, tables: list[str], out: Path) -> None:
    source = pg_source(pg, tables[0], name)
    source["config"]["tables"] = [f"public.{t}" for t in tables]
    r = sup.client.post("/pipelines", json=spec(name, source, out))
    if r.status_code != 201:
        raise SystemExit(f"POST /pipelines {name}: {r.status_code} {r.text}")
    sup.wait_status(name, "running", timeout=120)


def snapshot(sup: Any, name: str, table: str) -> str:
    r = sup.client.post(f"/pipelines/{name}/snapshots", json={"tables": [f"public.{table}"]})
    if r.status_code != 202:
        raise SystemExit(f"POST /pipelines/{name}/snapshots: {r.status_code} {r.text}")
    return str(r.json()["id"])


def wait_done(sup: Any, name: str, snap_id: str, timeout: float = 600) -> dict[str, Any]:
    check, deadline = failed_check(sup, name), time.monotonic() + timeout
    while True:
        snap = next(s for s in sup.client.get(f"/pipelines/{name}/snapshots").json() if s["id"] == snap_id)
        if snap["status"] == "done":
            return snap
        if snap["status"] not in ("running", "paused") or time.monotonic() > deadline:
            raise SystemExit(f"snapshot {snap_id} of {name}: {snap}")
        check()
        time.sleep(0.02)


def throughput(pg: Pg, sup: Any, tmp: Path, k: int, big: str) -> float:
    name = f"bf-rate-{k}"
    pipeline(pg, sup, name, [big], tmp / f"{name}.jsonl")
    try:
        t0 = time.perf_counter()
        snap = wait_done(sup, name, snapshot(sup, name, big))
        return float(snap["rows_read"]) / (time.perf_counter() - t0)
    finally:
        delete(sup, name)


def latency(pg: Pg, sup: Any, tmp: Path, k: int, big: str, backfill: bool, lat: tuple[int, int]) -> tuple[float, float]:
    name = f"bf-lat-{'with' if backfill else 'without'}-{k}"
    t = pg.table("tg_e2e_bf_lat", COLUMNS)
    out = tmp / f"{name}.jsonl"
    pipeline(pg, sup, name, [big, t], out)
    try:
        if backfill:
            snapshot(sup, name, big)
        p50, p99, _ = measure(pg, t, Tail(out, TIDEGATE_ID), lat[0], lat[1], 10)
        return p50, p99
    finally:
        delete(sup, name)


def backfill_rows(runs: int, rows: int, lat_rate: int, lat_seconds: int) -> list[Row]:
    rate = Row(f"incremental snapshot PostgreSQL -> file, {rows:,} rows (`chunk_rows` {CHUNK:,})")
    late = Row(f"stream latency at {lat_rate:,} rows/s during that backfill vs without")
    tg: list[float] = []
    ref: list[float] = []
    with_bf: list[tuple[float, float]] = []
    without: list[tuple[float, float]] = []
    pg = Pg()
    try:
        with serve("bf") as (sup, tmp):
            for k in range(runs):
                big = big_table(pg, rows)
                rate.loads.append(load1())
                ref.append(select_loop(big))
                tg.append(throughput(pg, sup, tmp, k, big))
                say_run(k, rows_text(tg[-1]), f"SELECT loop {rows_text(ref[-1])}", rate.loads[-1])
                late.loads.append(load1())
                without.append(latency(pg, sup, tmp, k, big, False, (lat_rate, lat_seconds)))
                with_bf.append(latency(pg, sup, tmp, k, big, True, (lat_rate, lat_seconds)))
                say_run(
                    k,
                    f"during: p50/p99 {with_bf[-1][0]:.1f}/{with_bf[-1][1]:.1f} ms",
                    f"without: {without[-1][0]:.1f}/{without[-1][1]:.1f} ms",
                    late.loads[-1],
                )
                pg.cleanup()
    finally:
        pg.close()
    rate.tidegate, rate.reference = rows_text(median(tg)), f"psycopg2 keyset SELECT loop: {rows_text(median(ref))}"
    rate.ratio = ratio_text(median(tg), median(ref)) + " (goal 0.8x)"
    w50, w99 = median([x[0] for x in with_bf]), median([x[1] for x in with_bf])
    o50, o99 = median([x[0] for x in without]), median([x[1] for x in without])
    late.tidegate = f"during: p50 {w50:.1f} ms, p99 {w99:.1f} ms"
    late.reference = f"without a backfill: p50 {o50:.1f} ms, p99 {o99:.1f} ms"
    late.ratio = f"p99 {w99 / o99:.1f}x" if o99 > 0 else ""
    return [rate, late]
