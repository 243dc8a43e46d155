"""Kafka sink throughput beside the raw confluent-kafka loop, same broker, same run.

Generator-like events (~200 bytes of native JSON) go through KafkaSink.write()
in batches of 2000: plain (idempotent producer) and `exactly_once` (one
transaction per batch). The raw client loops produce the very same values and
keys, batch by batch *interleaved* with the sink's writes on the same broker
(paired timing: the machine is shared, so load hits both alike):
  plain:        produce + flush per 2000 (the sink's durability point: write()
                returns only once every message is acknowledged)
  transactional: a commit per 1000 messages, and per 2000 (the sink's batch)
A separate run gives the plain ceiling: produce everything, one flush at the end.
Only write() / produce+flush|commit time is counted; events are built between
batches. Each mode gets a fresh tansu broker (memory storage).

Then, through a real `tidegate serve` (measured from the first checkpoint):
generator -> kafka (plain and exactly_once) at max_inflight 1 (the default) and 8
(batches queued for the plain sink go out in groups under one flush), beside
generator -> file (fsync never), the runtime's own ceiling, and the raw loops.

Run: .venv/bin/python bench/bench_sink_kafka.py [--events N] [--pipeline-events M]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import BATCH, fed, file_sink_ceiling, pipeline_rate, print_pipeline_table, run_and_median  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from shared.spec.model import KafkaSinkConfig  # noqa: E402
from tests.support.tansu import Tansu  # noqa: E402
from worker.envelope import encode  # noqa: E402
from worker.sinks.base import SinkBatch, SinkContext  # noqa: E402
from worker.sinks.kafka import KafkaSink  # noqa: E402

PAYLOAD = "x" * 10
INFLIGHT = (1, 8)  # max_inflight of the pipeline runs: the contract's default, and a tuned one


def batches(total: int, size: int = BATCH) -> Iterator[tuple[list[dict[str, Any]], list[bytes]]]:
    """Generator-source-shaped events, `size` at a time, with their native encodings."""
    for start in range(1, total + 1, size):
        evs = []
        for n in range(start, min(start + size, total + 1)):
            evs.append(
                {
                    "op": "c",
                    "ts_ms": 1732800000000 + n,
                    "source": {
                        "connector": "generator",
                        "db": "demo",
                        "schema": None,
                        "table": "events",
                        "position": str(n),
                        "tx_id": str(n),
                        "ts_ms": 1732800000000 + n,
                    },
                    "before": None,
                    "after": {"id": n, "payload": PAYLOAD},
                }
            )
        yield evs, [encode(e) for e in evs]


class Raw:
    """The raw client loop: produce() the values and keys; flush or commit every `every`."""

    def __init__(self, bootstrap: str, topic: str, txn: bool, every: int | None) -> None:
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
        if txn:
            conf["transactional.id"] = f"bench-raw-{topic}"
        self.p = Producer(conf)
        self.txn, self.every, self.topic, self.spent = txn, every, topic, 0.0
        self.times: list[float] = []
        if txn:
            self.p.init_transactions(30)

    def send(self, values: list[bytes], events: list[dict[str, Any]]) -> None:
        """Timed like the sink: deriving each message's key from its row is part of the work."""
        t0 = time.perf_counter()
        keys = [b'{"id":%d}' % e["after"]["id"] for e in events]
        p, topic = self.p, self.topic
        step = self.every or len(values)
        for i in range(0, len(values), step):
            if self.txn:
                p.begin_transaction()
            for v, k in zip(values[i : i + step], keys[i : i + step]):
                while True:
                    try:
                        p.produce(topic, v, k)
                        break
                    except BufferError:  # local queue full: let librdkafka drain it
                        p.poll(0.05)
            if self.txn:
                p.commit_transaction(30)
            elif self.every:
                assert p.flush(30) == 0
        self.times.append(time.perf_counter() - t0)
        self.spent += self.times[-1]

    def finish(self) -> None:
        t0 = time.perf_counter()
        assert self.p.flush(60) == 0
        self.spent += time.perf_counter() - t0


async def paired(bootstrap: str, total: int, exactly_once: bool) -> dict[str, float]:
    cfg = KafkaSinkConfig(id="bench", brokers=bootstrap, topic="bench_sink", exactly_once=exactly_once)
    sink = KafkaSink(cfg, SinkContext(pipeline="bench", position_key=int))
    await sink.open()
    if exactly_once:
        raws = {
            "raw txn, commit every 1000": Raw(bootstrap, "raw1000", True, 1000),
            f"raw txn, commit every {BATCH}": Raw(bootstrap, "raw2000", True, BATCH),
        }
    else:
        raws = {f"raw produce, flush every {BATCH}": Raw(bootstrap, "raw", False, BATCH)}
    times: list[float] = []
    for seq, (evs, native) in enumerate(batches(total), 1):
        for raw in raws.values():
            raw.send(native, evs)
        batch = SinkBatch(seq=seq, events=evs, last_position=evs[-1]["source"]["position"], native=native)
        t0 = time.perf_counter()
        await sink.write(batch)
        times.append(time.perf_counter() - t0)
    await sink.close()
    label = "sink, exactly_once" if exactly_once else "sink, plain (idempotent)"
    out = {label: run_and_median(times, total)}
    for label, raw in raws.items():
        raw.finish()
        out[label] = (total / raw.spent, BATCH / statistics.median(raw.times))
    return out


def ceiling(bootstrap: str, total: int) -> float:
    raw = Raw(bootstrap, "ceiling", False, None)
    for evs, native in batches(total):
        raw.send(native, evs)
    raw.finish()
    return total / raw.spent


async def fed_raw(bootstrap: str, total: int, txn: bool, every: int | None) -> float:
    """A raw loop fed by the generator source: make the events, produce, flush or commit every
    `every` (None: one flush at the end); events/s of the whole loop."""
    raw = Raw(bootstrap, f"fed_{int(txn)}_{every}", txn, every)
    t0 = time.perf_counter()
    async for evs, native in fed(total):
        raw.send(native, evs)
    raw.finish()
    return total / (time.perf_counter() - t0)


FED = {
    "fed: produce, one flush at the end": (False, None),
    f"fed: produce, flush every {BATCH}": (False, BATCH),
    "fed: txn, commit every 1000": (True, 1000),
}


def main() -> None:
    sys.setswitchinterval(0.0005)  # as in a worker process (worker/entry.py), where the sink runs
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument(
        "--pipeline-events",
        type=int,
        default=1_000_000,
        help="events for the generator -> sink runs through tidegate serve (0: skip)",
    )
    args = ap.parse_args()
    n = args.events
    size = len(next(batches(1))[1][0])
    r: dict[str, tuple[float, float]] = {}  # label -> (events/s over the run, per median batch)
    pipe: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for job in ("ceiling", "plain", "eos", *FED):
            broker = Tansu(Path(tmp) / "tansu.log").start()  # fresh: memory storage grows
            try:
                if job == "ceiling":
                    c = ceiling(broker.bootstrap, n)
                    r["raw produce, one flush at the end"] = (c, c)
                elif job in FED:
                    c = asyncio.run(fed_raw(broker.bootstrap, args.pipeline_events or n, *FED[job]))
                    r[job] = (c, c)
                else:
                    r.update(asyncio.run(paired(broker.bootstrap, n, job == "eos")))
            finally:
                broker.stop()
        if args.pipeline_events:
            pn = args.pipeline_events
            for inflight in INFLIGHT:
                pipe[f"generator -> file (fsync never), max_inflight {inflight}"] = file_sink_ceiling(
                    tmp, "k", pn, {"max_inflight": inflight}
                )
            for label, eos in (("generator -> kafka, plain", False), ("generator -> kafka, exactly_once", True)):
                for inflight in INFLIGHT:
                    broker = Tansu(Path(tmp) / "tansu.log").start()
                    try:
                        pipe[f"{label}, max_inflight {inflight}"] = pipeline_rate(
                            {
                                "type": "kafka",
                                "config": {
                                    "id": "k",
                                    "brokers": broker.bootstrap,
                                    "topic": "bench",
                                    "exactly_once": eos,
                                },
                            },
                            pn,
                            {"max_inflight": inflight},
                        )
                    finally:
                        broker.stop()
    plain, eos = r["sink, plain (idempotent)"], r["sink, exactly_once"]
    print(f"\nKafka sink, tansu broker, {n:,} events of {size} bytes, batches of {BATCH}")
    print("events/s over the whole run, and from the median batch time (robust to the stalls of a shared machine)")
    print(f"{'':<36}{'run ev/s':>10}{'sink/this':>11}{'median ev/s':>13}{'sink/this':>11}")
    for label in (
        "sink, plain (idempotent)",
        f"raw produce, flush every {BATCH}",
        "raw produce, one flush at the end",
        "sink, exactly_once",
        "raw txn, commit every 1000",
        f"raw txn, commit every {BATCH}",
    ):
        ours = plain if label.startswith("raw produce") else eos if label.startswith("raw txn") else None
        run_r, med_r = r[label]
        ratios = (f"{ours[0] / run_r:>11.0%}", f"{ours[1] / med_r:>11.0%}") if ours else ("", "")
        if label.endswith("at the end"):
            ratios = (ratios[0], "")
        print(
            f"{label:<36}{run_r:>10,.0f}{ratios[0]:>11}{med_r if not label.endswith('end') else 0:>13,.0f}"
            f"{ratios[1]:>11}"
        )
    if pipe:
        print(
            f"\nraw loops fed by the generator source ({args.pipeline_events:,} events, making them included): "
            "the like-for-like references for generator -> sink"
        )
        for label in FED:
            print(f"{label:<52}{r[label][0]:>10,.0f}")
        refs: dict[str, tuple[str, float]] = {}
        for label in pipe:
            if label.startswith("generator -> kafka, plain"):
                refs[label] = ("fed: produce, one flush", r["fed: produce, one flush at the end"][0])
            elif label.startswith("generator -> kafka, exactly_once"):
                refs[label] = ("fed: txn per 1000", r["fed: txn, commit every 1000"][0])
        print_pipeline_table(pipe, args.pipeline_events, 52, refs)
        print("the same runs beside the raw loops on pre-made events (above):")
        for label, rate in pipe.items():
            ref = (
                "raw produce, one flush at the end"
                if "plain" in label
                else "raw txn, commit every 1000"
                if "exactly_once" in label
                else None
            )
            if ref:
                print(f"  {label:<50}{rate / r[ref][0]:>6.0%} of {ref} ({r[ref][0]:,.0f}/s)")


if __name__ == "__main__":
    main()
