"""A source whose server is unreachable at start is retried with backoff (the
error shown in ops.last_error) and never crashes the worker."""

from __future__ import annotations

from pathlib import Path

from tests.support import free_port, wait_until
from tests.support.supervisor import Supervisor, file_sink


def test_unreachable_postgres_source_is_retried(supervisor: Supervisor, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    spec = {
        "metadata": {"name": "pgdown"},
        "spec": {
            "source": {
                "type": "postgres",
                "config": {"dsn": f"postgresql://postgres@127.0.0.1:{port}/x", "tables": ["public.t"]},
            },
            "sinks": [file_sink("out", tmp_path / "o.jsonl")],
        },
    }
    supervisor.create(spec)
    wait_until(
        lambda: (supervisor.info("pgdown")["ops"]["last_error"] or "") != "",
        timeout=20,
        message="the connection error in ops.last_error",
    )
    pid = supervisor.info("pgdown")["ops"]["pid"]
    err = supervisor.info("pgdown")["ops"]["last_error"]
    assert str(port) in err or "connect" in err.lower(), err
    # several attempts later the same worker is still there, retrying
    wait_until(
        lambda: supervisor.log_path.read_text().count("source_open_failed") >= 3,
        timeout=30,
        message="three open attempts",
    )
    info = supervisor.info("pgdown")
    assert info["ops"]["pid"] == pid and info["ops"]["restarts"] == 0
    assert info["status"] in ("starting", "running")
