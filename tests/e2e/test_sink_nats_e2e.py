"""Generator -> NATS JetStream through a real `tidegate serve` (HTTP API only).

Every event arrives exactly once (count and ids, Nats-Msg-Id dedup), routing
templates split by table, each envelope has its shape; with nats-server stopped
mid-stream the pipeline holds (`ops.sink_errors` names the sink) and then
delivers everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.support import port_open, require_service, wait_until
from tests.support.sinks import NATS_URL as URL
from tests.support.sinks import js, outage_then_recovery
from tests.support.supervisor import Supervisor, generator_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def name() -> Any:
    require_service("nats", "127.0.0.1", 4222)
    base = f"tg_nats_{uuid.uuid4().hex[:10]}"

    async def add(j: Any) -> None:
        await j.add_stream(name=base, subjects=[f"{base}.>"], storage="file")

    js(add)
    yield base

    async def drop(j: Any) -> None:
        await j.delete_stream(base)

    js(drop)


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


def sink(sid: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {"type": "nats", "config": {"id": sid, "url": URL, "subject": subject, **extra}}


def messages(stream: str, prefix: str) -> list[tuple[str, dict[str, str], Any]]:
    """Every message of the stream whose subject starts with `prefix`: (subject, headers, body)."""

    async def read(j: Any) -> list[Any]:
        total = (await j.stream_info(stream)).state.messages
        out: list[Any] = []
        sub = await j.subscribe(f"{stream}.>", ordered_consumer=True, stream=stream)
        for _ in range(total):
            m = await sub.next_msg(timeout=5)
            out.append((m.subject, dict(m.headers or {}), msgspec.json.decode(m.data)))
        await sub.unsubscribe()
        return out

    return [m for m in js(read) if m[0].startswith(prefix)]


def test_generator_to_nats_every_event_routing_and_envelopes(supervisor: Supervisor, name: str) -> None:
    pipe = name.replace("_", "-")
    n = 3000
    supervisor.create(
        generator_spec(
            pipe,
            [
                sink("native", name + ".native.${source.table}", stream=name),
                sink("dbz", name + ".dbz", envelope="debezium"),
                sink("ce", name + ".ce", envelope="cloudevents"),
            ],
            tables=["shop.orders", "shop.items"],
            count=n,
            payload_bytes=50,
        )
    )
    for sid in ("native", "dbz", "ce"):
        supervisor.wait_position(pipe, sid, n, timeout=60)
    every = messages(name, name)
    orders = [m for m in every if m[0] == f"{name}.native.orders"]
    items = [m for m in every if m[0] == f"{name}.native.items"]
    assert [b["after"]["id"] for _s, _h, b in orders] == list(range(1, n + 1, 2))
    assert [b["after"]["id"] for _s, _h, b in items] == list(range(2, n + 1, 2))
    assert orders[0][1]["Nats-Msg-Id"] == f"{pipe}:native:1"
    dbz = [m for m in every if m[0] == f"{name}.dbz"]
    assert [b["payload"]["after"]["id"] for _s, _h, b in dbz] == list(range(1, n + 1))
    assert all(b["schema"] is None for _s, _h, b in dbz)
    ce = [m for m in every if m[0] == f"{name}.ce"]
    assert [b["data"]["after"]["id"] for _s, _h, b in ce] == list(range(1, n + 1))
    for _s, h, b in ce[:50]:
        assert b["specversion"] == "1.0" and b["id"] == h["Nats-Msg-Id"]
        assert b["source"] == f"tidegate/{pipe}" and b["type"] == "io.tidegate.change.c"
        assert b["subject"] == f"shop.{b['data']['source']['table']}" and b["time"].endswith("Z")


def test_nats_stopped_mid_stream_holds_then_delivers_everything(supervisor: Supervisor, name: str) -> None:
    pipe = name.replace("_", "-")
    supervisor.create(generator_spec(pipe, [sink("bus", name + ".events")], count=0, rate=1000, payload_bytes=50))

    def stop_nats() -> None:
        os.kill(nats_server_pid(), signal.SIGTERM)
        wait_until(lambda: not port_open("127.0.0.1", 4222, 0.2), 30, message="nats-server to stop")

    _held, final = outage_then_recovery(
        supervisor,
        pipe,
        "bus",
        "nats",
        stop_server=stop_nats,
        start_server=lambda: subprocess.run(["bash", str(ROOT / "scripts/services/nats.sh")], check=True, timeout=30),
        error_names="sink 'bus': nats 127.0.0.1:4222",
    )
    ids = [b["after"]["id"] for _s, _h, b in messages(name, f"{name}.events")]
    assert len(ids) == len(set(ids))  # exactly once: Nats-Msg-Id dedup
    assert set(ids) >= set(range(1, final + 1))
