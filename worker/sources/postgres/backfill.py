"""The postgres source's incremental snapshots: DBLog watermark chunks on the stream thread.

Imports: stdlib + psycopg2 + worker.backfill + worker.sources.postgres.*. Blocking; runs on the
stream thread between bursts. One chunk at a time (``Window``):

1. a low watermark ``pg_logical_emit_message(false, 'tidegate-wm', 'L:<token>')``;
2. the chunk: ``SELECT ... WHERE (pk) > (last key) ORDER BY pk LIMIT chunk_rows + 1``, in a
   REPEATABLE READ transaction whose ``pg_current_snapshot()`` names the transactions in progress;
3. a high watermark (``H:<token>``).

The stream (pgoutput with messages=true) carries both watermarks in WAL order. Every key a
change of that table carries between them (the new and the old key) is dropped from the chunk:
the stream has emitted a value at least as new. So is every key changed by a transaction the
chunk's snapshot saw in progress, even when the stream carries it before the low watermark (its
commit record was written before the watermark, but it became visible only after the snapshot).
At the high watermark the rest of the chunk is handed over as ``op: "r"`` events positioned at
the high watermark's LSN - 1 (``<lsn>:<i>``: a message's LSN is its record's end, which may be
where the next transaction's commit starts), so they sort between the stream's changes. The
token carries a per-thread nonce: watermarks of an earlier process (read again after a restart)
are ignored, and so is an open window after a reconnect (the chunk is read again; its progress
was never made durable).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg2
from psycopg2 import sql

from worker.backfill import Backfills, Work
from worker.sources.handoff import Handoff
from worker.sources.postgres.position import StreamPos
from worker.sources.postgres.setup import TableInfo, connect_sql
from worker.sources.postgres.snapshot import raw_text
from worker.sources.postgres.values import Types

PREFIX = "tidegate-wm"
RECENT_TXS = 5000


@dataclass
class Window:
    token: str
    work: Work
    table: TableInfo
    events: list[dict[str, Any]]
    keys: list[tuple[Any, ...]]
    last_key: dict[str, str] | None
    done: bool  # the chunk reached the table's end
    invisible: Invisible  # transactions the chunk's snapshot did not see
    open: bool = False  # the low watermark was seen
    changed: set[tuple[Any, ...]] = field(default_factory=set)


class Invisible:
    """The transactions a snapshot (pg_current_snapshot() text) does not see: those it lists in
    progress and every xid from its xmax on (the newest may be committing: its commit record is
    written, but it is not visible yet). Holds pgoutput tx_ids (32-bit xids, as text)."""

    def __init__(self, snapshot: str) -> None:
        _xmin, xmax, xip = snapshot.split(":")
        self.xmax = int(xmax) & 0xFFFFFFFF
        self.xip = {str(int(x) & 0xFFFFFFFF) for x in xip.split(",") if x}

    def __contains__(self, tx_id: object) -> bool:
        if not isinstance(tx_id, str) or not tx_id.isdigit():
            return False
        return tx_id in self.xip or (int(tx_id) - self.xmax) % (1 << 32) < (1 << 31)


# a chunk's table is gone or may no longer be read: the snapshot fails, not the pipeline
UNREADABLE = (psycopg2.errors.UndefinedTable, psycopg2.errors.InsufficientPrivilege, psycopg2.errors.UndefinedColumn)


def chunk_query(table: TableInfo, first: bool) -> sql.Composed:
    cols = [sql.Identifier(n) for n, _ in table.columns] + [sql.Identifier(n) for n, _ in table.pk]
    keys = sql.SQL(", ").join(sql.Identifier(n) for n, _ in table.pk)
    params = sql.SQL(", ").join(sql.SQL("%s::{}").format(sql.SQL(t)) for _, t in table.pk)
    where = sql.SQL("") if first else sql.SQL("WHERE ({}) > ({}) ").format(keys, params)
    return sql.SQL("SELECT {} FROM {} {}ORDER BY {} LIMIT %s").format(
        sql.SQL(", ").join(cols), table.ident, where, keys
    )


class PgBackfill:
    def __init__(self, *, dsn: str, pipeline: str, db: str, tables: list[TableInfo], types: Types, jobs: Backfills):
        self.dsn, self.pipeline, self.db, self.types, self.jobs = dsn, pipeline, db, types, jobs
        self.by_name = {t.full: t for t in tables}
        self.nonce = secrets.token_hex(4)
        self.seq = 0
        self.window: Window | None = None
        self._conn: Any = None
        self.recent: dict[str, set[tuple[str, tuple[Any, ...]]]] = {}  # tx_id -> (table, key) changed
        self.buf: Handoff | None = None
        self.runs: Any = ()

    def bind(self, buf: Handoff, runs: Any) -> Callable[[str, bytes, int], None]:
        """A new replication connection (an open window's watermarks may be gone: its chunk is
        read again): the decoder's callback for logical messages."""
        self.window, self.buf, self.runs = None, buf, runs
        return self.on_message

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
            self._conn = None

    def _cursor(self) -> Any:
        if self._conn is None or self._conn.closed:
            conn = connect_sql(self.dsn, f"tidegate_{self.pipeline}_backfill")
            conn.autocommit = True
            raw_text(conn, self.types.oids())
            self._conn = conn
        return self._conn.cursor()

    # ------------------------------------------------------------- reading
    def step(self) -> bool:
        """Read the next chunk between two watermarks, if one is due; True when one was read."""
        buf = self.buf
        if self.window is not None or buf is None:
            return False
        work = self.jobs.next_work()
        if work is None:
            return False
        if buf.count and buf.count + work.chunk_rows > buf.limit:
            # room for this chunk beside what waits (read while the pipeline delivers the last
            # one), or an empty hand-off; the loop wakes this thread when it has taken half
            buf.thread_blocked = True
            return False
        table = self.by_name.get(work.table)
        if table is None:  # removed from source.config.tables (by PATCH) since the snapshot started
            self.jobs.fail(work, f"table {work.table} is no longer captured by this pipeline's source")
            return False
        self.seq += 1
        token = f"{self.nonce}-{self.seq}"
        cur = self._cursor()
        try:
            cur.execute("SELECT pg_logical_emit_message(false, %s, %s)", (PREFIX, "L:" + token))
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur.execute("SELECT pg_current_snapshot()::text")
            invisible = Invisible(cur.fetchone()[0])
            args = [] if work.after is None else [work.after[n] for n, _ in table.pk]
            cur.execute(chunk_query(table, work.after is None), (*args, work.chunk_rows + 1))
            rows = cur.fetchall()
            cur.execute("COMMIT")
            cur.execute("SELECT pg_logical_emit_message(false, %s, %s)", (PREFIX, "H:" + token))
            # a non-transactional message is not flushed (PostgreSQL < 17 has no `flush` argument):
            # the walsender would send it only once the WAL writer flushes, up to 200 ms later, per
            # chunk. A transaction with an xid flushes the WAL up to its commit, the watermark with it.
            cur.execute("BEGIN")
            cur.execute("SELECT pg_current_xact_id()")
            cur.execute("COMMIT")
        except UNREADABLE as exc:  # the table was dropped or its privilege revoked: the snapshot fails
            self.close()
            self.jobs.fail(work, f"cannot read {work.table}: {str(exc).strip()}")
            return False
        except BaseException:
            self.close()
            raise
        done = len(rows) <= work.chunk_rows
        rows = rows[: work.chunk_rows]
        events, keys, last = self._events(table, rows)
        self.window = Window(token, work, table, events, keys, last, done, invisible)
        for xid, changed in self.recent.items():  # streamed before the snapshot could see them
            if xid in invisible:
                self.window.changed.update(k for name, k in changed if name == table.full)
        return True

    def _events(
        self, table: TableInfo, rows: list[Any]
    ) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]], dict[str, str] | None]:
        convs = [(name, self.types.str_conv(oid)) for name, oid in table.columns]
        n, pk = len(convs), [name for name, _ in table.pk]
        now = int(time.time() * 1000)
        events, keys = [], []
        for r in rows:
            after = {c: (None if v is None else conv(v)) for (c, conv), v in zip(convs, r)}
            keys.append(tuple(after[k] for k in pk))
            src: dict[str, Any] = {"connector": "postgres", "db": self.db, "schema": table.schema}
            src.update(table=table.name, position="", tx_id=None, ts_ms=now, lsn=0, snapshot="incremental")
            events.append({"op": "r", "ts_ms": now, "source": src, "before": None, "after": after})
        last = dict(zip(pk, rows[-1][n:])) if rows else None
        return events, keys, last

    # ------------------------------------------------------------ the stream
    def observe(self, events: list[dict[str, Any]]) -> None:
        """Changes the stream emits: inside an open window (or made by a transaction the chunk's
        snapshot saw in progress) their keys leave the chunk. While a snapshot runs, the keys of
        the last RECENT_TXS transactions are kept: one the next chunk's snapshot sees in progress
        may have been streamed already (its commit record came before the low watermark)."""
        w, recent = self.window, self.recent
        if w is None and not self.jobs.running():
            recent.clear()
            return
        for e in events:
            s = e["source"]
            t = self.by_name.get(f"{s['schema']}.{s['table']}")
            if t is None or not t.pk:
                continue
            pk = [k for k, _ in t.pk]
            keys = {
                (t.full, tuple(row[k] for k in pk))
                for row in (e["before"], e["after"])
                if row is not None and all(k in row for k in pk)
            }
            if w is not None and t is w.table and (w.open or s["tx_id"] in w.invisible):
                w.changed.update(k for _, k in keys)
            recent.setdefault(s["tx_id"], set()).update(keys)
        while len(recent) > RECENT_TXS:
            del recent[next(iter(recent))]

    def on_message(self, prefix: str, content: bytes, lsn: int) -> None:
        """A logical message: at the chunk's high watermark, what is left of it is handed over."""
        w, buf, runs = self.window, self.buf, self.runs
        if prefix != PREFIX or w is None or buf is None:
            return
        text = content.decode()
        if text == "L:" + w.token:
            w.open = True
            return
        if text != "H:" + w.token:
            return  # an earlier process's watermark
        self.window = None
        if not self.jobs.is_current(w.work):
            return  # paused or cancelled meanwhile
        lsn -= 1  # the message's LSN is its record's end: the next record (a commit) may start there
        kept = [e for e, k in zip(w.events, w.keys) if k not in w.changed]
        for i, e in enumerate(kept):
            e["source"]["position"] = StreamPos(lsn, i, runs).format()
            e["source"]["lsn"] = lsn
        key = (1, lsn, len(kept) - 1) if kept else None
        self.jobs.emitted(w.work, w.last_key, len(w.events), w.done, key)  # first: its commit may come at once
        if kept:
            buf.put(kept, True, StreamPos(lsn, len(kept) - 1, runs), key)
