"""RabbitmqSink against the real RabbitMQ on 127.0.0.1:5672 (scripts/services/rabbitmq.sh).

Exchanges and queues are named `tg_rabbitmq_<random>...` (durable queues bound
before writing) and deleted afterwards. The broker stopped mid-stream is shown
once, end to end, in tests/e2e/test_sink_rabbitmq_e2e.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import msgspec
import pytest

from shared.errors import SinkError
from shared.spec.model import RabbitmqSinkConfig
from tests.support import free_port
from tests.support.sinks import amqp_scratch, batch, bind, drain, events, write_all
from worker.sinks.base import SinkContext
from worker.sinks.rabbitmq import RabbitmqSink


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def name() -> Any:
    yield from amqp_scratch(queues=("", "_a", "_b", "_all"), exchanges=("",))


def make_sink(**cfg: Any) -> RabbitmqSink:
    return RabbitmqSink(RabbitmqSinkConfig(id=cfg.pop("id", "mq"), **cfg), SinkContext("pipe", int))


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
    assert [m.routing_key for m in got[:2]] == ["a", "b"]  # default routing_key ${source.table}


def test_routing_template_splits_by_table(name: str) -> None:
    bind(name, {name + "_a": "shop.orders.c", name + "_b": "shop.items.*"})
    write_all(
        make_sink(exchange=name, routing_key="${source.db}.${source.table}.${op}"),
        [batch(1, events(1, 200, ("shop.orders", "shop.items")))],
    )
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
            assert body == {"schema": None, "payload": {k: ev[k] for k in ("before", "after", "source", "op", "ts_ms")}}
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
    bad_auth = open_error(make_sink(exchange=name, url="amqp://guest:wrong@127.0.0.1:5672/"))
    assert not bad_auth.retryable and "credentials" in bad_auth.message


@pytest.mark.parametrize("declared_as", ["fanout", "direct"])
def test_an_existing_exchange_of_another_type_is_used_as_it_is(name: str, declared_as: str) -> None:
    """The sink's `exchange_type` (default topic) only applies to an exchange it must create."""
    bind(name, {name + "_all": "k"}, exchange_type=declared_as)
    write_all(make_sink(exchange=name, routing_key="k"), [batch(1, events(1, 5))])
    assert len(drain(name + "_all")) == 5


def test_a_missing_exchange_is_declared_with_the_configured_type(name: str) -> None:
    bind_after = name + "_all"
    write_all(make_sink(exchange=name, exchange_type="fanout", routing_key="any"), [])  # opens: declares
    bind(name, {bind_after: ""}, exchange_type="fanout")  # passes only if it exists as fanout
    write_all(make_sink(exchange=name, routing_key="any"), [batch(1, events(1, 3))])
    assert len(drain(bind_after)) == 3


def test_unreachable_broker_is_retryable() -> None:
    err = open_error(make_sink(exchange="x", url=f"amqp://guest:guest@127.0.0.1:{free_port()}/"))
    assert err.retryable and "rabbitmq 127.0.0.1:" in err.message
