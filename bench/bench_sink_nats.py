"""NATS JetStream sink throughput beside the raw nats-py loop, same server, same run.

    .venv/bin/python bench/bench_sink_nats.py [--events N]

1. raw: nats-py JetStream, per 2000 events `publish_async` with the header
   `Nats-Msg-Id` (what the sink sends), then await every PubAck: the
   reference (a gather of `js.publish`, one request each, ran at ~0.5x of it);
2. NatsSink.write() with batches of 2000 (pre-encoded bodies, as the runtime
   hands them over);
3. generator -> nats sink through a real pipeline (`tidegate serve`),
   measured from the first to the last checkpoint.
Each run publishes to its own file-storage stream (deleted afterwards). Events
are generator events of about 210 bytes; only client work is timed in 1 and 2.
Target: 2 and 3 at >= 80% of 1.
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

import nats  # noqa: E402
from _common import chunks, print_ratio_table, serve_rate, sink_bench_args, write_rate  # noqa: E402

from shared.spec.model import NatsSinkConfig  # noqa: E402
from worker.sinks.base import SinkContext  # noqa: E402
from worker.sinks.nats import NatsSink  # noqa: E402

URL = "nats://127.0.0.1:4222"


async def with_stream(name: str, fn: Any) -> Any:
    nc = await nats.connect(URL)
    js = nc.jetstream(publish_async_max_pending=1 << 20)
    await js.add_stream(name=name, subjects=[f"{name}.>"], storage="file")
    try:
        out = await fn(js)
        count = (await js.stream_info(name)).state.messages
        return out, count
    finally:
        await js.delete_stream(name)
        await nc.close()


async def raw_async(name: str, n: int) -> float:
    async def go(js: Any) -> float:
        spent = 0.0
        async for evs, enc in chunks(n):
            t = time.perf_counter()
            futs = [
                await js.publish_async(
                    f"{name}.events", body, headers={"Nats-Msg-Id": f"bench:raw:{ev['source']['position']}"}
                )
                for ev, body in zip(evs, enc)
            ]
            await asyncio.gather(*futs)
            spent += time.perf_counter() - t
        return n / spent

    rate, count = await with_stream(name, go)
    assert count == n, (count, n)
    return rate


async def sink_write(name: str, n: int) -> float:
    async def go(_js: Any) -> float:
        sink = NatsSink(
            NatsSinkConfig(id="bus", url=URL, subject=f"{name}.events", stream=name), SinkContext("bench", int)
        )
        return await write_rate(sink, n)

    rate, count = await with_stream(name, go)
    assert count == n, (count, n)
    return rate


def pipeline(name: str, n: int) -> float:
    pipe = "bench-nats-" + uuid.uuid4().hex[:6]

    async def add() -> None:
        nc = await nats.connect(URL)
        await nc.jetstream().add_stream(name=name, subjects=[f"{name}.>"], storage="file")
        await nc.close()

    async def drop() -> int:
        nc = await nats.connect(URL)
        js = nc.jetstream()
        count = (await js.stream_info(name)).state.messages
        await js.delete_stream(name)
        await nc.close()
        return count

    asyncio.run(add())
    try:
        rate = serve_rate(
            pipe, {"type": "nats", "config": {"id": "bus", "url": URL, "subject": f"{name}.events", "stream": name}}, n
        )
    finally:
        count = asyncio.run(drop())
    assert count == n, (count, n)
    return rate


def main() -> None:
    a = sink_bench_args()
    n = a.events
    base = f"tg_nats_bench_{uuid.uuid4().hex[:8]}"
    ref = asyncio.run(raw_async(base + "_a", n))
    rows = [("NatsSink.write, batches of 2000", asyncio.run(sink_write(base + "_c", n)))]
    if not a.no_pipeline:
        rows.append(("generator -> nats pipeline (tidegate serve)", pipeline(base + "_d", n)))
    print(f"nats sink: {n:,} events of ~210 bytes, JetStream file stream at {URL}, Nats-Msg-Id on each")
    print_ratio_table([("raw nats-py publish_async + acks (reference)", ref)] + rows, ref)


if __name__ == "__main__":
    main()
