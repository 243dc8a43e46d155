"""Benchmark: the cost of narrowing poison events (CONTRACT section 12, issue 13 must-show 7).

Run: .venv/bin/python bench/bench_dlq.py [--events 1000000] [--batch 2000]

The processor chain (a JavaScript step with `on_error: dlq`) on `--events` generator-like
events in batches of `--batch`: once with one poison event per 100,000 (the step throws for
it; the batch is narrowed by halves and the rest goes on), once with none (the same code,
whose condition never matches). Events/s of both, interleaved round by round; target: the
poisoned run at least 90% of the clean one. Parking itself (one state-store transaction per
poisoned batch) is not in this number. Imports: worker + shared + msgspec + structlog.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import msgspec  # noqa: E402
import structlog  # noqa: E402

from shared.spec.model import ProcessorSpec  # noqa: E402
from worker.processing import ProcessorChain  # noqa: E402

CODE = (
    "export function process(batch) {\n"
    "  for (const e of batch) { if (e.after.id %% %(every)d === 0) throw new Error('poison ' + e.after.id);"
    " e.after.seen = true; }\n  return batch;\n}\n"
)


def batches(n: int, size: int) -> list[list[bytes]]:
    enc = msgspec.json.encode
    out = []
    for lo in range(1, n + 1, size):
        out.append(
            [
                enc(
                    {
                        "op": "c",
                        "source": {"table": "demo.events", "position": str(i)},
                        "after": {"id": i, "p": "x" * 80},
                    }
                )
                for i in range(lo, min(n + 1, lo + size))
            ]
        )
    return out


async def run(every: int, data: list[list[bytes]]) -> tuple[float, int]:
    spec = msgspec.convert(
        {"type": "javascript", "id": "js", "inline": CODE % {"every": every}, "on_error": "dlq"}, ProcessorSpec
    )
    chain = ProcessorChain([spec], "bench", structlog.get_logger())
    await chain.open()

    async def no_wait(_s: float) -> bool:
        return False

    poison = 0
    try:
        t0 = time.perf_counter()
        for b in data:
            await chain.run(b, no_wait)
            poison += len(chain.take_poison())
        dt = time.perf_counter() - t0
    finally:
        await chain.close()
    return sum(map(len, data)) / dt, poison


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    data = batches(a.events, a.batch)
    clean, poisoned = [], []
    for _ in range(a.rounds):
        eps, p = asyncio.run(run(10**12, data))
        clean.append(eps)
        assert p == 0
        eps, p = asyncio.run(run(100_000, data))
        poisoned.append(eps)
        assert p == a.events // 100_000, p
    c, q = max(clean), max(poisoned)
    ratio = q / c
    print(f"clean {c:,.0f} events/s, one poison per 100,000: {q:,.0f} events/s ({ratio:.1%}; target >= 90%)")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
