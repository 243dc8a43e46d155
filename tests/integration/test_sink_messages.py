"""Message events (the outbox processor's, worker/envelope.py) through the real NATS, RabbitMQ
and HTTP sinks: the body is the payload, `${route}` routes, the headers arrive as message
headers. (Kafka: tests/e2e/test_outbox_e2e.py, against a real broker.)"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from shared.spec.model import HttpSinkConfig, NatsSinkConfig, RabbitmqSinkConfig
from tests.support import require_service
from tests.support.httpserver import RecordingServer
from tests.support.native import event, native
from tests.support.sinks import amqp_scratch, bind, drain, js, write_all
from worker.sinks.base import SinkBatch, SinkContext
from worker.sinks.http import HttpSink
from worker.sinks.nats import NatsSink
from worker.sinks.rabbitmq import RabbitmqSink

OUTBOX = {"type": "outbox", "id": "ob", "tables": ["public.outbox"], "header_columns": ["event_type"]}


def message_batch(change: bool = True) -> SinkBatch:
    """Two outbox messages (order, customer) and (`change`) one change event of another table."""
    rows = [
        {"id": 1, "aggregate_type": "order", "aggregate_id": "o-1", "event_type": "Created", "payload": '{"n": 1}'},
        {"id": 2, "aggregate_type": "customer", "aggregate_id": "c-9", "event_type": "Moved", "payload": {"n": 2}},
    ]
    evs = [event(i, table="outbox", after=r) for i, r in enumerate(rows, 1)]
    if change:
        evs.append(event(3, table="orders", after={"id": 3}))
    out = native(OUTBOX).apply(evs)
    return SinkBatch(seq=1, events=out, last_position=str(len(out)))


@pytest.fixture
def stream() -> Any:
    require_service("nats", "127.0.0.1", 4222)
    name = "tg_msg_nats"

    async def add(j: Any) -> None:
        try:
            await j.delete_stream(name)
        except Exception:  # noqa: BLE001 - not there
            pass
        await j.add_stream(name=name, subjects=[f"{name}.>"], storage="memory")

    js(add)
    yield name

    async def drop(j: Any) -> None:
        await j.delete_stream(name)

    js(drop)


def test_nats_messages_route_and_carry_headers(stream: str) -> None:
    sink = NatsSink(NatsSinkConfig(id="bus", subject=f"{stream}.${{route}}"), SinkContext("pipe", int))
    write_all(sink, [message_batch(change=False)])
    change = NatsSink(NatsSinkConfig(id="all", subject=f"{stream}.${{source.table}}"), SinkContext("pipe", int))
    write_all(change, [SinkBatch(seq=1, events=[event(3, after={"id": 3})], last_position="3")])

    async def read(j: Any) -> list[Any]:
        sub = await j.subscribe(f"{stream}.>", ordered_consumer=True, stream=stream)
        got = [await sub.next_msg(timeout=5) for _ in range(3)]
        await sub.unsubscribe()
        return [(m.subject, dict(m.headers or {}), msgspec.json.decode(m.data)) for m in got]

    (s1, h1, b1), (s2, h2, b2), (s3, h3, b3) = js(read)
    assert (s1, b1, h1) == (f"{stream}.order", {"n": 1}, {"event_type": "Created", "Nats-Msg-Id": "pipe:bus:1"})
    assert (s2, b2, h2["event_type"]) == (f"{stream}.customer", {"n": 2}, "Moved")
    assert s3 == f"{stream}.orders" and b3["after"] == {"id": 3} and h3 == {"Nats-Msg-Id": "pipe:all:3"}


@pytest.fixture
def exchange() -> Any:
    yield from amqp_scratch(queues=("_order", "_customer"), exchanges=("",))


def test_rabbitmq_messages_route_and_carry_headers(exchange: str) -> None:
    bind(exchange, {exchange + "_order": "order", exchange + "_customer": "customer"})
    sink = RabbitmqSink(RabbitmqSinkConfig(id="mq", exchange=exchange, routing_key="${route}"), SinkContext("p", int))
    write_all(sink, [message_batch()])
    (order,) = drain(exchange + "_order")
    (customer,) = drain(exchange + "_customer")
    assert msgspec.json.decode(order.body) == {"n": 1} and order.headers == {"event_type": "Created"}
    assert msgspec.json.decode(customer.body) == {"n": 2} and customer.headers == {"event_type": "Moved"}
    assert order.message_id == "p:mq:1"


def test_http_event_mode_sends_headers_and_batch_mode_the_bodies() -> None:
    server = RecordingServer().start()
    try:
        cfg = HttpSinkConfig(id="h", url=server.url + "/${route}", mode="event")
        write_all(HttpSink(cfg, SinkContext("p", int)), [message_batch()])
        posts = server.posts
        assert [p["path"] for p in posts] == ["/ingest/order", "/ingest/customer", "/ingest/"]
        assert [p["body"] for p in posts[:2]] == [{"n": 1}, {"n": 2}]
        heads = [{k.lower(): v for k, v in p["headers"].items()} for p in posts]
        assert heads[0]["event_type"] == "Created" and heads[1]["event_type"] == "Moved"
        assert "event_type" not in heads[2]
        server.posts.clear()
        write_all(HttpSink(HttpSinkConfig(id="h", url=server.url), SinkContext("p", int)), [message_batch()])
        (post,) = server.posts
        assert post["body"][:2] == [{"n": 1}, {"n": 2}] and post["body"][2]["after"] == {"id": 3}
    finally:
        server.stop()
