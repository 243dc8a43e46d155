"""PostgreSQL -> file sink through a real `tidegate serve` (HTTP API only).

Types and transactions arrive right and a 500-row transaction is one batch; `snapshot: initial`
survives a worker SIGKILL during the snapshot and at the snapshot-to-stream handoff; a worker
SIGKILL and a supervisor SIGKILL mid-stream lose nothing; the slot's confirmed_flush_lsn never
passes the pipeline's checkpoint; a restart of the PostgreSQL server is ridden out (on a private
throwaway cluster, so nobody else sharing the main server notices); DELETE drops the slot.
Every scenario ends with a replay of the file against the table's real content.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.integration.test_pg_source import DSN, PG, TYPES_DDL, TYPES_EXPECTED, TYPES_ROW, pg  # noqa: F401 - fixture
from tests.integration.test_pg_source_resume import replay
from tests.integration.test_pg_source_resume import table_state as state
from tests.support import wait_until
from tests.support.cdc import (
    DEAD_REDIS,
    checkpoint,
    dedupe,
    gap_after_kill,
    kill_worker,
    kill_worker_then_supervisor_under_writes,
    wait_for_row,
)
from tests.support.cdc import Writer as TxWriter
from tests.support.pgcluster import PrivateCluster
from tests.support.supervisor import Supervisor, file_sink, read_jsonl
from worker.sources.postgres.position import lsn_to_int, position_key


@pytest.fixture
def sup(pg: PG, tmp_path: Path) -> Iterator[Supervisor]:
    """Like the `supervisor` fixture, but stopped before `pg` cleans up (its workers hold slots)."""
    s = Supervisor(tmp_path)
    s.start()
    try:
        yield s
    finally:
        s.close()


def spec(
    name: str, tables: list[str], path: Path, snapshot: str = "initial", dsn: str = DSN, **batch: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "source": {
                "type": "postgres",
                "config": {
                    "dsn": dsn,
                    "tables": [f"public.{t}" for t in tables],
                    "snapshot": snapshot,
                    "snapshot_chunk": 500,
                    "heartbeat_ms": 500,
                    "status_interval_ms": 1000,
                },
            },
            "sinks": [file_sink("out", path)],
            "batch": batch or {"max_events": 2000},
        },
    }


def make_writer(table: str, first_id: int) -> TxWriter:
    return TxWriter(lambda: psycopg2.connect(DSN), table, first_id)


def test_types_ops_and_a_500_row_transaction_in_one_batch(pg: PG, sup: Supervisor, tmp_path: Path) -> None:
    types = pg.table("types", TYPES_DDL)
    t = pg.table("t", "id int PRIMARY KEY, v int")
    out, name = tmp_path / "out.jsonl", f"tg-pg-e2e-types-{pg.suffix}"
    sup.create(spec(name, [types, t], out, snapshot="never", max_events=100))
    sup.wait_status(name, "running")
    pg.sql(f"INSERT INTO {types} VALUES {TYPES_ROW}", (1,))
    pg.sql(f"UPDATE {types} SET vc = 'x' WHERE id = 1")
    pg.sql(f"DELETE FROM {types} WHERE id = 1")
    wait_until(lambda: len(read_jsonl(out)) == 3 and checkpoint(sup, name), timeout=30, message="3 events checkpointed")
    c, u, d = read_jsonl(out)
    assert [c["op"], u["op"], d["op"]] == ["c", "u", "d"]
    assert c["after"] == {"id": 1, **TYPES_EXPECTED} and c["before"] is None
    assert u["before"] == {"id": 1} and u["after"]["vc"] == "x" and d["before"] == {"id": 1}
    assert d["after"] is None and {e["source"]["table"] for e in (c, u, d)} == {types}
    assert len({e["source"]["tx_id"] for e in (c, u, d)}) == 3
    ops = wait_until(
        lambda: (o := sup.info(name)["ops"])["events_out"] == 3 and o,
        timeout=30,
        message="ops counting the first 3 events",
    )
    batches = ops["batches"]
    pg.sql(f"INSERT INTO {t} SELECT g, g FROM generate_series(1, 500) g")
    events = wait_until(
        lambda: len(read_jsonl(out)) == 503 and read_jsonl(out),
        timeout=30,
        message="the 500-row transaction in the file",
    )
    big = events[3:]
    assert [e["after"]["id"] for e in big] == list(range(1, 501)) and len({e["source"]["tx_id"] for e in big}) == 1
    wait_until(
        lambda: checkpoint(sup, name) == big[-1]["source"]["position"],
        timeout=30,
        message="checkpoint at the transaction's last row",
    )
    ops = wait_until(
        lambda: (o := sup.info(name)["ops"])["events_out"] == 503 and o, timeout=30, message="ops counting 503 events"
    )
    assert ops["batches"] == batches + 1, "the 500-row transaction was split (max_events is 100)"


def test_snapshot_survives_sigkill_during_snapshot_and_at_handoff(pg: PG, sup: Supervisor, tmp_path: Path) -> None:
    t = pg.table("snap_t", "id int PRIMARY KEY, v int")
    u = pg.table("snap_u", "id int PRIMARY KEY, v int")
    pg.sql(f"INSERT INTO {t} SELECT g, g FROM generate_series(1, 60000) g")
    pg.sql(f"INSERT INTO {u} SELECT g, g FROM generate_series(1, 3000) g")
    out, name = tmp_path / "out.jsonl", f"tg-pg-e2e-snap-{pg.suffix}"
    writer = make_writer(t, 100_000)
    writer.start()
    try:
        sup.create(spec(name, [t, u], out))
        # 1: SIGKILL while the snapshot of t is part way through
        wait_until(
            lambda: (checkpoint(sup, name) or "").startswith("snapshot:0:"),
            timeout=60,
            interval=0.01,
            message="a checkpoint inside the snapshot of t",
        )
        kill_worker(sup, name)
        first = checkpoint(sup, name)
        assert first is not None and first.startswith("snapshot:0:") and not first.endswith(":last"), first
    finally:
        writer.stop.set()
        writer.join()
    assert writer.txs > 0  # their changes wait in the slot, behind the snapshot
    # 2: SIGKILL at the handoff: the whole snapshot is delivered, no stream event yet
    at_end = re.compile(r"^snapshot:1:\d+:[^:]+:last$")
    wait_until(
        lambda: at_end.match(checkpoint(sup, name) or ""),
        timeout=60,
        interval=0.01,
        message="checkpoint at the last snapshot row",
    )
    kill_worker(sup, name)
    pg.sql(f"UPDATE {u} SET v = -v WHERE id < 50")
    pg.sql(f"DELETE FROM {t} WHERE id < 40")
    pg.sql(f"INSERT INTO {u} VALUES (99999, 0)")
    events = dedupe(wait_for_row(out, u, 99999))
    info = sup.info(name)
    assert info["ops"]["restarts"] >= 2
    assert info["ops"]["source"]["snapshot"]["done"] is True, info["ops"]["source"]
    for table in (t, u):  # strict: no change doubled by the re-snapshot, none missing
        assert replay([e for e in events if e["source"]["table"] == table], strict=True) == state(pg, table)
    snap_u = [e["after"]["id"] for e in events if e["op"] == "r" and e["source"]["table"] == u]
    assert sorted(snap_u) == list(range(1, 3001)), "u was read once: no restart hit its snapshot"


def test_worker_and_supervisor_sigkill_mid_stream_lose_nothing(pg: PG, sup: Supervisor, tmp_path: Path) -> None:
    t = pg.table("kill", "id int PRIMARY KEY, v int")
    pg.sql(f"INSERT INTO {t} SELECT g, g FROM generate_series(1, 100) g")
    out, name = tmp_path / "out.jsonl", f"tg-pg-e2e-kill-{pg.suffix}"
    sup.create(spec(name, [t], out, max_events=50))
    wait_until(lambda: (checkpoint(sup, name) or "").endswith(":last"), timeout=30, message="snapshot delivered")
    kill_worker_then_supervisor_under_writes(sup, name, make_writer(t, 1000))
    pg.sql(f"INSERT INTO {t} VALUES (99999, 0)")
    events = dedupe(wait_for_row(out, t, 99999))
    assert replay(events, strict=True) == state(pg, t)


def test_confirmed_flush_never_passes_the_checkpoint(pg: PG, sup: Supervisor, tmp_path: Path) -> None:
    t = pg.table("flush", "id int PRIMARY KEY, v int")
    out, name = tmp_path / "out.jsonl", f"tg-pg-e2e-flush-{pg.suffix}"
    sup.create(spec(name, [t], out, snapshot="never", max_events=50))
    sup.wait_status(name, "running")
    slot = "tidegate_" + name.replace("-", "_")
    writer = make_writer(t, 1)
    writer.start()
    samples: list[tuple[int, str]] = []
    try:
        end = time.monotonic() + 4
        while time.monotonic() < end:
            c1 = checkpoint(sup, name)
            flush = pg.sql("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,))[
                0
            ][0]
            if c1 is not None and c1 == checkpoint(sup, name):
                samples.append((lsn_to_int(flush), c1))
            time.sleep(0.03)
    finally:
        writer.stop.set()
        writer.join()
    pg.sql(f"INSERT INTO {t} VALUES (99999, 0)")
    events = dedupe(wait_for_row(out, t, 99999))
    assert len(samples) > 20
    for flush, ck in samples:
        later = [
            lsn_to_int(e["source"]["position"].split(":")[0])
            for e in events
            if position_key(e["source"]["position"]) > position_key(ck)
        ]
        # the server skips transactions committed below the confirmed flush: none may be undelivered
        assert not later or min(later) >= flush, f"slot confirmed {flush:X} past checkpoint {ck}"
    assert replay(events) == state(pg, t)


def test_server_restart_is_ridden_out_and_delete_drops_the_slot(sup: Supervisor, tmp_path: Path) -> None:
    cluster = PrivateCluster().start()
    try:
        conn = psycopg2.connect(cluster.dsn)
        conn.autocommit = True
        conn.cursor().execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 50) g"
        )
        out, name = tmp_path / "out.jsonl", "tg-pg-e2e-restart"
        sup.create(spec(name, ["t"], out, dsn=cluster.dsn))
        wait_for_row(out, "t", 50, op="r")
        for i in range(51, 81):
            conn.cursor().execute("INSERT INTO t VALUES (%s, %s); UPDATE t SET v = v + 1 WHERE id = %s", (i, i, i - 40))
        wait_for_row(out, "t", 80)
        conn.close()
        t0 = time.monotonic()
        cluster.restart()
        assert time.monotonic() - t0 < 15, "the server restarted promptly (the walsender did not hold it)"
        conn = psycopg2.connect(cluster.dsn)
        conn.autocommit = True
        for i in range(81, 111):
            conn.cursor().execute("INSERT INTO t VALUES (%s, %s); DELETE FROM t WHERE id = %s", (i, i, i - 70))
        events = dedupe(wait_for_row(out, "t", 110))
        with conn.cursor() as cur:
            cur.execute("SELECT id, v FROM t")
            assert replay(events) == {r[0]: {"id": r[0], "v": r[1]} for r in cur.fetchall()}
        assert sup.client.delete(f"/pipelines/{name}").status_code == 204

        def slot_gone() -> bool:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_replication_slots")
                return cur.fetchone()[0] == 0

        wait_until(slot_gone, timeout=30, message="DELETE dropped the pipeline's slot")
        conn.close()
    finally:
        cluster.close()


def test_a_best_effort_sink_left_behind_by_a_killed_worker_gets_a_gap_of_real_positions(
    pg: PG, sup: Supervisor, tmp_path: Path
) -> None:
    """CONTRACT 7 (behind the committed position after a restart): the gap's `from` is the first
    skipped event's own LSN position, though this worker never read it (the killed worker stored
    it with the checkpoints that moved past it), and `to` is the committed position."""
    t = pg.table("t", "id int PRIMARY KEY, v int")
    out, name = tmp_path / "out.jsonl", f"tg-pg-e2e-gap-{pg.suffix}"
    s = spec(name, [t], out, snapshot="never", max_events=5, max_ms=50)
    s["spec"]["sinks"].append(DEAD_REDIS)
    sup.create(s)
    sup.wait_status(name, "running")
    for i in range(1, 21):
        pg.sql(f"INSERT INTO {t} VALUES (%s, %s)", (i, i))
    gap_after_kill(sup, name, wait_for_row(out, t, 20), position_key)
