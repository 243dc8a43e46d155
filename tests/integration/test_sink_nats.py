"""NatsSink against the real NATS + JetStream on 127.0.0.1:4222 (scripts/services/nats.sh).

Streams are named `tg_nats_<random>` (subjects `<name>.>`, file storage) and
deleted afterwards. The server stopped mid-stream is shown once, end to end, in
tests/e2e/test_sink_nats_e2e.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shared.errors import SinkError
from shared.spec.model import NatsSinkConfig
from tests.support import free_port, port_open, require_service, wait_until
from tests.support.sinks import batch, events, js, write_all
from worker.sinks.base import SinkContext
from worker.sinks.nats import NatsSink, default_stream_name


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def name() -> Any:
    require_service("nats", "127.0.0.1", 4222)
    base = f"tg_nats_{uuid.uuid4().hex[:10]}"
    created: list[str] = []

    async def add(js: Any) -> None:
        await js.add_stream(name=base, subjects=[f"{base}.>"], storage="file")

    js(add)
    created.append(base)
    yield base

    async def drop(js: Any) -> None:
        for s in created + [default_stream_name("pipe", base)]:
            try:
                await js.delete_stream(s)
            except Exception:  # noqa: BLE001 - not created by this test
                pass

    js(drop)


def make_sink(**cfg: Any) -> NatsSink:
    return NatsSink(NatsSinkConfig(id=cfg.pop("id", "bus"), **cfg), SinkContext("pipe", int))


def messages(stream: str, subjects: str) -> list[tuple[str, dict[str, str], Any]]:
    """Every message of the stream: (subject, headers, decoded body), in stream order."""

    async def read(js: Any) -> list[Any]:
        total = (await js.stream_info(stream)).state.messages
        out: list[Any] = []
        if total == 0:
            return out
        sub = await js.subscribe(subjects, ordered_consumer=True, stream=stream)
        while len(out) < total:
            m = await sub.next_msg(timeout=5)
            out.append((m.subject, dict(m.headers or {}), msgspec.json.decode(m.data)))
        await sub.unsubscribe()
        return out

    return js(read)


def test_every_event_arrives_with_msg_id_and_replay_is_deduplicated(name: str) -> None:
    sink = make_sink(subject=f"{name}.events")
    bs = [batch(s + 1, events(s * 500 + 1, 500)) for s in range(3)]
    write_all(sink, bs + [bs[1], bs[2]])  # a replay of batches 2 and 3
    got = messages(name, f"{name}.>")
    assert [body["after"]["id"] for _s, _h, body in got] == list(range(1, 1501))
    assert [h["Nats-Msg-Id"] for _s, h, _b in got] == [f"pipe:bus:{i}" for i in range(1, 1501)]


def test_routing_template_splits_by_table(name: str) -> None:
    write_all(
        make_sink(subject=name + ".${source.db}.${source.table}.${op}"),
        [batch(1, events(1, 300, ("shop.orders", "shop.items", "crm.users")))],
    )
    got = messages(name, f"{name}.>")
    for i, suffix in enumerate(["shop.orders.c", "shop.items.c", "crm.users.c"]):
        assert [b["after"]["id"] for s, _h, b in got if s == f"{name}.{suffix}"] == list(range(i + 1, 301, 3))


@pytest.mark.parametrize("envelope", ["debezium", "cloudevents"])
def test_envelope_shapes(name: str, envelope: str) -> None:
    evs = events(1, 4)
    write_all(make_sink(subject=f"{name}.e", envelope=envelope), [batch(1, evs)])
    for ev, (_s, _h, body) in zip(evs, messages(name, f"{name}.>")):
        if envelope == "debezium":
            assert body == {"schema": None, "payload": {k: ev[k] for k in ("before", "after", "source", "op", "ts_ms")}}
        else:
            assert body["specversion"] == "1.0" and body["id"] == f"pipe:bus:{ev['source']['position']}"
            assert body["source"] == "tidegate/pipe" and body["type"] == "io.tidegate.change.c"
            assert body["subject"] == f"demo.{ev['source']['table']}" and body["data"] == ev
            assert body["datacontenttype"] == "application/json" and body["time"].endswith("Z")


def test_missing_stream_is_fatal_unless_create_stream(name: str) -> None:
    other = name + "x"  # no stream captures `<name>x.*`

    async def go() -> SinkError:
        sink = make_sink(subject=other + ".${source.table}")
        with pytest.raises(SinkError) as ei:
            await sink.open()
        await sink.close()
        return ei.value

    err = run(go())
    assert not err.retryable and "no JetStream stream captures subject" in err.message
    assert f"'{other}.*'" in err.message and "create_stream" in err.message

    sink = make_sink(id=name, subject=other + ".${source.table}", create_stream=True)
    write_all(sink, [batch(1, events(1, 10))])
    created = default_stream_name("pipe", name)
    assert sink._stream == created
    assert sorted(b["after"]["id"] for _s, _h, b in messages(created, f"{other}.>")) == list(range(1, 11))


@pytest.mark.parametrize("create", [False, True])
def test_stream_deleted_while_running(name: str, create: bool) -> None:
    async def go() -> tuple[SinkError, bool]:
        sink = make_sink(subject=f"{name}.${{source.table}}", stream=name, create_stream=create)
        await sink.open()
        await sink.write(batch(1, events(1, 10)))
        await sink._js.delete_stream(name)
        with pytest.raises(SinkError) as ei:
            await sink.write(batch(2, events(11, 10)))
        delivered = False
        if ei.value.retryable:  # the runtime retries the same batch
            await sink.write(batch(2, events(11, 10)))
            delivered = True
        await sink.close()
        return ei.value, delivered

    err, delivered = run(go())
    if create:
        assert err.retryable and "created again" in err.message and delivered
        assert sorted(b["after"]["id"] for _s, _h, b in messages(name, f"{name}.>")) == list(range(11, 21))
    else:
        assert not err.retryable and "no JetStream stream captures subject" in err.message
        js(lambda j: j.add_stream(name=name, subjects=[f"{name}.>"]))  # for the fixture's cleanup


def test_message_too_large_is_fatal(name: str) -> None:
    async def go() -> SinkError:
        sink = make_sink(subject=f"{name}.big")
        await sink.open()
        with pytest.raises(SinkError) as ei:
            await sink.write(batch(1, events(1, 1, payload=2 * 1024 * 1024)))
        await sink.close()
        return ei.value

    err = run(go())
    assert not err.retryable and "max_payload" in err.message


def test_bad_credentials_are_fatal(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        ["/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(port), "--user", "tg", "--pass", "right"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: port_open("127.0.0.1", port), 10, message="private nats-server")

        async def go() -> SinkError:
            sink = make_sink(subject="tg_nats_auth.x", url=f"nats://tg:wrong@127.0.0.1:{port}")
            with pytest.raises(SinkError) as ei:
                await sink.open()
            await sink.close()
            return ei.value

        err = run(go())
        assert not err.retryable and "credentials" in err.message, err.message
    finally:
        proc.terminate()
        proc.wait(10)


def test_unreachable_server_is_retryable() -> None:
    async def go() -> SinkError:
        sink = make_sink(subject="tg_nats_x.y", url=f"nats://127.0.0.1:{free_port()}")
        with pytest.raises(SinkError) as ei:
            await sink.open()
        return ei.value

    err = run(go())
    assert err.retryable and "unreachable" in err.message
