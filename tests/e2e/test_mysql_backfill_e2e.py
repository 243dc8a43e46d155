"""Incremental snapshots (backfills while streaming, CONTRACT section 13) on the real MariaDB.

A pipeline with `snapshot: never` over a table that already holds rows; a writer updates, deletes
and inserts random rows all along; `POST .../snapshots` reads the table in key chunks between
watermark rows of the signal table. At the end the file, folded by key in order, equals the table:
every row with its latest values, deleted rows absent (a chunk row older than a change already
emitted would bring an old value back, or a deleted row). A worker SIGKILLed mid-backfill resumes
from its last committed chunk. The API's 422s; a composite text key; a table dropped mid-backfill.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_mysql_source_e2e import spec
from tests.integration.test_mysql_source_helpers import connect, fold, scratch_db, sql, table_state
from tests.support import wait_until
from tests.support.cdc import dedupe, kill_worker, wait_for_row
from tests.support.supervisor import Supervisor, read_jsonl

SENTINEL = 99_999_999


@pytest.fixture
def db() -> Iterator[str]:
    yield from scratch_db()


class RandomWriter(threading.Thread):
    """Updates and deletes random rows of ids 1..n and inserts new ones (7 rows a transaction,
    about 500 rows/s), until stopped."""

    def __init__(self, db: str, n: int) -> None:
        super().__init__(daemon=True)
        self.db, self.n, self.stop, self.txs = db, n, threading.Event(), 0
        self.rng = random.Random(16)

    def run(self) -> None:
        c = connect(self.db)
        new = 10_000_000
        with c.cursor() as cur:
            while not self.stop.is_set():
                t0 = time.monotonic()
                c.begin()
                for _ in range(5):
                    cur.execute("UPDATE t SET v = v + 1 WHERE id = %s", (self.rng.randint(1, self.n),))
                cur.execute("DELETE FROM t WHERE id = %s", (self.rng.randint(1, self.n),))
                new += 1
                cur.execute("INSERT INTO t VALUES (%s, 0)", (new,))
                c.commit()
                self.txs += 1
                time.sleep(max(0.0, 0.014 - (time.monotonic() - t0)))
        c.close()


def snapshot(sup: Supervisor, name: str, snap_id: str) -> dict[str, Any]:
    r = sup.client.get(f"/pipelines/{name}/snapshots")
    assert r.status_code == 200, r.text
    return next(s for s in r.json() if s["id"] == snap_id)


def start(sup: Supervisor, name: str, tables: list[str], chunk_rows: int) -> Any:
    return sup.client.post(f"/pipelines/{name}/snapshots", json={"tables": tables, "chunk_rows": chunk_rows})


def wait_status(sup: Supervisor, name: str, snap_id: str, status: str = "done", timeout: float = 90) -> dict[str, Any]:
    def ok() -> dict[str, Any] | None:
        s = box["s"] = snapshot(sup, name, snap_id)
        if s["status"] not in ("running", status):
            pytest.fail(f"snapshot {snap_id} is {s['status']}, not {status}: {s}")  # at once
        return s if s["status"] == status else None

    box: dict[str, Any] = {}
    return wait_until(ok, timeout=timeout, interval=0.2, message=lambda: f"snapshot {status}: {box.get('s')}")


def streaming(sup: Supervisor, name: str) -> None:
    sup.wait_status(name, "running")
    wait_until(
        lambda: sup.info(name)["ops"]["source"].get("binlog", {}).get("connected"),
        timeout=30,
        message="mysql source connected",
    )


def fill(db: str, n: int) -> None:
    sql(db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)", f"INSERT INTO t SELECT seq, seq FROM seq_1_to_{n}")


def finish(db: str, out: Path, writer: RandomWriter) -> list[dict[str, Any]]:
    writer.stop.set()
    writer.join()
    sql(db, f"INSERT INTO t VALUES ({SENTINEL}, 0)")
    return dedupe(wait_for_row(out, "t", SENTINEL, timeout=90))


def test_backfill_while_a_writer_changes_the_rows_equals_the_table(
    supervisor: Supervisor, db: str, tmp_path: Path
) -> None:
    n = 200_000
    fill(db, n)
    out, name = tmp_path / "out.jsonl", "tg-my-bf"
    supervisor.create(spec(name, db, ["t"], out, snapshot="never"))
    streaming(supervisor, name)
    writer = RandomWriter(db, n)
    writer.start()
    try:
        wait_until(lambda: writer.txs > 20, timeout=30, message="writer running")
        txs0 = writer.txs
        r = start(supervisor, name, [f"{db}.t"], chunk_rows=5000)
        assert r.status_code == 202, r.text
        snap = r.json()
        assert snap["status"] == "running" and snap["tables"] == [f"{db}.t"], snap
        done = wait_status(supervisor, name, snap["id"])
        during = writer.txs - txs0
    finally:
        events = finish(db, out, writer)
    assert during > 30, f"the writer ran {during} transactions during the backfill"
    assert done["finished_at"] and done["table"] is None and n * 0.9 <= done["rows_read"] <= n * 1.2, done
    reads = [e for e in events if e["op"] == "r"]
    assert reads and all(e["source"]["snapshot"] == "incremental" for e in reads)
    assert not [e for e in events if e["source"]["table"] != "t"], "a watermark row was emitted"
    assert fold(events) == table_state(db, ["t"]), "the file folded by key is not the table"
    changed = {(e["after"] or e["before"])["id"] for e in events if e["op"] != "r"}
    untouched = {k for _, k in table_state(db, ["t"]) if k <= n} - changed
    assert untouched <= {e["after"]["id"] for e in reads}, "a row the writer never touched did not arrive as r"


def test_sigkill_mid_backfill_resumes_from_the_last_chunk(supervisor: Supervisor, db: str, tmp_path: Path) -> None:
    n = 100_000
    fill(db, n)
    out, name = tmp_path / "out.jsonl", "tg-my-bfkill"
    supervisor.create(spec(name, db, ["t"], out, snapshot="never"))
    streaming(supervisor, name)
    writer = RandomWriter(db, n)
    writer.start()
    try:
        r = start(supervisor, name, ["t"], chunk_rows=1000)
        assert r.status_code == 202, r.text
        snap_id = r.json()["id"]
        for frac in (0.2, 0.45, 0.7):
            wait_until(
                lambda: snapshot(supervisor, name, snap_id)["rows_read"] >= n * frac,  # noqa: B023
                timeout=60,
                interval=0.05,
                message=lambda: f"backfill past {frac:.0%}: {snapshot(supervisor, name, snap_id)}",  # noqa: B023
            )
            before = snapshot(supervisor, name, snap_id)
            assert before["status"] == "running" and before["last_key"] is not None, before
            if frac == 0.7:  # paused: the chunks read since are never delivered, and must be read again
                supervisor.action(name, "pause")
                wait_until(
                    lambda: supervisor.info(name)["ops"]["source"].get("backfill", {}).get("in_flight", 0) >= 1,
                    timeout=60,
                    message=lambda: f"a chunk emitted and not committed: {supervisor.info(name)['ops']['source']}",
                )
            kill_worker(supervisor, name)
        supervisor.action(name, "resume")
        done = wait_status(supervisor, name, snap_id)
    finally:
        events = finish(db, out, writer)
    assert supervisor.info(name)["ops"]["restarts"] >= 3
    total = len(table_state(db, ["t"]))
    assert done["rows_read"] <= total * 1.2, (
        f"read {done['rows_read']} rows of {total}: not resumed from the last chunk"
    )
    reads = [e for e in events if e["op"] == "r"]
    assert len(reads) <= total * 1.2, f"{len(reads)} r events for {total} rows: not resumed from the last chunk"
    assert fold(events) == table_state(db, ["t"]), "the file folded by key is not the table"


def test_snapshot_api_422_no_primary_key_and_not_captured(supervisor: Supervisor, db: str, tmp_path: Path) -> None:
    sql(
        db,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT)",
        "CREATE TABLE nopk (id INT, v INT)",
        "CREATE TABLE other (id INT PRIMARY KEY)",
        "INSERT INTO t SELECT seq, seq FROM seq_1_to_300",
    )
    out, name = tmp_path / "out.jsonl", "tg-my-bfapi"
    supervisor.create(spec(name, db, ["t", "nopk"], out, snapshot="never"))
    streaming(supervisor, name)
    r = start(supervisor, name, [f"{db}.other"], 100)
    assert r.status_code == 422 and "not captured" in r.json()["error"]["message"], r.text
    r = start(supervisor, name, ["nopk"], 100)
    assert r.status_code == 422 and "primary key" in r.json()["error"]["message"], r.text
    r = start(supervisor, name, ["t"], 100)
    assert r.status_code == 202, r.text
    done = wait_status(supervisor, name, r.json()["id"], timeout=60)
    assert done["rows_read"] == 300 and done["tables"] == [f"{db}.t"], done
    events = dedupe(read_jsonl(out))
    assert sorted(e["after"]["id"] for e in events if e["op"] == "r") == list(range(1, 301))
    with connect(db) as c, c.cursor() as cur:
        cur.execute("SELECT id, wm FROM tidegate_signal")
        assert [row[0] for row in cur.fetchall()] == [name], "one signal row per pipeline"


def test_composite_text_key_is_chunked_exactly(supervisor: Supervisor, db: str, tmp_path: Path) -> None:
    sql(
        db,
        "CREATE TABLE c (k VARCHAR(20), u VARCHAR(40), v INT, PRIMARY KEY (k, u))",
        "INSERT INTO c SELECT CONCAT('k', seq % 7), MD5(seq), seq FROM seq_1_to_1500",
    )
    out, name = tmp_path / "out.jsonl", "tg-my-bfcomp"
    supervisor.create(spec(name, db, ["c"], out, snapshot="never"))
    streaming(supervisor, name)
    r = start(supervisor, name, ["c"], 64)
    assert r.status_code == 202, r.text
    done = wait_status(supervisor, name, r.json()["id"], timeout=60)
    assert done["rows_read"] == 1500 and set(done) >= {"last_key", "rows_total_estimate"}, done
    reads = [e["after"] for e in dedupe(read_jsonl(out)) if e["op"] == "r"]
    with connect(db) as c, c.cursor() as cur:
        cur.execute("SELECT k, u, v FROM c")
        want = sorted(cur.fetchall())
    assert sorted((a["k"], a["u"], a["v"]) for a in reads) == want


def test_a_table_dropped_mid_backfill_halts_the_pipeline_and_fails_the_snapshot(
    supervisor: Supervisor, db: str, tmp_path: Path
) -> None:
    """A captured table dropped: the pipeline halts saying so (issue #12); once PATCH takes the
    table out of `tables` it streams on, and the table's snapshot is `failed` (issue #16)."""
    fill(db, 20_000)
    sql(db, "CREATE TABLE u (id INT PRIMARY KEY, v INT)")
    out, name = tmp_path / "out.jsonl", "tg-my-bfdrop"
    supervisor.create(spec(name, db, ["t", "u"], out, snapshot="never"))
    streaming(supervisor, name)
    supervisor.action(name, "pause")  # nothing is committed: the backfill stops after its first chunks
    r = start(supervisor, name, ["t"], 500)
    assert r.status_code == 202, r.text
    snap_id = r.json()["id"]
    sql(db, "DROP TABLE t")
    supervisor.action(name, "resume")
    info = supervisor.wait_status(name, "failed", timeout=60)
    assert f"captured table {db}.t was dropped" in (info["ops"]["last_error"] or ""), info["ops"]
    r = supervisor.client.patch(
        f"/pipelines/{name}",
        json={"spec": {"source": {"config": {"tables": [f"{db}.u"]}}}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    failed = wait_status(supervisor, name, snap_id, "failed", timeout=60)
    assert failed["error"] and "t" in failed["error"] and failed["finished_at"], failed
    streaming(supervisor, name)  # nothing was committed: the new worker starts at the end of the binlog
    sql(db, "INSERT INTO u VALUES (1, 1)")
    wait_for_row(out, "u", 1, timeout=60)
    assert supervisor.info(name)["status"] == "running"


def test_patch_adding_a_table_snapshots_only_that_table(supervisor: Supervisor, db: str, tmp_path: Path) -> None:
    sql(
        db,
        "CREATE TABLE a (id INT PRIMARY KEY, v INT)",
        "CREATE TABLE b (id INT PRIMARY KEY, v INT)",
        "INSERT INTO a SELECT seq, seq FROM seq_1_to_2000",
        "INSERT INTO b SELECT seq, seq FROM seq_1_to_3000",
    )
    out, name = tmp_path / "out.jsonl", "tg-my-bfadd"
    supervisor.create(spec(name, db, ["a"], out))
    wait_until(lambda: len(read_jsonl(out)) >= 2000, timeout=60, message="the initial snapshot of a")
    sql(db, "INSERT INTO a VALUES (5000, 0)")
    wait_for_row(out, "a", 5000)
    r = supervisor.client.patch(
        f"/pipelines/{name}",
        json={"spec": {"source": {"config": {"tables": [f"{db}.a", f"{db}.b"]}}}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text

    def done() -> dict[str, Any] | None:
        got = supervisor.client.get(f"/pipelines/{name}/snapshots").json()
        return next((s for s in got if s["status"] == "done"), None)

    snap = wait_until(done, timeout=90, message="the added table's snapshot done")
    assert snap["tables"] == [f"{db}.b"] and snap["rows_read"] == 3000, snap
    sql(db, "UPDATE b SET v = -1 WHERE id = 7", f"INSERT INTO b VALUES ({SENTINEL}, 0)")
    events = dedupe(wait_for_row(out, "b", SENTINEL))
    mark = next(i for i, e in enumerate(events) if e["source"]["table"] == "a" and e["after"]["id"] == 5000)
    later = events[mark + 1 :]
    assert not [e for e in later if e["source"]["table"] == "a"], "rows of the other table were emitted again"
    assert sorted(e["after"]["id"] for e in later if e["op"] == "r") == list(range(1, 3001))
    assert fold([e for e in events if e["source"]["table"] == "b"]) == table_state(db, ["b"])
