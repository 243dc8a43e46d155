"""Generator -> RabbitMQ through a real `tidegate serve` (HTTP API only).

Every event arrives (count and ids, persistent, message_id), routing keys split
by table, each envelope has its shape; with the broker stopped mid-stream
(`rabbitmqctl stop_app`) the pipeline holds (`ops.sink_errors` names the sink)
and then delivers everything.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.support.sinks import AMQP_URL as URL
from tests.support.sinks import amqp_scratch, bind, bind_existing, drain, outage_then_recovery
from tests.support.supervisor import Supervisor, generator_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def name() -> Any:
    yield from amqp_scratch(queues=("_orders", "_items", "_dbz", "_ce", "_all"), exchanges=("", "_dbz", "_ce"))


def sink(sid: str, exchange: str, **extra: Any) -> dict[str, Any]:
    return {"type": "rabbitmq", "config": {"id": sid, "url": URL, "exchange": exchange, **extra}}


def ids_of(msgs: list[Any], path: tuple[str, ...] = ("after", "id")) -> list[int]:
    out = []
    for m in msgs:
        v: Any = msgspec.json.decode(m.body)
        for k in path:
            v = v[k]
        out.append(v)
    return out


def test_generator_to_rabbitmq_every_event_routing_and_envelopes(supervisor: Supervisor, name: str) -> None:
    pipe = name.replace("_", "-")
    n = 1000
    bind(name, {name + "_orders": "shop.orders", name + "_items": "shop.items"})
    bind(name + "_dbz", {name + "_dbz": "#"})
    bind(name + "_ce", {name + "_ce": "#"})
    supervisor.create(
        generator_spec(
            pipe,
            [
                sink("native", name, routing_key="${source.db}.${source.table}"),
                sink("dbz", name + "_dbz", envelope="debezium", declare=False),
                sink("ce", name + "_ce", envelope="cloudevents"),
            ],
            tables=["shop.orders", "shop.items"],
            count=n,
            payload_bytes=50,
        )
    )
    for sid in ("native", "dbz", "ce"):
        supervisor.wait_position(pipe, sid, n, timeout=60)
    orders = drain(name + "_orders")
    assert ids_of(orders) == list(range(1, n + 1, 2))
    assert ids_of(drain(name + "_items")) == list(range(2, n + 1, 2))
    assert orders[0].message_id == f"{pipe}:native:1" and orders[0].delivery_mode == 2
    dbz = drain(name + "_dbz")
    assert ids_of(dbz, ("payload", "after", "id")) == list(range(1, n + 1))
    assert msgspec.json.decode(dbz[0].body)["schema"] is None
    ce = drain(name + "_ce")
    assert ids_of(ce, ("data", "after", "id")) == list(range(1, n + 1))
    for m in ce[:50]:
        b = msgspec.json.decode(m.body)
        assert b["specversion"] == "1.0" and b["id"] == m.message_id
        assert b["source"] == f"tidegate/{pipe}" and b["type"] == "io.tidegate.change.c"
        assert b["subject"] == f"shop.{b['data']['source']['table']}" and b["time"].endswith("Z")


def test_publishes_into_the_builtin_amq_direct_exchange_as_it_is(supervisor: Supervisor, name: str) -> None:
    """An existing exchange of another type than the sink's default (topic) is used as it is."""
    pipe = name.replace("_", "-")
    bind_existing("amq.direct", {name + "_all": name + ".key"})
    supervisor.create(generator_spec(pipe, [sink("mq", "amq.direct", routing_key=name + ".key")], count=500))
    supervisor.wait_position(pipe, "mq", 500, timeout=60)
    info = supervisor.info(pipe)
    assert info["status"] == "running" and not info["ops"]["sink_errors"]
    assert info["spec"]["spec"]["sinks"][0]["config"]["routing_key"] == name + ".key"  # shown, not redacted
    assert ids_of(drain(name + "_all")) == list(range(1, 501))


def run(args: list[str], **kw: Any) -> None:
    subprocess.run(args, check=True, **kw)


def test_rabbitmq_stopped_mid_stream_holds_then_delivers_everything(supervisor: Supervisor, name: str) -> None:
    pipe = name.replace("_", "-")
    bind(name, {name + "_all": "#"})
    # unbounded count: the stream outlasts `rabbitmqctl stop_app`, however slow it is here
    supervisor.create(generator_spec(pipe, [sink("mq", name)], count=0, rate=1000, payload_bytes=50))
    _held, final = outage_then_recovery(
        supervisor,
        pipe,
        "mq",
        "rabbitmq",
        stop_server=lambda: run(["rabbitmqctl", "-q", "stop_app"], timeout=60, capture_output=True),
        start_server=lambda: run(["bash", str(ROOT / "scripts/services/rabbitmq.sh")], timeout=120),
        error_names="sink 'mq': rabbitmq 127.0.0.1:5672",
    )
    assert set(ids_of(drain(name + "_all"))) >= set(range(1, final + 1))  # at least once
