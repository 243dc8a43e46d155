"""The state stores side by side: SqliteStore (`<state-dir>/tidegate.db`) and PgStore
(`--state-url`, a fresh PostgreSQL database for this module) keep the same
semantics; then what only PgStore has: leases (acquire, renew, expiry, tokens
that only grow), fencing of a worker's writes, errors that name host:port and
never the password.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from shared.store import LeaseLost, StoreUnavailable, open_store
from shared.store.postgres import PgStore
from tests.support import free_port, wait_until
from tests.support.pgstate import fresh_database


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_database("tg_store") as url:
        yield url


def _clean(url: str) -> None:
    with psycopg2.connect(url) as c, c.cursor() as cur:
        cur.execute("SELECT to_regclass('tidegate_pipelines')")
        if cur.fetchone()[0] is not None:
            cur.execute("TRUNCATE tidegate_pipelines, tidegate_checkpoints, tidegate_gaps, tidegate_leases")
        cur.execute("SELECT to_regclass('tidegate_dlq')")
        if cur.fetchone()[0] is not None:
            cur.execute("TRUNCATE tidegate_dlq")


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: Any, tmp_path: Path) -> Iterator[Any]:
    """A factory of opened stores on one state (a second call = another process's store)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    if url:
        _clean(url)
    opened: list[Any] = []

    def make(**kw: Any) -> Any:
        s = open_store(tmp_path / "state", url, **kw)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def test_pipelines_crud_and_epoch(make_store: Any) -> None:
    s = make_store()
    assert s.list_pipelines() == [] and s.get_pipeline("a") is None and s.epoch("a") == ""
    s.put_pipeline("b", b"\x00spec-b", "running")
    s.put_pipeline("a", b"spec-a", "paused")
    assert [r.name for r in s.list_pipelines()] == ["a", "b"]
    row = s.get_pipeline("b")
    assert row is not None and row.spec == b"\x00spec-b" and row.desired == "running" and row.last_error is None
    assert row.created_at.endswith("Z") and row.created_at == row.updated_at
    e = s.epoch("b")
    assert len(e) == 8
    s.put_pipeline("b", b"spec-b2", "stopped")  # an update keeps the epoch
    row2 = s.get_pipeline("b")
    assert row2 is not None and row2.spec == b"spec-b2" and row2.desired == "stopped" and s.epoch("b") == e
    assert row2.created_at == row.created_at
    s.set_desired("b", "failed", "boom")
    row3 = s.get_pipeline("b")
    assert row3 is not None and (row3.desired, row3.last_error) == ("failed", "boom")
    # another process's store sees it all (durable, not cached)
    other = make_store()
    assert [(r.name, r.desired) for r in other.list_pipelines()] == [("a", "paused"), ("b", "failed")]
    s.delete_pipeline("b")
    s.put_pipeline("b", b"again", "running")  # created again: a fresh epoch
    assert s.epoch("b") != e


def test_heads_are_stored_with_checkpoints_and_go_with_them(make_store: Any) -> None:
    s = make_store()
    s.put_pipeline("p", b"spec", "running")
    assert s.heads("p") == {}
    s.save_checkpoints("p", {"req": "10"}, {"be": "3", "gone": "4"})
    assert s.heads("p") == {"be": "3", "gone": "4"} and set(s.checkpoints("p")) == {"req"}
    s.save_checkpoints("p", {"req": "12", "be": "12"}, {"be": None})
    assert s.heads("p") == {"gone": "4"}
    s.drop_sink_checkpoints("p", {"req", "be"})
    assert s.heads("p") == {}
    s.save_checkpoints("p", {}, {"be": "13"})
    s.clear_checkpoints("p")
    assert s.heads("p") == {}
    s.save_checkpoints("p", {}, {"be": "14"})
    s.delete_pipeline("p")
    assert s.heads("p") == {}


def test_checkpoints_and_gaps(make_store: Any) -> None:
    s = make_store()
    s.put_pipeline("p", b"spec", "running")
    assert s.checkpoints("p") == {} and s.gaps("p") == {}
    t = s.save_checkpoints("p", {"x": "10", "y": "7"})
    assert s.checkpoints("p") == {"x": ("10", t), "y": ("7", t)}
    t2 = s.save_checkpoints("p", {"x": "12"})
    assert s.checkpoints("p") == {"x": ("12", t2), "y": ("7", t)}
    s.drop_sink_checkpoints("p", {"x"})
    assert list(s.checkpoints("p")) == ["x"]
    s.add_gap("p", "y", "after 3", "5")
    s.extend_gap("p", "y", "9")
    s.extend_gap("p", "z", "4")  # no gap yet: one is started
    s.add_gap("p", "y", "11", "12")
    assert s.gaps("p") == {
        "y": [{"from": "after 3", "to": "9"}, {"from": "11", "to": "12"}],
        "z": [{"from": "4", "to": "4"}],
    }
    e = s.epoch("p")
    s.clear_checkpoints("p")
    assert s.checkpoints("p") == {} and s.gaps("p") == {} and s.epoch("p") != e
    s.save_checkpoints("p", {"x": "1"})
    s.add_gap("p", "x", "1", "2")
    s.delete_pipeline("p")
    assert s.checkpoints("p") == {} and s.gaps("p") == {} and s.get_pipeline("p") is None


def test_threads_share_one_store(make_store: Any) -> None:
    """The worker calls its store from a thread pool while the loop reads it."""
    s = make_store()
    s.put_pipeline("p", b"spec", "running")
    errors: list[BaseException] = []

    def writer(sink: str) -> None:
        try:
            for i in range(1, 101):
                s.save_checkpoints("p", {sink: str(i)})
                s.checkpoints("p")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"s{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {k: v[0] for k, v in s.checkpoints("p").items()} == {f"s{i}": "100" for i in range(4)}


# ------------------------------------------------------------------ PgStore only
@pytest.fixture
def pg(pg_url: str) -> Iterator[PgStore]:
    _clean(pg_url)
    s = PgStore(pg_url).open()
    yield s
    s.close()


def test_tables_are_prefixed(pg: PgStore, pg_url: str) -> None:
    with psycopg2.connect(pg_url) as c, c.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        assert [r[0] for r in cur.fetchall()] == [
            "tidegate_checkpoints",
            "tidegate_dlq",
            "tidegate_gaps",
            "tidegate_heads",
            "tidegate_leases",
            "tidegate_pipelines",
            "tidegate_snapshots",
        ]


def test_leases_acquire_renew_expire(pg: PgStore) -> None:
    for n in ("a", "b"):
        pg.put_pipeline(n, b"spec", "running")
    assert pg.acquire("n1", "http://h1:1", 1.0) == {"a": 1, "b": 1}
    assert pg.acquire("n2", "http://h2:2", 1.0) == {}  # held by a live node
    assert pg.acquire("n1", "http://h1:1", 1.0, held=["a", "b"]) == {}  # ours already: not taken again
    la = pg.lease("a")
    assert la is not None and (la.owner, la.token, la.live, la.api_addr) == ("n1", 1, True, "http://h1:1")
    assert pg.renew("n1", 1.0, {"a": 1, "b": 1}, {"a": ("running", '{"pid": 7}')}) == {"a", "b"}
    la = pg.lease("a")
    assert la is not None and la.status == "running" and la.ops == {"pid": 7}
    # n1 stops renewing: after the TTL n2 takes both, with new tokens
    got = wait_until(lambda: pg.acquire("n2", "http://h2:2", 5.0), timeout=5, message="leases expired")
    assert got == {"a": 2, "b": 2}
    assert pg.renew("n1", 1.0, {"a": 1, "b": 1}) == set()  # n1 finds them lost
    la = pg.lease("a")
    assert la is not None and la.owner == "n2" and la.status is None
    # a graceful stop gives them up at once; the next owner's tokens keep growing
    pg.release("n2", ["a"])
    assert pg.acquire("n1", "http://h1:1", 5.0) == {"a": 3}
    # creation: a name with no pipeline row yet; a deleted pipeline's lease is free at once
    assert pg.acquire("n1", "http://h1:1", 5.0, names=["new"]) == {"new": 1}
    assert pg.acquire("n2", "http://h2:2", 5.0, names=["new"]) == {}
    pg.put_pipeline("new", b"spec", "running")
    pg.delete_pipeline("new")
    assert pg.acquire("n2", "http://h2:2", 5.0, names=["new"]) == {"new": 2}


def test_fencing_refuses_a_stale_workers_writes(pg: PgStore, pg_url: str) -> None:
    pg.put_pipeline("p", b"spec", "running")
    assert pg.acquire("n1", "http://h1:1", 0.5) == {"p": 1}
    w1 = PgStore(pg_url, fence=("n1", 1)).open()
    try:
        w1.save_checkpoints("p", {"out": "10"})
        w1.add_gap("p", "best", "1", "2")
        got = wait_until(lambda: pg.acquire("n2", "http://h2:2", 5.0), timeout=5, message="lease expired")
        assert got == {"p": 2}
        for write in (
            lambda: w1.save_checkpoints("p", {"out": "20"}),
            lambda: w1.extend_gap("p", "best", "3"),
            lambda: w1.add_gap("p", "best", "5", "6"),
        ):
            with pytest.raises(LeaseLost, match=r"lease lost \(node 'n2' holds token 2; .*'n1' with token 1\)"):
                write()
        assert pg.checkpoints("p")["out"][0] == "10" and pg.gaps("p") == {"best": [{"from": "1", "to": "2"}]}
        w2 = PgStore(pg_url, fence=("n2", 2)).open()  # the new owner's worker writes
        try:
            w2.save_checkpoints("p", {"out": "30"})
        finally:
            w2.close()
        assert pg.checkpoints("p")["out"][0] == "30"
    finally:
        w1.close()


def test_an_acquisition_waits_for_a_checkpoint_write_in_progress(pg: PgStore, pg_url: str) -> None:
    """The fence check locks the lease row: a takeover cannot slip between the check and the write."""
    pg.put_pipeline("p", b"spec", "running")
    pg.acquire("n1", "http://h1:1", 0.3)
    c = psycopg2.connect(pg_url)
    try:
        cur = c.cursor()
        cur.execute("SELECT 1 FROM tidegate_leases WHERE pipeline = 'p' FOR SHARE")  # as save_checkpoints does
        time.sleep(0.5)  # the lease expires while the "write" is open
        box: dict[str, Any] = {}
        t = threading.Thread(target=lambda: box.update(got=pg.acquire("n2", "http://h2:2", 5.0)))
        t.start()
        t.join(0.5)
        assert t.is_alive(), "the acquisition must wait for the open checkpoint transaction"
        c.commit()
        t.join(5)
        assert box["got"] == {"p": 2}
    finally:
        c.close()


def test_errors_name_host_port_never_the_password(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(StoreUnavailable) as ei:
        open_store(tmp_path, f"postgresql://tg:S3cr3tPw@127.0.0.1:{port}/state")
    msg = str(ei.value)
    assert f"127.0.0.1:{port}/state" in msg and "S3cr3tPw" not in msg
    with pytest.raises(StoreUnavailable) as ei:
        open_store(tmp_path, "postgresql://nosuchuser:S3cr3tPw@127.0.0.1:5432/tg_no_such_db")
    assert "127.0.0.1:5432" in str(ei.value) and "S3cr3tPw" not in str(ei.value)


def test_a_dropped_connection_is_reopened(pg: PgStore, pg_url: str) -> None:
    pg.put_pipeline("p", b"spec", "running")
    with psycopg2.connect(pg_url) as c, c.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tidegate' "
            "AND datname = current_database()"
        )
    wait_until(lambda: _probe_fails(pg_url), timeout=5, message="the store's connection terminated")
    assert pg.get_pipeline("p") is not None  # reconnected and retried
    pg.save_checkpoints("p", {"out": "1"})
    assert pg.checkpoints("p")["out"][0] == "1"


def _probe_fails(url: str) -> bool:
    with psycopg2.connect(url) as c, c.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tidegate' AND datname = current_database()"
        )
        return cur.fetchone()[0] == 0
