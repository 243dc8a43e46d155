"""PostgresSource against the real PostgreSQL: types and ops, transactions, snapshot, flush, drop, errors.

Each test uses its own tables, slot and publication (random suffix) in database tg_pg_test and
removes them at the end (a leftover slot pins WAL for everyone). Helpers here are reused by
test_pg_source_resume.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
import structlog

from shared.errors import SourceError
from shared.spec.model import PostgresSourceConfig
from tests.support import require_service, wait_until
from worker.sources.base import Chunk, SourceContext
from worker.sources.postgres.position import lsn_to_int, position_key
from worker.sources.postgres.source import PostgresSource

ADMIN_DSN = os.environ.get("TIDEGATE_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DB = "tg_pg_test"
DSN = os.environ.get("TIDEGATE_TEST_PG_DSN", f"postgresql://postgres@127.0.0.1:5432/{DB}")


def ensure_db() -> None:
    require_service("postgresql", "127.0.0.1", 5432)
    conn = psycopg2.connect(ADMIN_DSN)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW wal_level")
            level = cur.fetchone()[0]
            assert level == "logical", f"wal_level is {level}: run scripts/services/postgres.sh (make services)"
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,))
            if cur.fetchone() is None:
                try:
                    cur.execute(f"CREATE DATABASE {DB}")
                except psycopg2.errors.DuplicateDatabase:
                    pass
    finally:
        conn.close()


class PG:
    """One test's corner of the server: a suffix for names, a SQL connection, cleanup."""

    def __init__(self) -> None:
        self.suffix = uuid.uuid4().hex[:8]
        self.pipeline = f"tg-pg-{self.suffix}"
        self.conn = psycopg2.connect(DSN)
        self.conn.autocommit = True
        self.tables: list[str] = []
        self.sources: list[PostgresSource] = []

    def sql(self, query: str, args: Any = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else []

    def table(self, base: str, ddl: str) -> str:
        name = f"tg_pg_{base}_{self.suffix}"
        self.sql(f"CREATE TABLE {name} ({ddl})")
        self.tables.append(name)
        return name

    @property
    def slot(self) -> str:
        return "tidegate_" + self.pipeline.replace("-", "_")

    def source(self, tables: list[str], *, pipeline: str | None = None, **cfg: Any) -> PostgresSource:
        cfg.setdefault("snapshot", "never")
        conf = PostgresSourceConfig(dsn=cfg.pop("dsn", DSN), tables=[f"public.{t}" for t in tables], **cfg)
        log = structlog.get_logger().bind(test=self.suffix)
        src = PostgresSource(conf, SourceContext(pipeline=pipeline or self.pipeline, log=log))
        self.sources.append(src)
        return src

    def slot_row(self, slot: str | None = None) -> tuple[Any, ...] | None:
        rows = self.sql(
            "SELECT confirmed_flush_lsn::text, active_pid FROM pg_replication_slots WHERE slot_name = %s",
            (slot or self.slot,),
        )
        return rows[0] if rows else None

    def close(self) -> None:
        for s in self.sources:
            try:
                asyncio.run(s.close())
            except Exception:  # noqa: BLE001 - cleanup goes on
                pass
        pat = f"%{self.suffix}%"
        for (slot,) in self.sql("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s", (pat,)):
            wait_until(lambda: self._drop_slot(slot), timeout=15, message=f"slot {slot} dropped")  # noqa: B023
        for (pub,) in self.sql("SELECT pubname FROM pg_publication WHERE pubname LIKE %s", (pat,)):
            self.sql(f'DROP PUBLICATION "{pub}"')
        for t in self.tables:
            self.sql(f"DROP TABLE IF EXISTS {t}")
        self.conn.close()

    def _drop_slot(self, slot: str) -> bool:
        try:
            self.sql("SELECT pg_drop_replication_slot(%s)", (slot,))
        except psycopg2.errors.UndefinedObject:
            pass
        except psycopg2.errors.ObjectInUse:
            return False
        return True


@pytest.fixture
def pg() -> Iterator[PG]:
    ensure_db()
    ctx = PG()
    try:
        yield ctx
    finally:
        ctx.close()


async def drain(
    src: PostgresSource, n: int, timeout: float = 20.0, chunks: list[Chunk] | None = None
) -> list[dict[str, Any]]:
    """Read until `n` events arrived (fails on timeout); extra events of the last chunk are kept."""
    out: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(out) < n:
        assert loop.time() < deadline, f"only {len(out)} of {n} events within {timeout}s"
        ch = await src.read()
        if ch is not None:
            out.extend(ch.events)
            if chunks is not None:
                chunks.append(ch)
    return out


async def quiet(src: PostgresSource, seconds: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        ch = await src.read()
        if ch is not None:
            out.extend(ch.events)
    return out


TYPES_DDL = """id int PRIMARY KEY, i2 smallint, i8 bigint, num numeric(20,6), r real, d double precision,
    t text, vc varchar(10), ch char(3), b boolean, dt date, ts timestamp, tstz timestamptz, tm time,
    iv interval, u uuid, j json, jb jsonb, by bytea, ia int[], ta text[], ip inet, big text"""
TYPES_ROW = """(%s, -2, 9007199254740993, 1234.500000, 1.5, 2.25, 'héllo', 'vc', 'ab', true, '2024-02-29',
    '2024-01-02 03:04:05.5', '2024-01-02 03:04:05.123456+02', '10:11:12', '1 day 2 hours', 
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, 2]}', '{"b": true}', '\\x00ff10', '{1,NULL,3}',
    '{"x y",z}', '192.168.0.1/32', repeat('x', 5000))"""
TYPES_EXPECTED = {
    "i2": -2,
    "i8": 9007199254740993,
    "num": "1234.500000",
    "r": 1.5,
    "d": 2.25,
    "t": "héllo",
    "vc": "vc",
    "ch": "ab ",
    "b": True,
    "dt": "2024-02-29",
    "ts": "2024-01-02T03:04:05.5",
    "tstz": "2024-01-02T01:04:05.123456Z",
    "tm": "10:11:12",
    "iv": "P1DT2H",
    "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "j": {"k": [1, 2]},
    "jb": {"b": True},
    "by": "AP8Q",
    "ia": [1, None, 3],
    "ta": ["x y", "z"],
    "ip": "192.168.0.1",
    "big": "x" * 5000,
}


def test_every_common_type_and_op_snapshot_and_stream_alike(pg: PG) -> None:
    t = pg.table("types", TYPES_DDL)
    pg.sql(f"ALTER TABLE {t} ALTER COLUMN big SET STORAGE EXTERNAL")  # out of line, uncompressed
    full = pg.table("full", "id int PRIMARY KEY, v text, n int")
    pg.sql(f"ALTER TABLE {full} REPLICA IDENTITY FULL")
    pg.sql(f"INSERT INTO {t} VALUES {TYPES_ROW}", (1,))
    pg.sql(f"INSERT INTO {full} VALUES (1, 'a', 10)")

    async def main() -> None:
        src = pg.source([t, full], snapshot="initial")
        await src.open(None)
        snap = await drain(src, 2)
        assert sorted((e["op"], e["source"]["table"]) for e in snap) == [("r", full), ("r", t)]
        r = next(e for e in snap if e["source"]["table"] == t)
        assert r["after"] == {"id": 1, **TYPES_EXPECTED} and r["before"] is None
        with pg.conn.cursor() as cur:  # one transaction: one tx_id
            pg.conn.autocommit = False
            cur.execute(f"INSERT INTO {t} VALUES {TYPES_ROW}", (2,))
            cur.execute(f"UPDATE {t} SET b = false, ia = NULL WHERE id = 2")
            pg.conn.commit()
            pg.conn.autocommit = True
        pg.sql(f"UPDATE {t} SET id = 3 WHERE id = 2")
        pg.sql(f"DELETE FROM {t} WHERE id = 3")
        pg.sql(f"UPDATE {full} SET v = 'b' WHERE id = 1")
        pg.sql(f"DELETE FROM {full} WHERE id = 1")
        ev = await drain(src, 6)
        assert [e["op"] for e in ev] == ["c", "u", "u", "d", "u", "d"]
        c, u1, u2, d, fu, fd = ev
        assert c["after"] == {"id": 2, **TYPES_EXPECTED} and c["before"] is None
        unchanged = {k: v for k, v in TYPES_EXPECTED.items() if k != "big"}  # TOAST unchanged: omitted
        assert u1["after"] == {"id": 2, **unchanged, "b": False, "ia": None}
        assert u1["before"] == {"id": 2}  # default identity: key only
        assert c["source"]["tx_id"] == u1["source"]["tx_id"] != u2["source"]["tx_id"]
        assert u2["before"] == {"id": 2} and u2["after"]["id"] == 3
        assert "big" not in u2["after"], "unchanged TOAST value is omitted"
        assert d["before"] == {"id": 3} and d["after"] is None
        assert fu["before"] == {"id": 1, "v": "a", "n": 10} and fu["after"] == {"id": 1, "v": "b", "n": 10}
        assert fd["before"] == {"id": 1, "v": "b", "n": 10} and fd["after"] is None
        for e in ev:
            s = e["source"]
            assert s["connector"] == "postgres" and s["db"] == "tg_pg_test" and s["schema"] == "public"
            assert s["table"] in (t, full) and s["ts_ms"] > 1_600_000_000_000
        keys = [position_key(e["source"]["position"]) for e in snap + ev]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        await src.close()

    asyncio.run(main())


def test_500_row_transaction_is_one_chunk_stream_ending_at_commit(pg: PG) -> None:
    t = pg.table("tx", "id int PRIMARY KEY, v text")

    async def main() -> None:
        src = pg.source([t])
        await src.open(None)
        pg.sql(f"INSERT INTO {t} VALUES (0, 'before')")
        pg.sql(f"INSERT INTO {t} SELECT g, 'x' FROM generate_series(1, 500) g")
        pg.sql(f"INSERT INTO {t} SELECT g, 'y' FROM generate_series(501, 12600) g")  # > one chunk
        chunks: list[Chunk] = []
        ev = await drain(src, 12601, chunks=chunks)
        assert [e["after"]["id"] for e in ev] == list(range(12601))
        txs = [e["source"]["tx_id"] for e in ev]
        assert len(set(txs[1:501])) == 1 and txs[0] != txs[1] and txs[501] != txs[500]
        for ch in chunks:  # tx_end exactly when the chunk's last event ends its tx
            last = ch.events[-1]
            i = ev.index(last)
            ends = i == len(ev) - 1 or ev[i + 1]["source"]["tx_id"] != last["source"]["tx_id"]
            assert ch.tx_end == ends
        assert sum(1 for ch in chunks if not ch.tx_end) >= 2, "the 12100-row tx came in several chunks"
        await src.close()

    asyncio.run(main())


def test_snapshot_initial_yields_each_row_once_then_streams_without_gap_or_double(pg: PG) -> None:
    t = pg.table("snap", "id int PRIMARY KEY, v int")
    nopk = pg.table("snapfull", "a int, b text")
    pg.sql(f"ALTER TABLE {nopk} REPLICA IDENTITY FULL")
    pg.sql(f"INSERT INTO {t} SELECT g, 0 FROM generate_series(1, 2500) g")
    pg.sql(f"INSERT INTO {nopk} SELECT g, 'r' || g FROM generate_series(1, 1200) g")

    async def main() -> None:
        src = pg.source([t, nopk], snapshot="initial", snapshot_chunk=400)
        src._handoff.limit = 300  # the thread pauses after each chunk: changes land mid-snapshot
        await src.open(None)
        first = await drain(src, 400)
        pg.sql(f"UPDATE {t} SET v = 1 WHERE id <= 10 OR id > 2490")
        pg.sql(f"DELETE FROM {t} WHERE id BETWEEN 11 AND 20")
        pg.sql(f"INSERT INTO {t} SELECT g, 2 FROM generate_series(3001, 3010) g")
        pg.sql(f"INSERT INTO {nopk} VALUES (5000, 'new')")
        rest = await drain(src, 2500 + 1200 + 20 + 10 + 10 + 1 - len(first), timeout=30)
        ev = first + rest
        snap = [e for e in ev if e["op"] == "r"]
        stream = [e for e in ev if e["op"] != "r"]
        assert sorted(e["after"]["id"] for e in snap if e["source"]["table"] == t) == list(range(1, 2501))
        assert all(e["after"]["v"] == 0 for e in snap if e["source"]["table"] == t), "snapshot is consistent"
        assert sorted(e["after"]["a"] for e in snap if e["source"]["table"] == nopk) == list(range(1, 1201))
        assert ev.index(snap[-1]) == len(snap) - 1, "every r before the first change"
        got = sorted((e["op"], e["source"]["table"], (e["after"] or e["before"]).get("id", -1)) for e in stream)
        assert got == sorted(
            [("u", t, i) for i in [*range(1, 11), *range(2491, 2501)]]
            + [("d", t, i) for i in range(11, 21)]
            + [("c", t, i) for i in range(3001, 3011)]
            + [("c", nopk, -1)]
        )
        assert src.stats()["snapshot"]["done"] is True and src.stats()["snapshot"]["rows_done"] == 3700
        assert await quiet(src, 0.5) == []
        await src.close()

    asyncio.run(main())


def test_flush_follows_committed_position_only_then_idle_slot_advances(pg: PG) -> None:
    t = pg.table("flush", "id int PRIMARY KEY")

    async def main() -> None:
        src = pg.source([t], heartbeat_ms=300, status_interval_ms=200)
        await src.open(None)
        created = lsn_to_int(pg.slot_row()[0])
        for i in range(3):
            pg.sql(f"INSERT INTO {t} SELECT g FROM generate_series({i * 10}, {i * 10 + 9}) g")
        ev = await drain(src, 30)
        commits = sorted({lsn_to_int(e["source"]["position"].split(":")[0]) for e in ev})
        assert len(commits) == 3
        await quiet(src, 1.0)  # read, never committed: the slot must not move
        assert lsn_to_int(pg.slot_row()[0]) == created
        mid = ev[14]["source"]["position"]  # in the middle of the second transaction
        await src.commit(mid)
        wait_until(lambda: lsn_to_int(pg.slot_row()[0]) == commits[1], timeout=5, message="flush = commit LSN")
        await quiet(src, 1.0)  # heartbeat ticks: something is still in flight
        assert lsn_to_int(pg.slot_row()[0]) == commits[1]
        await src.commit(ev[-1]["source"]["position"])

        def advanced() -> bool:
            asyncio.get_event_loop_policy()
            return lsn_to_int(pg.slot_row()[0]) > commits[2]

        end = asyncio.get_running_loop().time() + 10
        while not advanced():
            assert asyncio.get_running_loop().time() < end, "idle slot did not advance to the WAL end"
            assert await src.read() is None
        await src.close()

    asyncio.run(main())


def test_drop_removes_slot_and_own_publication_only(pg: PG) -> None:
    t = pg.table("drop", "id int PRIMARY KEY")
    keep_pub = f"tg_pg_keep_{pg.suffix}"
    pg.sql(f"CREATE PUBLICATION {keep_pub} FOR TABLE {t}")

    async def main() -> None:
        src = pg.source([t])
        await src.open(None)
        wait_until(lambda: pg.slot_row()[1] is not None, timeout=10, message="slot active")
        await src.drop()  # the runtime drops before it closes: drop stops streaming first
        await src.close()
        assert pg.slot_row() is None
        assert pg.sql("SELECT 1 FROM pg_publication WHERE pubname = %s", (src.publication,)) == []
        other = pg.source([t], pipeline=pg.pipeline + "-b", publication=keep_pub)
        await other.open(None)
        await other.close()
        await other.drop()
        assert pg.sql("SELECT 1 FROM pg_publication WHERE pubname = %s", (keep_pub,)) != [], "not ours: kept"
        kept = pg.source([t], pipeline=pg.pipeline + "-c", drop_slot_on_delete=False)
        await kept.open(None)
        await kept.close()
        await kept.drop()
        assert pg.slot_row(kept.slot) is not None

    asyncio.run(main())


def test_clear_errors_name_the_fix(pg: PG) -> None:
    nopk = pg.table("nopk", "a int")
    ok = pg.table("ok", "id int PRIMARY KEY")
    role = f"tg_pg_norepl_{pg.suffix}"

    async def fails(src: PostgresSource, *words: str) -> SourceError:
        with pytest.raises(SourceError) as info:
            await src.open(None)
        await src.close()
        for w in words:
            assert w in info.value.message, info.value.message
        return info.value

    async def main() -> None:
        e = await fails(pg.source([f"tg_pg_missing_{pg.suffix}"]), "not found", "Fix")
        assert not e.retryable
        await fails(pg.source([nopk]), "no primary key", "REPLICA IDENTITY FULL")
        pg.sql(f"CREATE ROLE {role} LOGIN")
        try:
            dsn = DSN.replace("postgres@", f"{role}@")
            await fails(pg.source([ok], dsn=dsn, pipeline=pg.pipeline + "-r"), "REPLICATION", "ALTER ROLE")
        finally:
            pg.sql(f"DROP ROLE {role}")
        first = pg.source([ok])
        await first.open(None)
        wait_until(lambda: pg.slot_row()[1] is not None, timeout=10, message="slot active")
        e = await fails(pg.source([ok]), "is active for PID", "another `slot`")
        assert e.retryable
        await first.close()

    asyncio.run(main())
