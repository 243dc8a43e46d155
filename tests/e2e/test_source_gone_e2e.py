"""What a source's database takes away under a running pipeline halts it with an error that says
what happened and how to go on; nothing is silently skipped (issue #12): a captured PostgreSQL
table dropped, the replication slot dropped behind tidegate's back (running and stopped), the
MariaDB binlog the checkpoint points into purged, a captured MariaDB table dropped, and a change
to one written as a statement (a session with binlog_format STATEMENT). Through a real
`tidegate serve`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_mysql_source_e2e import spec as my_spec
from tests.e2e.test_pg_source_e2e import spec as pg_spec
from tests.e2e.test_pg_source_e2e import sup  # noqa: F401 - fixture (stopped before `pg` cleans up)
from tests.integration.test_mysql_source_helpers import connect, scratch_db, sql
from tests.integration.test_pg_source import PG, pg  # noqa: F401 - pg is a fixture
from tests.support import wait_until
from tests.support.cdc import wait_for_row
from tests.support.supervisor import Supervisor

MERGE = {"content-type": "application/merge-patch+json"}


def test_a_captured_table_dropped_halts_the_pipeline_and_patch_goes_on(pg: PG, sup: Supervisor, tmp_path: Path) -> None:
    a = pg.table("gone_a", "id int PRIMARY KEY")
    b = pg.table("gone_b", "id int PRIMARY KEY")
    out, name = tmp_path / "out.jsonl", f"tg-pg-gone-{pg.suffix}"
    sup.create(pg_spec(name, [a, b], out, snapshot="never"))
    sup.wait_status(name, "running")
    pg.sql(f"INSERT INTO {b} VALUES (1)")
    pg.sql(f"INSERT INTO {b} VALUES (2)")
    pg.sql(f"DROP TABLE {b}")
    info = sup.wait_status(name, "failed", timeout=60)
    err = info["ops"]["last_error"]
    assert f"captured table public.{b} was dropped" in err and f"PATCH /pipelines/{name}" in err, err
    assert info["ops"]["restarts"] == 0
    wait_for_row(out, b, 2)  # what it wrote before the drop was read, not skipped
    r = sup.client.patch(
        f"/pipelines/{name}", json={"spec": {"source": {"config": {"tables": [f"public.{a}"]}}}}, headers=MERGE
    )
    assert r.status_code == 200, r.text
    sup.wait_status(name, "running", timeout=60)
    pg.sql(f"INSERT INTO {a} VALUES (7)")
    wait_for_row(out, a, 7)
    assert sup.info(name)["status"] == "running"


def drop_slot(pg: PG, slot: str) -> bool:
    """Terminate whatever streams from `slot`, then drop it (False: it was busy again)."""
    pg.sql("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    try:
        pg.sql("SELECT pg_drop_replication_slot(%s)", (slot,))
        return True
    except Exception:  # noqa: BLE001 - still active: the worker reconnected first
        return False


def assert_slot_gone(info: dict, name: str) -> None:
    err = info["ops"]["last_error"] or ""
    assert "does not exist" in err or "no longer exists" in err, err
    assert "DELETE /pipelines/" in err and "checkpoints" in err, err


def test_a_slot_dropped_behind_tidegates_back_halts_the_pipeline(pg: PG, sup: Supervisor, tmp_path: Path) -> None:
    t = pg.table("gone_slot", "id int PRIMARY KEY")
    out, name = tmp_path / "out.jsonl", f"tg-pg-slot-{pg.suffix}"
    slot = "tidegate_" + name.replace("-", "_")
    sup.create(pg_spec(name, [t], out, snapshot="never"))
    sup.wait_status(name, "running")
    pg.sql(f"INSERT INTO {t} VALUES (1)")
    wait_for_row(out, t, 1)
    # while it runs: the walsender is cut and the slot dropped before the worker reconnects
    wait_until(lambda: drop_slot(pg, slot), timeout=60, interval=0.01, message=f"slot {slot} dropped")
    assert_slot_gone(sup.wait_status(name, "failed", timeout=60), name)
    # the way back it names: new checkpoints, a new slot
    sup.action(name, "stop")
    assert sup.client.delete(f"/pipelines/{name}/checkpoints").status_code == 204
    sup.action(name, "resume")
    sup.wait_status(name, "running", timeout=60)
    pg.sql(f"INSERT INTO {t} VALUES (2)")
    wait_for_row(out, t, 2)
    # stopped: the slot dropped meanwhile, the resume fails at once
    sup.action(name, "stop")
    sup.wait_status(name, "stopped")
    assert drop_slot(pg, slot)
    sup.action(name, "resume")
    assert_slot_gone(sup.wait_status(name, "failed", timeout=60), name)


@pytest.fixture
def db() -> Iterator[str]:
    yield from scratch_db()


def test_a_purged_binlog_halts_the_mysql_pipeline(db: str, tmp_path: Path) -> None:
    with Supervisor(tmp_path) as s:
        sql(db, "CREATE TABLE t (id INT PRIMARY KEY)")
        out, name = tmp_path / "out.jsonl", "tg-my-purged"
        s.create(my_spec(name, db, ["t"], out, snapshot="never"))
        s.wait_status(name, "running")
        sql(db, "INSERT INTO t VALUES (1)")
        wait_for_row(out, "t", 1)
        s.action(name, "stop")
        s.wait_status(name, "stopped")
        sql(db, "INSERT INTO t VALUES (2)")  # after the checkpoint, in the binlog about to go
        gone = s.client.get(f"/pipelines/{name}/checkpoints").json()["out"]["position"].split(":")[0]

        def purged() -> bool:  # a log another reader still uses is kept: try until it is gone
            with connect() as c, c.cursor() as cur:
                cur.execute("FLUSH BINARY LOGS")
                cur.execute("SHOW MASTER STATUS")
                cur.execute(f"PURGE BINARY LOGS TO '{cur.fetchone()[0]}'")
                cur.execute("SHOW BINARY LOGS")
                return gone not in {r[0] for r in cur.fetchall()}

        wait_until(purged, timeout=120, interval=1.0, message=f"binlog {gone} purged")
        s.action(name, "resume")
        info = s.wait_status(name, "failed", timeout=60)
        err = info["ops"]["last_error"] or ""
        assert "is gone" in err and "needed to resume" in err, err
        assert "checkpoints" in err, err


def test_a_captured_mysql_table_dropped_halts_the_pipeline(db: str, tmp_path: Path) -> None:
    with Supervisor(tmp_path) as s:
        sql(db, "CREATE TABLE a (id INT PRIMARY KEY)", "CREATE TABLE b (id INT PRIMARY KEY)")
        out, name = tmp_path / "out.jsonl", "tg-my-gone"
        s.create(my_spec(name, db, ["a", "b"], out, snapshot="never"))
        s.wait_status(name, "running")
        sql(db, "INSERT INTO b VALUES (1)", "INSERT INTO b VALUES (2)", "DROP TABLE b")
        info = s.wait_status(name, "failed", timeout=60)
        err = info["ops"]["last_error"] or ""
        assert f"captured table {db}.b was dropped" in err and "PATCH /pipelines/" in err, err
        wait_for_row(out, "b", 2)  # what it wrote before the drop was read, not skipped
        r = s.client.patch(
            f"/pipelines/{name}", json={"spec": {"source": {"config": {"tables": [f"{db}.a"]}}}}, headers=MERGE
        )
        assert r.status_code == 200, r.text
        s.wait_status(name, "running", timeout=60)
        sql(db, "INSERT INTO a VALUES (7)")
        wait_for_row(out, "a", 7)


def test_a_change_written_as_a_statement_halts_the_mysql_pipeline(db: str, tmp_path: Path) -> None:
    with Supervisor(tmp_path) as s:
        sql(db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        out, name = tmp_path / "out.jsonl", "tg-my-stmt"
        s.create(my_spec(name, db, ["t"], out, snapshot="never"))
        s.wait_status(name, "running")
        sql(db, "INSERT INTO t VALUES (1, 1)")
        wait_for_row(out, "t", 1)
        # one session writes statements (this session only: the server stays ROW for everyone else)
        sql(db, "SET SESSION binlog_format = 'STATEMENT'", "UPDATE t SET v = 2 WHERE id = 1")
        info = s.wait_status(name, "failed", timeout=60)
        err = info["ops"]["last_error"] or ""
        assert f"a change to {db}.t reached the binlog as a statement" in err and "binlog_format" in err, err
