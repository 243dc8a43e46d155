"""The mysql source plugin against the real MariaDB: types, transactions, resume, snapshot, errors."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest

from shared.errors import SourceError
from shared.spec.model import MysqlSourceConfig
from tests.integration.test_mysql_source_helpers import (
    ctx,
    dedupe,
    drain,
    replay,
    run,
    scratch_db,
    sql,
    table_state,
    tx,
)
from worker.sources.mysql.source import MysqlSource

GTID = re.compile(r"^\d+-\d+-\d+$")


@pytest.fixture
def db() -> Iterator[str]:
    yield from scratch_db()


def cfg(db: str, tables: list[str], **kw: Any) -> MysqlSourceConfig:
    return MysqlSourceConfig(dsn=f"mysql://root@127.0.0.1:3306/{db}", tables=tables, **kw)


TYPES = """CREATE TABLE types (id INT PRIMARY KEY, ti TINYINT, bi BIGINT UNSIGNED, d DECIMAL(10,2),
  fl FLOAT, db DOUBLE, vc VARCHAR(50), ch CHAR(5), tx TEXT, bl BLOB, vb VARBINARY(10), dt DATETIME(3),
  ts TIMESTAMP(6) NULL, dd DATE, tm TIME, yr YEAR, js JSON, en ENUM('a','b'), st SET('x','y','z'),
  bt BIT(10), bo BOOLEAN, nul INT NULL)"""
ROW = (
    "INSERT INTO types VALUES (%s, -5, 18446744073709551615, 12.34, 1.5, 2.25, 'héllo', 'ab', 'long',"
    " x'00ff10', x'0102', '2024-01-02 03:04:05.123', '2024-01-02 03:04:05.654321', '2024-05-06',"
    " '-12:34:56', 2024, '{\"a\": [1, {\"b\": null}]}', 'b', 'x,z', b'1000000001', true, NULL)"
)
EXPECTED = {
    "ti": -5,
    "bi": 18446744073709551615,
    "d": "12.34",
    "fl": 1.5,
    "db": 2.25,
    "vc": "héllo",
    "ch": "ab",
    "tx": "long",
    "bl": base64.b64encode(b"\x00\xff\x10").decode(),
    "vb": base64.b64encode(b"\x01\x02").decode(),
    "dt": "2024-01-02T03:04:05.123000",
    "ts": "2024-01-02T03:04:05.654321Z",
    "dd": "2024-05-06",
    "tm": "-12:34:56",
    "yr": 2024,
    "js": {"a": [1, {"b": None}]},
    "en": "b",
    "st": ["x", "z"],
    "bt": 513,
    "bo": 1,
    "nul": None,
}


def test_every_common_type_insert_update_delete_and_snapshot_alike(db: str) -> None:
    sql(db, TYPES, ROW % 1)

    async def go() -> list[dict[str, Any]]:
        src = MysqlSource(cfg(db, ["types"], snapshot="initial"), ctx("tg-my-types"))
        await src.open(None)
        try:
            events = await drain(src, lambda ev: len(ev) >= 1)
            sql(db, ROW % 2, "UPDATE types SET vc = 'x', st = '', js = '[1]' WHERE id = 2")
            tx(db, [("DELETE FROM types WHERE id = 1", None), ("DELETE FROM types WHERE id = 2", None)])
            return events + await drain(src, lambda ev: len(ev) >= 4)
        finally:
            await src.close()

    r, c, u, d1, d2 = run(go())
    assert [e["op"] for e in (r, c, u, d1, d2)] == ["r", "c", "u", "d", "d"]
    assert r["after"] == {"id": 1, **EXPECTED} and r["before"] is None
    assert c["after"] == {"id": 2, **EXPECTED} and c["before"] is None
    assert u["before"] == c["after"] and u["after"] == {**c["after"], "vc": "x", "st": [], "js": [1]}
    assert d1["before"] == r["after"] and d1["after"] is None and d2["before"] == u["after"]
    for e in (r, c, u, d1, d2):
        s = e["source"]
        assert (s["connector"], s["db"], s["schema"], s["table"]) == ("mysql", db, None, "types")
        assert isinstance(s["ts_ms"], int) and isinstance(e["ts_ms"], int)
    assert r["source"]["tx_id"] is None and r["source"]["position"].startswith("snapshot:0:1:end@0=")
    assert GTID.match(c["source"]["tx_id"]) and GTID.match(u["source"]["tx_id"])
    assert len({c["source"]["tx_id"], u["source"]["tx_id"], d1["source"]["tx_id"]}) == 3
    assert d1["source"]["tx_id"] == d2["source"]["tx_id"]
    keys = [MysqlSource.position_key(e["source"]["position"]) for e in (r, c, u, d1, d2)]
    assert keys == sorted(keys) and len(set(keys)) == 5
    assert d1["source"]["gtid_set"].endswith(d1["source"]["tx_id"].split("-", 2)[2])


def test_big_transaction_has_tx_end_only_at_its_end_and_resumes_mid_way(db: str) -> None:
    sql(db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    conf = cfg(db, ["t"], snapshot="never")

    async def first() -> tuple[list[Any], list[dict[str, Any]]]:
        src = MysqlSource(conf, ctx("tg-my-bigtx"))
        src.max_chunk = 120
        await src.open(None)
        try:
            tx(db, [("INSERT INTO t VALUES " + ",".join(f"({i}, {i})" for i in range(1, 501)), None)])
            sql(db, "INSERT INTO t VALUES (501, 501)")
            chunks: list[Any] = []
            events = await drain(src, lambda ev: len(ev) >= 501, chunks=chunks)
            return chunks, events
        finally:
            await src.close()

    chunks, events = run(first())
    assert len(events) == 501
    big = events[:500]
    assert len({e["source"]["tx_id"] for e in big}) == 1 and events[500]["source"]["tx_id"] != big[0]["source"]["tx_id"]
    assert [e["after"]["id"] for e in events] == list(range(1, 502))
    # chunks of the big transaction: tx_end False until the one holding its last row
    seen = 0
    for ch in chunks:
        seen += len(ch.events)
        if seen < 500:
            assert ch.tx_end is False, f"tx_end inside the transaction after {seen} rows"
        else:
            assert ch.tx_end is True
            break
    assert len(chunks) >= 5
    positions = [e["source"]["position"] for e in events]
    assert positions[0].endswith(":1") and positions[499].endswith(":500")

    async def resume(at: str, n: int) -> list[dict[str, Any]]:
        src = MysqlSource(conf, ctx("tg-my-bigtx"))
        await src.open(at)
        try:
            return await drain(src, lambda ev: len(ev) >= n)
        finally:
            await src.close()

    again = run(resume(positions[122], 501 - 123))
    assert [e["source"]["position"] for e in again] == positions[123:]
    after_tx = run(resume(positions[499], 1))
    assert [e["after"]["id"] for e in after_tx] == [501]


def test_snapshot_initial_each_row_once_then_changes_without_gap_or_double(db: str) -> None:
    sql(db, "CREATE TABLE a (id INT PRIMARY KEY, v INT)", "CREATE TABLE b (id INT PRIMARY KEY, v INT)")
    sql(db, "INSERT INTO a SELECT seq, seq FROM seq_1_to_1000", "INSERT INTO b SELECT seq, seq FROM seq_1_to_300")

    async def go() -> list[dict[str, Any]]:
        src = MysqlSource(cfg(db, ["a", "b"], snapshot_chunk=100), ctx("tg-my-snap"))
        await src.open(None)
        try:
            events = await drain(src, lambda ev: len(ev) >= 100)
            # changes while the snapshot runs: some land before its point, most after
            for i in range(1, 40):
                sql(
                    db,
                    f"UPDATE a SET v = v + 1000 WHERE id = {i * 20}",
                    f"DELETE FROM b WHERE id = {i * 5}",
                    f"INSERT INTO a VALUES ({2000 + i}, {i})",
                    f"UPDATE b SET v = -v WHERE id = {i * 5 + 1}",
                )
            sql(db, "INSERT INTO b VALUES (9999, 0)")
            return events + await drain(src, lambda ev: any(e["after"] and e["after"]["id"] == 9999 for e in ev))
        finally:
            assert src.stats()["snapshot"]["done"] is True
            await src.close()

    events = run(go())
    snap = [e for e in events if e["op"] == "r"]
    assert len(snap) == 1300
    assert all(e["op"] != "r" for e in events[1300:])
    assert replay(events) == table_state(db, ["a", "b"])


def resume_scenario(db: str, stop_after: int, conf: MysqlSourceConfig, name: str, strict: bool, then: int = 0) -> None:
    """Run 1 delivers `stop_after` events and dies; writes happen; run 2 resumes from the last delivered
    position (optionally dies again after `then` more events, run 3 resumes); the replay matches."""

    def writes(tag: int) -> None:
        for i in range(1, 30):
            sql(
                db,
                f"UPDATE a SET v = v + {tag} WHERE id = {i * 7}",
                f"DELETE FROM b WHERE id = '{i * 3 + tag}'",
                f"INSERT INTO a VALUES ({tag * 1000 + i}, {i})",
                f"UPDATE c SET v = -v WHERE id = {i + tag}",
            )

    async def one(position: str | None, n: int | None, sentinel: bool) -> list[dict[str, Any]]:
        src = MysqlSource(conf, ctx(name))
        await src.open(position)
        try:
            if n is not None:
                return (await drain(src, lambda ev: len(ev) >= n))[:n]
            events = await drain(src, lambda ev: src.stats()["snapshot"]["done"])
            sql(db, "INSERT INTO c VALUES (99999, 0)")
            return events + await drain(src, lambda ev: any(e["op"] == "c" and e["after"]["id"] == 99999 for e in ev))
        finally:
            await src.close()

    delivered = run(one(None, stop_after, False))
    writes(1)
    ck = delivered[-1]["source"]["position"]
    if then:
        more = run(one(ck, then, False))
        assert all(MysqlSource.position_key(e["source"]["position"]) > MysqlSource.position_key(ck) for e in more)
        delivered += more
        ck = delivered[-1]["source"]["position"]
        writes(2)
    if then > 700:  # the crash hit the catch-up window: that position carries the snapshot entries
        assert not ck.startswith("snapshot:") and "@" in ck, ck
    rest = run(one(ck, None, True))
    assert all(MysqlSource.position_key(e["source"]["position"]) > MysqlSource.position_key(ck) for e in rest)
    delivered += rest
    assert replay(dedupe(delivered), strict=strict) == table_state(db, ["a", "b", "c"])


@pytest.fixture
def three(db: str) -> str:
    sql(
        db,
        "CREATE TABLE a (id INT PRIMARY KEY, v INT)",
        "CREATE TABLE b (id VARCHAR(10) PRIMARY KEY, v INT)",
        "CREATE TABLE c (id BIGINT PRIMARY KEY, v INT)",
    )
    sql(
        db,
        "INSERT INTO a SELECT seq, seq FROM seq_1_to_400",
        "INSERT INTO b SELECT seq, seq FROM seq_1_to_200",
        "INSERT INTO c SELECT seq, seq FROM seq_1_to_300",
    )
    return db


@pytest.mark.parametrize(
    "stop_after, then",
    [(130, 0), (400, 0), (900, 0), (130, 100), (130, 780)],
    ids=["mid-int-key-table", "end-of-table", "at-handoff", "twice-in-snapshot", "in-snapshot-then-catch-up"],
)
def test_snapshot_resumes_exactly_after_a_crash(three: str, stop_after: int, then: int) -> None:
    conf = cfg(three, ["a", "b", "c"], snapshot_chunk=50)
    resume_scenario(three, stop_after, conf, "tg-my-resume", strict=True, then=then)


def test_snapshot_interrupted_in_a_non_integer_key_table_converges(three: str) -> None:
    conf = cfg(three, ["a", "b", "c"], snapshot_chunk=50)
    resume_scenario(three, 470, conf, "tg-my-resume-b", strict=False)


def test_snapshot_never_starts_at_the_end_of_the_log(db: str) -> None:
    sql(db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)", "INSERT INTO t VALUES (1, 1)")

    async def go() -> list[dict[str, Any]]:
        src = MysqlSource(cfg(db, [f"{db}.t"], snapshot="never"), ctx("tg-my-never"))
        await src.open(None)
        try:
            assert "snapshot" not in src.stats()
            sql(db, "INSERT INTO t VALUES (2, 2)")
            return await drain(src, lambda ev: len(ev) >= 1)
        finally:
            await src.close()

    assert [(e["op"], e["after"]["id"]) for e in run(go())] == [("c", 2)]


def open_error(conf: MysqlSourceConfig, position: str | None = None) -> SourceError:
    async def go() -> None:
        src = MysqlSource(conf, ctx("tg-my-errors"))
        try:
            await src.open(position)
        finally:
            await src.close()

    with pytest.raises(SourceError) as info:
        run(go())
    return info.value


def test_clear_errors_name_the_fix(db: str) -> None:
    sql(db, "CREATE TABLE t (id INT PRIMARY KEY)")
    e = open_error(cfg(db, ["nope"]))
    assert not e.retryable and f"{db}.nope not found" in e.message and "spec.source.config.tables" in e.message
    e = open_error(cfg(db, ["t"]), "mysql-bin.000000:4:1")
    assert not e.retryable and "gone" in e.message and "checkpoints" in e.message
    e = open_error(cfg(db, ["t"]), "garbage")
    assert not e.retryable and "not a mysql position" in e.message
    e = open_error(MysqlSourceConfig(dsn="mysql://root@127.0.0.1:1/x", tables=["t"]))
    assert e.retryable and "127.0.0.1:1" in e.message


def test_missing_replication_privileges_and_row_format_are_named(db: str) -> None:
    user = db.replace("tg_my_", "tgmy")
    sql(
        db,
        "CREATE TABLE t (id INT PRIMARY KEY)",
        f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'",
        f"GRANT SELECT ON {db}.* TO '{user}'@'127.0.0.1'",
    )
    try:
        e = open_error(MysqlSourceConfig(dsn=f"mysql://{user}:pw@127.0.0.1:3306/{db}", tables=["t"]))
        assert not e.retryable and "REPLICATION SLAVE" in e.message and "GRANT" in e.message
    finally:
        sql(db, f"DROP USER '{user}'@'127.0.0.1'")
    sql(db, "SET GLOBAL binlog_format = 'MIXED'")
    try:
        e = open_error(cfg(db, ["t"]))
    finally:
        sql(db, "SET GLOBAL binlog_format = 'ROW'")
    assert not e.retryable and "binlog_format is MIXED" in e.message and "ROW" in e.message
