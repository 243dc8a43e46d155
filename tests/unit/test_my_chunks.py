"""worker.sources.mysql.chunks: the SQL of the mysql source's key chunks (no database): the last key
kept as text goes back into the query typed like its column; the request check's 422 reasons."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from worker.sources.mysql.chunks import check, chunk_query, key_param, key_text, signal_info
from worker.sources.mysql.setup import TableInfo
from worker.sources.mysql.values import Column, make_converter


def table(name: str, cols: list[tuple[str, str]], pk: list[str]) -> TableInfo:
    columns = [Column(c, t, t, False) for c, t in cols]
    return TableInfo("d", name, 0, columns, pk, 42, make_converter(columns))


def test_key_text_round_trips_typed_like_the_column() -> None:
    cases = [
        ("bigint", 9007199254740993, 9007199254740993),  # not through a double
        ("decimal", Decimal("12.340"), Decimal("12.340")),
        ("varbinary", b"\x00\xff", b"\x00\xff"),
        ("varchar", "Straße", "Straße"),
        ("datetime", dt.datetime(2024, 1, 2, 3, 4, 5, 6), "2024-01-02 03:04:05.000006"),
        ("time", dt.timedelta(hours=-30, seconds=1), "-29:59:59"),
    ]
    for data_type, raw, param in cases:
        assert key_param(data_type, key_text(raw)) == param, data_type


def test_chunk_query_composite_key() -> None:
    t = table("t", [("a", "varchar"), ("b", "int"), ("v", "int")], ["a", "b"])
    sql, args = chunk_query(t, None, 11)
    assert sql == "SELECT `a`, `b`, `v` FROM `d`.`t` ORDER BY `a`, `b` LIMIT 11" and args == []
    sql, args = chunk_query(t, {"a": "x", "b": "7"}, 11)
    assert "WHERE (`a` > %s) OR (`a` = %s AND `b` > %s) ORDER BY `a`, `b` LIMIT 11" in sql
    assert args == ["x", "x", 7]


def test_check_names_the_422_reasons() -> None:
    tables = {
        "d.t": table("t", [("id", "int")], ["id"]),
        "d.nopk": table("nopk", [("id", "int")], []),
        "d.e": table("e", [("k", "enum")], ["k"]),
    }
    assert check(tables, ["t"], "d") == (["d.t"], 42, None)
    assert "not captured" in str(check(tables, ["d.other"], "d")[2])
    assert "no primary key" in str(check(tables, ["nopk"], "d")[2])
    assert "ENUM" in str(check(tables, ["d.e"], "d")[2])
    assert signal_info("d").full_name == "d.tidegate_signal"
