"""RedisSink against the real Redis on 127.0.0.1:6379 (scripts/services/redis.sh).

Streams are named `tg_redis_<random>...` and deleted afterwards. The server
stopped mid-stream is shown once, end to end, in tests/e2e/test_sink_redis_e2e.py.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec
import pytest
import redis

from shared.errors import SinkError
from shared.spec.model import RedisSinkConfig
from tests.support import free_port, require_service
from tests.support.sinks import REDIS_URL as URL
from tests.support.sinks import batch, events, redis_scratch
from worker.sinks.base import SinkBatch, SinkContext
from worker.sinks.redis import RedisSink


@pytest.fixture(autouse=True)
def _redis_up() -> None:
    require_service("redis", "127.0.0.1", 6379)


@pytest.fixture
def name() -> Any:
    yield from redis_scratch(f"tg_redis_{uuid.uuid4().hex[:10]}")


def make_sink(**cfg: Any) -> RedisSink:
    return RedisSink(RedisSinkConfig(id=cfg.pop("id", "cache"), **cfg), SinkContext("pipe", int))


def entries(stream: str) -> list[dict[str, Any]]:
    r = redis.Redis.from_url(URL)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in r.xrange(stream)]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize("fast", [True, False], ids=["packed", "redis-py-pipeline"])
def test_every_event_arrives_with_idempotency_keys(name: str, fast: bool) -> None:
    async def go() -> None:
        sink = make_sink(stream=name)
        sink.fast = fast
        await sink.open()
        for seq in range(3):
            evs = events(seq * 500 + 1, 500)
            native = [msgspec.json.encode(e) for e in evs] if seq == 1 else None  # pre-encoded path too
            await sink.write(SinkBatch(seq + 1, evs, evs[-1]["source"]["position"], native))
        await sink.close()

    run(go())
    got = entries(name)
    assert [msgspec.json.decode(e["event"])["after"]["id"] for e in got] == list(range(1, 1501))
    assert [e["idempotency_key"] for e in got] == [f"pipe:cache:{i}" for i in range(1, 1501)]
    assert set(got[0]) == {"event", "idempotency_key"}


@pytest.mark.parametrize("fast", [True, False], ids=["packed", "redis-py-pipeline"])
def test_routing_template_splits_by_table(name: str, fast: bool) -> None:
    async def go() -> None:
        sink = make_sink(stream=name + "_${source.db}_${source.table}_${op}")
        sink.fast = fast
        await sink.open()
        await sink.write(batch(1, events(1, 300, ("shop.orders", "shop.items", "crm.users"))))
        await sink.close()

    run(go())
    for i, suffix in enumerate(["shop_orders_c", "shop_items_c", "crm_users_c"]):
        ids = [msgspec.json.decode(e["event"])["after"]["id"] for e in entries(f"{name}_{suffix}")]
        assert ids == list(range(i + 1, 301, 3))


@pytest.mark.parametrize("envelope", ["native", "debezium", "cloudevents"])
def test_envelope_shapes(name: str, envelope: str) -> None:
    evs = events(1, 4)

    async def go() -> None:
        sink = make_sink(stream=name, envelope=envelope)
        await sink.open()
        await sink.write(batch(1, evs))
        await sink.close()

    run(go())
    bodies = [msgspec.json.decode(e["event"]) for e in entries(name)]
    for ev, body in zip(evs, bodies):
        if envelope == "native":
            assert body == ev
        elif envelope == "debezium":
            assert body == {"schema": None, "payload": {k: ev[k] for k in ("before", "after", "source", "op", "ts_ms")}}
        else:
            pos = ev["source"]["position"]
            assert body["specversion"] == "1.0" and body["id"] == f"pipe:cache:{pos}"
            assert body["source"] == "tidegate/pipe" and body["type"] == "io.tidegate.change.c"
            assert body["subject"] == f"demo.{ev['source']['table']}"
            assert body["datacontenttype"] == "application/json" and body["data"] == ev
            assert body["time"].startswith("2024-11-28T13:20:00.") and body["time"].endswith("Z")


@pytest.mark.parametrize("fast", [True, False], ids=["packed", "redis-py-pipeline"])
def test_maxlen_trims_approximately(name: str, fast: bool) -> None:
    async def go() -> None:
        sink = make_sink(stream=name, maxlen=100)
        sink.fast = fast
        await sink.open()
        for seq in range(5):
            await sink.write(batch(seq + 1, events(seq * 400 + 1, 400)))
        await sink.close()

    run(go())
    n = redis.Redis.from_url(URL).xlen(name)
    assert 100 <= n < 400, n


def test_fatal_errors_name_the_cause(name: str) -> None:
    redis.Redis.from_url(URL).set(name, "not a stream")

    async def go() -> list[SinkError]:
        errs = []
        for sink in (make_sink(stream=name), make_sink(stream=name + "_s", url="redis://nobody:pw@127.0.0.1:6379/0")):
            with pytest.raises(SinkError) as ei:
                await sink.open()
            errs.append(ei.value)
            await sink.close()
        return errs

    wrong_type, bad_auth = run(go())
    assert not wrong_type.retryable and "holds a string" in wrong_type.message and "'cache'" in wrong_type.message
    assert not bad_auth.retryable and "credentials" in bad_auth.message


@pytest.mark.parametrize("fast", [True, False], ids=["packed", "redis-py-pipeline"])
def test_error_reply_in_a_batch_is_fatal_and_the_rest_lands(name: str, fast: bool) -> None:
    redis.Redis.from_url(URL).set(name + "_b", "not a stream")  # table b's stream is a string

    async def go() -> SinkError:
        sink = make_sink(stream=name + "_${source.table}")
        sink.fast = fast
        await sink.open()
        with pytest.raises(SinkError) as ei:
            await sink.write(batch(1, events(1, 10)))
        await sink.close()
        return ei.value

    err = run(go())
    assert not err.retryable and "WRONGTYPE" in err.message
    assert len(entries(name + "_a")) == 5


def test_unreachable_server_is_retryable(name: str) -> None:
    async def go() -> SinkError:
        sink = make_sink(stream=name, url=f"redis://127.0.0.1:{free_port()}/0")
        with pytest.raises(SinkError) as ei:
            await sink.open()
        await sink.close()
        return ei.value

    err = run(go())
    assert err.retryable and "connection failed" in err.message
