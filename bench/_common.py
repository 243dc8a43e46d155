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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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


async def chunks(
    n: int, *, tables: list[str] | None = TABLES, payload_bytes: int = PAYLOAD, size: int | None = None
) -> AsyncIterator[tuple[list[dict[str, Any]], list[bytes]]]:
    """`n` events of the real generator source with their native encodings: chunk by chunk,
    or regrouped `size` at a time (a batch, as a raw loop fed by the source sends them)."""
    cfg: dict[str, Any] = {"payload_bytes": payload_bytes, "count": n}
    if tables is not None:
        cfg["tables"] = tables
    g = GeneratorSource(GeneratorSourceConfig(**cfg), SourceContext("bench"))
    await g.open(None)
    done = 0
    evs: list[dict[str, Any]] = []
    enc: list[bytes] = []
    while done < n:
        c = await g.read()
        if c is None:
            continue
        assert c.encoded is not None
        done += len(c.events)
        if size is None:
            yield c.events, c.encoded
            continue
        evs += c.events
        enc += c.encoded
        if len(evs) >= size or done >= n:
            yield evs, enc
            evs, enc = [], []


def fed(n: int) -> AsyncIterator[tuple[list[dict[str, Any]], list[bytes]]]:
    """The events of a `pipeline_rate` run (default table, payload 10), in batches of BATCH:
    what a raw client loop *fed by the generator source* sends. Such a loop pays for making
    the events, as the pipeline does, and is the like-for-like reference for generator -> sink."""
    return chunks(n, tables=None, payload_bytes=10, size=BATCH)


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


def sink_bench_args() -> Any:
    """`--events N` (default 1,000,000) and `--no-pipeline`, the options of the sink benches."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--no-pipeline", action="store_true")
    return ap.parse_args()


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
            raise SystemExit(f"pipeline failed: {info['ops']['last_error']}\n--- supervisor log\n{sup.log_tail(40)}")
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


def serve_rate(
    pipe: str,
    sink: dict[str, Any],
    n: int,
    *,
    tables: list[str] | None = TABLES,
    payload_bytes: int = PAYLOAD,
    batch: dict[str, Any] | None = None,
) -> float:
    """generator (count n) -> `sink` through a real `tidegate serve` in a fresh state dir, measured
    from the first checkpoint to the one that reaches n (see `measure`): worker start-up and
    connection set-up are not counted. `batch` overrides the spec's batch settings
    (`{"max_inflight": 8}`)."""
    from tests.support.supervisor import Supervisor, generator_spec

    source: dict[str, Any] = {"count": n, "payload_bytes": payload_bytes}
    if tables is not None:
        source["tables"] = tables
    with tempfile.TemporaryDirectory() as tmp:
        sup = Supervisor(Path(tmp))
        sup.start()
        try:
            spec = generator_spec(pipe, [sink], **source)
            if batch:
                spec["spec"]["batch"] = batch
            sup.create(spec)
            return measure(sup, pipe, sink["config"]["id"], n)
        finally:
            sup.close()


def pipeline_rate(sink: dict[str, Any], n: int, batch: dict[str, Any] | None = None) -> float:
    """generator (the default table, payload 10: events of about 200 bytes) -> `sink`; see serve_rate."""
    return serve_rate("bench", sink, n, tables=None, payload_bytes=10, batch=batch)


def file_sink_ceiling(tmp: str, sid: str, n: int, batch: dict[str, Any] | None = None) -> float:
    """pipeline_rate of generator -> file (fsync never): the runtime's own ceiling."""
    return pipeline_rate(
        {"type": "file", "config": {"id": sid, "path": f"{tmp}/out-{time.monotonic_ns()}.jsonl", "fsync": "never"}},
        n,
        batch,
    )


def print_ratio_table(rows: list[tuple[str, float]], ref: float) -> None:
    """measure | events/s | the reference's events/s | ratio, one line a row."""
    print(f"{'measure':<48}{'events/s':>12}{'raw loop/s':>12}{'ratio':>8}")
    for label, v in rows:
        print(f"{label:<48}{v:>12,.0f}{ref:>12,.0f}{v / ref:>8.2f}")


def print_pipeline_table(
    pipe: dict[str, float], events: int, width: int, refs: dict[str, tuple[str, float]] | None = None
) -> None:
    """Rates through `tidegate serve`, each beside generator -> file (fsync never) at the same
    max_inflight, and beside its raw client loop when `refs` names one (label -> (ref, rate))."""
    refs = refs or {}
    print(f"\nthrough `tidegate serve`: generator source, {events:,} events, measured from the first checkpoint")
    print(f"{'':<{width}}{'events/s':>10}{'vs file sink':>14}  vs raw client loop")
    for label, rate in pipe.items():
        inflight = label.rsplit("max_inflight ", 1)[-1] if "max_inflight " in label else "1"
        ref_file = next(
            (
                v
                for k, v in pipe.items()
                if k.startswith("generator -> file") and k.endswith(f"max_inflight {inflight}")
            ),
            None,
        ) or pipe.get("generator -> file (fsync never)")
        vs_file = f"{rate / ref_file:>14.0%}" if ref_file else f"{'':>14}"
        ref = refs.get(label)
        vs_raw = f"  {rate / ref[1]:.0%} of {ref[0]} ({ref[1]:,.0f}/s)" if ref else ""
        print(f"{label:<{width}}{rate:>10,.0f}{vs_file}{vs_raw}")
