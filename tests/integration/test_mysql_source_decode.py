"""The source's own binlog reader and generated row decoders (mysql/wire.py, rowcode.py) against
mysql-replication + the converter, on real MariaDB binlog rows of every column type and edge value,
across a binlog rotation and an ALTER TABLE: both must give the same events, and the snapshot the
same values as the binlog. A column type the own decoder cannot read switches the source to
mysql-replication without losing or repeating a change."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from shared.spec.model import MysqlSourceConfig
from tests.integration.test_mysql_source_helpers import connect, ctx, drain, run, scratch_db, sql
from worker.sources.handoff import Stopped
from worker.sources.mysql.position import BinlogPos
from worker.sources.mysql.setup import check_server, load_tables, parse_dsn
from worker.sources.mysql.snapshot import Snapshot
from worker.sources.mysql.source import MysqlSource
from worker.sources.mysql.stream import BinlogStream

TABLE = """CREATE TABLE e (id INT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT, mu MEDIUMINT UNSIGNED,
  ii INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, fl FLOAT, db DOUBLE,
  d1 DECIMAL(10,2), d2 DECIMAL(2,2), d3 DECIMAL(30,10), d4 DECIMAL(10,0), d5 DECIMAL(65,30),
  vc VARCHAR(20), vl VARCHAR(300), ch CHAR(3), la VARCHAR(10) CHARACTER SET latin1, tx TEXT,
  lt LONGTEXT, bl BLOB, vb VARBINARY(300), bn BINARY(3),
  dt DATETIME, d6 DATETIME(6), d3t DATETIME(3), ts TIMESTAMP NULL, t6 TIMESTAMP(6) NULL, dd DATE,
  tm TIME, tm1 TIME(1), tm6 TIME(6), yr YEAR, js JSON, en ENUM('a','b','c'), st SET('x','y','z'),
  b1 BIT(1), b9 BIT(9), b64 BIT(64), bo BOOLEAN)"""
ROWS = [
    (
        "(1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808,"
        " 18446744073709551615, 1.1, -2.5e300, -12.34, -0.99, 12345678901234567890.0123456789, -42,"
        " 0.000000000000000000000000000001, '', REPEAT('x', 300), 'abc', 'café', 'text', REPEAT('l', 70000),"
        " x'00ff', x'', x'0102', '1000-01-01 00:00:00', '2024-02-29 23:59:59.999999', '2024-01-02 03:04:05.100',"
        " '1970-01-01 00:00:01', '2038-01-19 03:14:07.000001', '9999-12-31', '-838:59:59', '00:00:00.5',"
        " '12:34:56.000001', 1901, '{\"k\": [true, null, 1.5, \"é\"]}', 'c', '', b'1', b'100000001',"
        " b'1111111111111111111111111111111111111111111111111111111111111111', false)"
    ),
    (
        "(2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'ü', 'v', 'x', 'x', '', '', '', '', x'000000',"
        " '2024-01-02 03:04:05', '2024-01-02 03:04:05', '2024-01-02 03:04:05', '2024-01-02 03:04:05',"
        " '2024-01-02 03:04:05', '2024-01-02', '-00:00:01', '-00:00:01.5', '838:59:59.000000', 2155, '[]',"
        " 'a', 'x,y,z', b'0', b'0', b'0', true)"
    ),
    (
        "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
        " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
        " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    ),
]


@pytest.fixture
def db() -> Iterator[str]:
    yield from scratch_db()


class Collect:
    def __init__(self, n: int) -> None:
        self.n, self.events, self.stopping = n, [], threading.Event()

    def send(self, events: list[dict[str, Any]], tx_end: bool) -> None:
        self.events += events
        if len(self.events) >= self.n:
            raise Stopped()


def master(db: str) -> str:
    with connect(db) as c, c.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        f, p = cur.fetchone()[:2]
    return f"{f}:{p}"


def stream(db: str, start: str, n: int, fast: bool) -> list[dict[str, Any]]:
    dsn = parse_dsn(f"mysql://root@127.0.0.1:3306/{db}")
    with connect(db) as c, c.cursor() as cur:
        server = check_server(cur, dsn.where)
        tables = load_tables(cur, [(db, "e")], server.flavor, dsn.where)
    feed = Collect(n)
    s = BinlogStream(dsn, server, tables, 987654 + fast, feed, {}, structlog.get_logger(), fast=fast)  # type: ignore[arg-type]
    file, pos = start.split(":")
    try:
        s.run(BinlogPos(file, int(pos), 0))
    except Stopped:
        pass
    return feed.events


def snapshot(db: str) -> list[dict[str, Any]]:
    dsn = parse_dsn(f"mysql://root@127.0.0.1:3306/{db}")
    with connect(db) as c, c.cursor() as cur:
        server = check_server(cur, dsn.where)
        tables = load_tables(cur, [(db, "e")], server.flavor, dsn.where)
    feed = Collect(10**9)
    Snapshot(dsn, server, tables, 100, feed, {}, structlog.get_logger()).run(0, ())  # type: ignore[arg-type]
    return feed.events


def test_fast_decoder_equals_mysql_replication_for_every_type(db: str) -> None:
    sql(db, TABLE)
    start = master(db)
    sql(db, *[f"INSERT INTO e VALUES {r}" for r in ROWS])
    snap = snapshot(db)
    sql(
        db,
        "UPDATE e SET vc = 'changed', d1 = d1 + 1, st = 'y', b9 = b'11' WHERE id IN (1, 2, 3)",
        "DELETE FROM e WHERE id IN (1, 2, 3)",
    )
    fast = stream(db, start, 9, fast=True)
    slow = stream(db, start, 9, fast=False)
    assert [e["op"] for e in fast] == ["c"] * 3 + ["u"] * 3 + ["d"] * 3
    for a, b in zip(fast, slow):
        for image in ("before", "after"):
            if a[image] is None:
                assert b[image] is None
                continue
            diff = {k: (a[image][k], b[image].get(k)) for k in a[image] if a[image][k] != b[image].get(k)}
            assert not diff and a[image].keys() == b[image].keys(), f"{a['op']} {image}: fast vs slow {diff}"
    for r, c in zip(snap, fast[:3]):
        diff = {k: (r["after"][k], c["after"][k]) for k in c["after"] if r["after"][k] != c["after"][k]}
        assert not diff, f"snapshot vs binlog {diff}"
    r1 = fast[0]["after"]
    assert r1["d3"] == "12345678901234567890.0123456789" and r1["d2"] == "-0.99" and r1["d4"] == "-42"
    assert r1["d5"] == "0.000000000000000000000000000001"
    assert r1["bu"] == 18446744073709551615 and r1["b64"] == 2**64 - 1 and r1["b9"] == 257
    assert r1["tm"] == "-838:59:59" and r1["t6"] == "2038-01-19T03:14:07.000001Z" and r1["la"] == "café"
    assert r1["js"] == {"k": [True, None, 1.5, "é"]} and r1["st"] == [] and r1["vb"] == ""
    assert fast[1]["after"]["st"] == ["x", "y", "z"] and fast[1]["after"]["tm1"] == "-00:00:01.500000"
    assert all(v is None for k, v in fast[2]["after"].items() if k != "id")


def test_both_readers_agree_across_a_binlog_rotation_and_alter_table(db: str) -> None:
    sql(db, "CREATE TABLE e (id INT PRIMARY KEY, v VARCHAR(10) NOT NULL, n BIGINT UNSIGNED NOT NULL)")
    start = master(db)
    sql(
        db,
        "INSERT INTO e VALUES (1, 'a', 1), (2, 'b', 2)",
        "FLUSH BINARY LOGS",
        "INSERT INTO e VALUES (3, 'c', 18446744073709551615)",
        "ALTER TABLE e ADD COLUMN d DECIMAL(5,1) NULL, ADD COLUMN j JSON NULL, ADD COLUMN w DATETIME(6) NULL",
        "INSERT INTO e VALUES (4, 'd', 4, -1.5, '{\"x\": [1]}', '2024-01-02 03:04:05.000006')",
        "UPDATE e SET v = 'z', d = 2.5 WHERE id IN (1, 4)",
        "DELETE FROM e WHERE id = 2",
    )
    fast, slow = stream(db, start, 7, fast=True), stream(db, start, 7, fast=False)
    for e in fast + slow:
        e.pop("ts_ms")
    assert fast == slow
    assert [e["op"] for e in fast] == ["c", "c", "c", "c", "u", "u", "d"]
    files = [e["source"]["position"].split(":")[0] for e in fast]
    assert files[0] == files[1] != files[2] == files[6]
    assert fast[3]["after"] == {
        "id": 4,
        "v": "d",
        "n": 4,
        "d": "-1.5",
        "j": {"x": [1]},
        "w": "2024-01-02T03:04:05.000006",
    }
    assert fast[2]["after"]["n"] == 18446744073709551615 and fast[4]["after"]["j"] is None


def test_a_column_type_the_own_decoder_cannot_read_switches_to_mysql_replication(db: str) -> None:
    sql(db, "CREATE TABLE g (id INT PRIMARY KEY, v INT)")
    conf = MysqlSourceConfig(dsn=f"mysql://root@127.0.0.1:3306/{db}", tables=["g"], snapshot="never")

    async def go() -> list[dict[str, Any]]:
        src = MysqlSource(conf, ctx("tg-my-geometry"))
        await src.open(None)
        try:
            sql(db, "INSERT INTO g VALUES (1, 1)", "ALTER TABLE g ADD COLUMN p POINT NULL")
            sql(db, "INSERT INTO g VALUES (2, 2, POINT(1, 2))", "UPDATE g SET v = 3 WHERE id = 1")
            return await drain(src, lambda ev: len(ev) >= 3, timeout=60)
        finally:
            await src.close()

    events = run(go())
    assert [(e["op"], (e["after"] or {}).get("id")) for e in events] == [("c", 1), ("c", 2), ("u", 1)]
    assert events[1]["after"]["p"] and events[2]["before"] == {"id": 1, "v": 1, "p": None}
