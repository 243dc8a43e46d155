"""A sink that cannot be reached when the pipeline starts never holds it in `starting`
(CONTRACT 6 and 7), through a real `tidegate serve`: a best-effort sink on a closed port
lets the pipeline run and the required file sink get every event, with the reason in
ops.sink_errors; a required sink down at start holds the pipeline `running` and, once its
server comes up, gets every event.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_sink_kafka import consume, ids
from tests.support import free_port, wait_until
from tests.support.httpserver import RecordingServer
from tests.support.supervisor import Supervisor, file_sink, generator_spec, ids_in
from tests.support.tansu import Tansu


def dead_sink(kind: str, port: int) -> dict[str, Any]:
    at = f"127.0.0.1:{port}"
    configs: dict[str, dict[str, Any]] = {
        "http": {"url": f"http://{at}/ingest", "timeout_ms": 2000},
        "redis": {"url": f"redis://{at}/0", "stream": "tg_dead"},
        "nats": {"subject": "tg.dead", "url": f"nats://{at}"},
        "kafka": {"brokers": at, "topic": "tg_dead"},
        "rabbitmq": {"url": f"amqp://guest:guest@{at}/", "routing_key": "dead"},
        "postgres": {"dsn": f"postgresql://postgres@{at}/postgres?connect_timeout=2", "table": "tg_dead"},
    }
    return {"type": kind, "config": {"id": "dead", "required": False, **configs[kind]}}


@pytest.mark.parametrize("kind", ["http", "redis", "nats", "kafka", "rabbitmq", "postgres"])
def test_a_best_effort_sink_down_at_start_never_holds_the_pipeline(
    supervisor: Supervisor, tmp_path: Path, kind: str
) -> None:
    name = f"dead-{kind}"
    n = 2000
    out = tmp_path / "out.jsonl"
    supervisor.create(generator_spec(name, [file_sink("file", out), dead_sink(kind, free_port())], count=n))
    info = supervisor.wait_status(name, "running", timeout=30)
    supervisor.wait_position(name, "file", n, timeout=60)
    assert ids_in(out) == set(range(1, n + 1))
    info = wait_until(
        lambda: (i := supervisor.info(name))["ops"]["sink_errors"].get("dead") and i,
        timeout=30,
        message=lambda: f"ops.sink_errors names the dead sink ({supervisor.info(name)['ops']})",
    )
    assert info["status"] == "running"
    assert list(info["ops"]["sink_errors"]) == ["dead"]


def test_a_required_sink_down_at_start_holds_running_then_gets_everything(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    name = "required-down"
    n = 3000
    port = free_port()
    http = {"type": "http", "config": {"id": "web", "url": f"http://127.0.0.1:{port}/ingest", "timeout_ms": 2000}}
    supervisor.create(generator_spec(name, [file_sink("file", tmp_path / "out.jsonl"), http], count=n))
    wait_until(
        lambda: supervisor.info(name)["ops"]["sink_errors"].get("web"),
        timeout=30,
        message=lambda: f"ops.sink_errors names the down sink ({supervisor.info(name)})",
    )
    assert supervisor.info(name)["status"] == "running"
    server = RecordingServer(port).start()
    try:
        supervisor.wait_position(name, "web", n, timeout=90)
        assert set(server.ids()) == set(range(1, n + 1))
        wait_until(lambda: not supervisor.info(name)["ops"]["sink_errors"], timeout=30, message="sink_errors cleared")
    finally:
        server.stop()


@pytest.mark.parametrize("exactly_once", [False, True])
def test_a_required_kafka_sink_whose_broker_is_down_at_start_runs_holding_then_gets_everything(
    supervisor: Supervisor, tmp_path: Path, exactly_once: bool
) -> None:
    """The kafka sink's open fails (exactly_once: it reads its own checkpoint there); the
    broker comes up on that port later and every event arrives."""
    name = f"kafka-down-{int(exactly_once)}"
    n = 3000
    broker = Tansu(tmp_path / "tansu.log")
    bus = {"type": "kafka", "config": {"id": "bus", "brokers": broker.bootstrap, "topic": "tg_late"}}
    bus["config"]["exactly_once"] = exactly_once
    supervisor.create(generator_spec(name, [file_sink("file", tmp_path / "out.jsonl"), bus], count=n))
    try:
        wait_until(
            lambda: supervisor.info(name)["ops"]["sink_errors"].get("bus"),
            timeout=30,
            message=lambda: f"ops.sink_errors names the down sink ({supervisor.info(name)})",
        )
        info = supervisor.info(name)
        assert info["status"] == "running"
        held = info["ops"]["checkpoints"].get("bus")
        assert held is None or int(held["position"]) < n
        broker.start()
        supervisor.wait_position(name, "bus", n, timeout=90)
        assert set(ids(consume(broker.bootstrap, "tg_late"))) == set(range(1, n + 1))
        wait_until(lambda: not supervisor.info(name)["ops"]["sink_errors"], timeout=30, message="sink_errors cleared")
    finally:
        broker.stop()


def test_a_best_effort_sink_behind_the_committed_position_at_start_records_a_contract_gap(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """CONTRACT 7: `from` and `to` are the first and last skipped events' own positions."""
    name = "gap-at-start"
    n = 2000
    out = tmp_path / "out.jsonl"
    supervisor.create(generator_spec(name, [file_sink("file", out), dead_sink("redis", free_port())], count=n))
    supervisor.wait_position(name, "file", n, timeout=60)
    assert supervisor.info(name)["ops"]["sink_gaps"] == {}
    supervisor.action(name, "restart")
    gaps = wait_until(
        lambda: supervisor.info(name)["ops"]["sink_gaps"].get("dead"),
        timeout=30,
        message=lambda: f"a gap for the dead sink ({supervisor.info(name)['ops']})",
    )
    assert gaps == [{"from": "1", "to": str(n)}]
