"""PostgresSource resumes: mid-transaction, mid-snapshot, at the snapshot/stream handoff, while
paused (keepalives), and across a restart of the PostgreSQL server itself (a private throwaway
cluster on a free port, so that the restart disturbs no other test sharing the main server)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg2

from shared.errors import SourceError
from shared.spec.model import PostgresSourceConfig
from tests.integration.test_pg_source import DSN, PG, drain, pg, quiet  # noqa: F401 - pg is a fixture
from tests.support import require_service, wait_until
from tests.support.pgcluster import PrivateCluster
from worker.sources.base import SourceContext
from worker.sources.postgres.position import parse, position_key
from worker.sources.postgres.source import PostgresSource


def replay(events: list[dict[str, Any]], key: str = "id", strict: bool = False) -> dict[Any, dict[str, Any]]:
    """Apply events in order (r/c/u upsert, d delete): the table a consumer would hold.

    strict: a change that cannot apply (c of a present row, u/d of an absent one) is a change
    delivered twice or a gap, and fails."""
    state: dict[Any, dict[str, Any]] = {}
    for e in events:
        if strict and e["op"] != "r":
            k = (e["before"] or e["after"])[key]
            assert (k in state) == (e["op"] != "c"), f"{e['op']} of row {k} cannot apply: {e['source']}"
        if e["op"] == "d":
            state.pop(e["before"][key], None)
        else:
            if e["op"] == "u" and e["before"] and e["before"][key] != e["after"][key]:
                state.pop(e["before"][key], None)
            state[e["after"][key]] = {**state.get(e["after"][key], {}), **e["after"]}
    return state


def table_state(pg: PG, t: str) -> dict[Any, dict[str, Any]]:
    return {r[0]: {"id": r[0], "v": r[1]} for r in pg.sql(f"SELECT id, v FROM {t}")}


def test_resume_mid_transaction_skips_the_delivered_prefix_and_not_a_row_more(pg: PG) -> None:
    t = pg.table("midtx", "id int PRIMARY KEY, v int")

    async def main() -> None:
        src = pg.source([t])
        await src.open(None)
        pg.sql(f"INSERT INTO {t} SELECT g, 0 FROM generate_series(1, 10) g")
        pg.sql(f"INSERT INTO {t} SELECT g, 0 FROM generate_series(11, 20) g")
        ev = await drain(src, 20)
        await src.commit(ev[3]["source"]["position"])
        await src.close()
        again = pg.source([t])
        await again.open(ev[3]["source"]["position"])
        rest = await drain(again, 16)
        assert [e["after"]["id"] for e in rest] == list(range(5, 21))
        assert [e["source"]["position"] for e in rest] == [e["source"]["position"] for e in ev[4:]]
        assert await quiet(again, 0.3) == []
        await again.close()

    asyncio.run(main())


def test_restart_mid_snapshot_resumes_at_table_granularity_without_gap_or_double(pg: PG) -> None:
    ts = [pg.table(f"rs{i}", "id int PRIMARY KEY, v int") for i in range(3)]
    for t in ts:
        pg.sql(f"INSERT INTO {t} SELECT g, 0 FROM generate_series(1, 1200) g")

    async def main() -> None:
        src = pg.source(ts, snapshot="initial", snapshot_chunk=500)
        src._handoff.limit = 400
        await src.open(None)
        first = await drain(src, 1200 + 500)  # table 0 complete, table 1 in part
        committed = first[-1]["source"]["position"]
        assert parse(committed).table == 1
        pg.sql(f"UPDATE {ts[0]} SET v = 1 WHERE id <= 5")  # after the slot's point: streamed
        await src.close()  # the exported snapshot is gone with it
        pg.sql(f"UPDATE {ts[1]} SET v = 2 WHERE id <= 5")  # before the re-export: in the new snapshot
        pg.sql(f"DELETE FROM {ts[2]} WHERE id > 1190")
        again = pg.source(ts, snapshot="initial", snapshot_chunk=500)
        await again.open(committed)
        rest = await drain(again, 1200 * 2 - 10 + 5, timeout=30)
        pg.sql(f"UPDATE {ts[1]} SET v = 3 WHERE id = 1")  # after: streamed
        pg.sql(f"INSERT INTO {ts[2]} VALUES (5000, 9)")
        rest += await drain(again, 2)
        assert await quiet(again, 0.3) == []
        by = {t: [e for e in rest if e["source"]["table"] == t] for t in ts}
        assert [e["op"] for e in by[ts[0]]] == ["u"] * 5, "finished table: not read again, its changes streamed"
        r1 = [e for e in by[ts[1]] if e["op"] == "r"]
        assert sorted(e["after"]["id"] for e in r1) == list(range(1, 1201)), "interrupted table read again"
        assert [e["op"] for e in by[ts[1]] if e["op"] != "r"] == ["u"], "changes in its snapshot not doubled"
        assert sorted(e["after"]["id"] for e in by[ts[2]] if e["op"] == "r") == list(range(1, 1191))
        assert [e["op"] for e in by[ts[2]] if e["op"] != "r"] == ["c"]
        keys = [position_key(e["source"]["position"]) for e in first + rest]
        assert keys == sorted(keys) and len(set(keys)) == len(keys), "positions only grow, also across the restart"
        for t in ts:
            assert replay([e for e in first + rest if e["source"]["table"] == t], strict=True) == table_state(pg, t)
        await again.close()

    asyncio.run(main())


def test_resume_at_snapshot_stream_handoff_streams_from_the_slot_point(pg: PG) -> None:
    t = pg.table("handoff", "id int PRIMARY KEY, v int")
    pg.sql(f"INSERT INTO {t} SELECT g, 0 FROM generate_series(1, 300) g")

    async def main() -> None:
        src = pg.source([t], snapshot="initial")
        await src.open(None)
        snap = await drain(src, 300)
        last = snap[-1]["source"]["position"]
        assert last.endswith(":last")
        pg.sql(f"UPDATE {t} SET v = 1 WHERE id <= 3")  # streamed while "down"
        await src.close()
        pg.sql(f"INSERT INTO {t} VALUES (301, 1)")
        again = pg.source([t], snapshot="initial")
        await again.open(last)
        ev = await drain(again, 4)
        assert [e["op"] for e in ev] == ["u", "u", "u", "c"]
        assert await quiet(again, 0.3) == []
        assert replay(snap + ev, strict=True) == table_state(pg, t)
        await again.close()

    asyncio.run(main())


def test_paused_pipeline_keeps_the_replication_connection_alive(pg: PG) -> None:
    t = pg.table("paused", "id int PRIMARY KEY, v int")

    async def main() -> None:
        # the walsender drops a client silent for 2 s; we answer every 0.5 s even with a full buffer
        src = pg.source([t], dsn=DSN + "?options=-c%20wal_sender_timeout%3D2s", status_interval_ms=500)
        src._handoff.limit = 1000
        await src.open(None)
        for i in range(50):
            pg.sql(f"INSERT INTO {t} SELECT g, 0 FROM generate_series({i * 100 + 1}, {i * 100 + 100}) g")
        wait_until(lambda: src._handoff.thread_blocked, timeout=10, message="buffer full, thread holding")
        await asyncio.sleep(5)  # "paused": read() not called for 2.5 x wal_sender_timeout
        ev = await drain(src, 5000)
        assert sorted(e["after"]["id"] for e in ev) == list(range(1, 5001))
        assert src.stats()["stream"]["reconnects"] == 0, src.stats()
        await src.close()

    asyncio.run(main())


def test_server_restart_is_ridden_out_without_loss() -> None:
    require_service("postgresql", "127.0.0.1", 5432)
    cluster = PrivateCluster().start()
    conn: Any = None
    try:
        conn = psycopg2.connect(cluster.dsn)
        conn.autocommit = True
        conn.cursor().execute("CREATE TABLE t (id int PRIMARY KEY, v int)")

        def insert(a: int, b: int) -> None:
            conn.cursor().execute("INSERT INTO t SELECT g, 0 FROM generate_series(%s, %s) g", (a, b))

        async def main() -> None:
            nonlocal conn
            conf = PostgresSourceConfig(dsn=cluster.dsn, tables=["public.t"], snapshot="initial")
            src = PostgresSource(conf, SourceContext(pipeline="tg-pg-restart"))
            await src.open(None)
            for i in range(5):
                insert(i * 100 + 1, i * 100 + 100)
            ev = await drain(src, 200)  # part read, part still on the server
            await src.commit(ev[-1]["source"]["position"])
            conn.close()
            t0 = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(None, cluster.restart)
            assert time.monotonic() - t0 < 15, "the walsender let the server shut down promptly"
            conn = psycopg2.connect(cluster.dsn)
            conn.autocommit = True
            insert(501, 600)
            ev += await drain(src, 600 - len(ev), timeout=30)
            ids = [e["after"]["id"] for e in ev]
            assert sorted(set(ids)) == list(range(1, 601)), "nothing lost"
            assert len(ids) == len(set(ids)), "nothing doubled: the reconnect resumed after the last event handed out"
            assert src.stats()["stream"]["reconnects"] >= 1
            await src.close()

        asyncio.run(main())
    finally:
        if conn is not None:
            conn.close()
        cluster.close()


def test_wal_level_not_logical_is_a_clear_error_naming_the_fix() -> None:
    require_service("postgresql", "127.0.0.1", 5432)
    cluster = PrivateCluster(wal_level="replica").start()
    try:

        async def main() -> None:
            conf = PostgresSourceConfig(dsn=cluster.dsn, tables=["public.t"], snapshot="never")
            src = PostgresSource(conf, SourceContext(pipeline="tg-pg-wal"))
            try:
                await src.open(None)
            except SourceError as exc:
                assert not exc.retryable
                assert "wal_level is 'replica'" in exc.message and "ALTER SYSTEM SET wal_level = logical" in exc.message
            else:
                raise AssertionError("open() succeeded with wal_level=replica")
            finally:
                await src.close()

        asyncio.run(main())
    finally:
        cluster.close()
