"""Generator -> Redis Streams through a real `tidegate serve` (HTTP API only).

Every event arrives (count and ids), routing templates split by table, each
envelope has its shape; with Redis stopped mid-stream the pipeline holds
(`ops.sink_errors` names the sink) and then delivers everything.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

from tests.support import require_service
from tests.support.sinks import REDIS_URL as URL
from tests.support.sinks import outage_then_recovery, redis_scratch
from tests.support.supervisor import Supervisor, generator_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def name() -> Any:
    require_service("redis", "127.0.0.1", 6379)
    yield from redis_scratch(f"tg_redis_{uuid.uuid4().hex[:10]}")


def sink(sid: str, stream: str, **extra: Any) -> dict[str, Any]:
    return {"type": "redis", "config": {"id": sid, "url": URL, "stream": stream, **extra}}


def bodies(stream: str) -> list[tuple[str, Any]]:
    r = redis.Redis.from_url(URL)
    return [(f[b"idempotency_key"].decode(), msgspec.json.decode(f[b"event"])) for _id, f in r.xrange(stream)]


def test_generator_to_redis_every_event_routing_and_envelopes(supervisor: Supervisor, name: str) -> None:
    pipe = name.replace("_", "-")
    n = 3000
    supervisor.create(
        generator_spec(
            pipe,
            [
                sink("native", name + "_${source.table}"),
                sink("dbz", name + "_dbz", envelope="debezium"),
                sink("ce", name + "_ce", envelope="cloudevents"),
            ],
            tables=["shop.orders", "shop.items"],
            count=n,
            payload_bytes=50,
        )
    )
    for sid in ("native", "dbz", "ce"):
        supervisor.wait_position(pipe, sid, n, timeout=60)
    orders, items = bodies(name + "_orders"), bodies(name + "_items")
    assert [b["after"]["id"] for _k, b in orders] == list(range(1, n + 1, 2))
    assert [b["after"]["id"] for _k, b in items] == list(range(2, n + 1, 2))
    assert {b["source"]["table"] for _k, b in orders} == {"orders"}
    assert orders[0][0] == f"{pipe}:native:1"
    dbz = bodies(name + "_dbz")
    assert [b["payload"]["after"]["id"] for _k, b in dbz] == list(range(1, n + 1))
    assert all(
        b["schema"] is None and set(b["payload"]) == {"before", "after", "source", "op", "ts_ms"} for _k, b in dbz
    )
    ce = bodies(name + "_ce")
    assert [b["data"]["after"]["id"] for _k, b in ce] == list(range(1, n + 1))
    for key, b in ce[:50]:
        assert b["specversion"] == "1.0" and b["id"] == key == f"{pipe}:ce:{b['data']['source']['position']}"
        assert b["source"] == f"tidegate/{pipe}" and b["type"] == "io.tidegate.change.c"
        assert b["subject"] == f"shop.{b['data']['source']['table']}"
        assert b["datacontenttype"] == "application/json" and b["time"].endswith("Z")


def test_redis_stopped_mid_stream_holds_then_delivers_everything(supervisor: Supervisor, name: str) -> None:
    pipe = name.replace("_", "-")
    supervisor.create(generator_spec(pipe, [sink("cache", name)], count=0, rate=1000, payload_bytes=50))
    before: list[tuple[str, Any]] = []

    def stop_redis() -> None:
        r = redis.Redis.from_url(URL)
        # freeze writes, keep what was acknowledged, stop the server (nosave loses the rest of memory)
        r.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
        before.extend(bodies(name))
        try:
            r.execute_command("SHUTDOWN", "NOSAVE")
        except redis.exceptions.ConnectionError:
            pass

    _held, final = outage_then_recovery(
        supervisor,
        pipe,
        "cache",
        "redis",
        stop_server=stop_redis,
        start_server=lambda: subprocess.run(["bash", str(ROOT / "scripts/services/redis.sh")], check=True, timeout=30),
        error_names="sink 'cache': redis 127.0.0.1:6379",
    )
    ids = {b["after"]["id"] for _k, b in before + bodies(name)}
    assert ids >= set(range(1, final + 1))
