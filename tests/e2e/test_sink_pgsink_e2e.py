"""Generator -> Postgres replica table through a real `tidegate serve` (HTTP API only).

Every event arrives as a row; the target database refuses connections for a
while (ALLOW_CONNECTIONS false + terminated backends; the shared server is not
restarted): the pipeline holds (`ops.sink_errors` names the sink), then
delivers everything; after a worker SIGKILL mid-stream no row change is
applied twice (a trigger counts every applied row change).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_sink_pgsink import admin, db, query  # noqa: F401 - fixture
from tests.support.sinks import kill_while_flowing, outage_then_recovery
from tests.support.supervisor import Supervisor, generator_spec


def pg(sid: str, dsn: str, **extra: Any) -> dict[str, Any]:
    return {"type": "postgres", "config": {"id": sid, "dsn": dsn, "table": "orders", **extra}}


def pipe_name(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1].replace("_", "-")


def test_generator_to_postgres_every_event(supervisor: Supervisor, db: str) -> None:  # noqa: F811
    pipe, n = pipe_name(db), 5000
    supervisor.create(generator_spec(pipe, [pg("replica", db)], count=n, payload_bytes=50, tables=["shop.orders"]))
    supervisor.wait_position(pipe, "replica", n, timeout=60)
    assert query(db, "SELECT count(*), min(id), max(id), min(length(payload)) FROM orders") == [(n, 1, n, 50)]
    [(p, sid, pos)] = query(db, "SELECT pipeline, sink_id, position FROM tidegate_checkpoints")
    assert (p, pos) == (pipe, str(n)) and sid.startswith("replica@"), sid


def test_deleted_checkpoints_start_over_also_for_the_sinks_own(supervisor: Supervisor, db: str) -> None:  # noqa: F811
    pipe, n = pipe_name(db), 300
    supervisor.create(generator_spec(pipe, [pg("replica", db)], count=n, payload_bytes=20))
    supervisor.wait_position(pipe, "replica", n, timeout=60)
    assert query(db, "SELECT count(*) FROM applied") == [(n,)]
    supervisor.action(pipe, "stop")
    assert supervisor.client.delete(f"/pipelines/{pipe}/checkpoints").status_code == 204
    supervisor.action(pipe, "resume")
    supervisor.wait_position(pipe, "replica", n, timeout=60)
    # "as if new": every change is applied again, the sink's old checkpoint is not trusted
    assert query(db, "SELECT count(*) FROM applied") == [(2 * n,)]


def test_database_refusing_connections_holds_then_delivers(supervisor: Supervisor, db: str) -> None:  # noqa: F811
    pipe, name = pipe_name(db), db.rsplit("/", 1)[1]
    supervisor.create(generator_spec(pipe, [pg("replica", db)], count=0, rate=1500, payload_bytes=50))

    def refuse() -> None:
        admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")

    _held, n = outage_then_recovery(
        supervisor,
        pipe,
        "replica",
        "postgres",
        stop_server=refuse,
        start_server=lambda: admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
        error_names=f"sink 'replica': postgres 127.0.0.1:5432/{name}",
    )
    assert query(db, "SELECT count(*), min(id), max(id) FROM orders") == [(n, 1, n)]
    assert query(db, "SELECT count(*) FROM applied") == [(n,)]


@pytest.mark.parametrize("max_inflight", [1, 8])
def test_no_change_applied_twice_after_worker_sigkill(
    supervisor: Supervisor,
    db: str,  # noqa: F811
    max_inflight: int,
) -> None:
    """max_inflight 8: batches queued together are applied as one transaction."""
    pipe = pipe_name(db)
    spec = generator_spec(pipe, [pg("replica", db)], count=0, rate=3000, payload_bytes=50)
    spec["spec"]["batch"] = {"max_inflight": max_inflight}
    supervisor.create(spec)
    n = kill_while_flowing(supervisor, pipe, "replica", 3000)
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM applied") == [(n, n)]
    assert query(db, "SELECT count(*), min(id), max(id) FROM orders") == [(n, 1, n)]
