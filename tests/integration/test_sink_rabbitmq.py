"""RabbitmqSink against the real RabbitMQ on 127.0.0.1:5672 (scripts/services/rabbitmq.sh).

Exchanges and queues are named `tg_rabbitmq_<random>...` (durable queues bound
before writing) and deleted afterwards. The restart test stops the broker's app
once (`rabbitmqctl stop_app`) and starts it again with the service script;
confirmed persistent messages in durable queues survive it.
"""
from __future__ import annotations

import asyncio
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import msgspec
import pytest

from shared.errors import SinkError
from shared.events import make_event
from shared.spec.model import RabbitmqSinkConfig
from tests.support import free_port, require_service, wait_until
from worker.sinks.base import SinkBatch, SinkContext
from worker.sinks.rabbitmq import RabbitmqSink

ROOT = Path(__file__).resolve().parents[2]
URL = "amqp://guest:guest@127.0.0.1:5672/"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _amqp(fn: Any) -> Any:
    conn = await aio_pika.connect(URL, timeout=10)
    try:
        return await fn(await conn.channel())
    finally:
        await conn.close()


def amqp(fn: Any) -> Any:
    return run(_amqp(fn))


@pytest.fixture
def name() -> Any:
    require_service("rabbitmq", "127.0.0.1", 5672)
    base = f"tg_rabbitmq_{uuid.uuid4().hex[:10]}"
    yield base

    async def drop(ch: Any) -> None:
        for suffix in ("", "_a", "_b", "_all"):
            await ch.queue_delete(base + suffix)
        await ch.exchange_delete(base)
    amqp(drop)


def bind(exchange: str, queues: dict[str, str], exchange_type: str = "topic") -> None:
    """Declare `exchange` and durable queues bound with the given routing keys."""
    async def go(ch: Any) -> None:
        ex = await ch.declare_exchange(exchange, type=exchange_type, durable=True)
        for q, key in queues.items():
            queue = await ch.declare_queue(q, durable=True)
            await queue.bind(ex, key)
    amqp(go)


def drain(queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message in the queue, in order (acked)."""
    async def go(ch: Any) -> list[Any]:
        q = await ch.declare_queue(queue, durable=True, passive=True)
        n = q.declaration_result.message_count
        out: list[Any] = []
        await ch.set_qos(prefetch_count=1000)
        async with q.iterator() as it:
            while len(out) < n:
                msg = await asyncio.wait_for(it.__anext__(), 10)
                await msg.ack()
                out.append(msg)
        return out
    return amqp(go)


def events(start: int, n: int, tables: tuple[str, ...] = ("demo.a", "demo.b")) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        db, table = tables[(i - 1) % len(tables)].split(".")
        out.append(make_event("c", 1732800000000 + i, connector="generator", db=db, schema=None,
                              table=table, position=str(i), tx_id=str(i), source_ts_ms=1732800000000,
                              before=None, after={"id": i, "payload": "x" * 20}))
    return out


def batch(seq: int, evs: list[dict[str, Any]]) -> SinkBatch:
    return SinkBatch(seq=seq, events=evs, last_position=evs[-1]["source"]["position"])


def make_sink(**cfg: Any) -> RabbitmqSink:
    return RabbitmqSink(RabbitmqSinkConfig(id=cfg.pop("id", "mq"), **cfg), SinkContext("pipe", int))


def write_all(sink: RabbitmqSink, batches: list[SinkBatch]) -> None:
    async def go() -> None:
        await sink.open()
        for b in batches:
            await sink.write(b)
        await sink.close()
    run(go())


def open_error(sink: RabbitmqSink) -> SinkError:
    async def go() -> SinkError:
        with pytest.raises(SinkError) as ei:
            await sink.open()
        await sink.close()
        return ei.value
    return run(go())


def test_every_event_arrives_persistent_with_message_id(name: str) -> None:
    bind(name, {name + "_all": "#"})
    write_all(make_sink(exchange=name), [batch(s + 1, events(s * 300 + 1, 300)) for s in range(3)])
    got = drain(name + "_all")
    assert [msgspec.json.decode(m.body)["after"]["id"] for m in got] == list(range(1, 901))
    assert [m.message_id for m in got] == [f"pipe:mq:{i}" for i in range(1, 901)]
    assert {m.delivery_mode for m in got} == {aio_pika.DeliveryMode.PERSISTENT}
    assert {m.content_type for m in got} == {"application/json"}
    assert [m.routing_key for m in got[:2]] == ["a", "b"]     # default routing_key ${source.table}


def test_routing_template_splits_by_table(name: str) -> None:
    bind(name, {name + "_a": "shop.orders.c", name + "_b": "shop.items.*"})
    write_all(make_sink(exchange=name, routing_key="${source.db}.${source.table}.${op}"),
              [batch(1, events(1, 200, ("shop.orders", "shop.items")))])
    assert [msgspec.json.decode(m.body)["after"]["id"] for m in drain(name + "_a")] == list(range(1, 201, 2))
    assert [msgspec.json.decode(m.body)["after"]["id"] for m in drain(name + "_b")] == list(range(2, 201, 2))


@pytest.mark.parametrize("envelope", ["debezium", "cloudevents"])
def test_envelope_shapes(name: str, envelope: str) -> None:
    bind(name, {name + "_all": "#"})
    evs = events(1, 4)
    write_all(make_sink(exchange=name, envelope=envelope), [batch(1, evs)])
    for ev, m in zip(evs, drain(name + "_all")):
        body = msgspec.json.decode(m.body)
        if envelope == "debezium":
            assert body == {"schema": None, "payload": {k: ev[k] for k in
                                                        ("before", "after", "source", "op", "ts_ms")}}
        else:
            assert body["specversion"] == "1.0" and body["id"] == f"pipe:mq:{ev['source']['position']}"
            assert body["source"] == "tidegate/pipe" and body["type"] == "io.tidegate.change.c"
            assert body["subject"] == f"demo.{ev['source']['table']}" and body["data"] == ev
            assert body["datacontenttype"] == "application/json" and body["time"].endswith("Z")


def test_default_exchange_routes_to_queue_by_name(name: str) -> None:
    bind(name, {name + "_all": "#"})
    write_all(make_sink(exchange="", routing_key=name + "_all"), [batch(1, events(1, 5))])
    assert len(drain(name + "_all")) == 5


def test_fatal_errors_name_the_cause(name: str) -> None:
    missing = open_error(make_sink(exchange=name, declare=False))
    assert not missing.retryable and f"exchange '{name}' does not exist" in missing.message
    assert "declare: true" in missing.message
    bind(name, {}, exchange_type="fanout")
    mismatch = open_error(make_sink(exchange=name, exchange_type="topic"))
    assert not mismatch.retryable and "PRECONDITION_FAILED" in mismatch.message
    bad_auth = open_error(make_sink(exchange=name, url="amqp://guest:wrong@127.0.0.1:5672/"))
    assert not bad_auth.retryable and "credentials" in bad_auth.message


def test_unreachable_broker_is_retryable() -> None:
    err = open_error(make_sink(exchange="x", url=f"amqp://guest:guest@127.0.0.1:{free_port()}/"))
    assert err.retryable and "rabbitmq 127.0.0.1:" in err.message


class Writer:
    """Plays the runtime on its own loop thread: delivers batches of `size` events in order, for ever
    until `limit` (a batch count) is set, retrying the same batch on retryable errors (short
    backoff); paced a little, like a live stream; holds after `hold_after` batches until `gate`."""

    def __init__(self, sink: Any, size: int, hold_after: int) -> None:
        self.sink, self.size, self.hold_after = sink, size, hold_after
        self.done, self.errors, self.fatal = 0, [], []
        self.limit: int | None = None
        self.gate = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="tg-sink-writer")

    def finish(self, more: int) -> int:
        """Stop `more` batches after the current count; return the total number of events."""
        self.limit = self.done + more
        self.thread.join(60)
        assert not self.thread.is_alive() and not self.fatal and self.done == self.limit, \
            (self.fatal, self.done, self.limit)
        return self.limit * self.size

    async def _main(self) -> None:
        await self.sink.open()
        while self.limit is None or self.done < self.limit:
            while self.done >= self.hold_after and not self.gate.is_set():
                await asyncio.sleep(0.01)
            b = batch(self.done + 1, events(self.done * self.size + 1, self.size))
            while True:
                try:
                    await self.sink.write(b)
                    break
                except SinkError as exc:
                    if not exc.retryable:
                        self.fatal.append(exc)
                        return
                    self.errors.append(exc.message)
                    await asyncio.sleep(0.2)
            self.done += 1
            await asyncio.sleep(0.01)
        await self.sink.close()


def test_broker_restart_mid_stream_holds_then_delivers_everything(name: str) -> None:
    bind(name, {name + "_all": "#"})
    w = Writer(make_sink(exchange=name), 100, hold_after=3)
    w.thread.start()
    wait_until(lambda: w.done >= 3, 10, message="3 batches written")
    w.gate.set()
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=60, capture_output=True)
    try:
        wait_until(lambda: w.errors, 20, message="a retryable error while rabbitmq is stopped")
    finally:
        subprocess.run(["bash", str(ROOT / "scripts/services/rabbitmq.sh")], check=True, timeout=120)
    at_restart = w.done
    wait_until(lambda: w.done >= at_restart + 3, 30, message="writes to go on after the restart")
    total = w.finish(2)
    assert all("rabbitmq 127.0.0.1:5672" in m for m in w.errors), w.errors
    ids = [msgspec.json.decode(m.body)["after"]["id"] for m in drain(name + "_all")]
    assert set(ids) == set(range(1, total + 1))        # at least once: a batch cut by the stop may repeat
