"""SQLite state store (WAL) shared by the supervisor and its workers.

`<state-dir>/tidegate.db` holds specs, desired states, per-sink checkpoints
and recorded sink gaps. Each process opens its own connection; a worker is the
only writer of its pipeline's checkpoints. synchronous=FULL: a checkpoint is
durable (survives power loss) before it is reported anywhere.
The dead-letter queue is in `shared.store.sqlite_dlq`. Imports: stdlib + shared.store.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.store import sqlite_dlq
from shared.store.sqlite_dlq import SqliteDlq

SCHEMA = """
CREATE TABLE IF NOT EXISTS pipelines (
  name TEXT PRIMARY KEY,
  spec BLOB NOT NULL,
  desired TEXT NOT NULL,
  last_error TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
  pipeline TEXT NOT NULL,
  sink_id TEXT NOT NULL,
  position TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (pipeline, sink_id)
);
CREATE TABLE IF NOT EXISTS heads (
  pipeline TEXT NOT NULL,
  sink_id TEXT NOT NULL,
  position TEXT NOT NULL,
  PRIMARY KEY (pipeline, sink_id)
);
CREATE TABLE IF NOT EXISTS gaps (
  pipeline TEXT NOT NULL,
  sink_id TEXT NOT NULL,
  from_pos TEXT NOT NULL,
  to_pos TEXT NOT NULL,
  at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
  pipeline TEXT NOT NULL,
  id TEXT NOT NULL,
  doc TEXT NOT NULL,
  PRIMARY KEY (pipeline, id)
);
"""


def new_epoch() -> str:
    return secrets.token_hex(4)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


@dataclass(slots=True)
class PipelineRow:
    name: str
    spec: bytes
    desired: str
    last_error: str | None
    created_at: str
    updated_at: str


class SqliteStore(SqliteDlq):
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / "tidegate.db"
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle
    def open(self) -> SqliteStore:
        self.dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            conn.executescript(SCHEMA + sqlite_dlq.SCHEMA)
            cols = {r[1] for r in conn.execute("PRAGMA table_info(pipelines)")}
            if "epoch" not in cols:  # state dirs from before epochs existed
                conn.execute("ALTER TABLE pipelines ADD COLUMN epoch TEXT NOT NULL DEFAULT ''")
            if "generation" not in cols:  # the spec's versions (DLQ entries name theirs)
                conn.execute("ALTER TABLE pipelines ADD COLUMN generation INTEGER NOT NULL DEFAULT 1")
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        self._conn = conn
        return self

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.open()
        assert self._conn is not None
        return self._conn

    def _write(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        with self._lock:
            self.conn.execute(sql, args)

    # ------------------------------------------------------------ pipelines
    def list_pipelines(self) -> list[PipelineRow]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT name, spec, desired, last_error, created_at, updated_at FROM pipelines ORDER BY name"
            ).fetchall()
        return [PipelineRow(*r) for r in rows]

    def get_pipeline(self, name: str) -> PipelineRow | None:
        with self._lock:
            r = self.conn.execute(
                "SELECT name, spec, desired, last_error, created_at, updated_at FROM pipelines WHERE name = ?", (name,)
            ).fetchone()
        return PipelineRow(*r) if r else None

    def put_pipeline(self, name: str, spec: bytes, desired: str) -> None:
        """Create (with a fresh epoch) or update (keeping it) a pipeline."""
        t = now_iso()
        self._write(
            "INSERT INTO pipelines(name, spec, desired, created_at, updated_at, epoch) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET spec=excluded.spec, desired=excluded.desired, "
            "updated_at=excluded.updated_at, generation=generation + (spec IS NOT excluded.spec)",
            (name, spec, desired, t, t, new_epoch()),
        )

    def epoch(self, name: str) -> str:
        """Changes when the pipeline starts over as new (created again, checkpoints deleted):
        sinks that keep their own checkpoint scope it by this, so an old one is not trusted."""
        with self._lock:
            r = self.conn.execute("SELECT epoch FROM pipelines WHERE name = ?", (name,)).fetchone()
        return str(r[0]) if r else ""

    def generation(self, name: str) -> int:
        """The spec's version: 1 when created, +1 at every change of it."""
        with self._lock:
            r = self.conn.execute("SELECT generation FROM pipelines WHERE name = ?", (name,)).fetchone()
        return int(r[0]) if r else 0

    def set_desired(self, name: str, desired: str, last_error: str | None = None) -> None:
        self._write(
            "UPDATE pipelines SET desired = ?, last_error = ?, updated_at = ? WHERE name = ?",
            (desired, last_error, now_iso(), name),
        )

    def delete_pipeline(self, name: str) -> None:
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute("DELETE FROM pipelines WHERE name = ?", (name,))
                c.execute("DELETE FROM checkpoints WHERE pipeline = ?", (name,))
                c.execute("DELETE FROM heads WHERE pipeline = ?", (name,))
                c.execute("DELETE FROM gaps WHERE pipeline = ?", (name,))
                c.execute("DELETE FROM dlq WHERE pipeline = ?", (name,))
                c.execute("DELETE FROM snapshots WHERE pipeline = ?", (name,))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    # ---------------------------------------------------------- checkpoints
    def checkpoints(self, pipeline: str) -> dict[str, tuple[str, str]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT sink_id, position, updated_at FROM checkpoints WHERE pipeline = ? ORDER BY sink_id", (pipeline,)
            ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def heads(self, pipeline: str) -> dict[str, str]:
        """Per best-effort sink: the own position of the first event it was given and has not
        acknowledged, stored with the checkpoints that moved past it (the `from` of the gap
        recorded when a restart skips that sink ahead)."""
        with self._lock:
            rows = self.conn.execute("SELECT sink_id, position FROM heads WHERE pipeline = ?", (pipeline,)).fetchall()
        return {r[0]: r[1] for r in rows}

    def save_checkpoints(
        self, pipeline: str, positions: dict[str, str], heads: dict[str, str | None] | None = None
    ) -> str:
        """Durably store several sinks' checkpoints (and heads; None drops one) in one
        transaction; return the timestamp."""
        t = now_iso()
        heads = heads or {}
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(
                    "INSERT INTO checkpoints(pipeline, sink_id, position, updated_at) VALUES (?,?,?,?) "
                    "ON CONFLICT(pipeline, sink_id) DO UPDATE SET position=excluded.position, "
                    "updated_at=excluded.updated_at",
                    [(pipeline, s, p, t) for s, p in positions.items()],
                )
                c.executemany(
                    "INSERT INTO heads(pipeline, sink_id, position) VALUES (?,?,?) "
                    "ON CONFLICT(pipeline, sink_id) DO UPDATE SET position=excluded.position",
                    [(pipeline, s, p) for s, p in heads.items() if p is not None],
                )
                c.executemany(
                    "DELETE FROM heads WHERE pipeline = ? AND sink_id = ?",
                    [(pipeline, s) for s, p in heads.items() if p is None],
                )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return t

    def clear_checkpoints(self, pipeline: str) -> None:
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            c.execute("DELETE FROM checkpoints WHERE pipeline = ?", (pipeline,))
            c.execute("DELETE FROM heads WHERE pipeline = ?", (pipeline,))
            c.execute("DELETE FROM gaps WHERE pipeline = ?", (pipeline,))
            c.execute("DELETE FROM snapshots WHERE pipeline = ?", (pipeline,))
            c.execute("UPDATE pipelines SET epoch = ? WHERE name = ?", (new_epoch(), pipeline))
            c.execute("COMMIT")

    def drop_sink_checkpoints(self, pipeline: str, keep: set[str]) -> None:
        """Forget checkpoints of sinks no longer in the spec."""
        with self._lock:
            rows = self.conn.execute("SELECT sink_id FROM checkpoints WHERE pipeline = ?", (pipeline,)).fetchall()
            for (sid,) in rows:
                if sid not in keep:
                    self.conn.execute("DELETE FROM checkpoints WHERE pipeline = ? AND sink_id = ?", (pipeline, sid))
            rows = self.conn.execute("SELECT sink_id FROM heads WHERE pipeline = ?", (pipeline,)).fetchall()
            for (sid,) in rows:
                if sid not in keep:
                    self.conn.execute("DELETE FROM heads WHERE pipeline = ? AND sink_id = ?", (pipeline, sid))

    # ------------------------------------------------------------ snapshots
    def save_snapshot(self, pipeline: str, snap_id: str, doc: str) -> None:
        """Store an incremental snapshot's state (a JSON document, CONTRACT section 13)."""
        self._write(
            "INSERT INTO snapshots(pipeline, id, doc) VALUES (?,?,?) "
            "ON CONFLICT(pipeline, id) DO UPDATE SET doc=excluded.doc",
            (pipeline, snap_id, doc),
        )

    def snapshots(self, pipeline: str) -> list[str]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT doc FROM snapshots WHERE pipeline = ? ORDER BY rowid", (pipeline,)
            ).fetchall()
        return [r[0] for r in rows]

    # ----------------------------------------------------------------- gaps
    def add_gap(self, pipeline: str, sink_id: str, from_pos: str, to_pos: str) -> None:
        self._write(
            "INSERT INTO gaps(pipeline, sink_id, from_pos, to_pos, at) VALUES (?,?,?,?,?)",
            (pipeline, sink_id, from_pos, to_pos, now_iso()),
        )

    def extend_gap(self, pipeline: str, sink_id: str, to_pos: str) -> None:
        """Grow the sink's latest gap to `to_pos` (consecutive skipped batches are one gap)."""
        with self._lock:
            cur = self.conn.execute(
                "UPDATE gaps SET to_pos = ?, at = ? WHERE rowid = (SELECT max(rowid) FROM gaps "
                "WHERE pipeline = ? AND sink_id = ?)",
                (to_pos, now_iso(), pipeline, sink_id),
            )
            if cur.rowcount == 0:
                self.conn.execute(
                    "INSERT INTO gaps(pipeline, sink_id, from_pos, to_pos, at) VALUES (?,?,?,?,?)",
                    (pipeline, sink_id, to_pos, to_pos, now_iso()),
                )

    def gaps(self, pipeline: str) -> dict[str, list[dict[str, str]]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT sink_id, from_pos, to_pos FROM gaps WHERE pipeline = ? ORDER BY rowid", (pipeline,)
            ).fetchall()
        out: dict[str, list[dict[str, str]]] = {}
        for sid, f, t in rows:
            out.setdefault(sid, []).append({"from": f, "to": t})
        return out
