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
from tests.support import wait_until
from tests.support.sinks import kill_worker_and_wait_restart
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
    n = 12000
    spec = generator_spec(
        pipe,
        [kafka("bus", tansu.bootstrap, base, client_conf={"message.timeout.ms": 2000})],
        count=n,
        rate=3000,
        payload_bytes=50,
    )
    spec["spec"]["batch"] = {"max_inflight": max_inflight}
    supervisor.create(spec)
    supervisor.wait_position(pipe, "bus", 1500, timeout=30)
    tansu.stop()
    try:
        info = wait_until(
            lambda: (i := supervisor.info(pipe))["ops"]["sink_errors"].get("bus") and i,
            30,
            message="ops.sink_errors to name the kafka sink",
        )
        assert f"sink 'bus': kafka {tansu.bootstrap}" in info["ops"]["sink_errors"]["bus"]
        assert info["status"] == "running"
        held = int(info["ops"]["checkpoints"]["bus"]["position"])
        assert held < n
        # still holding: the checkpoint does not move while the broker is away
        assert int(supervisor.info(pipe)["ops"]["checkpoints"]["bus"]["position"]) == held
    finally:
        tansu.start()
    supervisor.wait_position(pipe, "bus", n, timeout=60)
    info = supervisor.info(pipe)
    assert info["status"] == "running" and not info["ops"]["sink_errors"]
    # tansu keeps topics in memory: what it held before the kill is gone; everything after arrives
    got = set(ids(consume(tansu.bootstrap, base)))
    assert set(range(held + 1, n + 1)) <= got


@pytest.mark.parametrize("max_inflight", [1, 8])
def test_exactly_once_no_duplicates_after_worker_sigkill(
    supervisor: Supervisor,
    tansu: Tansu,  # noqa: F811
    max_inflight: int,
) -> None:
    """max_inflight 8: batches queued together go out as one transaction."""
    base, pipe = names()
    n = 30000
    spec = generator_spec(
        pipe, [kafka("eos", tansu.bootstrap, base, exactly_once=True)], count=n, rate=6000, payload_bytes=50
    )
    spec["spec"]["batch"] = {"max_inflight": max_inflight}
    supervisor.create(spec)
    supervisor.wait_position(pipe, "eos", 5000, timeout=30)
    kill_worker_and_wait_restart(supervisor, pipe)
    supervisor.wait_position(pipe, "eos", n, timeout=90)
    got = ids(consume(tansu.bootstrap, base))
    assert len(got) - len(set(got)) == 0, f"{len(got) - len(set(got))} duplicates"
    assert sorted(got) == list(range(1, n + 1))
