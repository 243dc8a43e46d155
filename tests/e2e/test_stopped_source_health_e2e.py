"""`ops.source` of a pipeline no worker runs (CONTRACT section 8: reported for stopped and
failed pipelines alike, a stopped pipeline's slot still pins WAL), through a real
`tidegate serve` with its probe every second: 50 MB of rows written while a PostgreSQL
pipeline is stopped show up as retained WAL within 10% of what pg_replication_slots says,
and fall back near zero after resume and drain; the same for a MariaDB pipeline's binlog
distance.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_mysql_source_e2e import spec as my_spec
from tests.e2e.test_pg_source_e2e import spec as pg_spec
from tests.integration.test_mysql_source_helpers import connect, scratch_db, sql
from tests.integration.test_pg_source import PG, pg  # noqa: F401 - pg is a fixture
from tests.support import wait_until
from tests.support.supervisor import Supervisor, read_jsonl

MB = 1024 * 1024


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Supervisor]:
    s = Supervisor(tmp_path, env={"TIDEGATE_PROBE_INTERVAL_S": "1"})
    s.start()
    try:
        yield s
    finally:
        s.close()


def source_of(sup: Supervisor, name: str, ok: Any, timeout: float = 90) -> dict[str, Any]:
    return wait_until(
        lambda: (src := sup.info(name)["ops"]["source"]) and ok(src) and src,
        timeout=timeout,
        message=lambda: f"ops.source of {name}: {sup.info(name)['ops']['source']}",
    )


def test_a_stopped_pg_pipeline_reports_the_wal_its_slot_retains(pg: PG, sup: Supervisor, tmp_path: Path) -> None:
    t = pg.table("stopped", "id int PRIMARY KEY, v text")
    name = pg.pipeline
    sup.create(pg_spec(name, [t], tmp_path / "out.jsonl", snapshot="never"))
    sup.wait_status(name, "running", timeout=60)
    source_of(sup, name, lambda s: s.get("slot_active") is True)
    assert sup.action(name, "stop")["status"] == "stopped"
    for i in range(50):  # 50 MB of rows while nothing reads the slot
        pg.sql(f"INSERT INTO {t} SELECT g, repeat('x', 1000) FROM generate_series({i * 1000}, {i * 1000 + 999}) g")
    src = source_of(sup, name, lambda s: (s.get("retained_wal_bytes") or 0) > 50 * MB)
    (theirs,) = pg.sql(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots"
        " WHERE slot_name = %s",
        (pg.slot,),
    )[0]
    assert abs(src["retained_wal_bytes"] - theirs) <= 0.1 * theirs, (src, theirs)
    assert src["slot"] == pg.slot and src["slot_active"] is False and src["wal_status"] in ("reserved", "extended")
    assert sup.info(name)["status"] == "stopped"

    sup.action(name, "resume")
    lines(tmp_path / "out.jsonl", 50_000)
    source_of(sup, name, lambda s: s.get("slot_active") is True and (s.get("retained_wal_bytes") or MB * 99) < 5 * MB)


def lines(path: Path, n: int) -> None:
    """Wait until the file sink holds at least n events."""
    wait_until(lambda: len(read_jsonl(path)) >= n, timeout=180, message=f"{n} events in {path}")


@pytest.fixture
def db() -> Iterator[str]:
    yield from scratch_db()


def server_distance(file: str, pos: int) -> int:
    with connect() as c, c.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        sizes = [(r[0], int(r[1])) for r in cur.fetchall()]
    names = [n for n, _ in sizes]
    i = names.index(file)
    return sizes[i][1] - pos + sum(s for _, s in sizes[i + 1 :])


def test_a_stopped_mysql_pipeline_reports_its_binlog_distance(sup: Supervisor, db: str, tmp_path: Path) -> None:
    sql(db, "CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
    name = "tg-my-stopped-health"
    sup.create(my_spec(name, db, ["t"], tmp_path / "out.jsonl", snapshot="never"))
    sup.wait_status(name, "running", timeout=60)
    sql(db, "INSERT INTO t VALUES (0, 'first')")
    lines(tmp_path / "out.jsonl", 1)
    assert sup.action(name, "stop")["status"] == "stopped"
    for i in range(50):  # 50 MB of binlog while nothing reads it
        rows = ",".join(f"({i * 1000 + j + 1}, REPEAT('x', 1000))" for j in range(1000))
        sql(db, f"INSERT INTO t VALUES {rows}")
    src = source_of(sup, name, lambda s: (s.get("behind_bytes") or 0) > 45 * MB)
    theirs = server_distance(src["binlog_file"], src["binlog_pos"])
    assert abs(src["behind_bytes"] - theirs) <= 0.1 * theirs, (src, theirs)
    assert sup.info(name)["status"] == "stopped"

    sup.action(name, "resume")
    lines(tmp_path / "out.jsonl", 50_001)
    source_of(sup, name, lambda s: s.get("behind_bytes") is not None and s["behind_bytes"] < 5 * MB)
