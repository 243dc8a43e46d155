"""Per-sink lag (`ops.sink_lag` and `tidegate_sink_lag_*`), through a real `tidegate serve`:
a best-effort HTTP sink whose server is down falls behind in events and in time while the
required file sink keeps up; once its server comes up it catches up and both read zero.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_metrics_e2e import scrape, value
from tests.support import free_port, wait_until
from tests.support.httpserver import RecordingServer
from tests.support.supervisor import Supervisor, file_sink, generator_spec


def test_a_sink_that_is_down_shows_its_lag_in_events_and_time(supervisor: Supervisor, tmp_path: Path) -> None:
    name = "lag-p"
    n, port = 3000, free_port()
    web = {"type": "http", "config": {"id": "web", "url": f"http://127.0.0.1:{port}/in", "required": False}}
    supervisor.create(generator_spec(name, [file_sink("file", tmp_path / "out.jsonl"), web], count=n, rate=300))

    def lagging() -> dict | None:
        lag = supervisor.info(name)["ops"]["sink_lag"]
        return lag if lag.get("web", {}).get("events", 0) > 0 and lag["web"]["ms"] >= 2000 else None

    lag = wait_until(lagging, timeout=60, message=lambda: f"web behind ({supervisor.info(name)['ops']})")
    assert set(lag) == {"file", "web"}
    assert lag["file"]["events"] < lag["web"]["events"]
    fams = scrape(supervisor)
    assert (value(fams, "tidegate_sink_lag_events", pipeline=name, sink="web") or 0) > 0
    assert (value(fams, "tidegate_sink_lag_seconds", pipeline=name, sink="web") or 0) >= 1.0

    server = RecordingServer(port).start()
    try:
        supervisor.wait_position(name, "web", n, timeout=120)
        supervisor.wait_position(name, "file", n, timeout=60)
        zero = {"events": 0, "ms": 0}
        wait_until(
            lambda: supervisor.info(name)["ops"]["sink_lag"] == {"file": zero, "web": zero},
            timeout=30,
            message=lambda: f"both caught up ({supervisor.info(name)['ops']['sink_lag']})",
        )
        assert value(scrape(supervisor), "tidegate_sink_lag_events", pipeline=name, sink="web") == 0
    finally:
        server.stop()
    supervisor.action(name, "stop")
    assert supervisor.info(name)["ops"]["sink_lag"] == {}
