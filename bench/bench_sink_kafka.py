"""Kafka sink throughput beside the raw confluent-kafka loop, same broker, same run.

Generator-like events (~200 bytes of native JSON) go through KafkaSink.write()
in batches of 2000, plain (idempotent producer) and `exactly_once` (one
transaction per batch). References: the raw client loop producing the very
same values and keys: plain (produce everything, then one flush; and a flush per
2000, the sink's own durability point) and transactional (a commit per 1000
messages; and per 2000, the sink's batch). Only write()/produce+flush time is counted; events
are built between batches. Each run gets a fresh tansu broker (memory storage);
runs alternate, best of `--rounds`, because the machine is shared.

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
PAYLOAD = "x" * 10


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


def raw_loop(bootstrap: str, total: int, txn_every: int | None, flush_every: int | None) -> float:
    """produce() the sink's very values and keys; flush (or commit) every N, or once at the end."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    if txn_every:
        conf["transactional.id"] = "bench-raw"
    p = Producer(conf)
    if txn_every:
        p.init_transactions(30)
    spent = 0.0
    topic = "bench_raw"
    for evs, values in batches(total, txn_every or flush_every or BATCH):
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
        elif flush_every:
            assert p.flush(30) == 0
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
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    n = args.events
    size = len(next(batches(1))[1][0])
    # (label, how): how = ("raw", txn_every, flush_every) | ("sink", exactly_once)
    runs: list[tuple[str, tuple[Any, ...]]] = [
        ("raw produce, one flush at the end", ("raw", None, None)),
        (f"raw produce, flush every {BATCH}", ("raw", None, BATCH)),
        ("sink, plain (idempotent)", ("sink", False)),
        ("raw txn, commit every 1000", ("raw", 1000, None)),
        (f"raw txn, commit every {BATCH}", ("raw", BATCH, None)),
        ("sink, exactly_once", ("sink", True)),
    ]
    best: dict[str, list[float]] = {label: [] for label, _ in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for _round in range(args.rounds):     # interleaved, best of each: the machine is shared
            for label, how in runs:
                broker = Tansu(Path(tmp) / "tansu.log").start()   # fresh: memory storage grows
                try:
                    if how[0] == "raw":
                        rate = raw_loop(broker.bootstrap, n, how[1], how[2])
                    else:
                        rate = asyncio.run(sink_loop(broker.bootstrap, n, how[1]))
                finally:
                    broker.stop()
                best[label].append(rate)
    r = {label: max(v) for label, v in best.items()}
    print(f"\nKafka sink, tansu broker, {n:,} events of {size} bytes, batches of {BATCH}, "
          f"best of {args.rounds} interleaved rounds")
    print(f"{'':<38}{'events/s':>10}{'  sink/this':>12}")
    plain, eos = r["sink, plain (idempotent)"], r["sink, exactly_once"]
    for label, _ in runs:
        ours = plain if label.startswith("raw produce") else eos if label.startswith("raw txn") else None
        ratio = f"{ours / r[label]:>12.0%}" if ours else ""
        print(f"{label:<38}{r[label]:>10,.0f}{ratio}")
    print("all runs: " + "; ".join(f"{k}: {[round(x) for x in v]}" for k, v in best.items()))


if __name__ == "__main__":
    main()
