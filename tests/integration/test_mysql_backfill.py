"""The mysql source's incremental snapshots, plugin level against the real MariaDB: through
mysql-replication's reader (the fallback decoder) and across a binlog reconnect mid-backfill, with
changes landing between the watermarks; the chunk positions order and resume like stream rows."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from shared.spec.model import MysqlSourceConfig
from tests.integration.test_mysql_source_helpers import connect, fold, run, scratch_db, sql, table_state
from worker.backfill import Backfills
from worker.sources.base import SourceContext
from worker.sources.mysql.position import key
from worker.sources.mysql.source import MysqlSource


@pytest.fixture
def db() -> Iterator[str]:
    yield from scratch_db()


@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "mysql-replication"])
def test_backfill_with_changes_and_a_reconnect_folds_to_the_table(db: str, fast: bool) -> None:
    sql(db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)", "INSERT INTO t SELECT seq, seq FROM seq_1_to_4000")
    saved: dict[str, str] = {}
    jobs = Backfills(lambda sid, doc: saved.__setitem__(sid, doc), structlog.get_logger())
    jobs.key = key
    rng = random.Random(7)
    config = MysqlSourceConfig(dsn=f"mysql://root@127.0.0.1:3306/{db}", tables=[f"{db}.t"], snapshot="never")

    async def main() -> list[dict[str, Any]]:
        src = MysqlSource(config, SourceContext(pipeline=f"tg-bf-{fast}", backfills=jobs))
        src._fast = fast
        await src.open(None)
        try:
            names, estimate, error = src.backfill_check(["t"])
            assert error is None and names == [f"{db}.t"]
            jobs.start("s1", names, 300, estimate)
            events: list[dict[str, Any]] = []
            new, reconnected = 100_000, False
            with connect(db) as c, c.cursor() as cur:
                while jobs.docs()[0]["status"] == "running":
                    chunk = await src.read()
                    for _ in range(3):
                        cur.execute("UPDATE t SET v = v + 1 WHERE id = %s", (rng.randint(1, 4000),))
                    cur.execute("DELETE FROM t WHERE id = %s", (rng.randint(1, 4000),))
                    cur.execute("INSERT INTO t VALUES (%s, 0)", (new := new + 1,))
                    if chunk is None:
                        continue
                    events.extend(chunk.events)
                    if chunk.tx_end:
                        jobs.commit(chunk.events[-1]["source"]["position"])
                    if not reconnected and jobs.docs()[0]["rows_read"] >= 1500:
                        reconnected = True
                        assert src._stream is not None
                        src._stream.interrupt()  # the binlog link drops: resume after the last event handed over
                cur.execute("INSERT INTO t VALUES (99999999, 0)")
            while not any((e["after"] or {}).get("id") == 99999999 for e in events):
                chunk = await src.read()
                events.extend(chunk.events if chunk else [])
            if fast:  # (mysql-replication reconnects by itself, at its last event)
                assert src.stats()["binlog"]["reconnects"] >= 1
            return events
        finally:
            await src.close()

    events = run(main())
    assert jobs.docs()[0]["status"] == "done" and 4000 <= jobs.docs()[0]["rows_read"] <= 4600, jobs.docs()
    positions = [key(e["source"]["position"]) for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions), "positions out of order"
    reads = [e for e in events if e["op"] == "r"]
    assert reads and all(e["source"]["snapshot"] == "incremental" for e in reads)
    assert fold(events) == table_state(db, ["t"])


def test_a_user_that_cannot_write_the_signal_table_fails_the_snapshot_naming_the_grant(db: str) -> None:
    user = db.replace("tg_my_", "tgbf")
    sql(
        db,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT)",
        "INSERT INTO t VALUES (1, 1)",
        f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'",
        f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'127.0.0.1'",
        f"GRANT SELECT ON {db}.* TO '{user}'@'127.0.0.1'",
    )
    jobs = Backfills(lambda sid, doc: None, structlog.get_logger())
    jobs.key = key
    config = MysqlSourceConfig(dsn=f"mysql://{user}:pw@127.0.0.1:3306/{db}", tables=[f"{db}.t"], snapshot="never")

    async def main() -> dict[str, Any]:
        src = MysqlSource(config, SourceContext(pipeline="tg-bf-grant", backfills=jobs))
        await src.open(None)
        try:
            names, estimate, _ = src.backfill_check([f"{db}.t"])
            jobs.start("s1", names, 100, estimate)
            deadline = time.monotonic() + 30
            while jobs.docs()[0]["status"] == "running" and time.monotonic() < deadline:
                await src.read()
            return jobs.docs()[0]
        finally:
            await src.close()

    try:
        doc = run(main())
    finally:
        sql(db, f"DROP USER '{user}'@'127.0.0.1'")
    assert doc["status"] == "failed" and "GRANT CREATE, INSERT, UPDATE" in doc["error"], doc
    assert "tidegate_signal" in doc["error"] and doc["finished_at"], doc
