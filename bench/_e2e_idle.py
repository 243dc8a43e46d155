"""The idle rows of bench/bench_e2e.py: N pipelines generator (rate 1/s, else defaults) -> file in
one `tidegate serve`, and the CPU they cost: utime + stime of the supervisor and every process
below it over a window of BENCH_IDLE_SECONDS (nothing polls the API meanwhile), as % of one core,
and the workers' RSS. The counts grow in one supervisor (20, then 30 more for 50); each count
waits until every pipeline wrote a line, then BENCH_IDLE_SETTLE seconds for start-up to pass;
the runs are consecutive windows.

Imports: the standard library, the bench/_e2e_* helpers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from _e2e_serve import failed_check, serve, spec
from _e2e_util import LineCounter, Row, descendants, knob, load1, median, proc_status, proc_ticks, say_run, wait_lines

CLK_TCK = os.sysconf("SC_CLK_TCK")


def window(sup: Any, seconds: float) -> tuple[float, float]:
    """(% of one core for the whole tree, of which the supervisor's) over `seconds`."""
    before = {p: proc_ticks(p) for p in descendants(sup.pid)}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    after = {p: proc_ticks(p) for p in descendants(sup.pid)}
    total = 0
    for p, t1 in after.items():
        t = before.get(p, 0)
        if t1 is not None and t is not None:
            total += t1 - t
    own = (after.get(sup.pid) or 0) - (before.get(sup.pid) or 0)
    scale = 100 / CLK_TCK / elapsed
    return total * scale, own * scale


def worker_rss(sup: Any, names: list[str]) -> list[float]:
    """VmRSS of each pipeline's worker (ops.pid), MiB."""
    out = []
    for name in names:
        rss = proc_status(int(sup.info(name)["ops"]["pid"]), "VmRSS")
        if rss:
            out.append(rss / 2**20)
    return out


def grow(sup: Any, tmp: Path, names: list[str], n: int) -> None:
    """Create pipelines up to `n` and wait until each has written a line."""
    for i in range(len(names), n):
        name, out = f"idle-{i}", tmp / f"idle-{i}.jsonl"
        sup.create(spec(name, {"type": "generator", "config": {"rate": 1}}, out))
        names.append(name)
    for name in names:
        out = tmp / f"{name}.jsonl"
        wait_lines(out, 1, failed_check(sup, name), timeout=300, counter=LineCounter(out))


def idle_rows(runs: int, counts: list[int], seconds: int) -> list[Row]:
    rows: list[Row] = []
    settle = knob("BENCH_IDLE_SETTLE", 10)
    names: list[str] = []
    with serve("idle") as (sup, tmp):
        for n in sorted(counts):
            grow(sup, tmp, names, n)
            time.sleep(settle)
            row, cpu, own, rss = Row(f"{n} idle pipelines (generator rate 1/s -> file)"), [], [], []
            for k in range(runs):
                row.loads.append(load1())
                c, o = window(sup, seconds)
                cpu.append(c)
                own.append(o)
                rss += worker_rss(sup, names)
                say_run(k, f"{c:.1f}% of a core (supervisor {o:.1f}%) over {seconds} s", "no reference", row.loads[-1])
            row.tidegate = (
                f"{median(cpu):.1f}% of a core (supervisor {median(own):.1f}%); worker RSS median {median(rss):.0f} MiB"
            )
            row.reference = "none (goal: 50 under 5% of a core in total)"
            rows.append(row)
    return rows
