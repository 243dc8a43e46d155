"""Kafka sink throughput beside the raw confluent-kafka loop, same broker, same run.

Generator-like events (~200 bytes of native JSON) go through KafkaSink.write()
in batches of 2000, plain (idempotent producer) and `exactly_once` (one
transaction per batch). References: the raw client loop producing the very
same values and keys, plain (produce everything, then flush) and transactional
(a commit per 1000 messages). Only write()/produce+flush time is counted; events
are built between batches. Each run gets a fresh tansu broker (memory storage).

Run: .venv/bin/python bench/bench_sink_kafka.py [--events N]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Producer  # noqa: E402

from shared.spec.model import KafkaSinkConfig  # noqa: E402
from tests.support.tansu import Tansu  # noqa: E402
from worker.envelope import encode  # noqa: E402
from worker.sinks.base import SinkBatch, SinkContext  # noqa: E402
from worker.sinks.kafka import KafkaSink  # noqa: E402

BATCH = 2000
PAYLOAD = "x" * 40


def batches(total: int, size: int = BATCH) -> Iterator[tuple[list[dict[str, Any]], list[bytes]]]:
    """Generator-source-shaped events, `size` at a time, with their native encodings."""
    for start in range(1, total + 1, size):
        evs = []
        for n in range(start, min(start + size, total + 1)):
            evs.append({"op": "c", "ts_ms": 1732800000000 + n,
                        "source": {"connector": "generator", "db": "demo", "schema": None, "table": "events",
                                   "position": str(n), "tx_id": str(n), "ts_ms": 1732800000000 + n},
                        "before": None, "after": {"id": n, "payload": PAYLOAD}})
        yield evs, [encode(e) for e in evs]


def raw_loop(bootstrap: str, total: int, txn_every: int | None) -> float:
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    if txn_every:
        conf["transactional.id"] = "bench-raw"
    p = Producer(conf)
    if txn_every:
        p.init_transactions(30)
    spent = 0.0
    topic = "bench_raw"
    for evs, values in batches(total, txn_every or BATCH):
        keys = [b'{"id":%d}' % e["after"]["id"] for e in evs]
        t0 = time.perf_counter()
        if txn_every:
            p.begin_transaction()
        produce = p.produce
        for v, k in zip(values, keys):
            try:
                produce(topic, v, k)
            except BufferError:
                p.poll(0.05)
                produce(topic, v, k)
        if txn_every:
            p.commit_transaction(30)
        spent += time.perf_counter() - t0
    t0 = time.perf_counter()
    assert p.flush(60) == 0
    spent += time.perf_counter() - t0
    return total / spent


async def sink_loop(bootstrap: str, total: int, exactly_once: bool) -> float:
    cfg = KafkaSinkConfig(id="bench", brokers=bootstrap, topic="bench_sink", exactly_once=exactly_once)
    sink = KafkaSink(cfg, SinkContext(pipeline="bench", position_key=int))
    await sink.open()
    spent = 0.0
    for seq, (evs, native) in enumerate(batches(total), 1):
        batch = SinkBatch(seq=seq, events=evs, last_position=evs[-1]["source"]["position"], native=native)
        t0 = time.perf_counter()
        await sink.write(batch)
        spent += time.perf_counter() - t0
    await sink.close()
    return total / spent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.events
    size = len(next(batches(1))[1][0])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        def fresh() -> Tansu:
            return Tansu(Path(tmp) / "tansu.log").start()

        for label, ref_txn, eos in (("plain (idempotent)", None, False),
                                    ("exactly_once (txn per batch)", 1000, True)):
            broker = fresh()
            try:
                ref = raw_loop(broker.bootstrap, n, ref_txn)
            finally:
                broker.stop()
            broker = fresh()
            try:
                ours = asyncio.run(sink_loop(broker.bootstrap, n, eos))
            finally:
                broker.stop()
            rows.append((label, ours, ref))
    ref_names = {"plain (idempotent)": "produce+flush", "exactly_once (txn per batch)": "txn, commit/1000"}
    print(f"\nKafka sink, tansu broker, {n:,} events of {size} bytes, batches of {BATCH}")
    print(f"{'mode':<30}{'sink ev/s':>12}{'raw loop':>18}{'raw ev/s':>12}{'ratio':>8}")
    for label, ours, ref in rows:
        print(f"{label:<30}{ours:>12,.0f}{ref_names[label]:>18}{ref:>12,.0f}{ours / ref:>8.0%}")


if __name__ == "__main__":
    main()
