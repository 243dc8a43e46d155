"""Postgres sink, pure parts: table names, folding a batch per key, SQL, no I/O at build."""

from __future__ import annotations

import time

import pytest
from psycopg2.extras import Json

from shared.errors import SinkError
from shared.spec.model import PostgresSinkConfig
from worker.sinks.base import SinkContext
from worker.sinks.pg_table import TableError, TableInfo, delete_sql, plan, split_table, upsert_sql, values_literal
from worker.sinks.postgres import PostgresSink, pg_where


def info(**extra: str) -> TableInfo:
    cols = {"id": "bigint", "name": "text", **extra}
    return TableInfo("public", "t", cols, ["id"])


def ev(op: str, pos: int, before: dict | None = None, after: dict | None = None) -> dict:
    return {"op": op, "ts_ms": 1, "source": {"position": str(pos)}, "before": before, "after": after}


def test_split_table() -> None:
    assert split_table("orders") == ("public", "orders")
    assert split_table("shop.orders") == ("shop", "orders")
    assert split_table('"we.ird"."Ta""ble"') == ("we.ird", 'Ta"ble')
    with pytest.raises(ValueError):
        split_table("a.b.c")


def test_plan_keeps_the_final_state_per_key() -> None:
    p = plan(
        info(),
        [
            ev("c", 1, after={"id": 1, "name": "a"}),
            ev("u", 2, before={"id": 1}, after={"id": 1, "name": "b"}),
            ev("c", 3, after={"id": 2, "name": "x"}),
            ev("d", 4, before={"id": 2, "name": "x"}),
            ev("d", 5, before={"id": 3}),
            ev("c", 6, after={"id": 3, "name": "back"}),
            ev("r", 7, after={"id": 4, "name": "snap"}),
        ],
    )
    assert sorted(p.deletes) == [(2,)]
    assert sorted(p.upserts[("id", "name")]) == [(1, "b"), (3, "back"), (4, "snap")]


def test_plan_key_change_deletes_the_old_row() -> None:
    p = plan(info(), [ev("u", 1, before={"id": 1, "name": "a"}, after={"id": 5, "name": "a"})])
    assert p.deletes == [(1,)] and p.upserts == {("id", "name"): [(5, "a")]}


def test_plan_merges_partial_images_and_ignores_unknown_columns_and_ops() -> None:
    p = plan(
        info(),
        [
            ev("c", 1, after={"id": 1, "name": "a", "extra": 1}),
            ev("u", 2, after={"id": 1, "extra": 2}),  # e.g. a source that omits unchanged columns
            {"op": "t", "source": {"position": "3"}},
        ],
    )
    assert p.upserts == {("id", "name"): [(1, "a")]}
    assert p.ignored_columns == {"extra"} and p.ignored_ops == {"t"}


def test_plan_converts_json_and_bytea() -> None:
    from worker.sinks.pg_table import _bytea, _json

    ti = TableInfo(
        "public", "t", {"id": "bigint", "doc": "jsonb", "raw": "bytea"}, ["id"], {"doc": _json, "raw": _bytea}
    )
    p = plan(ti, [ev("c", 1, after={"id": 1, "doc": {"a": [1]}, "raw": "AAE="})])
    row = p.upserts[("id", "doc", "raw")][0]
    assert isinstance(row[1], Json) and row[1].adapted == {"a": [1]} and row[2] == b"\x00\x01"


def test_plan_fails_on_an_event_without_its_key() -> None:
    with pytest.raises(TableError, match="key column 'id'"):
        plan(info(), [ev("c", 9, after={"name": "no id"})])


def test_sql_shapes() -> None:
    ti = TableInfo("s", "t", {"id": "bigint", "name": "text", "k2": "uuid"}, ["id", "k2"])
    head, tail, tpl = upsert_sql(ti, ("id", "k2", "name"))
    assert head + "(1, 2, 3)" + tail == (
        'INSERT INTO "s"."t" ("id", "k2", "name") VALUES (1, 2, 3) '
        'ON CONFLICT ("id", "k2") DO UPDATE SET "name" = EXCLUDED."name"'
    )
    assert tpl == "(%s, %s, %s)"
    assert upsert_sql(ti, ("id", "k2"))[1].endswith("DO NOTHING")
    head, tail, tpl = delete_sql(ti)
    assert head + "(1, 2)" + tail == (
        'DELETE FROM "s"."t" AS t USING (VALUES (1, 2)) AS d(k0, k1) WHERE t."id" = d.k0 AND t."k2" = d.k1'
    )
    assert tpl == "(%s::bigint, %s::uuid)"


def test_values_literal_quotes_common_types_and_defers_the_rest() -> None:
    calls: list[object] = []

    def mog(tpl: str, args: tuple) -> bytes:
        calls.append(args[0])
        return b"'ADAPTED'"

    out = values_literal([(1, "it's", None, True, 1.5), (-2, "", float("nan"), False, {"a": 1})], mog)
    assert out == "(1,'it''s',NULL,true,1.5),(-2,'','ADAPTED',false,'ADAPTED')"
    assert len(calls) == 2 and calls[1] == {"a": 1}


def test_constructor_does_no_io_and_names_where() -> None:
    t0 = time.monotonic()
    sink = PostgresSink(
        PostgresSinkConfig(id="pg", dsn="postgresql://u:secret@10.255.255.1:5999/db", table="shop.orders"),
        SinkContext(pipeline="p", position_key=int),
    )
    assert time.monotonic() - t0 < 0.5
    assert sink.where == "10.255.255.1:5999/db" and "secret" not in sink.where
    assert pg_where("host=h port=1 dbname=d") == "h:1/d"
    with pytest.raises(SinkError):
        PostgresSink(PostgresSinkConfig(id="pg", dsn="x", table="a.b.c"), SinkContext(pipeline="p", position_key=int))
