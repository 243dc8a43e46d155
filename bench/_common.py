"""Helpers shared by the sink benches (bench/bench_sink_*.py): generator-shaped event chunks,
timing a sink's write() loop, events/s of a pipeline through a real `tidegate serve`, and the
result tables. Imported as `from _common import ...` (bench/ is on sys.path when a bench runs).

May import: shared, worker, tests.support.supervisor, the standard library.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.spec.model import GeneratorSourceConfig  # noqa: E402
from worker.sinks.base import SinkBatch  # noqa: E402
from worker.sources.base import SourceContext  # noqa: E402
from worker.sources.generator import GeneratorSource  # noqa: E402

BATCH = 2000
TABLES = ["db.t"]
PAYLOAD = 8


async def chunks(n: int) -> AsyncIterator[tuple[list[dict[str, Any]], list[bytes]]]:
    """`n` events of the real generator source, chunk by chunk, with their native encodings."""
    g = GeneratorSource(GeneratorSourceConfig(tables=TABLES, payload_bytes=PAYLOAD, count=n),
                        SourceContext("bench"))
    await g.open(None)
    done = 0
    while done < n:
        c = await g.read()
        if c is None:
            continue
        assert c.encoded is not None
        done += len(c.events)
        yield c.events, c.encoded


async def write_rate(sink: Any, n: int) -> float:
    """Open `sink`, write `n` generator events (pre-encoded) batch by batch, close; events/s of
    the write() calls alone."""
    await sink.open()
    spent, seq = 0.0, 0
    async for evs, enc in chunks(n):
        seq += 1
        b = SinkBatch(seq=seq, events=evs, last_position=evs[-1]["source"]["position"], native=enc)
        t = time.perf_counter()
        await sink.write(b)
        spent += time.perf_counter() - t
    await sink.close()
    return n / spent


def run_and_median(times: list[float], total: int, batch: int = BATCH) -> tuple[float, float]:
    """(events/s over the whole run, events/s of the median batch) from per-batch times."""
    return total / sum(times), batch / statistics.median(times)


def measure(sup: Any, name: str, sink: str, n: int, timeout: float = 600) -> float:
    """events/s between the first checkpoint seen and the one that reaches n."""
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = sup.info(name)
        if info["status"] == "failed":
            raise SystemExit(f"pipeline failed: {info['ops']['last_error']}")
        ck = info["ops"]["checkpoints"].get(sink)
        now = time.monotonic()
        if ck is not None:
            pos = int(ck["position"])
            if first is None:
                first = (now, pos)
            elif pos >= n:
                return (pos - first[1]) / (now - first[0])
        time.sleep(0.05)
    raise SystemExit(f"pipeline {name} did not reach {n} in {timeout}s")


def serve_rate(pipe: str, sink: dict[str, Any], n: int) -> float:
    """generator (TABLES, PAYLOAD, count n) -> `sink` through a real `tidegate serve`, measured
    from the first checkpoint to the one that reaches n (see `measure`)."""
    from tests.support.supervisor import Supervisor, generator_spec
    with tempfile.TemporaryDirectory() as tmp:
        sup = Supervisor(Path(tmp))
        sup.start()
        try:
            sup.create(generator_spec(pipe, [sink], tables=TABLES, count=n, payload_bytes=PAYLOAD))
            return measure(sup, pipe, sink["config"]["id"], n)
        finally:
            sup.close()


def pipeline_rate(tmp: str, sink: dict[str, Any], n: int) -> float:
    """generator (count n) -> `sink` through a real `tidegate serve`: events/s until the sink's checkpoint is n."""
    from tests.support.supervisor import Supervisor, generator_spec
    sup = Supervisor(Path(tempfile.mkdtemp(dir=tmp)))
    sup.start()
    try:
        t0 = time.perf_counter()
        sup.create(generator_spec("bench", [sink], count=n, payload_bytes=10))
        while True:
            ck = sup.info("bench")["ops"]["checkpoints"].get(sink["config"]["id"])
            if ck and int(ck["position"]) >= n:
                return n / (time.perf_counter() - t0)
            time.sleep(0.05)
    finally:
        sup.close()


def file_sink_ceiling(tmp: str, sid: str, n: int) -> float:
    """pipeline_rate of generator -> file (fsync never): the runtime's own ceiling."""
    return pipeline_rate(tmp, {"type": "file", "config": {"id": sid, "path": f"{tmp}/out.jsonl", "fsync": "never"}}, n)


def print_ratio_table(rows: list[tuple[str, float]], ref: float) -> None:
    """measure | events/s | the reference's events/s | ratio, one line a row."""
    print(f"{'measure':<48}{'events/s':>12}{'raw loop/s':>12}{'ratio':>8}")
    for label, v in rows:
        print(f"{label:<48}{v:>12,.0f}{ref:>12,.0f}{v / ref:>8.2f}")


def print_pipeline_table(pipe: dict[str, float], events: int, width: int) -> None:
    """Rates through `tidegate serve`, each beside generator -> file (fsync never)."""
    ref = pipe["generator -> file (fsync never)"]
    print(f"\nthrough `tidegate serve` (generator source, {events:,} events, default batching)")
    print(f"{'':<{width}}{'events/s':>10}{'  vs file sink':>15}")
    for label, rate in pipe.items():
        print(f"{label:<{width}}{rate:>10,.0f}{rate / ref:>15.0%}")
