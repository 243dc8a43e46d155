"""PostgresSink against the real PostgreSQL (a dedicated database per test), no runtime.

Upsert/delete semantics and types; the checkpoint kept in the target database
(open returns it; a replayed batch is not applied twice, counted by a trigger);
connections refused and terminated mid-stream, and the target table renamed
away and back: retryable, then everything arrives; fatal set-up errors.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from shared.errors import SinkError
from shared.spec.model import PostgresSinkConfig
from tests.support import require_service
from worker.sinks.base import SinkBatch, SinkContext
from worker.sinks.postgres import PostgresSink

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def db() -> Iterator[str]:
    """A fresh database `tg_pgsink_<hex>` with `orders` and an apply counter; its DSN."""
    require_service("postgresql", "127.0.0.1", 5432)
    name = f"tg_pgsink_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(ADMIN)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        cur.execute("""
            CREATE TABLE orders (id bigint PRIMARY KEY, payload text, doc jsonb, raw bytea, price numeric,
                                 at timestamptz);
            CREATE TABLE applied (id bigint, op text);
            CREATE FUNCTION count_apply() RETURNS trigger LANGUAGE plpgsql AS $$
              BEGIN INSERT INTO applied VALUES (COALESCE(NEW.id, OLD.id), TG_OP); RETURN NULL; END $$;
            CREATE TRIGGER orders_applied AFTER INSERT OR UPDATE OR DELETE ON orders
              FOR EACH ROW EXECUTE FUNCTION count_apply();""")
    try:
        yield dsn
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def query(dsn: str, sql: str, *args: Any) -> list[tuple]:
    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else []


def admin(sql: str) -> None:
    c = psycopg2.connect(ADMIN)
    c.autocommit = True
    try:
        c.cursor().execute(sql)
    finally:
        c.close()


def ev(op: str, n: int, pos: int, **row: Any) -> dict:
    image = {"id": n, "payload": f"p{n}", **row}
    return {
        "op": op,
        "ts_ms": 1,
        "source": {"connector": "generator", "table": "orders", "position": str(pos)},
        "before": image if op in ("d", "u") else None,
        "after": None if op == "d" else image,
    }


def creates(a: int, b: int) -> list[dict]:
    return [ev("c", n, n) for n in range(a, b + 1)]


def batch(seq: int, evs: list[dict]) -> SinkBatch:
    return SinkBatch(seq=seq, events=evs, last_position=evs[-1]["source"]["position"])


def sink(dsn: str, **cfg: Any) -> PostgresSink:
    return PostgresSink(
        PostgresSinkConfig(id=cfg.pop("id", "pg1"), dsn=dsn, table=cfg.pop("table", "orders"), **cfg),
        SinkContext(pipeline="tgpg", position_key=int),
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_replica_semantics_types_and_checkpoint(db: str) -> None:
    async def go() -> None:
        s = sink(db)
        assert await s.open() is None
        await s.write(batch(1, creates(1, 3000)))
        await s.write(
            batch(
                2,
                [
                    ev(
                        "u",
                        5,
                        3001,
                        payload="changed",
                        doc={"a": [1, "x"]},
                        raw="AAEC",
                        price="12.50",
                        at="2026-01-02T03:04:05Z",
                        unknown_col=1,
                    ),
                    ev("d", 6, 3002),
                    ev("u", 7, 3003),
                    ev("d", 7, 3004),
                    ev("c", 7, 3005, payload="again"),
                ],
            )
        )
        await s.close()

    run(go())
    assert query(db, "SELECT count(*) FROM orders") == [(2999,)]
    row = query(db, "SELECT payload, doc, raw, price::text, at FROM orders WHERE id = 5")[0]
    assert row[0] == "changed" and row[1] == {"a": [1, "x"]} and bytes(row[2]) == b"\x00\x01\x02"
    assert row[3] == "12.50" and row[4].year == 2026
    assert query(db, "SELECT payload FROM orders WHERE id = 7") == [("again",)]
    assert query(db, "SELECT pipeline, sink_id, position FROM tidegate_checkpoints") == [("tgpg", "pg1", "3005")]
    assert run(sink(db).open()) == "3005"


def test_literals_round_trip_like_psycopg2(db: str) -> None:
    from worker.sinks.pg_table import values_literal

    odd = ["it's", "back\\slash", "tab\tnew\nline", "ünïcødé ☃", "", "'; DROP TABLE orders; --", "%s %(x)s"]
    with psycopg2.connect(db) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE lit (id int PRIMARY KEY, t text, f float8, b boolean, n numeric)")
        rows = [(i, v, 1.25 * i, i % 2 == 0, 10**30 + i) for i, v in enumerate(odd)]
        cur.execute("INSERT INTO lit VALUES " + values_literal(rows, cur.mogrify))
        cur.execute("SELECT id, t, f, b, n FROM lit ORDER BY id")
        assert [(i, t, f, b, int(n)) for i, t, f, b, n in cur.fetchall()] == rows


def test_replayed_batches_are_not_applied_twice(db: str) -> None:
    async def go() -> None:
        s = sink(db)
        await s.open()
        await s.write(batch(1, creates(1, 1000)))
        await s.write(batch(2, creates(1001, 2000)))
        await s.close()
        s = sink(db)
        assert await s.open() == "2000"
        # a runtime whose own checkpoint lagged re-feeds from 501, cut differently
        await s.write(batch(1, creates(501, 1500)))
        await s.write(batch(2, creates(1501, 2500)))
        await s.close()

    run(go())
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM applied") == [(2500, 2500)]
    assert query(db, "SELECT count(*) FROM orders") == [(2500,)]


def test_connections_refused_and_terminated_then_everything_arrives(db: str) -> None:
    name = db.rsplit("/", 1)[1]

    async def go() -> list[SinkError]:
        s = sink(db)
        await s.open()
        await s.write(batch(1, creates(1, 500)))
        errors: list[SinkError] = []
        admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        held = batch(2, creates(501, 1000))
        try:
            for _ in range(2):  # the dropped connection, then the refused reconnect
                with pytest.raises(SinkError) as info:
                    await s.write(held)
                errors.append(info.value)
        finally:
            admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        await s.write(held)
        admin(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' "
            "AND application_name LIKE 'tidegate-%'"
        )
        third = batch(3, creates(1001, 1500))
        try:
            await s.write(third)
        except SinkError as exc:
            errors.append(exc)
            await s.write(third)
        await s.close()
        return errors

    errors = run(go())
    assert all(e.retryable and e.message.startswith("sink 'pg1': postgres 127.0.0.1:5432/") for e in errors)
    assert any("not currently accepting connections" in e.message for e in errors), [e.message for e in errors]
    assert query(db, "SELECT count(*), min(id), max(id) FROM orders") == [(1500, 1, 1500)]
    assert query(db, "SELECT count(*) FROM applied") == [(1500,)]


def test_table_renamed_away_and_back(db: str) -> None:
    async def go() -> SinkError:
        s = sink(db)
        await s.open()
        await s.write(batch(1, creates(1, 100)))
        query(db, "ALTER TABLE orders RENAME TO orders_moved")
        try:
            with pytest.raises(SinkError) as info:
                await s.write(batch(2, creates(101, 200)))
            with pytest.raises(SinkError):
                await s.write(batch(2, creates(101, 200)))
        finally:
            query(db, "ALTER TABLE orders_moved RENAME TO orders")
        await s.write(batch(2, creates(101, 200)))
        await s.close()
        return info.value

    err = run(go())
    assert err.retryable and "does not exist" in err.message
    assert query(db, "SELECT count(*) FROM orders") == [(200,)]


def test_fatal_set_up_and_data_errors(db: str) -> None:
    query(db, "CREATE TABLE nopk (id bigint, v text); CREATE TABLE strict (id int PRIMARY KEY, v text NOT NULL)")
    base = db.rsplit("/", 1)[0]

    async def fails(s: PostgresSink, *batches: SinkBatch) -> SinkError:
        with pytest.raises(SinkError) as info:
            await s.open()
            for b in batches:
                await s.write(b)
        await s.close()
        assert info.value.retryable is False, info.value.message
        return info.value

    async def go() -> None:
        assert "does not exist" in (await fails(sink(db, table="missing"))).message
        assert "no primary key" in (await fails(sink(db, table="nopk"))).message
        assert "no unique index" in (await fails(sink(db, key_columns=["payload"]))).message
        err = await fails(sink(f"{base.replace('postgres@', 'tg_pgsink_nobody@')}/postgres"))
        assert 'role "tg_pgsink_nobody" does not exist' in err.message
        err = await fails(sink(db, table="strict"), batch(1, [ev("c", 1, 1, v=None)]))
        assert "23502" in err.message and "null value" in err.message

    run(go())
