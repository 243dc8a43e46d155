"""Issue 15 micro bench: each native step in-process on 1M generator events (payload 100,
batches of 2000), best of 5, in ns per event of this thread's CPU time with the garbage
collector off during a pass, so other load on the machine barely moves the figures
(bench/bench_native.py measures whole pipelines, and a loaded machine moves those a lot).

    .venv/bin/python bench/bench_native_steps.py [--events 1000000] [--rounds 5] [STEP...]

`step` is apply() alone; `+ downstream` adds what the pipeline does next for a file sink
(processing.unchanged_encodings, then the sink's encode_all: the source encodings of kept
events, a fresh encoding of changed ones). Run it on two checkouts to compare them.

Imports: shared, worker, bench/_common, msgspec (bench only).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
from _common import ROOT  # noqa: F401 - ROOT puts the project on sys.path

from shared.spec.model import GeneratorSourceConfig, ProcessorSpec, type_tag
from worker import plugins
from worker.envelope import Encoder
from worker.processing import unchanged_encodings
from worker.processors.base import ProcessorContext
from worker.sources.base import SourceContext
from worker.sources.generator import GeneratorSource

STEPS: dict[str, dict[str, Any]] = {
    "filter": {  # as bench_native.py: keeps every event
        "type": "filter",
        "ops": ["c"],
        "tables": ["demo.*"],
        "where": [{"path": "after.id", "gte": 1}, {"path": "after.payload", "exists": True}],
    },
    "flatten": {"type": "flatten"},
    "mask-redact": {"type": "mask", "fields": ["after.payload"], "action": "redact"},
    "mask-hash": {"type": "mask", "fields": ["after.payload"], "action": "hash", "key": "bench-key"},
    "mask-glob": {"type": "mask", "fields": ["after.pay*", "before.pay*"], "action": "redact"},
    "outbox": {"type": "outbox", "tables": ["demo.events"], "route": "events", "key_column": "id"},
}


def batches(n: int) -> list[tuple[list[dict[str, Any]], list[bytes]]]:
    g = GeneratorSource(GeneratorSourceConfig(payload_bytes=100, tables=["demo.events"]), SourceContext("bench"))
    asyncio.run(g.open(None))
    return [g._make(first, min(2000, n - first + 1)) for first in range(1, n + 1, 2000)]


def cpu_ns(fn: Callable[[], None], n: int) -> float:
    gc.collect()
    gc.disable()
    try:
        t = time.thread_time()
        fn()
        return (time.thread_time() - t) / n * 1e9
    finally:
        gc.enable()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("steps", nargs="*", default=list(STEPS))
    a = ap.parse_args()
    data = batches(a.events)
    enc = Encoder("native", "bench", "out")
    print(f"{a.events:,} generator events, best of {a.rounds}, ns/event of thread CPU time (GC off)")
    print(f"{'step':<14}{'step':>9}{'+ downstream':>15}")
    for name in a.steps:
        spec = msgspec.convert({"id": "s", **STEPS[name]}, ProcessorSpec)
        p = plugins.resolve(plugins.PROCESSORS, type_tag(spec))(spec, ProcessorContext(pipeline="bench"))
        p.open()

        def step(p: Any = p) -> None:
            for events, _ in data:
                p.apply(events)

        def downstream(p: Any = p) -> None:
            for events, encoded in data:
                out = p.apply(events)
                enc.encode_all(out, unchanged_encodings(events, encoded, out))

        s = min(cpu_ns(step, a.events) for _ in range(a.rounds))
        d = min(cpu_ns(downstream, a.events) for _ in range(a.rounds))
        print(f"{name:<14}{s:>9.1f}{d:>15.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
