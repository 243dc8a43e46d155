"""The outbox example (specs/examples/outbox-postgres-kafka.yaml) through a real `tidegate
serve`: a PostgreSQL outbox table -> `type: outbox` -> Kafka (a tansu broker). One topic per
aggregate type, keyed by the aggregate id, the jsonb payload as the value, the header columns
as Kafka headers; the deletes that clean the table up are dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shared.spec.decode import parse
from tests.integration.test_pg_source import DSN, PG, pg  # noqa: F401 - fixture
from tests.integration.test_sink_kafka import consume
from tests.support import wait_until
from tests.support.supervisor import ROOT, Supervisor
from tests.support.tansu import Tansu, tansu  # noqa: F401 - fixture

EXAMPLE = ROOT / "specs" / "examples" / "outbox-postgres-kafka.yaml"
DDL = "id text PRIMARY KEY, aggregate_type text NOT NULL, aggregate_id text NOT NULL, type text, payload jsonb"
ROWS = [
    ("e1", "order", "o-1", "OrderCreated", '{"order": 1, "total": 10.5}'),
    ("e2", "customer", "c-7", "CustomerMoved", '{"city": "Oslo"}'),
    ("e3", "order", "o-1", "OrderPaid", '{"order": 1}'),
    ("e4", "order", "o-2", "OrderCreated", '{"order": 2, "total": 3}'),
]


@pytest.fixture
def sup(pg: PG, tansu: Tansu, tmp_path: Path) -> Iterator[Supervisor]:  # noqa: F811
    """The example's `${OUTBOX_DSN}` and `${KAFKA_BROKERS}` from the supervisor's environment;
    stopped before `pg` cleans up (its worker holds a slot)."""
    s = Supervisor(tmp_path, env={"OUTBOX_DSN": DSN, "KAFKA_BROKERS": tansu.bootstrap})
    s.start()
    try:
        yield s
    finally:
        s.close()


def example(name: str, table: str) -> dict[str, Any]:
    doc = parse(EXAMPLE.read_bytes())
    doc["metadata"]["name"] = name
    doc["spec"]["source"]["config"]["tables"] = [f"public.{table}"]
    doc["spec"]["processors"][0]["tables"] = [f"public.{table}"]
    return doc


def headers(m: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in m.headers() or []}


def test_outbox_rows_become_keyed_routed_messages_and_deletes_are_dropped(
    pg: PG,  # noqa: F811
    sup: Supervisor,
    tansu: Tansu,  # noqa: F811
) -> None:
    table = pg.table("outbox", DDL)
    name = f"tg-outbox-{pg.suffix}"
    sup.create(example(name, table))
    sup.wait_status(name, "running")
    for row in ROWS[:2]:  # one transaction per event, then two in one, then the clean-up
        pg.sql(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s)", row)
    pg.sql(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s), (%s, %s, %s, %s, %s)", ROWS[2] + ROWS[3])
    pg.sql(f"DELETE FROM {table}")

    def settled() -> dict[str, Any] | None:
        ops = sup.info(name)["ops"]
        done = ops["events_in"] == 8 and ops["inflight"] == 0 and ops["checkpoints"].get("bus")
        return ops if done else None

    ops = wait_until(settled, timeout=60, message="4 inserts and 4 deletes read and committed")
    assert ops["events_out"] == 4, "the deletes of outbox rows are dropped"
    orders = consume(tansu.bootstrap, "outbox.event.order")
    customers = consume(tansu.bootstrap, "outbox.event.customer")
    got = sorted(
        ((m.topic(), m.key(), msgspec.json.decode(m.value()), headers(m)) for m in orders + customers),
        key=lambda t: (t[0], t[1], t[3]["id"]),
    )
    assert got == [
        ("outbox.event.customer", b"c-7", {"city": "Oslo"}, {"id": "e2", "type": "CustomerMoved"}),
        ("outbox.event.order", b"o-1", {"order": 1, "total": 10.5}, {"id": "e1", "type": "OrderCreated"}),
        ("outbox.event.order", b"o-1", {"order": 1}, {"id": "e3", "type": "OrderPaid"}),
        ("outbox.event.order", b"o-2", {"order": 2, "total": 3}, {"id": "e4", "type": "OrderCreated"}),
    ]
    by_key = [m for m in orders if m.key() == b"o-1"]
    assert len({m.partition() for m in by_key}) == 1, "one aggregate's events on one partition"
    assert [headers(m)["id"] for m in by_key] == ["e1", "e3"], "in order"
    shown = sup.info(name)["spec"]["spec"]["processors"][0]
    assert shown["type"] == "outbox" and shown["route"] == "${aggregate_type}"
