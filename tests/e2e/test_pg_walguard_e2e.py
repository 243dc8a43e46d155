"""The replication guard (issue #14) through a real `tidegate serve` and real PostgreSQL.

- A slot the server invalidates (`max_slot_wal_keep_size`, on a private throwaway cluster: the
  setting is server-wide and no test may give it to the shared server) fails the pipeline, with
  an ops.last_error that names the slot and the way back; that way back (stop, DELETE
  checkpoints, resume) works. Both while the worker runs (paused, so the slot falls behind) and
  when a stopped pipeline's slot is invalidated and it is resumed.
- `max_retained_wal` warns in ops.last_error (the shared server: a paused pipeline's slot).
- `on_retained_wal: pause_best_effort` (a private cluster, so that nobody else's WAL counts):
  a best-effort http sink that is down holds a quorum commit policy, and so the slot; it is
  detached (gap in ops.sink_gaps), the slot advances below the limit, and the file sink gets
  every event.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.integration.test_pg_source import DSN, PG, pg  # noqa: F401 - pg is a fixture
from tests.support import free_port, wait_until
from tests.support.cdc import wait_for_row
from tests.support.pgcluster import PrivateCluster
from tests.support.supervisor import Supervisor, file_sink, read_jsonl

# a private cluster whose slots are invalidated once 1 MB of WAL past them is due for removal
KEEP_1MB = "-c max_slot_wal_keep_size=1MB -c max_wal_size=32MB -c min_wal_size=32MB"
FILLER = "INSERT INTO filler SELECT g, md5(g::text) || repeat('x', 1000) FROM generate_series(1, %s) g"


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Supervisor]:
    s = Supervisor(tmp_path, env={"TIDEGATE_PROBE_INTERVAL_S": "1"})  # ops.source of failed pipelines
    s.start()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def lossy() -> Iterator[PrivateCluster]:
    c = PrivateCluster(extra=KEEP_1MB).start()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    c = PrivateCluster().start()
    try:
        yield c
    finally:
        c.close()


def connect(dsn: str) -> Any:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def sql(conn: Any, query: str, args: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall() if cur.description else []


def pg_spec(name: str, dsn: str, table: str, sinks: list[dict[str, Any]], **source: Any) -> dict[str, Any]:
    cfg = {"dsn": dsn, "tables": [f"public.{table}"], "heartbeat_ms": 500, "status_interval_ms": 1000, **source}
    return {"metadata": {"name": name}, "spec": {"source": {"type": "postgres", "config": cfg}, "sinks": sinks}}


def invalidate(conn: Any, slot: str) -> None:
    """Write WAL the publication does not carry until a checkpoint invalidates `slot`."""

    def lost() -> bool:
        sql(conn, FILLER, (20000,))
        sql(conn, "CHECKPOINT")
        return sql(conn, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,)) == [("lost",)]

    wait_until(lost, timeout=120, interval=0.2, message=f"slot {slot} invalidated")


def assert_lost_error(info: dict[str, Any], name: str, slot: str) -> None:
    err = info["ops"]["last_error"]  # the message of the worker's ErrorInfo (kind source, not retryable)
    assert err is not None, info["ops"]
    for words in (f"replication slot {slot}", "invalidated by the server (wal_status=lost)", "events were lost",
                  f"POST /pipelines/{name}/stop", f"DELETE /pipelines/{name}/checkpoints", "resume"):  # fmt: skip
        assert words in err, err


def recover(sup: Supervisor, name: str) -> None:
    """The way the error message tells."""
    sup.action(name, "stop")
    sup.wait_status(name, "stopped")
    assert sup.client.delete(f"/pipelines/{name}/checkpoints").status_code == 204
    sup.action(name, "resume")


def test_an_invalidated_slot_fails_the_pipeline_and_the_told_recovery_works(
    lossy: PrivateCluster, sup: Supervisor, tmp_path: Path
) -> None:
    conn = connect(lossy.dsn)
    sql(conn, "CREATE TABLE t (id int PRIMARY KEY, v int); CREATE TABLE filler (id int, v text)")
    sql(conn, "INSERT INTO t SELECT g, g FROM generate_series(1, 10) g")
    name, slot, out = "tg-walguard-lost", "tidegate_tg_walguard_lost", tmp_path / "out.jsonl"
    sup.create(pg_spec(name, lossy.dsn, "t", [file_sink("out", out)]))
    wait_for_row(out, "t", 10, op="r")
    # 1. while the worker runs: paused with events waiting, the slot is confirmed no further
    sup.action(name, "pause")
    sql(conn, "INSERT INTO t VALUES (11, 11)")
    invalidate(conn, slot)
    info = sup.wait_status(name, "failed", timeout=60)
    assert_lost_error(info, name, slot)
    assert info["ops"]["restarts"] == 0, info["ops"]
    assert sql(conn, "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)) == [(False,)]
    assert sup.info(name)["status"] == "failed"  # the worker is gone, not restarted
    src = wait_until(  # a failed pipeline's source health still comes, from the supervisor's probe
        lambda: (s := sup.info(name)["ops"]["source"]).get("wal_status") == "lost" and s,
        timeout=30,
        message=lambda: f"ops.source of the failed pipeline: {sup.info(name)['ops']['source']}",
    )
    assert src["slot"] == slot and src["slot_active"] is False
    recover(sup, name)
    wait_for_row(out, "t", 11, op="r")  # a new slot, a new snapshot
    sup.wait_status(name, "running")
    # 2. a stopped pipeline's slot is invalidated: resuming it fails at once, same message
    sup.action(name, "stop")
    sup.wait_status(name, "stopped")
    invalidate(conn, slot)
    sup.action(name, "resume")
    assert_lost_error(sup.wait_status(name, "failed", timeout=60), name, slot)
    recover(sup, name)
    sql(conn, "INSERT INTO t VALUES (12, 12)")  # in the new snapshot or streamed after it
    wait_until(lambda: 12 in {(e["after"] or {}).get("id") for e in read_jsonl(out)}, timeout=60, message="row 12")
    assert sup.info(name)["status"] == "running"
    conn.close()


def test_retained_wal_over_the_limit_warns_in_last_error(pg: PG, sup: Supervisor, tmp_path: Path) -> None:  # noqa: F811
    t = pg.table("t", "id int PRIMARY KEY, v int")
    filler = pg.table("filler", "id int, v text")
    pg.sql(f"INSERT INTO {t} SELECT g, g FROM generate_series(1, 5) g")
    out = tmp_path / "out.jsonl"
    sup.create(pg_spec(pg.pipeline, DSN, t, [file_sink("out", out)], max_retained_wal="1MB"))
    wait_for_row(out, t, 5, op="r")
    assert sup.info(pg.pipeline)["spec"]["spec"]["source"]["config"]["on_retained_wal"] == "warn"
    sup.action(pg.pipeline, "pause")  # a paused pipeline's slot keeps its WAL
    pg.sql(f"INSERT INTO {t} VALUES (6, 6)")
    pg.sql(f"INSERT INTO {filler} SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 3000) g")  # ~3 MB

    def warned() -> str | None:
        err = sup.info(pg.pipeline)["ops"]["last_error"]
        return err if err and "max_retained_wal" in err else None

    err = wait_until(warned, timeout=60, interval=0.5, message="the retained-WAL warning")
    assert f"replication slot {pg.slot} retains" in err and "(1000000 bytes)" in err, err
    assert sup.info(pg.pipeline)["status"] == "paused"  # a warning, nothing more
    sup.action(pg.pipeline, "resume")
    wait_for_row(out, t, 6)


def test_pause_best_effort_detaches_the_sink_that_holds_the_slot(
    cluster: PrivateCluster, sup: Supervisor, tmp_path: Path
) -> None:
    conn = connect(cluster.dsn)
    sql(conn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    sql(conn, "INSERT INTO t SELECT g, 'r' FROM generate_series(1, 100) g")
    name, out, limit = "tg-walguard-detach", tmp_path / "out.jsonl", 1024 * 1024
    down = {"type": "http", "config": {"id": "hook", "required": False, "url": f"http://127.0.0.1:{free_port()}/x"}}
    spec = pg_spec(
        name,
        cluster.dsn,
        "t",
        [file_sink("out", out), down],
        max_retained_wal="1MiB",
        on_retained_wal="pause_best_effort",
    )
    spec["spec"]["commit_policy"] = {"mode": "quorum", "quorum": 2}  # no sink waited for alone: both best-effort
    spec["spec"]["batch"] = {"max_events": 5000}
    sup.create(spec)
    wait_for_row(out, "t", 1, op="r")
    # the quorum needs the hook, so nothing commits and the slot pins everything written now
    for i in range(4):
        sql(conn, "INSERT INTO t SELECT g, repeat(md5(g::text), 32) FROM generate_series(%s, %s) g",
            (101 + i * 1000, 100 + (i + 1) * 1000))  # fmt: skip

    def detached() -> dict[str, Any] | None:
        gaps = sup.info(name)["ops"]["sink_gaps"].get("hook")
        return gaps or None

    gaps = wait_until(detached, timeout=90, interval=0.5, message=lambda: f"a gap for hook: {sup.info(name)['ops']}")
    assert all(set(g) == {"from", "to"} for g in gaps), gaps
    wanted = set(range(1, 4101))

    def everything() -> bool:
        return {(e["after"] or {}).get("id") for e in read_jsonl(out)} >= wanted

    wait_until(everything, timeout=120, interval=0.5, message="every row in the file sink")

    def below() -> bool:
        sql(conn, "CHECKPOINT")  # logs running xacts: the slot's restart_lsn can move up to its confirmed LSN
        retained = sup.info(name)["ops"]["source"].get("retained_wal_bytes")
        return retained is not None and retained < limit

    wait_until(below, timeout=90, interval=1.0, message=lambda: f"retained WAL below 1 MiB: {sup.info(name)['ops']}")
    info = sup.info(name)
    assert info["status"] == "running" and "hook" in info["ops"]["sink_errors"]  # still down, still tried
    ops = info["ops"]
    assert ops["checkpoints"]["out"]["position"] and ops["checkpoints"]["hook"]["position"]
    conn.close()


def test_a_bad_max_retained_wal_is_a_422_naming_its_path(sup: Supervisor, tmp_path: Path) -> None:
    sinks = [file_sink("out", tmp_path / "o.jsonl")]
    for cfg, path, words in (
        ({"max_retained_wal": "lots"}, "spec.source.config.max_retained_wal", "MiB"),
        ({"max_retained_wal": 0}, "spec.source.config.max_retained_wal", "at least 1 byte"),
        ({"max_retained_wal": "1MiB", "on_retained_wal": "drop"}, "spec.source.config.on_retained_wal", "warn"),
        ({"on_retained_wal": "pause_best_effort"}, "spec.source.config.on_retained_wal", "needs max_retained_wal"),
    ):
        r = sup.client.post("/pipelines", json=pg_spec("tg-walguard-bad", DSN, "t", sinks, **cfg))
        assert r.status_code == 422, r.text
        details = {d["path"]: d["message"] for d in r.json()["error"]["details"]}
        assert words in details.get(path, ""), details
    assert sup.client.get("/pipelines/tg-walguard-bad").status_code == 404
