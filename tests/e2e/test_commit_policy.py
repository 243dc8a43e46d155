"""Commit policies with a file sink plus an http sink whose endpoint is down,
up, or flapping (CONTRACT section 7)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import wait_until
from tests.support.httpserver import RecordingServer
from tests.support.supervisor import Supervisor, file_sink, generator_spec, read_jsonl


@pytest.fixture
def endpoint() -> Iterator[RecordingServer]:
    srv = RecordingServer()  # not started: the endpoint is down
    yield srv
    srv.stop()


def pipeline(
    name: str,
    tmp: Path,
    srv: RecordingServer,
    *,
    policy: dict,
    http_required: bool,
    count: int,
    backlog: int = 100000,
    rate: int = 0,
) -> dict:
    spec = generator_spec(
        name,
        [
            file_sink("file", tmp / f"{name}.jsonl"),
            {
                "type": "http",
                "config": {"id": "hook", "url": srv.url, "required": http_required, "backlog_events": backlog},
            },
        ],
        count=count,
        rate=rate,
    )
    spec["spec"]["batch"] = {"max_events": 100, "max_ms": 20}
    spec["spec"]["commit_policy"] = policy
    return spec


def pos(info: dict, sink: str) -> int:
    ck = info["ops"]["checkpoints"].get(sink)
    return int(ck["position"]) if ck else 0


def test_required_best_effort_sink_down_then_catches_up(
    supervisor: Supervisor, tmp_path: Path, endpoint: RecordingServer
) -> None:
    count = 3000
    supervisor.create(
        pipeline("req", tmp_path, endpoint, policy={"mode": "required"}, http_required=False, count=count)
    )
    supervisor.wait_position("req", "file", count)  # the required sink is not held by the dead one
    info = supervisor.info("req")
    assert pos(info, "hook") == 0
    wait_until(lambda: "hook" in supervisor.info("req")["ops"]["sink_errors"], message="sink_errors names hook")
    assert "hook" in supervisor.info("req")["ops"]["sink_errors"]["hook"]
    endpoint.start()
    supervisor.wait_position("req", "hook", count, timeout=60)
    assert sorted(set(endpoint.ids())) == list(range(1, count + 1)), "the backlog was delivered"
    wait_until(lambda: supervisor.info("req")["ops"]["sink_errors"] == {}, message="sink error cleared")
    assert supervisor.info("req")["ops"]["sink_gaps"] == {}
    assert [e["after"]["id"] for e in read_jsonl(tmp_path / "req.jsonl")] == list(range(1, count + 1))


def test_all_holds_while_a_sink_is_down(supervisor: Supervisor, tmp_path: Path, endpoint: RecordingServer) -> None:
    count = 2000
    supervisor.create(pipeline("all", tmp_path, endpoint, policy={"mode": "all"}, http_required=False, count=count))
    wait_until(lambda: "hook" in supervisor.info("all")["ops"]["sink_errors"], message="hook failing")
    # held: with max_inflight 1 the file sink gets at most one batch beyond the committed position (0)
    for _ in range(5):
        info = supervisor.info("all")
        assert pos(info, "file") <= 100 and pos(info, "hook") == 0
    assert len(read_jsonl(tmp_path / "all.jsonl")) <= 100
    endpoint.start()
    supervisor.wait_position("all", "hook", count, timeout=60)
    supervisor.wait_position("all", "file", count)
    assert endpoint.ids() == list(range(1, count + 1))


def test_required_holds_when_the_required_sink_is_down(
    supervisor: Supervisor, tmp_path: Path, endpoint: RecordingServer
) -> None:
    count = 1000
    supervisor.create(
        pipeline("reqhold", tmp_path, endpoint, policy={"mode": "required"}, http_required=True, count=count)
    )
    wait_until(lambda: "hook" in supervisor.info("reqhold")["ops"]["sink_errors"], message="hook failing")
    assert pos(supervisor.info("reqhold"), "file") <= 100
    endpoint.start()
    supervisor.wait_position("reqhold", "hook", count, timeout=60)
    assert endpoint.ids() == list(range(1, count + 1))


def test_quorum(supervisor: Supervisor, tmp_path: Path, endpoint: RecordingServer) -> None:
    count = 2000
    supervisor.create(
        pipeline("q1", tmp_path, endpoint, policy={"mode": "quorum", "quorum": 1}, http_required=True, count=count)
    )
    supervisor.create(
        pipeline("q2", tmp_path, endpoint, policy={"mode": "quorum", "quorum": 2}, http_required=True, count=count)
    )
    supervisor.wait_position("q1", "file", count)  # one of two is enough
    wait_until(lambda: "hook" in supervisor.info("q2")["ops"]["sink_errors"], message="q2 hook failing")
    assert pos(supervisor.info("q2"), "file") <= 100  # two of two: held
    endpoint.start()
    supervisor.wait_position("q2", "hook", count, timeout=60)
    supervisor.wait_position("q1", "hook", count, timeout=60)


def test_flapping_endpoint_loses_nothing(supervisor: Supervisor, tmp_path: Path, endpoint: RecordingServer) -> None:
    count = 3000
    endpoint.fail_every = 3  # every third POST answers 503
    endpoint.start()
    supervisor.create(pipeline("flap", tmp_path, endpoint, policy={"mode": "all"}, http_required=True, count=count))
    supervisor.wait_position("flap", "hook", count, timeout=90)
    assert endpoint.ids() == list(range(1, count + 1)), "in order, none lost, none doubled"
    assert endpoint.requests > len(endpoint.posts), "some POSTs failed and were retried"


def test_best_effort_sink_past_its_backlog_records_a_gap(
    supervisor: Supervisor, tmp_path: Path, endpoint: RecordingServer
) -> None:
    count = 5000
    supervisor.create(
        pipeline("gap", tmp_path, endpoint, policy={"mode": "required"}, http_required=False, count=count, backlog=500)
    )
    supervisor.wait_position("gap", "file", count)
    gaps = wait_until(lambda: supervisor.info("gap")["ops"]["sink_gaps"].get("hook"), message="a recorded gap")
    endpoint.start()
    supervisor.wait_position("gap", "hook", count, timeout=60)
    gaps = supervisor.info("gap")["ops"]["sink_gaps"]["hook"]
    got = set(endpoint.ids())
    skipped: set[int] = set()
    for g in gaps:
        skipped |= set(range(int(g["from"]), int(g["to"]) + 1))
    assert skipped, gaps
    assert got | skipped == set(range(1, count + 1)), "every event was delivered or is inside a recorded gap"
    assert not (got & skipped - set(range(1, 101))), "gap ranges were not delivered"
    assert count in got, "the sink skipped ahead and delivered the newest events"


def test_stop_and_restart_do_not_wait_for_a_dead_sink(
    supervisor: Supervisor, tmp_path: Path, endpoint: RecordingServer
) -> None:
    import time

    count = 1000
    supervisor.create(pipeline("dead", tmp_path, endpoint, policy={"mode": "all"}, http_required=True, count=count))
    wait_until(lambda: "hook" in supervisor.info("dead")["ops"]["sink_errors"], message="hook failing")
    t0 = time.monotonic()
    assert supervisor.action("dead", "restart")["status"] in ("starting", "running")
    assert supervisor.action("dead", "stop")["status"] == "stopped"
    assert time.monotonic() - t0 < 8, "neither waits for a sink that is down"
    assert pos(supervisor.info("dead"), "hook") == 0
    endpoint.start()
    supervisor.action("dead", "resume")
    supervisor.wait_position("dead", "hook", count, timeout=60)
    assert endpoint.ids() == list(range(1, count + 1))
