"""Rows 1-3 of bench/bench_e2e.py: generator -> file (defaults, and `max_inflight: 4`) beside
the plain loop, and generator -> identity JavaScript -> file beside one bare QuickJS call per
batch. Each run: the reference (its own process, bench/_e2e_refs.py), then a fresh pipeline
timed from `POST /pipelines` until the file holds all N lines.

Imports: the standard library, the bench/_e2e_* helpers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from _e2e_refs import IDENTITY_JS
from _e2e_serve import create_until, delete, serve, spec
from _e2e_util import Row, load1, median, rate_text, ratio_text, reference, say, say_run

_TS = re.compile(rb'"ts_ms":\d+')


def _edge_lines(path: Path) -> tuple[bytes, bytes]:
    with open(path, "rb") as f:
        first = f.readline()
        f.seek(max(0, os.path.getsize(path) - 4096))
        last = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return _TS.sub(b'"ts_ms":0', first), _TS.sub(b'"ts_ms":0', last)


def same_lines(ref: Path, out: Path) -> None:
    """The plain loop must write what the pipeline writes (ts_ms aside): same size, same first
    and last line. Else it is not the same work and the ratio means nothing."""
    a, b = _edge_lines(ref), _edge_lines(out)
    if a != b or os.path.getsize(ref) != os.path.getsize(out):
        raise SystemExit(f"the plain loop's lines differ from the pipeline's:\n{a}\n{b}")
    say("  the plain loop's lines are the pipeline's (ts_ms aside): same size, same first and last line")


def _run(sup: Any, tmp: Path, k: int, n: int, extra: dict[str, Any]) -> tuple[float, Path]:
    out = tmp / f"tg-{k}.jsonl"
    name = f"gen-{k}"
    secs = create_until(sup, spec(name, {"type": "generator", "config": {"count": n}}, out, **extra), out, n)
    delete(sup, name)
    return n / secs, out


def file_row(label: str, runs: int, n: int, batch: dict[str, Any] | None = None, check: bool = False) -> Row:
    """generator (count n, else defaults) -> file, beside the plain loop writing the same lines."""
    row, tg, ref = Row(label), [], []
    with serve("gen") as (sup, tmp):
        for k in range(runs):
            row.loads.append(load1())
            plain = tmp / f"plain-{k}.jsonl"
            ref.append(n / reference("plain", str(plain), str(n))["seconds"])
            rate, out = _run(sup, tmp, k, n, {"batch": batch} if batch else {})
            tg.append(rate)
            if check and k == 0:
                same_lines(plain, out)
            plain.unlink()
            out.unlink()
            say_run(k, rate_text(tg[-1]), f"plain loop {rate_text(ref[-1])}", row.loads[-1])
    row.tidegate = rate_text(median(tg))
    row.reference = f"plain loop, same events and lines, fsync per 2000: {rate_text(median(ref))}"
    row.ratio = ratio_text(median(tg), median(ref))
    return row


def js_row(runs: int, n: int) -> Row:
    """generator -> identity JavaScript -> file, beside one bare QuickJS call per batch of 2000."""
    row, tg, ref = Row(f"generator -> identity JS -> file, {n:,} events"), [], []
    js = {"processors": [{"type": "javascript", "id": "identity", "inline": IDENTITY_JS}]}
    with serve("js") as (sup, tmp):
        for k in range(runs):
            row.loads.append(load1())
            ref.append(n / reference("quickjs", str(n))["seconds"])
            rate, out = _run(sup, tmp, k, n, js)
            tg.append(rate)
            out.unlink()
            say_run(k, rate_text(tg[-1]), f"bare QuickJS {rate_text(ref[-1])}", row.loads[-1])
    row.tidegate = rate_text(median(tg))
    row.reference = f"one bare QuickJS call per batch of 2000, same events: {rate_text(median(ref))}"
    row.ratio = ratio_text(median(tg), median(ref))
    return row
