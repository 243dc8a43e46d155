"""Incremental snapshots (backfills while streaming, CONTRACT section 13) on real PostgreSQL.

A pipeline with `snapshot: never` over a table that already holds rows; a writer updates,
deletes and inserts random rows all along; `POST .../snapshots` reads the table in key chunks
between watermarks. At the end the file, folded by key in order, equals the table: every row
with its latest values, deleted rows absent (a chunk row older than a change already emitted
would bring an old value back, or a deleted row). A worker SIGKILLed mid-backfill resumes from
its last committed chunk. The API's 404, 409 and 422 answers.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from supervisor import opscli
from tests.e2e.test_metrics_e2e import scrape, value
from tests.e2e.test_pg_source_e2e import spec
from tests.integration.test_pg_source import DSN, PG, pg  # noqa: F401 - fixture
from tests.integration.test_pg_source_resume import replay
from tests.integration.test_pg_source_resume import table_state as state
from tests.support import wait_until
from tests.support.cdc import dedupe, kill_worker, wait_for_row
from tests.support.supervisor import Supervisor, read_jsonl


@pytest.fixture
def sup(pg: PG, tmp_path: Path) -> Iterator[Supervisor]:
    s = Supervisor(tmp_path)
    s.start()
    try:
        yield s
    finally:
        s.close()


class RandomWriter(threading.Thread):
    """Updates and deletes random rows of ids 1..n, and inserts new ones, until stopped: 7 rows
    per transaction, at most `rows_per_s` rows a second (None: as fast as it goes, 5 ms apart)."""

    def __init__(self, table: str, n: int, rows_per_s: float | None = None) -> None:
        super().__init__(daemon=True)
        self.table, self.n, self.stop, self.txs = table, n, threading.Event(), 0
        self.rng = random.Random(16)
        self.gap = 7 / rows_per_s if rows_per_s else None

    def run(self) -> None:
        c = psycopg2.connect(DSN)
        new, due = 10_000_000, time.monotonic()
        with c.cursor() as cur:
            while not self.stop.is_set():
                for _ in range(5):
                    cur.execute(f"UPDATE {self.table} SET v = v + 1 WHERE id = %s", (self.rng.randint(1, self.n),))
                cur.execute(f"DELETE FROM {self.table} WHERE id = %s", (self.rng.randint(1, self.n),))
                new += 1
                cur.execute(f"INSERT INTO {self.table} VALUES (%s, 0)", (new,))
                c.commit()
                self.txs += 1
                if self.gap is None:
                    time.sleep(0.005)
                else:  # on a schedule: a slow moment is made up, never exceeded on average
                    due += self.gap
                    self.stop.wait(max(0.0, due - time.monotonic()))
        c.close()


def snapshots(sup: Supervisor, name: str) -> list[dict[str, Any]]:
    r = sup.client.get(f"/pipelines/{name}/snapshots")
    assert r.status_code == 200, r.text
    return r.json()


def start(sup: Supervisor, name: str, tables: list[str], chunk_rows: int = 1000) -> Any:
    return sup.client.post(f"/pipelines/{name}/snapshots", json={"tables": tables, "chunk_rows": chunk_rows})


def wait_done(sup: Supervisor, name: str, snap_id: str, timeout: float = 120) -> dict[str, Any]:
    def ok() -> dict[str, Any] | None:
        s = next(x for x in snapshots(sup, name) if x["id"] == snap_id)
        assert s["status"] in ("running", "done"), s
        return s if s["status"] == "done" else None

    return wait_until(ok, timeout=timeout, interval=0.2, message=f"snapshot {snap_id} done")


def finish(pg: PG, out: Path, t: str, writer: RandomWriter) -> list[dict[str, Any]]:
    writer.stop.set()
    writer.join()
    pg.sql(f"INSERT INTO {t} VALUES (99999999, 0)")
    return dedupe(wait_for_row(out, t, 99999999, timeout=90))


def test_backfill_while_a_writer_changes_the_rows_equals_the_table(pg: PG, sup: Supervisor, tmp_path: Path) -> None:
    n = 20_000
    t = pg.table("bf", "id int PRIMARY KEY, v int")
    pg.sql(f"INSERT INTO {t} SELECT g, g FROM generate_series(1, {n}) g")
    out, name = tmp_path / "out.jsonl", f"tg-pg-bf-{pg.suffix}"
    sup.create(spec(name, [t], out, snapshot="never"))
    sup.wait_status(name, "running")
    writer = RandomWriter(t, n)
    writer.start()
    try:
        wait_until(lambda: writer.txs > 20, timeout=30, message="writer running")
        txs0 = writer.txs
        r = start(sup, name, [f"public.{t}"], chunk_rows=200)
        assert r.status_code == 202, r.text
        snap = r.json()
        assert set(snap) == {
            "id",
            "tables",
            "status",
            "rows_read",
            "rows_total_estimate",
            "table",
            "last_key",
            "started_at",
            "finished_at",
            "error",
        }
        assert snap["status"] == "running" and snap["tables"] == [f"public.{t}"]
        done = wait_done(sup, name, snap["id"])
        during = writer.txs - txs0
    finally:
        events = finish(pg, out, t, writer)
    assert during > 30, f"the writer ran {during} transactions during the backfill"
    assert done["finished_at"] and done["table"] is None and n * 0.9 <= done["rows_read"] <= n * 1.2, done
    reads = [e for e in events if e["op"] == "r"]
    assert reads and all(e["source"]["snapshot"] == "incremental" for e in reads)
    assert replay(events) == state(pg, t), "the file folded by key is not the table"
    untouched = {k for k in state(pg, t) if k <= n} - {
        (e["after"] or e["before"])["id"] for e in events if e["op"] != "r"
    }
    assert untouched <= {e["after"]["id"] for e in reads}, "a row the writer never touched did not arrive as r"


def test_200k_rows_under_a_500_rows_per_s_writer_and_three_sigkills(pg: PG, sup: Supervisor, tmp_path: Path) -> None:
    """Issue scale: 200,000 rows backfilled while a writer updates and deletes random rows at 500
    rows/s; the worker SIGKILLed three times during the backfill resumes from its last chunk each
    time (rows read stay under 1.2x the table) and the file folded by key equals the table."""
    n = 200_000
    t = pg.table("bfkill", "id int PRIMARY KEY, v int")
    pg.sql(f"INSERT INTO {t} SELECT g, g FROM generate_series(1, {n}) g")
    out, name = tmp_path / "out.jsonl", f"tg-pg-bfk-{pg.suffix}"
    sup.create(spec(name, [t], out, snapshot="never"))
    sup.wait_status(name, "running")
    writer = RandomWriter(t, n, rows_per_s=500)
    writer.start()
    try:
        r = start(sup, name, [t], chunk_rows=1000)
        assert r.status_code == 202, r.text
        snap_id = r.json()["id"]
        for frac in (0.2, 0.45, 0.7):
            wait_until(
                lambda: next(s for s in snapshots(sup, name) if s["id"] == snap_id)["rows_read"] >= n * frac,  # noqa: B023
                timeout=180,
                interval=0.05,
                message=f"backfill past {frac:.0%}",
            )
            before = next(s for s in snapshots(sup, name) if s["id"] == snap_id)
            assert before["status"] == "running" and before["last_key"] is not None, before
            kill_worker(sup, name)
        done = wait_done(sup, name, snap_id, timeout=300)
        during = writer.txs
    finally:
        events = finish(pg, out, t, writer)
    assert during * 7 > 1000, f"the writer changed only {during * 7} rows during the backfill"
    assert sup.info(name)["ops"]["restarts"] >= 3
    assert done["rows_read"] <= n * 1.2, f"read {done['rows_read']} rows of {n}: not resumed from the last chunk"
    reads = [e for e in events if e["op"] == "r"]
    assert len(reads) <= n * 1.2, f"{len(reads)} r events for {n} rows: not resumed from the last chunk"
    assert replay(events) == state(pg, t), "the file folded by key is not the table"


def test_snapshot_api_404_409_422_pause_resume_cancel(pg: PG, sup: Supervisor, tmp_path: Path) -> None:
    t = pg.table("bfapi", "id int PRIMARY KEY, v int")
    nopk = pg.table("bfnopk", "id int, v int")
    other = pg.table("bfother", "id int PRIMARY KEY")
    pg.sql(f"ALTER TABLE {nopk} REPLICA IDENTITY FULL")
    pg.sql(f"INSERT INTO {t} SELECT g, g FROM generate_series(1, 3000) g")
    out, name = tmp_path / "out.jsonl", f"tg-pg-bfapi-{pg.suffix}"
    sup.create(spec(name, [t, nopk], out, snapshot="never"))
    sup.wait_status(name, "running")
    assert start(sup, "no-such-pipeline", [t]).status_code == 404
    assert sup.client.post(f"/pipelines/{name}/snapshots/nope/pause").status_code == 404
    r = start(sup, name, [other])
    assert r.status_code == 422 and "not captured" in r.json()["error"]["message"], r.text
    r = start(sup, name, [nopk])
    assert r.status_code == 422 and "primary key" in r.json()["error"]["message"], r.text
    assert start(sup, name, []).status_code == 422
    sup.action(name, "pause")  # nothing is delivered: the snapshot stays running
    r = start(sup, name, [t], chunk_rows=100)
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    r = sup.client.post(f"/pipelines/{name}/snapshots/{sid}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused", r.text
    r = start(sup, name, [t])
    assert r.status_code == 409 and "already running" in r.json()["error"]["message"], r.text
    assert [s["status"] for s in snapshots(sup, name)] == ["paused"]
    r = sup.client.post(f"/pipelines/{name}/snapshots/{sid}/resume")
    assert r.status_code == 200 and r.json()["status"] == "running", r.text
    r = sup.client.post(f"/pipelines/{name}/snapshots/{sid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"], r.text
    assert sup.client.post(f"/pipelines/{name}/snapshots/{sid}/resume").status_code == 409
    sup.action(name, "resume")
    cli = ["--server", sup.url, "-o", "json"]
    assert opscli.main(["snapshot", "start", name, "nope_table", *cli]) == 1
    assert opscli.main(["snapshot", "start", name, t, "--chunk-rows", "1000", *cli]) == 0  # the table is free again
    sid2 = snapshots(sup, name)[-1]["id"]
    assert opscli.main(["snapshot", "ls", name, *cli]) == 0
    done = wait_done(sup, name, sid2, timeout=60)
    assert done["rows_read"] == 3000
    assert [s["status"] for s in sup.info(name)["ops"]["snapshots"]] == ["cancelled", "done"]
    fams = scrape(sup)
    assert value(fams, "tidegate_snapshot_rows_read", pipeline=name, snapshot=sid2) == 3000
    assert value(fams, "tidegate_snapshot_rows_total_estimate", pipeline=name, snapshot=sid2) is not None
    assert value(fams, "tidegate_snapshots", pipeline=name, status="done") == 1
    assert value(fams, "tidegate_snapshots", pipeline=name, status="cancelled") == 1
    events = dedupe(read_jsonl(out))
    assert replay(events) == state(pg, t)


def test_patch_adding_a_table_snapshots_only_that_table(pg: PG, sup: Supervisor, tmp_path: Path) -> None:
    a = pg.table("bfa", "id int PRIMARY KEY, v int")
    b = pg.table("bfb", "id int PRIMARY KEY, v int")
    pg.sql(f"INSERT INTO {a} SELECT g, g FROM generate_series(1, 2000) g")
    pg.sql(f"INSERT INTO {b} SELECT g, g FROM generate_series(1, 3000) g")
    out, name = tmp_path / "out.jsonl", f"tg-pg-bfadd-{pg.suffix}"
    sup.create(spec(name, [a], out))
    wait_until(lambda: len(read_jsonl(out)) >= 2000, timeout=60, message="the initial snapshot of a")
    pg.sql(f"INSERT INTO {a} VALUES (5000, 0)")
    wait_for_row(out, a, 5000)
    r = sup.client.patch(
        f"/pipelines/{name}",
        json={"spec": {"source": {"config": {"tables": [f"public.{a}", f"public.{b}"]}}}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    snap = wait_until(
        lambda: next((s for s in snapshots(sup, name) if s["status"] == "done"), None),
        timeout=90,
        message="the added table's snapshot done",
    )
    assert snap["tables"] == [f"public.{b}"] and snap["rows_read"] == 3000, snap
    pg.sql(f"UPDATE {b} SET v = -1 WHERE id = 7")
    pg.sql(f"INSERT INTO {b} VALUES (99999999, 0)")
    events = dedupe(wait_for_row(out, b, 99999999))
    mark = next(i for i, e in enumerate(events) if e["source"]["table"] == a and e["after"]["id"] == 5000)
    later = events[mark + 1 :]
    assert not [e for e in later if e["source"]["table"] == a], "rows of the other table were emitted again"
    assert sorted(e["after"]["id"] for e in later if e["op"] == "r") == list(range(1, 3001))
    assert replay([e for e in events if e["source"]["table"] == b]) == state(pg, b)


def test_composite_text_and_uuid_key_is_chunked_exactly(pg: PG, sup: Supervisor, tmp_path: Path) -> None:
    t = pg.table("bfcomp", "k text, u uuid, v int, PRIMARY KEY (k, u)")
    pg.sql(f"INSERT INTO {t} SELECT 'k' || (g % 7), md5(g::text)::uuid, g FROM generate_series(1, 1500) g")
    out, name = tmp_path / "out.jsonl", f"tg-pg-bfcomp-{pg.suffix}"
    sup.create(spec(name, [t], out, snapshot="never"))
    sup.wait_status(name, "running")
    r = start(sup, name, [t], chunk_rows=64)
    assert r.status_code == 202, r.text
    done = wait_done(sup, name, r.json()["id"], timeout=60)
    assert done["rows_read"] == 1500
    reads = [e["after"] for e in dedupe(read_jsonl(out)) if e["op"] == "r"]
    got = sorted((a["k"], a["u"], a["v"]) for a in reads)
    assert got == sorted((k, u, v) for k, u, v in pg.sql(f"SELECT k, u::text, v FROM {t}"))


def test_a_table_dropped_mid_backfill_halts_the_pipeline_and_fails_the_snapshot(
    pg: PG, sup: Supervisor, tmp_path: Path
) -> None:
    """A captured table dropped while its backfill runs: the pipeline halts saying so (issue #12);
    once PATCH takes the table out of `tables` it streams on, and the snapshot is `failed` (#16)."""
    t = pg.table("bfdrop", "id int PRIMARY KEY, v int")
    other = pg.table("bfkeep", "id int PRIMARY KEY")
    pg.sql(f"INSERT INTO {t} SELECT g, g FROM generate_series(1, 100000) g")
    out, name = tmp_path / "out.jsonl", f"tg-pg-bfdrop-{pg.suffix}"
    sup.create(spec(name, [t, other], out, snapshot="never"))
    sup.wait_status(name, "running")
    sup.action(name, "pause")  # nothing is delivered, so the first chunks are read and then it waits
    r = start(sup, name, [t], chunk_rows=100)
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    pg.sql(f"DROP TABLE {t}")
    sup.action(name, "resume")
    info = sup.wait_status(name, "failed", timeout=60)
    assert f"captured table public.{t} was dropped" in (info["ops"]["last_error"] or ""), info["ops"]
    r = sup.client.patch(
        f"/pipelines/{name}",
        json={"spec": {"source": {"config": {"tables": [f"public.{other}"]}}}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    failed = wait_until(
        lambda: (s := next(x for x in snapshots(sup, name) if x["id"] == sid))["status"] == "failed" and s,
        timeout=60,
        message=lambda: f"the snapshot failed ({snapshots(sup, name)})",
    )
    assert t in failed["error"] and failed["finished_at"], failed
    pg.sql(f"INSERT INTO {other} VALUES (42)")
    wait_for_row(out, other, 42)
    assert sup.info(name)["status"] == "running"
