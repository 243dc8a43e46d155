"""Redis Streams sink throughput beside the raw redis-py loop, same server, same run.

    .venv/bin/python bench/bench_sink_redis.py [--events N]

1. raw: redis-py, one pipeline (transaction=False) of XADDs per 2000 events,
   fields `event` + `idempotency_key` (the same entry the sink writes), with
   the asyncio client and with the blocking one; the faster is the reference;
2. RedisSink.write() with batches of 2000 (pre-encoded bodies, as the runtime
   hands them over when no processor changed the events);
3. generator -> redis sink through a real pipeline (`tidegate serve`),
   measured from the first to the last checkpoint.
Events are generator events of about 210 bytes; only client work is timed in 1
and 2 (event generation is not). Target: 2 and 3 at >= 80% of 1.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402
from _common import chunks, print_ratio_table, serve_rate, sink_bench_args, write_rate  # noqa: E402

from shared.spec.model import RedisSinkConfig  # noqa: E402
from worker.sinks.base import SinkContext  # noqa: E402
from worker.sinks.redis import RedisSink  # noqa: E402

URL = "redis://127.0.0.1:6379/0"


async def raw(stream: str, n: int) -> tuple[float, float]:
    r = aioredis.from_url(URL)
    spent, size = 0.0, 0
    async for evs, enc in chunks(n):
        size += sum(map(len, enc))
        t = time.perf_counter()
        pipe = r.pipeline(transaction=False)
        for ev, body in zip(evs, enc):
            pipe.xadd(stream, {"event": body, "idempotency_key": f"bench:raw:{ev['source']['position']}"})
        await pipe.execute()
        spent += time.perf_counter() - t
    await r.delete(stream)
    await r.aclose()
    return n / spent, size / n


def raw_sync(stream: str, n: int) -> float:
    """The same loop with redis-py's blocking client (what a plain script would use)."""
    import redis as redis_sync

    async def collect() -> list[tuple[list[dict[str, Any]], list[bytes]]]:
        return [c async for c in chunks(min(n, 100_000))]

    pool = asyncio.run(collect())  # 100k events reused: the stream does not dedupe
    r = redis_sync.Redis.from_url(URL)
    spent, done = 0.0, 0
    while done < n:
        for evs, enc in pool:
            t = time.perf_counter()
            pipe = r.pipeline(transaction=False)
            for ev, body in zip(evs, enc):
                pipe.xadd(stream, {"event": body, "idempotency_key": f"bench:raw:{ev['source']['position']}"})
            pipe.execute()
            spent += time.perf_counter() - t
            done += len(evs)
            if done >= n:
                break
    r.delete(stream)
    r.close()
    return done / spent


async def sink_write(stream: str, n: int) -> float:
    sink = RedisSink(RedisSinkConfig(id="cache", url=URL, stream=stream), SinkContext("bench", int))
    rate = await write_rate(sink, n)
    r = aioredis.from_url(URL)
    got = await r.xlen(stream)
    await r.delete(stream)
    await r.aclose()
    assert got == n, (got, n)
    return rate


def pipeline(stream: str, n: int) -> float:
    import redis as redis_sync

    name = "bench-redis-" + uuid.uuid4().hex[:6]
    rate = serve_rate(name, {"type": "redis", "config": {"id": "cache", "url": URL, "stream": stream}}, n)
    r = redis_sync.Redis.from_url(URL)
    got = r.xlen(stream)
    r.delete(stream)
    assert got >= n, (got, n)
    return rate


def main() -> None:
    a = sink_bench_args()
    n = a.events
    stream = f"tg_redis_bench_{uuid.uuid4().hex[:8]}"
    ref_async, size = asyncio.run(raw(stream, n))
    ref_sync = raw_sync(stream, n)
    ref = max(ref_async, ref_sync)
    ours = asyncio.run(sink_write(stream, n))
    rows = [("RedisSink.write, batches of 2000", ours)]
    if not a.no_pipeline:
        rows.append(("generator -> redis pipeline (tidegate serve)", pipeline(stream, n)))
    print(f"redis sink: {n:,} events of ~{size:.0f} bytes, XADD to one stream at {URL}")
    print_ratio_table(
        [("raw redis-py asyncio pipelined XADD", ref_async), ("raw redis-py sync pipelined XADD", ref_sync)] + rows, ref
    )


if __name__ == "__main__":
    main()
