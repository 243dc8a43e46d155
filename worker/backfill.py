"""Incremental snapshots (backfills while streaming, CONTRACT section 13): the worker's registry.

Imports: stdlib + shared.protocol + shared.store.sqlite (now_iso). Source-agnostic: a source that
supports them (postgres, mysql) asks `next_work()` for the next chunk to read, reports each chunk it
emitted with `emitted()` (or `fail()`s the snapshot when its table cannot be read), and the
pipeline's committed position comes in through `commit()`. Two cursors per snapshot: the reading
cursor (advanced when a chunk is emitted) and the durable progress (the stored document: advanced
only once the chunk's last event is committed), so a crash or restart resumes from the last
committed chunk. Thread-safe: the source's thread and the loop both call it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from shared.protocol import SnapshotCommand, SnapshotReply
from shared.store.sqlite import now_iso

ACTIVE = ("running", "paused")
DEFAULT_CHUNK = 10000


class Work(NamedTuple):
    """One chunk to read: the rows of `table` after `after` (None: from the start)."""

    snap_id: str
    table: str
    after: dict[str, str] | None
    chunk_rows: int


@dataclass
class Job:
    doc: dict[str, Any]  # the Snapshot object (CONTRACT section 13)
    chunk_rows: int
    done_tables: int  # durable: tables finished and committed
    cur_table: int  # reading cursor
    cur_key: dict[str, str] | None

    def stored(self) -> str:
        return json.dumps({"snapshot": self.doc, "chunk_rows": self.chunk_rows, "done_tables": self.done_tables})


# (source-order key of the chunk's last event, or None; snapshot id, table no., last key, rows, table done)
Pending = tuple[Any, str, int, "dict[str, str] | None", int, bool]


class Backfills:
    def __init__(self, save: Callable[[str, str], Any], log: Any) -> None:
        self._save = save  # (snapshot id, stored document): queued to the state store's thread
        self.log = log
        self.lock = threading.Lock()
        self.progress = threading.Condition(self.lock)  # notified when pending chunks become durable
        self.jobs: dict[str, Job] = {}
        self.pending: list[Pending] = []
        self.key: Callable[[str], Any] | None = None  # the source's position_key

    def load(self, stored: list[str]) -> None:
        """The documents in the state store: active snapshots resume from their durable progress."""
        for text in stored:
            d = json.loads(text)
            doc = d["snapshot"]
            done = int(d.get("done_tables", 0))
            self.jobs[doc["id"]] = Job(doc, int(d.get("chunk_rows", DEFAULT_CHUNK)), done, done, doc.get("last_key"))

    def docs(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(j.doc) for j in self.jobs.values()]

    def _persist(self, job: Job) -> None:
        self._save(job.doc["id"], job.stored())

    # --------------------------------------------------------------- control
    def busy_tables(self) -> set[str]:
        with self.lock:
            return {t for j in self.jobs.values() if j.doc["status"] in ACTIVE for t in j.doc["tables"]}

    def start(self, snap_id: str, tables: list[str], chunk_rows: int, estimate: int) -> dict[str, Any]:
        doc = {
            "id": snap_id,
            "tables": list(tables),
            "status": "running",
            "rows_read": 0,
            "rows_total_estimate": estimate,
            "table": tables[0] if tables else None,
            "last_key": None,
            "started_at": now_iso(),
            "finished_at": None,
            "error": None,
        }
        job = Job(doc, chunk_rows, 0, 0, None)
        with self.lock:
            self.jobs[snap_id] = job
            self._persist(job)
        self.log.info("backfill_started", snapshot=snap_id, tables=tables, chunk_rows=chunk_rows)
        return dict(doc)

    def control(self, snap_id: str, action: str) -> tuple[int, str, dict[str, Any]]:
        """pause | resume | cancel: (HTTP status, message, the Snapshot)."""
        with self.lock:
            job = self.jobs.get(snap_id)
            if job is None:
                return 404, f"no snapshot {snap_id!r}", {}
            status = job.doc["status"]
            want = {"pause": "paused", "resume": "running", "cancel": "cancelled"}[action]
            if status not in ACTIVE:
                return 409, f"snapshot {snap_id!r} is {status}", dict(job.doc)
            if status != want:
                job.doc["status"] = want
                if want == "cancelled":
                    job.doc["finished_at"] = now_iso()
                    self.pending = [p for p in self.pending if p[1] != snap_id]
                if want == "running":  # read again from the durable progress
                    job.cur_table, job.cur_key = job.done_tables, job.doc["last_key"]
                self._persist(job)
            return 200, "", dict(job.doc)

    # ---------------------------------------------------------------- source
    def running(self) -> bool:
        return any(j.doc["status"] == "running" for j in list(self.jobs.values()))

    def next_work(self) -> Work | None:
        with self.lock:
            for job in self.jobs.values():
                if job.doc["status"] != "running":
                    continue
                tables = job.doc["tables"]
                if job.cur_table >= len(tables):
                    continue  # everything read; waiting for the commit of the last chunks
                return Work(job.doc["id"], tables[job.cur_table], job.cur_key, job.chunk_rows)
        return None

    def is_current(self, work: Work) -> bool:
        """The chunk read for `work` may still be emitted (not paused or cancelled meanwhile)."""
        with self.lock:
            job = self.jobs.get(work.snap_id)
            return (
                job is not None
                and job.doc["status"] == "running"
                and job.cur_table < len(job.doc["tables"])
                and job.doc["tables"][job.cur_table] == work.table
                and job.cur_key == work.after
            )

    def emitted(self, work: Work, last_key: dict[str, str] | None, rows: int, table_done: bool, key: Any) -> None:
        """A chunk was handed to the pipeline; `key`: the source-order key of its last event
        (None when every row was dropped: nothing to wait for)."""
        with self.lock:
            job = self.jobs[work.snap_id]
            ti = job.cur_table
            if table_done:
                job.cur_table, job.cur_key = ti + 1, None
            else:
                job.cur_key = last_key
            self.pending.append((key, work.snap_id, ti, last_key, rows, table_done))
            if key is None:
                self._apply_upto(None)

    def fail(self, work: Work, error: str) -> None:
        """The chunk for `work` cannot be read (its table is gone...): that snapshot is `failed`."""
        with self.lock:
            job = self.jobs.get(work.snap_id)
            if job is None or job.doc["status"] not in ACTIVE:
                return
            job.doc.update(status="failed", error=error, finished_at=now_iso())
            self.pending = [p for p in self.pending if p[1] != work.snap_id]
            self._persist(job)
        self.log.warning("backfill_failed", snapshot=work.snap_id, table=work.table, error=error)

    def in_flight(self) -> int:
        """Chunks emitted whose last event is not committed yet."""
        with self.lock:
            return len(self.pending)

    def wait_in_flight(self, below: int, timeout: float) -> bool:
        """Block (the source's thread) until fewer than `below` chunks are in flight, at most `timeout` s."""
        with self.progress:
            return self.progress.wait_for(lambda: len(self.pending) < below, timeout)

    def commit(self, position: str) -> None:
        if not self.pending or self.key is None:
            return
        k = self.key(position)
        with self.lock:
            self._apply_upto(k)

    def _apply_upto(self, committed: Any) -> None:
        """Make durable every pending chunk at or below `committed`, in order (lock held)."""
        while self.pending:
            key, snap_id, ti, last_key, rows, table_done = self.pending[0]
            if key is not None and (committed is None or key > committed):
                return
            self.pending.pop(0)
            self.progress.notify_all()
            job = self.jobs.get(snap_id)
            if job is None or job.doc["status"] not in ACTIVE:
                continue
            doc = job.doc
            doc["rows_read"] += rows
            doc["last_key"] = None if table_done else last_key
            if table_done:
                job.done_tables = ti + 1
                tables = doc["tables"]
                doc["table"] = tables[ti + 1] if ti + 1 < len(tables) else None
                if ti + 1 >= len(tables):
                    doc["status"], doc["finished_at"] = "done", now_iso()
                    self.log.info("backfill_done", snapshot=snap_id, rows_read=doc["rows_read"])
            self._persist(job)


def answer(cmd: SnapshotCommand, jobs: Backfills, source: Any | None) -> SnapshotReply:
    """The worker's answer to a SnapshotCommand; `source`: the open source (None: not open yet)."""
    req = cmd.request
    if cmd.action != "start":
        code, message, doc = jobs.control(cmd.id, cmd.action)
        return SnapshotReply(req, code, message, doc)
    if source is None:
        return SnapshotReply(req, 409, "the pipeline's source is not open yet; try again once it runs")
    if not cmd.tables:
        return SnapshotReply(req, 422, "tables: name at least one table")
    names, estimate, error = source.backfill_check(list(cmd.tables))
    if error is not None:
        return SnapshotReply(req, 422, error)
    busy = jobs.busy_tables() & set(names)
    if busy:
        return SnapshotReply(req, 409, f"a snapshot is already running for {', '.join(sorted(busy))}")
    return SnapshotReply(req, 202, "", jobs.start(cmd.id, names, cmd.chunk_rows, estimate))
