"""Generator -> Kafka (a tansu broker) through a real `tidegate serve` (HTTP API only).

Every event arrives, routing by table, envelopes; the broker killed mid-stream:
the pipeline holds (`ops.sink_errors` names the sink) and then delivers; the
`exactly_once` sink ends with every event exactly once for a read_committed
reader after the worker is SIGKILLed mid-stream.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from tests.integration.test_sink_kafka import consume, ids
from tests.support.sinks import kill_while_flowing, outage_then_recovery
from tests.support.supervisor import Supervisor, generator_spec
from tests.support.tansu import Tansu, tansu  # noqa: F401 - fixture


def kafka(sid: str, brokers: str, topic: str, **extra: Any) -> dict[str, Any]:
    return {"type": "kafka", "config": {"id": sid, "brokers": brokers, "topic": topic, **extra}}


def names() -> tuple[str, str]:
    base = f"tg_kafka_{uuid.uuid4().hex[:10]}"
    return base, base.replace("_", "-")


def test_generator_to_kafka_every_event_routing_envelopes(supervisor: Supervisor, tansu: Tansu) -> None:  # noqa: F811
    base, pipe = names()
    n = 4000
    b = tansu.bootstrap
    supervisor.create(
        generator_spec(
            pipe,
            [
                kafka("routed", b, base + "_${source.table}"),
                kafka("eos", b, base + "_eos", exactly_once=True),
                kafka("dbz", b, base + "_dbz", envelope="debezium"),
                kafka("ce", b, base + "_ce", envelope="cloudevents"),
            ],
            tables=["shop.orders", "shop.items"],
            count=n,
            payload_bytes=50,
        )
    )
    for sid in ("routed", "eos", "dbz", "ce"):
        supervisor.wait_position(pipe, sid, n, timeout=60)
    orders = consume(b, base + "_orders")
    assert sorted(ids(orders)) == list(range(1, n + 1, 2))
    assert sorted(ids(consume(b, base + "_items"))) == list(range(2, n + 1, 2))
    assert all(m.key() == b'{"id":%d}' % msgspec.json.decode(m.value())["after"]["id"] for m in orders)
    assert sorted(ids(consume(b, base + "_eos"))) == list(range(1, n + 1))
    dbz = [msgspec.json.decode(m.value()) for m in consume(b, base + "_dbz")]
    assert sorted(x["payload"]["after"]["id"] for x in dbz) == list(range(1, n + 1))
    assert all(x["schema"] is None and x["payload"]["op"] == "c" for x in dbz)
    ce = [msgspec.json.decode(m.value()) for m in consume(b, base + "_ce")]
    assert sorted(x["data"]["after"]["id"] for x in ce) == list(range(1, n + 1))
    x = ce[0]
    assert x["specversion"] == "1.0" and x["id"] == f"{pipe}:ce:{x['data']['source']['position']}"
    assert x["source"] == f"tidegate/{pipe}" and x["type"] == "io.tidegate.change.c"


@pytest.mark.parametrize("max_inflight", [1, 8])
def test_broker_killed_mid_stream_holds_then_delivers(
    supervisor: Supervisor,
    tansu: Tansu,  # noqa: F811
    max_inflight: int,
) -> None:
    """max_inflight 8: batches queued behind the outage go out in groups (one flush each)."""
    base, pipe = names()
    spec = generator_spec(
        pipe,
        [kafka("bus", tansu.bootstrap, base, client_conf={"message.timeout.ms": 2000})],
        count=0,
        rate=1500,
        payload_bytes=50,
    )
    spec["spec"]["batch"] = {"max_inflight": max_inflight}
    supervisor.create(spec)
    held, final = outage_then_recovery(
        supervisor,
        pipe,
        "bus",
        "kafka",
        stop_server=tansu.stop,
        start_server=tansu.start,
        error_names=f"sink 'bus': kafka {tansu.bootstrap}",
    )
    # tansu keeps topics in memory: what it held before the kill is gone; everything after arrives
    got = set(ids(consume(tansu.bootstrap, base)))
    assert set(range(held + 1, final + 1)) <= got


@pytest.mark.parametrize("max_inflight", [1, 8])
def test_exactly_once_no_duplicates_after_worker_sigkill(
    supervisor: Supervisor,
    tansu: Tansu,  # noqa: F811
    max_inflight: int,
) -> None:
    """max_inflight 8: batches queued together go out as one transaction."""
    base, pipe = names()
    spec = generator_spec(
        pipe, [kafka("eos", tansu.bootstrap, base, exactly_once=True)], count=0, rate=3000, payload_bytes=50
    )
    spec["spec"]["batch"] = {"max_inflight": max_inflight}
    supervisor.create(spec)
    n = kill_while_flowing(supervisor, pipe, "eos", 3000)
    got = ids(consume(tansu.bootstrap, base))
    assert len(got) - len(set(got)) == 0, f"{len(got) - len(set(got))} duplicates"
    assert sorted(got) == list(range(1, n + 1))
