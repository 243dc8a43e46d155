"""Shared helpers for the message-bus sink tests (integration and e2e): synthetic events and
batches, and small clients for the real NATS / RabbitMQ / Redis servers on loopback.

May import: shared.events, worker.sinks.base, tests.support, and the server client libraries.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aio_pika
import nats
import redis

from shared.events import make_event
from worker.sinks.base import SinkBatch

NATS_URL = "nats://127.0.0.1:4222"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"


def events(
    start: int, n: int, tables: tuple[str, ...] = ("demo.a", "demo.b"), payload: int = 20
) -> list[dict[str, Any]]:
    """`n` create events with ids `start`.., spread round-robin over `tables` ("db.table")."""
    out = []
    for i in range(start, start + n):
        db, table = tables[(i - 1) % len(tables)].split(".")
        out.append(
            make_event(
                "c",
                1732800000000 + i,
                connector="generator",
                db=db,
                schema=None,
                table=table,
                position=str(i),
                tx_id=str(i),
                source_ts_ms=1732800000000,
                before=None,
                after={"id": i, "payload": "x" * payload},
            )
        )
    return out


def batch(seq: int, evs: list[dict[str, Any]]) -> SinkBatch:
    return SinkBatch(seq=seq, events=evs, last_position=evs[-1]["source"]["position"])


def write_all(sink: Any, batches: list[SinkBatch]) -> None:
    """Open `sink`, write every batch in order, close it (one event loop)."""

    async def go() -> None:
        await sink.open()
        for b in batches:
            await sink.write(b)
        await sink.close()

    asyncio.run(go())


# --- NATS JetStream -------------------------------------------------------------------------


async def _js(fn: Any) -> Any:
    nc = await nats.connect(NATS_URL, connect_timeout=5, max_reconnect_attempts=3)
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


def js(fn: Any) -> Any:
    """Run `await fn(jetstream)` on a fresh connection."""
    return asyncio.run(_js(fn))


# --- RabbitMQ -------------------------------------------------------------------------------


async def _amqp(fn: Any) -> Any:
    conn = await aio_pika.connect(AMQP_URL, timeout=10)
    try:
        return await fn(await conn.channel())
    finally:
        await conn.close()


def amqp(fn: Any) -> Any:
    """Run `await fn(channel)` on a fresh connection."""
    return asyncio.run(_amqp(fn))


def bind(exchange: str, queues: dict[str, str], exchange_type: str = "topic") -> None:
    """Declare `exchange` and durable queues bound with the given routing keys."""

    async def go(ch: Any) -> None:
        ex = await ch.declare_exchange(exchange, type=exchange_type, durable=True)
        for q, key in queues.items():
            queue = await ch.declare_queue(q, durable=True)
            await queue.bind(ex, key)

    amqp(go)


def bind_existing(exchange: str, queues: dict[str, str]) -> None:
    """Bind durable queues to an exchange the broker already has (e.g. `amq.direct`)."""

    async def go(ch: Any) -> None:
        for q, key in queues.items():
            queue = await ch.declare_queue(q, durable=True)
            await queue.bind(exchange, key)

    amqp(go)


def drain(queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message in the queue, in order (acked)."""

    async def go(ch: Any) -> list[Any]:
        q = await ch.declare_queue(queue, durable=True, passive=True)
        n = q.declaration_result.message_count
        out: list[Any] = []
        await ch.set_qos(prefetch_count=1000)
        async with q.iterator() as it:
            while len(out) < n:
                msg = await asyncio.wait_for(it.__anext__(), 10)
                await msg.ack()
                out.append(msg)
        return out

    return amqp(go)


def amqp_scratch(queues: tuple[str, ...], exchanges: tuple[str, ...]) -> Iterator[str]:
    """Fixture body: yield a fresh `tg_rabbitmq_<hex>` name, then delete the queues and exchanges
    named by it plus each suffix."""
    from tests.support import require_service

    require_service("rabbitmq", "127.0.0.1", 5672)
    base = f"tg_rabbitmq_{uuid.uuid4().hex[:10]}"
    yield base

    async def drop(ch: Any) -> None:
        for suffix in queues:
            await ch.queue_delete(base + suffix)
        for suffix in exchanges:
            await ch.exchange_delete(base + suffix)

    amqp(drop)


# --- Redis ----------------------------------------------------------------------------------


def redis_scratch(base: str) -> Iterator[str]:
    """Fixture body: yield `base`, then delete every key starting with it."""
    yield base
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=base + "*"))
    if keys:
        r.delete(*keys)


# --- e2e: a sink's server stopped mid-stream, a worker killed -------------------------------


def kill_worker_and_wait_restart(supervisor: Any, pipe: str) -> None:
    """SIGKILL the pipeline's worker, wait until it is gone and the supervisor restarted it."""
    import os
    import signal

    from tests.support import wait_until
    from tests.support.supervisor import wait_pid_gone

    pid = supervisor.worker_pid(pipe)
    os.kill(pid, signal.SIGKILL)
    wait_pid_gone(pid)
    wait_until(lambda: supervisor.info(pipe)["ops"]["restarts"] >= 1, timeout=30, message="a worker restart")


def wait_sink_error(supervisor: Any, pipe: str, sid: str, kind: str, timeout: float = 60) -> dict[str, Any]:
    """Wait until `ops.sink_errors` names sink `sid` while the pipeline still runs (holding)."""
    from tests.support import wait_until

    info = wait_until(
        lambda: (i := supervisor.info(pipe))["ops"]["sink_errors"].get(sid) and i,
        timeout,
        message=f"ops.sink_errors to name the {kind} sink",
    )
    assert info["status"] == "running"
    return info


def position_of(supervisor: Any, pipe: str, sid: str) -> int:
    ck = supervisor.info(pipe)["ops"]["checkpoints"].get(sid)
    return int(ck["position"]) if ck else 0


def outage_then_recovery(
    supervisor: Any,
    pipe: str,
    sid: str,
    kind: str,
    stop_server: Callable[[], None],
    start_server: Callable[[], None],
    error_names: str,
) -> tuple[int, int]:
    """Fault injection on a generator pipeline with an unbounded count (so it still flows
    whatever the fault's own delay on a loaded machine): once the sink has events, stop its
    server, wait until `ops.sink_errors` names the sink (containing `error_names`), start the
    server again, wait until the sink moves well past where it held and the error is gone,
    then stop the pipeline (in-flight batches flushed and checkpointed). Returns the sink's
    checkpoint while it held and its final one: every event up to that must be at the destination."""
    from tests.support import wait_until

    supervisor.wait_position(pipe, sid, 500, timeout=60)
    stop_server()
    try:
        info = wait_sink_error(supervisor, pipe, sid, kind)
        assert error_names in info["ops"]["sink_errors"][sid]
        held = int(info["ops"]["checkpoints"][sid]["position"])
        # still holding: the checkpoint does not move while the server is away
        assert position_of(supervisor, pipe, sid) == held
    finally:
        start_server()
    wait_until(
        lambda: position_of(supervisor, pipe, sid) > held + 500 and not supervisor.info(pipe)["ops"]["sink_errors"],
        timeout=120,
        message=f"the {kind} sink to deliver again with no sink error left",
    )
    supervisor.action(pipe, "stop")
    supervisor.wait_status(pipe, "stopped", timeout=60)
    final = position_of(supervisor, pipe, sid)
    assert final > held
    return held, final


def stop_and_position(supervisor: Any, pipe: str, sid: str) -> int:
    """Stop the pipeline (in-flight batches flushed and checkpointed); the sink's final checkpoint."""
    supervisor.action(pipe, "stop")
    supervisor.wait_status(pipe, "stopped", timeout=60)
    return position_of(supervisor, pipe, sid)


def kill_while_flowing(supervisor: Any, pipe: str, sid: str, at_least: int) -> int:
    """Generator pipeline with an unbounded count: SIGKILL its worker once the sink has
    `at_least` events, wait for the restarted worker to deliver well past the kill, then stop
    the pipeline; the sink's final checkpoint."""
    from tests.support import wait_until

    supervisor.wait_position(pipe, sid, at_least, timeout=60)
    kill_worker_and_wait_restart(supervisor, pipe)
    killed_at = position_of(supervisor, pipe, sid)
    wait_until(
        lambda: position_of(supervisor, pipe, sid) > killed_at + 2000,
        timeout=120,
        message="the restarted worker to deliver past the kill",
    )
    return stop_and_position(supervisor, pipe, sid)
