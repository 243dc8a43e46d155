"""worker.backfill: the registry of incremental snapshots (no database): a chunk's progress is
durable only once its last event is committed, in order; pause, resume and cancel; a reload
resumes from the durable progress."""

from __future__ import annotations

import json
from typing import Any

import structlog

from shared.protocol import SnapshotCommand
from worker.backfill import Backfills, answer


def jobs() -> tuple[Backfills, dict[str, str]]:
    saved: dict[str, str] = {}
    b = Backfills(lambda sid, doc: saved.__setitem__(sid, doc), structlog.get_logger())
    b.key = lambda pos: int(pos)
    return b, saved


class FakeSource:
    def backfill_check(self, tables: list[str]) -> tuple[list[str], int, str | None]:
        if "nopk" in tables:
            return [], 0, "table nopk has no primary key"
        return [f"public.{t}" for t in tables], 100, None


def doc(saved: dict[str, str], sid: str) -> dict[str, Any]:
    return json.loads(saved[sid])["snapshot"]


def test_progress_is_durable_only_at_the_commit_of_the_chunk() -> None:
    b, saved = jobs()
    b.start("s", ["public.t", "public.u"], 2, 10)
    w = b.next_work()
    assert w is not None and (w.table, w.after) == ("public.t", None)
    b.emitted(w, {"id": "2"}, 2, False, 10)
    w2 = b.next_work()
    assert w2 is not None and w2.after == {"id": "2"}  # reading goes on before the commit
    b.emitted(w2, None, 1, True, 20)
    assert doc(saved, "s")["rows_read"] == 0
    b.commit("15")
    d = doc(saved, "s")
    assert (d["rows_read"], d["last_key"], d["table"]) == (2, {"id": "2"}, "public.t")
    b.commit("20")
    d = doc(saved, "s")
    assert (d["rows_read"], d["last_key"], d["table"], d["status"]) == (3, None, "public.u", "running")
    w3 = b.next_work()
    assert w3 is not None and w3.table == "public.u"
    b.emitted(w3, None, 0, True, None)  # nothing left after dedup: durable at once
    assert doc(saved, "s")["status"] == "done" and doc(saved, "s")["finished_at"]
    assert b.next_work() is None


def test_reload_resumes_from_the_durable_progress_not_the_reading_cursor() -> None:
    b, saved = jobs()
    b.start("s", ["public.t"], 2, 10)
    w = b.next_work()
    assert w is not None
    b.emitted(w, {"id": "2"}, 2, False, 10)
    b.commit("10")
    w = b.next_work()
    assert w is not None
    b.emitted(w, {"id": "4"}, 2, False, 20)  # never committed: the process dies
    again, _ = jobs()
    again.load(list(saved.values()))
    w = again.next_work()
    assert w is not None and w.after == {"id": "2"} and w.chunk_rows == 2


def test_answer_409_422_and_pause_resume_cancel() -> None:
    b, _saved = jobs()
    src = FakeSource()

    def cmd(action: str, sid: str = "s", tables: tuple[str, ...] = ()) -> Any:
        return answer(SnapshotCommand("r", action, sid, list(tables), 5), b, src)

    assert cmd("start", tables=("t",)).code == 202
    assert cmd("start", "s2", ("t",)).code == 409
    assert cmd("start", "s3", ("nopk",)).code == 422
    assert cmd("start", "s4").code == 422
    assert answer(SnapshotCommand("r", "start", "s5", ["t"]), b, None).code == 409
    assert cmd("pause", "nope").code == 404
    r = cmd("pause")
    assert (r.code, r.snapshot["status"]) == (200, "paused") and b.next_work() is None
    assert cmd("resume").snapshot["status"] == "running" and b.next_work() is not None
    assert cmd("cancel").snapshot["status"] == "cancelled" and b.next_work() is None
    assert cmd("resume").code == 409
    assert cmd("start", "s6", ("t",)).code == 202  # the table is free again


def test_a_chunk_snapshot_does_not_see_its_in_progress_xids_nor_any_from_xmax_on() -> None:
    from worker.sources.postgres.backfill import Invisible

    inv = Invisible(f"{(1 << 32) + 90}:{(1 << 32) + 100}:{(1 << 32) + 95}")  # xid8 with epoch 1
    assert "95" in inv and "100" in inv and "12345" in inv
    assert "94" not in inv and "99" not in inv and "" not in inv and None not in inv


def test_fail_marks_the_snapshot_failed_and_drops_its_pending_chunks() -> None:
    b, saved = jobs()
    b.start("s", ["public.t"], 2, 10)
    w = b.next_work()
    assert w is not None
    b.emitted(w, {"id": "2"}, 2, False, 10)
    assert b.in_flight() == 1
    w2 = b.next_work()
    assert w2 is not None
    b.fail(w2, "table public.t is gone")
    d = doc(saved, "s")
    assert (d["status"], d["error"], d["rows_read"]) == ("failed", "table public.t is gone", 0) and d["finished_at"]
    assert b.in_flight() == 0 and b.next_work() is None and not b.busy_tables()
    b.fail(w2, "again")  # no longer active: unchanged
    assert doc(saved, "s")["error"] == "table public.t is gone"
