"""Issue 17's table, end to end: every row through a real `tidegate serve`, driven over the public
HTTP API only, at the spec defaults (batch settings overridden only where the row says so), timed
from `POST /pipelines` (or `resume`) until the last event is in the file sink, beside a reference
run in the same invocation that shares no code with tidegate:

  generator -> file            plain loop building the same events and lines, fsync per 2000
  same, max_inflight: 4        the same plain loop
  generator -> JS -> file      one bare QuickJS call (the `quickjs` package) per batch of 2000
  PostgreSQL drain -> file     `pg_recvlogical` (test_decoding, to a file) on the same backlog
  MariaDB drain -> file        a python-mysql-replication loop, and `mariadb-binlog`, same backlog
  PostgreSQL -> file latency   commit -> line in the file at a steady rate; `pg_recvlogical`
  N idle pipelines             CPU % of one core (supervisor + workers), worker RSS
  one big transaction          worker peak RSS (VmHWM), only with BENCH_BIG_TX=1
  incremental snapshot         rows/s beside a psycopg2 keyset SELECT loop; stream latency during
                               the backfill vs without (bench/_e2e_backfill.py)

Each row is the median of BENCH_RUNS runs (default 3) with the 1-minute load average read at the
start of each run; one markdown table at the end. The references run in their own process
(bench/_e2e_refs.py), which checks that it imported nothing of tidegate.

Knobs (environment): BENCH_RUNS=3, BENCH_EVENTS=1000000 (generator rows), BENCH_JS_EVENTS
(default BENCH_EVENTS), BENCH_PG_ROWS=200000, BENCH_MY_ROWS=200000, BENCH_TX=100 (rows per
backlog transaction), BENCH_LAT_RATE=2000 (rows/s), BENCH_LAT_SECONDS=10, BENCH_LAT_TX=10 (rows per
transaction), BENCH_IDLE=20,50, BENCH_IDLE_SECONDS=20 (window), BENCH_IDLE_SETTLE=10,
BENCH_BIG_TX=1 (row 7, off by default), BENCH_BIG_TX_ROWS=2000000, BENCH_BIG_TX_LIMIT_MB=4096
(abort above that RSS), BENCH_BF_ROWS=200000, BENCH_BF_LAT_RATE=500, BENCH_BF_LAT_SECONDS=10,
BENCH_ONLY=file,inflight4,js,pg,mysql,latency,idle,bigtx,backfill (a subset).

    .venv/bin/python bench/bench_e2e.py
    BENCH_RUNS=1 BENCH_EVENTS=50000 BENCH_ONLY=file,js .venv/bin/python bench/bench_e2e.py
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _e2e_util import Row, knob, knob_list, print_table, say  # noqa: E402

ROWS = ["file", "inflight4", "js", "pg", "mysql", "latency", "idle", "bigtx", "backfill"]


def plan(runs: int) -> dict[str, Callable[[], list[Row]]]:
    from _e2e_gen import file_row, js_row

    n = knob("BENCH_EVENTS", 1_000_000)
    tx = knob("BENCH_TX", 100)

    def pg() -> list[Row]:
        from _e2e_pg import drain_row

        return [drain_row(runs, knob("BENCH_PG_ROWS", 200_000), tx)]

    def mysql() -> list[Row]:
        from _e2e_mysql import drain_row

        return [drain_row(runs, knob("BENCH_MY_ROWS", 200_000), tx)]

    def latency() -> list[Row]:
        from _e2e_latency import latency_row

        rate, secs = knob("BENCH_LAT_RATE", 2000), knob("BENCH_LAT_SECONDS", 10)
        return [latency_row(runs, rate, secs, knob("BENCH_LAT_TX", 10))]

    def idle() -> list[Row]:
        from _e2e_idle import idle_rows

        return idle_rows(runs, knob_list("BENCH_IDLE", "20,50"), knob("BENCH_IDLE_SECONDS", 20))

    def bigtx() -> list[Row]:
        from _e2e_bigtx import big_tx_row

        rows = knob("BENCH_BIG_TX_ROWS", 2_000_000)
        return [big_tx_row(runs, rows, knob("BENCH_BIG_TX_LIMIT_MB", 4096), enabled=knob("BENCH_BIG_TX", 0) > 0)]

    def backfill() -> list[Row]:
        from _e2e_backfill import backfill_rows

        rate, secs = knob("BENCH_BF_LAT_RATE", 500), knob("BENCH_BF_LAT_SECONDS", 10)
        return backfill_rows(runs, knob("BENCH_BF_ROWS", 200_000), rate, secs)

    return {
        "file": lambda: [file_row(f"generator -> file, {n:,} events", runs, n, check=True)],
        "inflight4": lambda: [file_row("same, `max_inflight: 4`", runs, n, batch={"max_inflight": 4})],
        "js": lambda: [js_row(runs, knob("BENCH_JS_EVENTS", n))],
        "pg": pg,
        "mysql": mysql,
        "latency": latency,
        "idle": idle,
        "bigtx": bigtx,
        "backfill": backfill,
    }


def main() -> int:
    runs = knob("BENCH_RUNS", 3)
    only = [x.strip() for x in os.environ.get("BENCH_ONLY", ",".join(ROWS)).split(",") if x.strip()]
    unknown = set(only) - set(ROWS)
    if unknown:
        raise SystemExit(f"BENCH_ONLY: unknown rows {sorted(unknown)}; known: {ROWS}")
    rows: list[Row] = []
    steps = plan(runs)
    for key in ROWS:
        if key in only:
            say(f"== {key}")
            rows += steps[key]()
    print_table(rows, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
