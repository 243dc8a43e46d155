"""Row 7 of bench/bench_e2e.py (only with BENCH_BIG_TX=1): one PostgreSQL transaction of
BENCH_BIG_TX_ROWS rows of 100 bytes through postgres -> file at the defaults
(`respect_source_tx: true` among them), and the worker's peak RSS: VmHWM of /proc/<ops.pid>/status
once the file holds every row. A worker above BENCH_BIG_TX_LIMIT_MB of RSS (the machine is shared)
or restarted meanwhile aborts the run, and the row says so.

Imports: the standard library, the bench/_e2e_* helpers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from _e2e_pg import Pg, pg_source
from _e2e_serve import delete, failed_check, serve, spec
from _e2e_util import LineCounter, Row, load1, median, proc_status, say_run, wait_lines

COLUMNS = "(id bigint PRIMARY KEY, payload text NOT NULL)"
BIG = "INSERT INTO {t} SELECT g, rpad(g::text, 100, 'x') FROM generate_series(1, %s) g"


class Aborted(Exception):
    pass


def guard(sup: Any, name: str, pid: int, limit_mb: int) -> Any:
    failed = failed_check(sup, name)

    def check() -> None:
        failed()
        ops = sup.info(name)["ops"]
        if ops.get("pid") != pid:
            raise Aborted(f"worker restarted (restarts {ops.get('restarts')}, last error {ops.get('last_error')})")
        rss = proc_status(pid, "VmRSS") or 0
        if rss > limit_mb * 2**20:
            raise Aborted(f"worker RSS {rss / 2**20:,.0f} MiB, above the {limit_mb} MiB limit (BENCH_BIG_TX_LIMIT_MB)")

    return check


def _run(pg: Pg, sup: Any, tmp: Path, k: int, rows: int, limit_mb: int) -> tuple[float, float]:
    """(peak RSS MiB, seconds from COMMIT to the last line)."""
    t = pg.table("tg_e2e_big", COLUMNS)
    name, out = f"pg-big-{k}", tmp / f"big-{k}.jsonl"
    sup.create(spec(name, pg_source(pg, t, name), out))
    try:
        sup.wait_status(name, "running", timeout=120)
        pg.sql(f"INSERT INTO {t} VALUES (0, 'warm-up')")
        counter = LineCounter(out)
        wait_lines(out, 1, failed_check(sup, name), timeout=120, counter=counter)
        pid = int(sup.info(name)["ops"]["pid"])
        pg.sql(BIG.format(t=t), (rows,))
        t0 = time.perf_counter()
        try:
            secs = wait_lines(out, 1 + rows, guard(sup, name, pid, limit_mb), counter=counter) - t0
        finally:
            peak = (proc_status(pid, "VmHWM") or 0) / 2**20
        return peak, secs
    finally:
        delete(sup, name)
        pg.cleanup()
        out.unlink(missing_ok=True)


def big_tx_row(runs: int, rows: int, limit_mb: int, enabled: bool) -> Row:
    row = Row(f"one PostgreSQL transaction of {rows:,} rows -> file (`respect_source_tx: true`): worker peak RSS")
    row.reference = "none (goal: under 250 MB, nothing lost)"
    if not enabled:
        row.tidegate = "n/a (BENCH_BIG_TX=1 runs it)"
        return row
    peaks: list[float] = []
    pg = Pg()
    try:
        with serve("big") as (sup, tmp):
            for k in range(runs):
                row.loads.append(load1())
                try:
                    peak, secs = _run(pg, sup, tmp, k, rows, limit_mb)
                except Aborted as exc:
                    row.tidegate = f"aborted: {exc}"
                    return row
                peaks.append(peak)
                say_run(
                    k, f"peak RSS {peak:,.0f} MiB, last line {secs:.1f} s after COMMIT", "no reference", row.loads[-1]
                )
    finally:
        pg.close()
    row.tidegate = f"peak RSS {median(peaks):,.0f} MiB"
    return row
