"""NatsSink against the real NATS + JetStream on 127.0.0.1:4222 (scripts/services/nats.sh).

Streams are named `tg_nats_<random>` (subjects `<name>.>`, file storage) and
deleted afterwards. The restart test stops the shared nats-server once
(SIGTERM to the process serving port 4222) and starts it again with the
service script; JetStream keeps the stream on disk across the restart.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from shared.errors import SinkError
from shared.events import make_event
from shared.spec.model import NatsSinkConfig
from tests.support import free_port, port_open, require_service, wait_until
from worker.sinks.base import SinkBatch, SinkContext
from worker.sinks.nats import NatsSink, default_stream_name

ROOT = Path(__file__).resolve().parents[2]
URL = "nats://127.0.0.1:4222"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _js(fn: Any) -> Any:
    nc = await nats.connect(URL, connect_timeout=5, max_reconnect_attempts=3)
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


def js(fn: Any) -> Any:
    return run(_js(fn))


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
            except Exception:   # noqa: BLE001 - not created by this test
                pass
    js(drop)


def events(start: int, n: int, tables: tuple[str, ...] = ("demo.a", "demo.b"),
           payload: int = 20) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        db, table = tables[(i - 1) % len(tables)].split(".")
        out.append(make_event("c", 1732800000000 + i, connector="generator", db=db, schema=None,
                              table=table, position=str(i), tx_id=str(i), source_ts_ms=1732800000000,
                              before=None, after={"id": i, "payload": "x" * payload}))
    return out


def batch(seq: int, evs: list[dict[str, Any]]) -> SinkBatch:
    return SinkBatch(seq=seq, events=evs, last_position=evs[-1]["source"]["position"])


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


def write_all(sink: NatsSink, batches: list[SinkBatch]) -> None:
    async def go() -> None:
        await sink.open()
        for b in batches:
            await sink.write(b)
        await sink.close()
    run(go())


def test_every_event_arrives_with_msg_id_and_replay_is_deduplicated(name: str) -> None:
    sink = make_sink(subject=f"{name}.events")
    bs = [batch(s + 1, events(s * 500 + 1, 500)) for s in range(3)]
    write_all(sink, bs + [bs[1], bs[2]])          # a replay of batches 2 and 3
    got = messages(name, f"{name}.>")
    assert [body["after"]["id"] for _s, _h, body in got] == list(range(1, 1501))
    assert [h["Nats-Msg-Id"] for _s, h, _b in got] == [f"pipe:bus:{i}" for i in range(1, 1501)]


def test_routing_template_splits_by_table(name: str) -> None:
    write_all(make_sink(subject=name + ".${source.db}.${source.table}.${op}"),
              [batch(1, events(1, 300, ("shop.orders", "shop.items", "crm.users")))])
    got = messages(name, f"{name}.>")
    for i, suffix in enumerate(["shop.orders.c", "shop.items.c", "crm.users.c"]):
        assert [b["after"]["id"] for s, _h, b in got if s == f"{name}.{suffix}"] == list(range(i + 1, 301, 3))


@pytest.mark.parametrize("envelope", ["debezium", "cloudevents"])
def test_envelope_shapes(name: str, envelope: str) -> None:
    evs = events(1, 4)
    write_all(make_sink(subject=f"{name}.e", envelope=envelope), [batch(1, evs)])
    for ev, (_s, _h, body) in zip(evs, messages(name, f"{name}.>")):
        if envelope == "debezium":
            assert body == {"schema": None, "payload": {k: ev[k] for k in
                                                        ("before", "after", "source", "op", "ts_ms")}}
        else:
            assert body["specversion"] == "1.0" and body["id"] == f"pipe:bus:{ev['source']['position']}"
            assert body["source"] == "tidegate/pipe" and body["type"] == "io.tidegate.change.c"
            assert body["subject"] == f"demo.{ev['source']['table']}" and body["data"] == ev
            assert body["datacontenttype"] == "application/json" and body["time"].endswith("Z")


def test_missing_stream_is_fatal_unless_create_stream(name: str) -> None:
    other = name + "x"          # no stream captures `<name>x.*`

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
    proc = subprocess.Popen(["/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(port),
                             "--user", "tg", "--pass", "right"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def nats_server_pid() -> int:
    """The nats-server process serving 127.0.0.1:4222 (the one scripts/services/nats.sh starts)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            args = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"nats-server") and b"4222" in args:
            return int(d)
    raise AssertionError("no nats-server process serves port 4222")


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


def test_server_restart_mid_stream_holds_then_delivers_everything(name: str) -> None:
    w = Writer(make_sink(subject=f"{name}.events"), 200, hold_after=5)
    w.thread.start()
    wait_until(lambda: w.done >= 5, 10, message="5 batches written")
    pid = nats_server_pid()
    w.gate.set()
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not port_open("127.0.0.1", 4222, 0.2), 10, message="nats-server to stop")
        wait_until(lambda: w.errors, 20, message="a retryable error while nats is down")
    finally:
        subprocess.run(["bash", str(ROOT / "scripts/services/nats.sh")], check=True, timeout=30)
    at_restart = w.done
    wait_until(lambda: w.done >= at_restart + 3, 30, message="writes to go on after the restart")
    total = w.finish(2)
    assert all("nats 127.0.0.1:4222" in m for m in w.errors), w.errors
    ids = [b["after"]["id"] for _s, _h, b in messages(name, f"{name}.>")]
    assert sorted(ids) == list(range(1, total + 1))      # each exactly once: Nats-Msg-Id dedup
