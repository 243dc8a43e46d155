"""MariaDB -> file sink through a real `tidegate serve` (HTTP API only).

Types and transactions arrive right; a 500-row transaction is one batch; `snapshot: initial` survives
a worker SIGKILL during the snapshot and at the snapshot-to-stream handoff; a worker SIGKILL and a
supervisor SIGKILL mid-stream lose nothing; a restart of the MariaDB server is ridden out. Every
scenario ends with a strict replay of the file (each row once as r/c, every before image equal to
the replayed row) against the table's real content.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_mysql_source_helpers import (
    connect,
    replay,
    scratch_db,
    sql,
    table_state,
    tx,
)
from tests.support import port_open, wait_until
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
from tests.support.supervisor import Supervisor, file_sink, read_jsonl

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db() -> Iterator[str]:
    yield from scratch_db()


def spec(name: str, db: str, tables: list[str], path: Path, snapshot: str = "initial", **batch: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "source": {
                "type": "mysql",
                "config": {
                    "dsn": f"mysql://root@127.0.0.1:3306/{db}",
                    "tables": [f"{db}.{t}" for t in tables],
                    "snapshot": snapshot,
                    "snapshot_chunk": 500,
                },
            },
            "sinks": [file_sink("out", path)],
            "batch": batch or {"max_events": 2000},
        },
    }


def make_writer(db: str, first_id: int) -> TxWriter:
    return TxWriter(lambda: connect(db), "t", first_id, begin=True)


def test_types_ops_and_a_500_row_transaction_in_one_batch(supervisor: Supervisor, db: str, tmp_path: Path) -> None:
    from tests.integration.test_mysql_source import EXPECTED, ROW, TYPES

    sql(db, TYPES, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    out, name = tmp_path / "out.jsonl", "tg-my-e2e-types"
    supervisor.create(spec(name, db, ["types", "t"], out, snapshot="never", max_events=100))
    supervisor.wait_status(name, "running")
    wait_until(
        lambda: supervisor.info(name)["ops"]["source"].get("binlog", {}).get("connected"),
        timeout=30,
        message="mysql source connected",
    )
    sql(db, ROW % 1, "UPDATE types SET vc = 'x' WHERE id = 1", "DELETE FROM types WHERE id = 1")
    wait_for_row(out, "types", 1, op="u")
    wait_until(
        lambda: len(read_jsonl(out)) == 3 and checkpoint(supervisor, name), timeout=30, message="3 events checkpointed"
    )
    c, u, d = read_jsonl(out)
    assert [c["op"], u["op"], d["op"]] == ["c", "u", "d"]
    assert c["after"] == {"id": 1, **EXPECTED} and u["before"] == c["after"] and u["after"]["vc"] == "x"
    assert d["before"] == u["after"] and d["after"] is None
    assert {e["source"]["table"] for e in (c, u, d)} == {"types"}
    assert len({e["source"]["tx_id"] for e in (c, u, d)}) == 3
    ops = wait_until(
        lambda: (o := supervisor.info(name)["ops"])["events_out"] == 3 and o,
        timeout=30,
        message="ops counting the first 3 events",
    )
    batches = ops["batches"]
    tx(db, [("INSERT INTO t VALUES " + ",".join(f"({i}, {i})" for i in range(1, 501)), None)])
    events = wait_until(
        lambda: len(read_jsonl(out)) == 503 and read_jsonl(out),
        timeout=30,
        message="the 500-row transaction in the file",
    )
    big = events[3:]
    assert [e["after"]["id"] for e in big] == list(range(1, 501)) and len({e["source"]["tx_id"] for e in big}) == 1
    wait_until(
        lambda: checkpoint(supervisor, name) == big[-1]["source"]["position"],
        timeout=30,
        message="checkpoint at the transaction's last row",
    )
    ops = wait_until(
        lambda: (o := supervisor.info(name)["ops"])["events_out"] == 503 and o,
        timeout=30,
        message="ops counting 503 events",
    )
    assert ops["batches"] == batches + 1, "the 500-row transaction was split"


def test_snapshot_survives_sigkill_during_snapshot_and_at_handoff(
    supervisor: Supervisor, db: str, tmp_path: Path
) -> None:
    sql(
        db,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT)",
        "CREATE TABLE u (id INT PRIMARY KEY, v INT)",
        "INSERT INTO t SELECT seq, seq FROM seq_1_to_60000",
        "INSERT INTO u SELECT seq, seq FROM seq_1_to_3000",
    )
    out, name = tmp_path / "out.jsonl", "tg-my-e2e-snap"
    writer = make_writer(db, 100_000)
    writer.start()
    try:
        supervisor.create(spec(name, db, ["t", "u"], out))
        # 1: SIGKILL while the snapshot of t is half way
        wait_until(
            lambda: (checkpoint(supervisor, name) or "").startswith("snapshot:0:"),
            timeout=60,
            interval=0.01,
            message="a checkpoint inside the snapshot of t",
        )
        kill_worker(supervisor, name)
        first = checkpoint(supervisor, name)
        assert first is not None and first.startswith("snapshot:0:"), first
    finally:
        writer.stop.set()
        writer.join()
    assert writer.txs > 0
    # 2: SIGKILL at the handoff: the snapshot is delivered, no binlog event yet
    wait_until(
        lambda: (
            ":end@" in (checkpoint(supervisor, name) or "")
            and (checkpoint(supervisor, name) or "").startswith("snapshot:1:")
        ),
        timeout=60,
        message="checkpoint at the last snapshot row",
    )
    kill_worker(supervisor, name)
    sql(db, "UPDATE u SET v = -v WHERE id < 50", "DELETE FROM t WHERE id < 40", "INSERT INTO u VALUES (99999, 0)")
    events = wait_for_row(out, "u", 99999)
    info = supervisor.info(name)
    assert info["ops"]["restarts"] >= 2 and info["ops"]["source"]["snapshot"]["done"] is True
    # snapshot rows the killed worker wrote past its checkpoint are read again (at-least-once);
    # every change still comes exactly once and every before image matches
    assert replay(dedupe(events), rereads=True) == table_state(db, ["t", "u"])


def test_worker_and_supervisor_sigkill_mid_stream_lose_nothing(supervisor: Supervisor, db: str, tmp_path: Path) -> None:
    sql(db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)", "INSERT INTO t SELECT seq, seq FROM seq_1_to_100")
    out, name = tmp_path / "out.jsonl", "tg-my-e2e-kill"
    supervisor.create(spec(name, db, ["t"], out, max_events=50))
    wait_until(
        lambda: (checkpoint(supervisor, name) or "").startswith("snapshot:0:100:end"),
        timeout=30,
        message="snapshot delivered",
    )
    kill_worker_then_supervisor_under_writes(supervisor, name, make_writer(db, 1000))
    sql(db, "INSERT INTO t VALUES (99999, 0)")
    events = wait_for_row(out, "t", 99999)
    assert replay(dedupe(events)) == table_state(db, ["t"])


def restart_mariadb() -> float:
    """Stop the server and start it again with the service script; returns the downtime."""
    t0 = time.monotonic()
    subprocess.run(["mariadb-admin", "--protocol=socket", "-uroot", "shutdown"], check=True, timeout=60)
    subprocess.run([str(ROOT / "scripts/services/mariadb.sh")], check=True, timeout=120, stdout=subprocess.DEVNULL)
    wait_until(lambda: port_open("127.0.0.1", 3306), timeout=30, message="mariadb back")
    return time.monotonic() - t0


@pytest.mark.skipif(os.geteuid() != 0, reason="restarting the MariaDB server needs root")
def test_mariadb_server_restart_is_ridden_out(supervisor: Supervisor, db: str, tmp_path: Path) -> None:
    sql(db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)", "INSERT INTO t SELECT seq, seq FROM seq_1_to_50")
    out, name = tmp_path / "out.jsonl", "tg-my-e2e-restart"
    supervisor.create(spec(name, db, ["t"], out))
    wait_for_row(out, "t", 50, op="r")
    for i in range(51, 81):
        sql(db, f"INSERT INTO t VALUES ({i}, {i})", f"UPDATE t SET v = v + 1 WHERE id = {i - 40}")
    wait_for_row(out, "t", 80)
    downtime = restart_mariadb()
    assert downtime < 15, f"the restart took {downtime:.1f}s"
    for i in range(81, 111):
        sql(db, f"INSERT INTO t VALUES ({i}, {i})", f"DELETE FROM t WHERE id = {i - 70}")
    sql(db, "INSERT INTO t VALUES (99999, 0)")  # after every change above: once it is in, they all are
    events = wait_for_row(out, "t", 99999)
    assert supervisor.info(name)["ops"]["source"]["binlog"]["reconnects"] >= 1
    assert replay(dedupe(events)) == table_state(db, ["t"])


def test_a_best_effort_sink_left_behind_by_a_killed_worker_gets_a_gap_of_real_positions(
    supervisor: Supervisor, db: str, tmp_path: Path
) -> None:
    """CONTRACT 7, as for PostgreSQL: `from` is the first skipped event's own binlog position,
    stored by the killed worker; `to` is the committed position."""
    from worker.sources.mysql.source import MysqlSource

    sql(db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    out, name = tmp_path / "out.jsonl", "tg-my-e2e-gap"
    s = spec(name, db, ["t"], out, snapshot="never", max_events=5, max_ms=50)
    s["spec"]["sinks"].append(DEAD_REDIS)
    supervisor.create(s)
    wait_until(
        lambda: supervisor.info(name)["ops"]["source"].get("binlog", {}).get("connected"),
        timeout=30,
        message="mysql source connected",
    )
    for i in range(1, 21):
        sql(db, f"INSERT INTO t VALUES ({i}, {i})")
    gap_after_kill(supervisor, name, wait_for_row(out, "t", 20), MysqlSource.position_key)
