"""Replication health in the sources' stats (CONTRACT section 8, `ops.source`), against
the real servers: the WAL a PostgreSQL slot retains and the binlog bytes a MariaDB
reader is behind, read on the sources' slow timer (worker.sources.health); 50 MB
written while nothing is consumed shows up within 10% of what the server says, and
falls back near zero once drained and committed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared.spec.model import MysqlSourceConfig
from tests.integration.test_mysql_source_helpers import connect, ctx, scratch_db
from tests.integration.test_pg_source import DSN, PG, drain, pg  # noqa: F401 - pg is a fixture
from tests.support import wait_until
from worker.sources.health import HealthPoller
from worker.sources.mysql.health import distance
from worker.sources.mysql.source import MysqlSource
from worker.sources.postgres.health import SlotProbe

MB = 1024 * 1024


async def health_until(src: Any, ok: Any, timeout: float = 60.0, read: bool = False) -> dict[str, Any]:
    """Wait for stats() to satisfy `ok` (the poller runs every few seconds); `read`: consume meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        st = src.stats()
        if ok(st):
            return st
        assert time.monotonic() < deadline, f"source health never satisfied the test: {st}"
        if read:
            await src.read()
        else:
            await asyncio.sleep(0.1)


def test_pg_retained_wal_matches_the_slot_and_falls_after_commit(pg: PG) -> None:
    t = pg.table("health", "id int PRIMARY KEY, v text")

    async def main() -> None:
        src = pg.source([t])
        await src.open(None)
        # right after open the stream may not have attached to the slot yet: wait until it has
        st = await health_until(src, lambda s: s.get("retained_wal_bytes") is not None and s.get("slot_active"))
        assert st["slot"] == pg.slot and st["slot_active"] is True and st["errors"] == {}
        assert st["wal_status"] in ("reserved", "extended") and st["restart_lsn"]
        for i in range(50):  # 50 MB of rows, not consumed
            pg.sql(f"INSERT INTO {t} SELECT g, repeat('x', 1000) FROM generate_series({i * 1000}, {i * 1000 + 999}) g")
        st = await health_until(src, lambda s: (s["retained_wal_bytes"] or 0) > 50 * MB)
        (restart, theirs), *_ = pg.sql(
            "SELECT restart_lsn::text, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (pg.slot,),
        )
        assert st["restart_lsn"] == restart
        assert abs(st["retained_wal_bytes"] - theirs) <= 0.1 * theirs, (st, theirs)
        peak = st["retained_wal_bytes"]
        events = await drain(src, 50_000, timeout=60)
        await src.commit(events[-1]["source"]["position"])
        st = await health_until(src, lambda s: s["retained_wal_bytes"] < 0.1 * peak, read=True)
        assert st["errors"] == {}
        await src.close()

    asyncio.run(main())


def test_a_refused_health_query_is_reported_not_raised(pg: PG) -> None:
    """No slot, or no server: the fields are null and `errors` says why; nothing raises."""
    for dsn, why in ((DSN, "does not exist"), ("postgresql://postgres@127.0.0.1:1/x", "cannot connect")):
        poller = HealthPoller(SlotProbe(dsn, "tidegate_no_such_slot", pg.pipeline), "test", interval=0.1).start()
        try:
            v = wait_until(lambda p=poller: p.values()["errors"] and p.values(), timeout=15, message="an error")
        finally:
            poller.stop()
        assert why in v["errors"]["slot"] and v["retained_wal_bytes"] is None and v["slot"] == "tidegate_no_such_slot"


@pytest.fixture
def db() -> Iterator[str]:
    yield from scratch_db()


def test_distance_across_binlog_files() -> None:
    sizes = [("b.000001", 1000), ("b.000002", 500), ("b.000003", 300)]
    assert distance(sizes, "b.000003", 100, "b.000003", 300) == 200
    assert distance(sizes, "b.000001", 400, "b.000003", 120) == 600 + 500 + 120
    assert distance(sizes, "b.000000", 4, "b.000003", 120) is None


def test_mysql_behind_bytes_match_the_server_and_fall_after_drain(db: str) -> None:
    with connect(db) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
    conf = MysqlSourceConfig(dsn=f"mysql://root@127.0.0.1:3306/{db}", tables=[f"{db}.t"], snapshot="never")

    async def main() -> None:
        src = MysqlSource(conf, ctx("tg-my-health"))
        await src.open(None)
        try:
            st = await health_until(src, lambda s: s.get("behind_bytes") is not None)
            assert st["server_binlog_file"] and st["errors"] == {}
            with connect(db) as c, c.cursor() as cur:  # 50 MB in 500 transactions, not consumed
                for i in range(500):
                    cur.execute(f"INSERT INTO t SELECT seq, repeat('x', 1000) FROM seq_{i * 100}_to_{i * 100 + 99}")
                st = await health_until(src, lambda s: (s["behind_bytes"] or 0) > 10 * MB)
                cur.execute("SHOW MASTER STATUS")
                file, pos = cur.fetchone()[:2]
                cur.execute("SHOW BINARY LOGS")
                theirs = distance(
                    [(r[0], int(r[1])) for r in cur.fetchall()], st["binlog_file"], st["binlog_pos"], file, pos
                )
            assert theirs is not None and abs(st["behind_bytes"] - theirs) <= 0.1 * theirs, (st, theirs)
            await health_until(src, lambda s: s["behind_bytes"] is not None and s["behind_bytes"] < MB, read=True)
        finally:
            await src.close()

    asyncio.run(main())
