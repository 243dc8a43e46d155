"""Postgres state store (`--state-url postgresql://...`) with per-pipeline leases,
for several supervisors sharing one state database.

The same methods and semantics as `SqliteStore` (specs, desired states, epochs,
per-sink checkpoints, sink gaps), in tables prefixed `tidegate_` so one database
can hold them beside others; plus `tidegate_leases`: one row per pipeline with
its owner node, expiry (the database's clock), a fencing token incremented at
every acquisition, the owner's API address and the status/ops it publishes.

Fencing: a worker's store is opened with `fence=(node, token)`; its checkpoint
and gap writes lock the lease row (FOR SHARE) and check owner and token in the
same transaction, raising `LeaseLost` otherwise. An acquisition (an UPDATE of
that row) therefore waits for a checkpoint write in progress, and every write
after it fails: the new owner starts from the last checkpoint the old worker
could store.

One connection per store object, used under a lock (as SqliteStore); a broken
connection is reopened at the next call. Errors are `StoreUnavailable` with the
host:port, never the password.
Imports: stdlib + psycopg2 + shared.store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg2

from shared.store import LeaseLost, StoreUnavailable, postgres_dlq
from shared.store.dlq import DlqFull
from shared.store.postgres_dlq import PgDlq
from shared.store.postgres_leases import EXPIRE, PgLeases
from shared.store.sqlite import PipelineRow, new_epoch, now_iso
from shared.where import state_url_where

T = TypeVar("T")
SCHEMA_LOCK = 0x7469646567617465  # "tidegate": serializes CREATE TABLE IF NOT EXISTS of concurrent openers

SCHEMA = """
CREATE TABLE IF NOT EXISTS tidegate_pipelines (
  name TEXT PRIMARY KEY,
  spec BYTEA NOT NULL,
  desired TEXT NOT NULL,
  last_error TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  epoch TEXT NOT NULL DEFAULT ''
);
ALTER TABLE tidegate_pipelines ADD COLUMN IF NOT EXISTS generation INTEGER NOT NULL DEFAULT 1;
CREATE TABLE IF NOT EXISTS tidegate_checkpoints (
  pipeline TEXT NOT NULL,
  sink_id TEXT NOT NULL,
  position TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (pipeline, sink_id)
);
CREATE TABLE IF NOT EXISTS tidegate_heads (
  pipeline TEXT NOT NULL,
  sink_id TEXT NOT NULL,
  position TEXT NOT NULL,
  PRIMARY KEY (pipeline, sink_id)
);
CREATE TABLE IF NOT EXISTS tidegate_gaps (
  id BIGSERIAL PRIMARY KEY,
  pipeline TEXT NOT NULL,
  sink_id TEXT NOT NULL,
  from_pos TEXT NOT NULL,
  to_pos TEXT NOT NULL,
  at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tidegate_gaps_pipeline ON tidegate_gaps (pipeline, sink_id, id);
CREATE TABLE IF NOT EXISTS tidegate_snapshots (
  seq BIGSERIAL,
  pipeline TEXT NOT NULL,
  id TEXT NOT NULL,
  doc TEXT NOT NULL,
  PRIMARY KEY (pipeline, id)
);
CREATE TABLE IF NOT EXISTS tidegate_leases (
  pipeline TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  token BIGINT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL,
  api_addr TEXT NOT NULL DEFAULT '',
  status TEXT,
  ops JSONB,
  published_at TIMESTAMPTZ
);
"""

_ROW = "SELECT name, spec, desired, last_error, created_at, updated_at FROM tidegate_pipelines"


def _row(r: tuple[Any, ...]) -> PipelineRow:
    return PipelineRow(r[0], bytes(r[1]), r[2], r[3], r[4], r[5])


class PgStore(PgDlq, PgLeases):
    def __init__(self, url: str, *, fence: tuple[str, int] | None = None, connect_timeout: int = 5) -> None:
        self.url = url
        self.where = state_url_where(url)
        self.fence = fence
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self._lock = threading.Lock()
        try:
            self._password = unquote(urlsplit(url).password or "")
        except ValueError:
            self._password = ""

    # ------------------------------------------------------------ lifecycle
    def open(self) -> PgStore:
        def schema(cur: Any) -> None:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            cur.execute(SCHEMA + postgres_dlq.SCHEMA)

        self._tx(schema)
        return self

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
            self._conn = None

    def _message(self, what: str, exc: BaseException) -> str:
        text = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        if self._password:
            text = text.replace(self._password, "***")
        return f"state store postgresql {self.where}: {what}: {text}"

    def _connect(self) -> Any:
        try:
            conn = psycopg2.connect(self.url, connect_timeout=self.connect_timeout, application_name="tidegate")
        except psycopg2.Error as exc:
            raise StoreUnavailable(self._message("cannot connect", exc)) from None
        return conn

    def _tx(self, fn: Callable[[Any], T], *, retry: bool = True) -> T:
        """Run `fn(cursor)` in one transaction. A connection found broken is reopened
        and the transaction run once more (when `retry`: the statements are idempotent)."""
        with self._lock:
            for attempt in (0, 1):
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                conn = self._conn
                try:
                    with conn.cursor() as cur:
                        out = fn(cur)
                    conn.commit()
                    return out
                except (LeaseLost, DlqFull):  # raised by fn: nothing of it is stored
                    conn.rollback()
                    raise
                except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                    broken = bool(conn.closed)
                    self._drop()
                    if broken and retry and attempt == 0:
                        continue
                    raise StoreUnavailable(self._message("statement failed", exc)) from None
                except psycopg2.Error as exc:
                    try:
                        conn.rollback()
                    except psycopg2.Error:
                        self._drop()
                    raise StoreUnavailable(self._message("statement failed", exc)) from None
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ pipelines
    def list_pipelines(self) -> list[PipelineRow]:
        def q(cur: Any) -> list[PipelineRow]:
            cur.execute(_ROW + " ORDER BY name")
            return [_row(r) for r in cur.fetchall()]

        return self._tx(q)

    def get_pipeline(self, name: str) -> PipelineRow | None:
        def q(cur: Any) -> PipelineRow | None:
            cur.execute(_ROW + " WHERE name = %s", (name,))
            r = cur.fetchone()
            return _row(r) if r else None

        return self._tx(q)

    def put_pipeline(self, name: str, spec: bytes, desired: str) -> None:
        """Create (with a fresh epoch) or update (keeping it) a pipeline."""
        t = now_iso()
        self._tx(
            lambda cur: cur.execute(
                "INSERT INTO tidegate_pipelines(name, spec, desired, created_at, updated_at, epoch) "
                "VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, "
                "desired = EXCLUDED.desired, updated_at = EXCLUDED.updated_at, "
                "generation = tidegate_pipelines.generation + (tidegate_pipelines.spec <> EXCLUDED.spec)::int",
                (name, psycopg2.Binary(spec), desired, t, t, new_epoch()),
            )
        )

    def epoch(self, name: str) -> str:
        """Changes when the pipeline starts over as new (created again, checkpoints deleted)."""

        def q(cur: Any) -> str:
            cur.execute("SELECT epoch FROM tidegate_pipelines WHERE name = %s", (name,))
            r = cur.fetchone()
            return str(r[0]) if r else ""

        return self._tx(q)

    def generation(self, name: str) -> int:
        """The spec's version: 1 when created, +1 at every change of it."""

        def q(cur: Any) -> int:
            cur.execute("SELECT generation FROM tidegate_pipelines WHERE name = %s", (name,))
            r = cur.fetchone()
            return int(r[0]) if r else 0

        return self._tx(q)

    def set_desired(self, name: str, desired: str, last_error: str | None = None) -> None:
        self._tx(
            lambda cur: cur.execute(
                "UPDATE tidegate_pipelines SET desired = %s, last_error = %s, updated_at = %s WHERE name = %s",
                (desired, last_error, now_iso(), name),
            )
        )

    def delete_pipeline(self, name: str) -> None:
        """Spec, checkpoints and gaps go; the lease row is expired (not deleted: tokens only grow)."""

        def q(cur: Any) -> None:
            cur.execute("DELETE FROM tidegate_pipelines WHERE name = %s", (name,))
            cur.execute("DELETE FROM tidegate_checkpoints WHERE pipeline = %s", (name,))
            cur.execute("DELETE FROM tidegate_heads WHERE pipeline = %s", (name,))
            cur.execute("DELETE FROM tidegate_gaps WHERE pipeline = %s", (name,))
            cur.execute("DELETE FROM tidegate_dlq WHERE pipeline = %s", (name,))
            cur.execute("DELETE FROM tidegate_snapshots WHERE pipeline = %s", (name,))
            cur.execute(f"UPDATE tidegate_leases SET {EXPIRE} WHERE pipeline = %s", (name,))

        self._tx(q)

    # ---------------------------------------------------------- checkpoints
    def checkpoints(self, pipeline: str) -> dict[str, tuple[str, str]]:
        def q(cur: Any) -> dict[str, tuple[str, str]]:
            cur.execute(
                "SELECT sink_id, position, updated_at FROM tidegate_checkpoints WHERE pipeline = %s ORDER BY sink_id",
                (pipeline,),
            )
            return {r[0]: (r[1], r[2]) for r in cur.fetchall()}

        return self._tx(q)

    def _check_fence(self, cur: Any, pipeline: str) -> None:
        if self.fence is None:
            return
        owner, token = self.fence
        cur.execute("SELECT owner, token FROM tidegate_leases WHERE pipeline = %s FOR SHARE", (pipeline,))
        r = cur.fetchone()
        if r is None or r[0] != owner or int(r[1]) != token:
            now = f"node {r[0]!r} holds token {r[1]}" if r else "no lease row"
            raise LeaseLost(
                f"pipeline {pipeline!r}: lease lost ({now}; this worker runs for node {owner!r} "
                f"with token {token}); its checkpoint was not written"
            )

    def heads(self, pipeline: str) -> dict[str, str]:
        """Per best-effort sink: the first event it was given and has not acknowledged (see
        SqliteStore.heads)."""

        def q(cur: Any) -> dict[str, str]:
            cur.execute("SELECT sink_id, position FROM tidegate_heads WHERE pipeline = %s", (pipeline,))
            return {r[0]: r[1] for r in cur.fetchall()}

        return self._tx(q)

    def save_checkpoints(
        self, pipeline: str, positions: dict[str, str], heads: dict[str, str | None] | None = None
    ) -> str:
        """Durably store several sinks' checkpoints (and heads; None drops one) in one
        transaction; return the timestamp."""
        t = now_iso()
        heads = heads or {}

        def q(cur: Any) -> None:
            self._check_fence(cur, pipeline)
            cur.executemany(
                "INSERT INTO tidegate_checkpoints(pipeline, sink_id, position, updated_at) VALUES (%s,%s,%s,%s) "
                "ON CONFLICT (pipeline, sink_id) DO UPDATE SET position = EXCLUDED.position, "
                "updated_at = EXCLUDED.updated_at",
                [(pipeline, s, p, t) for s, p in positions.items()],
            )
            cur.executemany(
                "INSERT INTO tidegate_heads(pipeline, sink_id, position) VALUES (%s,%s,%s) "
                "ON CONFLICT (pipeline, sink_id) DO UPDATE SET position = EXCLUDED.position",
                [(pipeline, s, p) for s, p in heads.items() if p is not None],
            )
            cur.executemany(
                "DELETE FROM tidegate_heads WHERE pipeline = %s AND sink_id = %s",
                [(pipeline, s) for s, p in heads.items() if p is None],
            )

        self._tx(q)
        return t

    def clear_checkpoints(self, pipeline: str) -> None:
        def q(cur: Any) -> None:
            cur.execute("DELETE FROM tidegate_checkpoints WHERE pipeline = %s", (pipeline,))
            cur.execute("DELETE FROM tidegate_heads WHERE pipeline = %s", (pipeline,))
            cur.execute("DELETE FROM tidegate_gaps WHERE pipeline = %s", (pipeline,))
            cur.execute("DELETE FROM tidegate_snapshots WHERE pipeline = %s", (pipeline,))
            cur.execute("UPDATE tidegate_pipelines SET epoch = %s WHERE name = %s", (new_epoch(), pipeline))

        self._tx(q)

    def drop_sink_checkpoints(self, pipeline: str, keep: set[str]) -> None:
        """Forget checkpoints of sinks no longer in the spec."""
        self._tx(
            lambda cur: cur.execute(
                "DELETE FROM tidegate_checkpoints WHERE pipeline = %s AND NOT (sink_id = ANY(%s::text[]));"
                "DELETE FROM tidegate_heads WHERE pipeline = %s AND NOT (sink_id = ANY(%s::text[]))",
                (pipeline, sorted(keep), pipeline, sorted(keep)),
            )
        )

    # ----------------------------------------------------------------- gaps
    # ------------------------------------------------------------ snapshots
    def save_snapshot(self, pipeline: str, snap_id: str, doc: str) -> None:
        """Store an incremental snapshot's state (fenced like a checkpoint)."""

        def q(cur: Any) -> None:
            self._check_fence(cur, pipeline)
            cur.execute(
                "INSERT INTO tidegate_snapshots(pipeline, id, doc) VALUES (%s,%s,%s) "
                "ON CONFLICT (pipeline, id) DO UPDATE SET doc = EXCLUDED.doc",
                (pipeline, snap_id, doc),
            )

        self._tx(q)

    def snapshots(self, pipeline: str) -> list[str]:
        def q(cur: Any) -> list[str]:
            cur.execute("SELECT doc FROM tidegate_snapshots WHERE pipeline = %s ORDER BY seq", (pipeline,))
            return [r[0] for r in cur.fetchall()]

        return self._tx(q)

    def add_gap(self, pipeline: str, sink_id: str, from_pos: str, to_pos: str) -> None:
        def q(cur: Any) -> None:
            self._check_fence(cur, pipeline)
            cur.execute(
                "INSERT INTO tidegate_gaps(pipeline, sink_id, from_pos, to_pos, at) VALUES (%s,%s,%s,%s,%s)",
                (pipeline, sink_id, from_pos, to_pos, now_iso()),
            )

        self._tx(q, retry=False)

    def extend_gap(self, pipeline: str, sink_id: str, to_pos: str) -> None:
        """Grow the sink's latest gap to `to_pos` (consecutive skipped batches are one gap)."""

        def q(cur: Any) -> None:
            self._check_fence(cur, pipeline)
            t = now_iso()
            cur.execute(
                "UPDATE tidegate_gaps SET to_pos = %s, at = %s WHERE id = (SELECT max(id) FROM tidegate_gaps "
                "WHERE pipeline = %s AND sink_id = %s)",
                (to_pos, t, pipeline, sink_id),
            )
            if cur.rowcount == 0:
                cur.execute(
                    "INSERT INTO tidegate_gaps(pipeline, sink_id, from_pos, to_pos, at) VALUES (%s,%s,%s,%s,%s)",
                    (pipeline, sink_id, to_pos, to_pos, t),
                )

        self._tx(q)

    def gaps(self, pipeline: str) -> dict[str, list[dict[str, str]]]:
        def q(cur: Any) -> list[tuple[str, str, str]]:
            cur.execute(
                "SELECT sink_id, from_pos, to_pos FROM tidegate_gaps WHERE pipeline = %s ORDER BY id", (pipeline,)
            )
            rows: list[tuple[str, str, str]] = cur.fetchall()
            return rows

        out: dict[str, list[dict[str, str]]] = {}
        for sid, f, t in self._tx(q):
            out.setdefault(sid, []).append({"from": f, "to": t})
        return out
