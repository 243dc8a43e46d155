"""Batch thresholds (CONTRACT section 7), observed through what an http sink
receives: each POST is one batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import wait_until
from tests.support.httpserver import RecordingServer
from tests.support.supervisor import Supervisor, generator_spec


@pytest.fixture
def endpoint() -> Iterator[RecordingServer]:
    srv = RecordingServer().start()
    yield srv
    srv.stop()


def run(sup: Supervisor, srv: RecordingServer, name: str, batch: dict, count: int, **src: object) -> list[list[dict]]:
    spec = generator_spec(name, [{"type": "http", "config": {"id": "hook", "url": srv.url}}], count=count, **src)
    spec["spec"]["batch"] = batch
    sup.create(spec)
    wait_until(lambda: len(srv.events()) >= count, timeout=60, message=f"{count} events at the endpoint")
    sup.wait_position(name, "hook", count)
    batches = srv.batches()
    ids = [e["after"]["id"] for b in batches for e in b]
    assert ids == list(range(1, count + 1)), "events arrive once each, in order"
    return batches


def size(e: dict) -> int:
    return len(json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode())


def test_max_events(supervisor: Supervisor, endpoint: RecordingServer) -> None:
    batches = run(supervisor, endpoint, "maxev", {"max_events": 100, "max_ms": 60000}, 1000)
    assert [len(b) for b in batches] == [100] * 10


def test_max_bytes(supervisor: Supervisor, endpoint: RecordingServer) -> None:
    limit = 2000
    batches = run(
        supervisor,
        endpoint,
        "maxbytes",
        {"max_events": 100000, "max_bytes": limit, "max_ms": 60000},
        400,
        payload_bytes=50,
    )
    assert len(batches) > 10
    for b in batches[:-1]:
        sizes = [size(e) for e in b]
        assert sum(sizes) >= limit, "a batch closes only once it holds max_bytes"
        assert sum(sizes[:-1]) < limit, "and as soon as it does"


def test_max_ms(supervisor: Supervisor, endpoint: RecordingServer) -> None:
    batches = run(supervisor, endpoint, "maxms", {"max_events": 100000, "max_ms": 300}, 150, rate=100)
    assert len(batches) >= 3, "time cut the stream into several batches"
    for b in batches[:-1]:
        span = b[-1]["ts_ms"] - b[0]["ts_ms"]
        assert span <= 300 + 200, f"a batch spans at most max_ms (+ one generator tick): {span} ms"
        assert len(b) < 60


def test_respect_source_tx_never_splits(supervisor: Supervisor, endpoint: RecordingServer) -> None:
    batches = run(supervisor, endpoint, "tx", {"max_events": 10, "max_ms": 60000}, 700, tx_size=7)
    seen: dict[str, int] = {}
    for i, b in enumerate(batches):
        for e in b:
            tx = e["source"]["tx_id"]
            assert seen.setdefault(tx, i) == i, f"transaction {tx} split across batches"
    assert all(len(b) == 14 for b in batches), [len(b) for b in batches]


def test_respect_source_tx_exceeds_max_events(supervisor: Supervisor, endpoint: RecordingServer) -> None:
    batches = run(supervisor, endpoint, "bigtx", {"max_events": 10, "max_ms": 60000}, 500, tx_size=50)
    assert [len(b) for b in batches] == [50] * 10


def test_without_respect_source_tx_cuts_exactly(supervisor: Supervisor, endpoint: RecordingServer) -> None:
    batches = run(
        supervisor, endpoint, "notx", {"max_events": 10, "max_ms": 60000, "respect_source_tx": False}, 100, tx_size=7
    )
    assert [len(b) for b in batches] == [10] * 10


def test_max_inflight_keeps_order(supervisor: Supervisor, endpoint: RecordingServer, tmp_path: Path) -> None:
    # `run` asserts that ids arrive in order; checkpoints must also only move forward
    count = 20000
    spec = generator_spec(
        "inflight",
        [
            {"type": "http", "config": {"id": "hook", "url": endpoint.url}},
            {"type": "file", "config": {"id": "out", "path": str(tmp_path / "o.jsonl")}},
        ],
        count=count,
    )
    spec["spec"]["batch"] = {"max_events": 200, "max_inflight": 4}
    supervisor.create(spec)
    seen: list[int] = []

    def progressed() -> bool:
        cks = supervisor.info("inflight")["ops"]["checkpoints"]
        if "hook" in cks:
            seen.append(int(cks["hook"]["position"]))
        return bool(seen) and seen[-1] >= count

    wait_until(progressed, timeout=60, interval=0.02, message="all events checkpointed")
    assert seen == sorted(seen), "checkpoints only move forward"
    ids = endpoint.ids()
    assert ids == list(range(1, count + 1))
    assert all(p % 200 == 0 for p in seen), "checkpoints sit on batch ends"


def test_max_ms_closes_at_the_next_transaction_end(supervisor: Supervisor, endpoint: RecordingServer) -> None:
    # a slow generator hands over transactions in pieces: time-due batches wait for the end, then close
    batches = run(supervisor, endpoint, "slowtx", {"max_events": 100000, "max_ms": 200}, 120, rate=200, tx_size=4)
    assert len(batches) >= 3
    assert all(len(b) % 4 == 0 for b in batches), [len(b) for b in batches]
