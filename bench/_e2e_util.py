"""Helpers of bench/bench_e2e.py: knobs, runs and medians, the load average, the reference
subprocess, waiting for a file sink's lines, /proc readings and the result table.

Imports: the standard library only (the reference runs live in bench/_e2e_refs.py).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def knob(name: str, default: int) -> int:
    """An integer knob from the environment (`BENCH_RUNS=1`), `_` allowed as in 1_000_000."""
    raw = os.environ.get(name, "").replace("_", "").strip()
    return int(raw) if raw else default


def knob_list(name: str, default: str) -> list[int]:
    return [int(x) for x in os.environ.get(name, default).split(",") if x.strip()]


def load1() -> float:
    return os.getloadavg()[0]


@dataclass
class Row:
    """One line of the final table: medians of the runs' figures, and the loads seen."""

    label: str
    tidegate: str = "n/a"
    reference: str = ""
    ratio: str = ""
    loads: list[float] = field(default_factory=list)

    def load_text(self) -> str:
        return " / ".join(f"{x:.1f}" for x in self.loads) if self.loads else ""


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def rate_text(r: float) -> str:
    return f"{r / 1000:,.0f}K ev/s" if r >= 10_000 else f"{r:,.0f} ev/s"


def ratio_text(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def say(msg: str) -> None:
    print(msg, flush=True)


def say_run(k: int, tidegate: str, reference: str, load: float) -> None:
    say(f"  run {k + 1}: tidegate {tidegate}; {reference}; load {load:.1f}")


def reference(*args: str) -> dict[str, Any]:
    """Run one reference of bench/_e2e_refs.py in its own process (outside the repo root, so
    nothing of tidegate is on its path) and return its JSON result."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run(
        [sys.executable, str(BENCH / "_e2e_refs.py"), *args],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise SystemExit(f"reference {args[0]} failed ({res.returncode}):\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


class LineCounter:
    """Counts the complete lines of a growing file, reading only what was appended."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.lines = path, 0, 0

    def poll(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return self.lines
        try:
            while True:
                data = os.pread(fd, 1 << 24, self.offset)
                if not data:
                    break
                self.offset += len(data)
                self.lines += data.count(b"\n")
        finally:
            os.close(fd)
        return self.lines


def wait_lines(
    path: Path, n: int, check: Callable[[], None], timeout: float = 1800, counter: LineCounter | None = None
) -> float:
    """perf_counter() at which `path` holds `n` lines (polled every 5 ms); `check()` runs about
    once a second (it raises when the pipeline failed)."""
    c = counter or LineCounter(path)
    deadline = time.perf_counter() + timeout
    next_check = time.perf_counter() + 1.0
    while True:
        now = time.perf_counter()
        if c.poll() >= n:
            return now
        if now > deadline:
            raise SystemExit(f"{path} holds {c.lines} of {n} lines after {timeout:.0f}s")
        if now > next_check:
            check()
            next_check = now + 1.0
        time.sleep(0.005)


def proc_status(pid: int, key: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM) in bytes, None when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def proc_ticks(pid: int) -> int | None:
    """utime + stime of a process, in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def descendants(root: int) -> set[int]:
    """`root` and every process below it."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = {root}, [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in out]
        out.update(kids)
        todo += kids
    return out


def print_table(rows: list[Row], runs: int) -> None:
    print(f"\n## tidegate end to end (`bench/bench_e2e.py`): median of {runs} run(s)\n")
    print("| measure | tidegate | reference | ratio | load (1 min, each run) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.label} | {r.tidegate} | {r.reference} | {r.ratio} | {r.load_text()} |")
    print(f"\n{os.cpu_count()} CPUs; load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
