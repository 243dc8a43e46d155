"""RabbitMQ sink throughput beside the raw aio-pika loop, same broker, same run.

    .venv/bin/python bench/bench_sink_rabbitmq.py [--events N]

1,000,000 events by default, as the issue asks: publisher confirms run at
~8-10K/s here, so each measure takes about 2 minutes (`--events 200000` for a
quicker look).
1. raw: aio-pika, channel with publisher confirms, per 2000 events a gather of
   `exchange.publish` (persistent, message_id, content_type) awaiting every
   confirm: the reference;
2. RabbitmqSink.write() with batches of 2000 (pre-encoded bodies);
   1 and 2 run in halves, raw-sink-sink-raw, as the broker's speed drifts;
3. generator -> rabbitmq sink through a real pipeline (`tidegate serve`),
   measured from the first to the last checkpoint.
The topic exchange routes to one durable queue (purged between measures), so
the broker really stores every persistent message. Only client work is timed in
1 and 2. Target: 2 and 3 at >= 80% of 1.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
from _common import chunks, print_ratio_table, serve_rate, sink_bench_args, write_rate  # noqa: E402

from shared.spec.model import RabbitmqSinkConfig  # noqa: E402
from worker.sinks.base import SinkContext  # noqa: E402
from worker.sinks.rabbitmq import RabbitmqSink  # noqa: E402

URL = "amqp://guest:guest@127.0.0.1:5672/"


async def setup(name: str) -> None:
    conn = await aio_pika.connect(URL)
    ch = await conn.channel()
    ex = await ch.declare_exchange(name, type="topic", durable=True)
    q = await ch.declare_queue(name, durable=True)
    await q.bind(ex, "#")
    await conn.close()


async def take(name: str, drop: bool = False) -> int:
    """Messages in the queue; then purge it (or delete queue and exchange)."""
    conn = await aio_pika.connect(URL)
    ch = await conn.channel()
    q = await ch.declare_queue(name, durable=True, passive=True)
    count = q.declaration_result.message_count
    if drop:
        await ch.queue_delete(name)
        await ch.exchange_delete(name)
    else:
        await q.purge()
    await conn.close()
    return count


async def raw(name: str, n: int) -> float:
    conn = await aio_pika.connect(URL)
    ch = await conn.channel(publisher_confirms=True)
    ex = await ch.get_exchange(name)
    spent = 0.0
    persistent = aio_pika.DeliveryMode.PERSISTENT
    async for evs, enc in chunks(n):
        t = time.perf_counter()
        await asyncio.gather(
            *[
                ex.publish(
                    aio_pika.Message(
                        body,
                        delivery_mode=persistent,
                        message_id=f"bench:raw:{ev['source']['position']}",
                        content_type="application/json",
                    ),
                    routing_key=ev["source"]["table"],
                    mandatory=False,
                )
                for ev, body in zip(evs, enc)
            ]
        )
        spent += time.perf_counter() - t
    await conn.close()
    return n / spent


async def sink_write(name: str, n: int) -> float:
    sink = RabbitmqSink(RabbitmqSinkConfig(id="mq", url=URL, exchange=name), SinkContext("bench", int))
    return await write_rate(sink, n)


def pipeline(name: str, n: int) -> float:
    pipe = "bench-rabbitmq-" + uuid.uuid4().hex[:6]
    return serve_rate(pipe, {"type": "rabbitmq", "config": {"id": "mq", "url": URL, "exchange": name}}, n)


def main() -> None:
    a = sink_bench_args()
    n = a.events
    name = f"tg_rabbitmq_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(setup(name))
    try:
        # ABBA halves: the broker's speed drifts (purges, other load); this cancels a linear drift
        half = n // 2
        t_raw = t_sink = 0.0
        for fn in ("raw", "sink", "sink", "raw"):
            rate = asyncio.run(raw(name, half) if fn == "raw" else sink_write(name, half))
            assert asyncio.run(take(name)) == half
            if fn == "raw":
                t_raw += half / rate
            else:
                t_sink += half / rate
        ref = 2 * half / t_raw
        rows = [("RabbitmqSink.write, batches of 2000", 2 * half / t_sink)]
        if not a.no_pipeline:
            rows.append(("generator -> rabbitmq pipeline (tidegate serve)", pipeline(name, n)))
            assert asyncio.run(take(name)) >= n
    finally:
        asyncio.run(take(name, drop=True))
    print(f"rabbitmq sink: {n:,} events of ~210 bytes, persistent + confirms, topic exchange -> 1 durable queue")
    print_ratio_table([("raw aio-pika publish + confirms (reference)", ref)] + rows, ref)


if __name__ == "__main__":
    main()
