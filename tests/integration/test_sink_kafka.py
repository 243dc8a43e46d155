"""KafkaSink against a real tansu broker (started per test on a free port), no runtime.

Every event arrives with its row key; envelopes; routing by table; the broker
killed and started again mid-stream (tansu's memory storage loses what it held:
the test asserts the held batch and everything after it arrive); exactly-once:
a writer process SIGKILLed inside a transaction, then a replay, leaves every
event exactly once for a read_committed reader; fatal errors are fatal.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from confluent_kafka import Consumer, TopicPartition

from shared.errors import SinkError
from shared.spec.model import KafkaSinkConfig
from tests.support import wait_until
from tests.support.tansu import Tansu, tansu  # noqa: F401 - fixture
from worker.envelope import encode
from worker.sinks.base import SinkBatch, SinkContext
from worker.sinks.kafka import KafkaSink

ROOT = Path(__file__).resolve().parents[2]


def events(a: int, b: int, tables: tuple[str, ...] = ("shop.orders",), payload: str = "p" * 40) -> list[dict]:
    out = []
    for n in range(a, b + 1):
        db, table = tables[(n - 1) % len(tables)].split(".")
        out.append(
            {
                "op": "c",
                "ts_ms": 1732800000000 + n,
                "source": {
                    "connector": "generator",
                    "db": db,
                    "schema": None,
                    "table": table,
                    "position": str(n),
                    "tx_id": str(n),
                    "ts_ms": 1732800000000,
                },
                "before": None,
                "after": {"id": n, "payload": payload},
            }
        )
    return out


def batch(seq: int, evs: list[dict]) -> SinkBatch:
    return SinkBatch(seq=seq, events=evs, last_position=evs[-1]["source"]["position"], native=[encode(e) for e in evs])


def sink(bootstrap: str, topic: str, **cfg: Any) -> KafkaSink:
    conf = KafkaSinkConfig(id=cfg.pop("id", "k1"), brokers=bootstrap, topic=topic, **cfg)
    return KafkaSink(conf, SinkContext(pipeline=cfg.pop("pipeline", "tgk"), position_key=int))


def consume(bootstrap: str, topic: str) -> list[Any]:
    """Every record of `topic` as a read_committed reader sees it (all partitions, to the end)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"tg-kafka-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return []
        c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        done: set[int] = set()
        out: list[Any] = []

        def drained() -> bool:
            for m in c.consume(1000, 0.2):
                if m.error():
                    done.add(m.partition())
                else:
                    out.append(m)
            return len(done) == len(md.partitions)

        wait_until(drained, timeout=30, interval=0, message=f"reading {topic} to its end")
        return out
    finally:
        c.close()


def ids(msgs: list[Any]) -> list[int]:
    return [msgspec.json.decode(m.value())["after"]["id"] for m in msgs]


def topic_name() -> str:
    return f"tg_kafka_{uuid.uuid4().hex[:10]}"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_every_event_arrives_keyed_by_row(tansu: Tansu) -> None:  # noqa: F811
    topic = topic_name()
    s = sink(tansu.bootstrap, topic)

    async def go() -> None:
        assert await s.open() is None
        await s.write(batch(1, events(1, 1000)))
        await s.write(batch(2, events(1001, 2500)))
        d = {
            "op": "d",
            "ts_ms": 1,
            "source": {"table": "orders", "position": "2501"},
            "before": {"id": 7, "payload": "gone"},
            "after": None,
        }
        await s.write(SinkBatch(seq=3, events=[d], last_position="2501"))
        await s.close()

    run(go())
    msgs = consume(tansu.bootstrap, topic)
    assert len(msgs) == 2501
    bodies = [msgspec.json.decode(m.value()) for m in msgs]
    assert sorted(b["after"]["id"] for b in bodies if b["after"]) == list(range(1, 2501))
    for m in msgs:
        b = msgspec.json.decode(m.value())
        row = b["after"] or b["before"]
        assert m.key() == b'{"id":%d}' % row["id"]
        if b["after"]:
            assert b == events(row["id"], row["id"])[0]  # native envelope: the event itself
    # one row's changes share a partition, in order
    seven = [m for m in msgs if m.key() == b'{"id":7}']
    assert len({m.partition() for m in seven}) == 1
    assert [msgspec.json.decode(m.value())["op"] for m in seven] == ["c", "d"]


def test_envelopes_and_routing_by_table(tansu: Tansu) -> None:  # noqa: F811
    base = topic_name()
    tables = ("shop.orders", "shop.items")
    sinks = [
        sink(tansu.bootstrap, base + "_${source.table}", id="routed", exactly_once=True),
        sink(tansu.bootstrap, base + "_dbz", id="dbz", envelope="debezium"),
        sink(tansu.bootstrap, base + "_ce", id="ce", envelope="cloudevents"),
    ]

    async def go() -> None:
        for s in sinks:
            await s.open()
            await s.write(batch(1, events(1, 600, tables)))
            await s.write(batch(2, events(601, 1000, tables)))
            await s.close()

    run(go())
    assert sorted(ids(consume(tansu.bootstrap, base + "_orders"))) == list(range(1, 1001, 2))
    assert sorted(ids(consume(tansu.bootstrap, base + "_items"))) == list(range(2, 1001, 2))
    dbz = [msgspec.json.decode(m.value()) for m in consume(tansu.bootstrap, base + "_dbz")]
    assert len(dbz) == 1000 and all(b["schema"] is None for b in dbz)
    assert all(set(b["payload"]) == {"before", "after", "source", "op", "ts_ms"} for b in dbz)
    ce = [msgspec.json.decode(m.value()) for m in consume(tansu.bootstrap, base + "_ce")]
    assert sorted(b["data"]["after"]["id"] for b in ce) == list(range(1, 1001))
    for b in ce[:20]:
        pos = b["data"]["source"]["position"]
        assert b["specversion"] == "1.0" and b["id"] == f"tgk:ce:{pos}"
        assert b["source"] == "tidegate/tgk" and b["type"] == "io.tidegate.change.c"
        assert b["subject"] == f"shop.{b['data']['source']['table']}" and b["datacontenttype"] == "application/json"
        assert b["time"].endswith("Z")
    # the exactly-once sink's checkpoint names the topics it wrote; open() returns the position
    # committed before the last transaction (`prev`) and skips that transaction's visible events
    again = sink(tansu.bootstrap, base + "_${source.table}", id="routed", exactly_once=True)
    assert run(again.open()) == "600"
    assert again._eos is not None and again._eos.topics == {base + "_orders", base + "_items"}
    assert len(again._eos.skip) == 400
    run(again.close())


@pytest.mark.parametrize("exactly_once", [False, True])
def test_broker_restart_mid_stream_holds_then_delivers(tansu: Tansu, exactly_once: bool) -> None:  # noqa: F811
    topic = topic_name()
    s = sink(tansu.bootstrap, topic, exactly_once=exactly_once, client_conf={"message.timeout.ms": 1500})

    async def go() -> list[SinkError]:
        await s.open()
        await s.write(batch(1, events(1, 500)))
        tansu.stop()
        errors: list[SinkError] = []
        held = batch(2, events(501, 1000))
        with pytest.raises(SinkError) as info:
            await s.write(held)
        errors.append(info.value)
        tansu.start()
        for _ in range(20):  # what the runtime does: back off, same batch again
            try:
                await s.write(held)
                break
            except SinkError as exc:
                assert exc.retryable, exc.message
                errors.append(exc)
                await asyncio.sleep(0.2)
        else:
            pytest.fail(f"the held batch was never delivered: {[e.message for e in errors]}")
        await s.write(batch(3, events(1001, 1500)))
        await s.close()
        return errors

    errors = run(go())
    assert errors[0].retryable and errors[0].message.startswith(f"sink 'k1': kafka {tansu.bootstrap}")
    # memory storage: batch 1 went down with the broker; the held batch and the next arrive, once
    got = ids(consume(tansu.bootstrap, topic))
    assert sorted(got) == list(range(501, 1501))
    if exactly_once:
        again = sink(tansu.bootstrap, topic, exactly_once=True)
        assert run(again.open()) == "1000"
        run(again.close())


WRITER = textwrap.dedent("""
    import asyncio, sys, time
    sys.path.insert(0, {root!r})
    from confluent_kafka import Producer
    import worker.sinks.kafka_eos as eos
    from tests.integration.test_sink_kafka import batch, events, sink

    class StallingProducer(Producer):
        commits = 0
        produced = 0
        def stall(self):
            self.flush(10)               # what was produced so far is on the broker
            print("stalled", flush=True)
            time.sleep(600)
        def produce(self, topic, *a, **kw):
            if StallingProducer.commits == 3 and topic != "__tidegate_checkpoints":
                StallingProducer.produced += 1
                if {mid_data} and StallingProducer.produced == 150:
                    self.stall()          # crash half-way through the 4th batch's messages
            return super().produce(topic, *a, **kw)
        def commit_transaction(self, *a):
            if StallingProducer.commits == 3:
                self.stall()              # crash with the 4th batch produced, not committed
            StallingProducer.commits += 1
            return super().commit_transaction(*a)
    eos.Producer = StallingProducer

    async def main():
        s = sink({bootstrap!r}, {topic!r}, exactly_once=True)
        await s.open()
        for i in range(100):
            await s.write(batch(i + 1, events(i * 300 + 1, i * 300 + 300)))
            print("wrote", i + 1, flush=True)
    asyncio.run(main())
""")


@pytest.mark.parametrize("mid_data", [False, True], ids=["before-commit", "mid-batch"])
def test_exactly_once_sigkill_inside_a_transaction_then_replay_no_duplicates(
    tansu: Tansu,  # noqa: F811
    tmp_path: Path,
    mid_data: bool,
) -> None:
    topic = topic_name()
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT), mid_data=mid_data, bootstrap=tansu.bootstrap, topic=topic))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, text=True
    )
    lines: list[str] = []
    try:

        def stalled() -> bool:
            line = proc.stdout.readline() if proc.stdout else ""
            lines.append(line)
            return line.startswith("stalled") or proc.poll() is not None

        wait_until(stalled, timeout=60, interval=0, message="the writer to stall inside its 4th transaction")
        assert proc.poll() is None, "".join(lines)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
    assert [x for x in lines if x.startswith("wrote")] == [f"wrote {i}\n" for i in (1, 2, 3)], "".join(lines)

    async def replay() -> None:
        s = sink(tansu.bootstrap, topic, exactly_once=True)
        ckpt = await s.open()
        # the `prev` of the newest visible checkpoint record: 600 (txn 3's) or 900 (txn 4's, which
        # tansu shows although that transaction never committed)
        assert ckpt in ("600", "900")
        # what the runtime does: re-feed after the committed position, cut differently this time
        start = int(ckpt) + 1
        for seq, first in enumerate(range(start, 3001, 700), 1):
            await s.write(batch(seq, events(first, min(first + 699, 3000))))
        await s.close()

    run(replay())
    got = ids(consume(tansu.bootstrap, topic))
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} duplicates"
    assert sorted(got) == list(range(1, 3001))


def test_fatal_errors(tansu: Tansu) -> None:  # noqa: F811
    async def go() -> None:
        big = sink(tansu.bootstrap, topic_name(), client_conf={"message.max.bytes": 2000})
        await big.open()
        with pytest.raises(SinkError) as info:
            await big.write(batch(1, events(1, 3, payload="x" * 5000)))
        assert info.value.retryable is False and "MSG_SIZE_TOO_LARGE" in info.value.message
        await big.close()
        bad = sink(tansu.bootstrap, topic_name(), client_conf={"no.such.setting": 1})
        with pytest.raises(SinkError) as info:
            await bad.open()
        assert info.value.retryable is False and "client_conf" in info.value.message
        await bad.close()

    run(go())


def test_unreachable_broker_is_retryable_on_open() -> None:
    from tests.support import free_port

    s = sink(f"127.0.0.1:{free_port()}", topic_name(), client_conf={"message.timeout.ms": 500})
    with pytest.raises(SinkError) as info:
        run(s.open())
    assert info.value.retryable is True
    run(s.close())
