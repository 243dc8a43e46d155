"""The mysql source's incremental snapshots: DBLog watermark chunks on the binlog stream's thread.

Imports: stdlib + pymysql + worker.backfill + worker.sources.handoff + worker.sources.mysql.*.
Blocking; stream.BinlogStream calls it between binlog events. One chunk at a time (``Window``):

1. a low watermark: the pipeline's row of the signal table (chunks.py) set to ``L:<token>``, in
   its own autocommit transaction;
2. the chunk: ``SELECT ... WHERE (pk) > (last key) ORDER BY pk LIMIT chunk_rows + 1``, one
   autocommit statement on a connection of its own (time_zone +00:00, like the initial snapshot);
3. a high watermark ``H:<token>``.

The binlog carries both watermark rows in commit order; the stream decodes the signal table's rows
(never emitted) and hands them here. Every key a change of the chunk's table carries between them
(before and after images) is dropped from the chunk: the stream has emitted a value at least as
new. InnoDB commits in binlog order (MariaDB's commit_ordered; MySQL's binlog_order_commits, on
by default), so a transaction written before the low watermark is visible to the SELECT (which
starts after that watermark committed) and one written after the high watermark is not (it is
written after the SELECT returned): only transactions between the two may or may not be in the
chunk, and their keys are the ones dropped. At the high watermark what is left of the chunk goes
out as ``op: "r"`` (``source.snapshot: "incremental"``), after the stream's rows held so far.

Positions of chunk rows: ``<file>:<txpos_H>:<i>[@entries]``, i = 1..k, where txpos_H starts the
high watermark's transaction (the suffix: the initial snapshot's entries still ahead, as on the
stream's rows there). That transaction has no captured rows (the signal table is never captured),
so these positions are unique, and they sort after every row of a transaction that starts before
the watermark and before every row of a later one: exactly where the chunk was reconciled. A
resume at ``<file>:<txpos_H>:<i>`` connects at txpos_H and skips the first i captured rows of that
transaction, of which there are none: the stream goes on with the next transaction, so a restart
neither skips nor repeats a stream row. The chunk's progress becomes durable only once its last row
is committed (worker.backfill); a crash before that reads the chunk again from the previous key
(new watermarks, later positions), so its rows delivered already may come again, never older.
The token carries a per-process nonce: watermarks of an earlier process, read again after a
restart, are ignored, and so is an open window after a reconnect or a statement on its table
(TRUNCATE, ALTER: the chunk is read again). At most IN_FLIGHT chunks wait for their commit (what a
crash reads again); a chunk that cannot be read because its table is gone, or watermarks the dsn's
user may not write, fail that snapshot (Backfills.fail) and the pipeline streams on.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymysql

from worker.backfill import Backfills, Work
from worker.sources.handoff import Handoff
from worker.sources.mysql.chunks import SIGNAL_TABLE, chunk_query, create_signal, key_text, signal_info, write_signal
from worker.sources.mysql.position import key as position_key
from worker.sources.mysql.setup import Dsn, TableInfo, connect

IN_FLIGHT = 2  # chunks emitted and not yet committed, at most: bounds what a crash reads again
RETRY_S = 1.0  # after a failed chunk read
WAIT_S = 0.2  # with nothing to read on the binlog: how long to wait for a chunk's commit
LATE_S = 60.0  # a high watermark not seen after this long is logged
CHUNK_FATAL = frozenset({1146, 1142, 1049})  # table gone, SELECT denied, database gone
SIGNAL_FATAL = frozenset({1142, 1044, 1049, 1290, 1792})  # denied, no such database, read-only server


@dataclass
class Window:
    token: str
    work: Work
    table: TableInfo
    events: list[dict[str, Any]]
    keys: list[tuple[Any, ...]]
    last_key: dict[str, str] | None
    done: bool  # the chunk reached the table's end
    open: bool = False  # the low watermark was seen
    since: float = field(default_factory=time.monotonic)
    late: bool = False  # logged as late
    changed: set[tuple[Any, ...]] = field(default_factory=set)


class MyBackfill:
    def __init__(
        self, *, dsn: Dsn, pipeline: str, signal_db: str, tables: list[TableInfo], jobs: Backfills, log: Any
    ) -> None:
        self.dsn, self.pipeline, self.jobs, self.log = dsn, pipeline, jobs, log
        self.by_name = {t.full_name: t for t in tables}
        self.signal = signal_info(signal_db)
        self.signal_key = (signal_db, self.signal.name)
        self.nonce = secrets.token_hex(4)
        self.seq = 0
        self.window: Window | None = None
        self.feed: Handoff | None = None
        self.max_chunk = 2000
        self.retry_at = 0.0
        self._conn: Any = None
        self._created = False

    @classmethod
    def of(cls, dsn: Dsn, ctx: Any, tables: list[TableInfo], log: Any) -> MyBackfill | None:
        """The source's (None without a registry, or without tables: nothing to snapshot)."""
        if ctx.backfills is None or not tables:
            return None
        db = dsn.db or tables[0].db
        return cls(dsn=dsn, pipeline=ctx.pipeline, signal_db=db, tables=tables, jobs=ctx.backfills, log=log)

    def bind(self, feed: Handoff, max_chunk: int) -> None:
        """A new binlog connection: an open window's watermarks may be gone (its chunk is read again)."""
        self.window, self.feed, self.max_chunk = None, feed, max_chunk

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - the link may be gone already
                pass

    def _cursor(self) -> Any:
        if self._conn is None:
            conn = connect(self.dsn, read_timeout=600)
            with conn.cursor() as cur:
                cur.execute("SET SESSION time_zone = '+00:00'")
            self._conn = conn
        cur = self._conn.cursor()
        if not self._created:
            create_signal(cur, self.signal.db)
            self._created = True
        return cur

    def stats(self) -> dict[str, Any]:
        w = self.window
        chunk = None if w is None else {"table": w.work.table, "rows": len(w.events), "open": w.open}
        return {"backfill": {"chunks_read": self.seq, "in_flight": self.jobs.in_flight(), "window": chunk}}

    # ------------------------------------------------------------- reading
    def step(self, reading: Callable[[], bool]) -> bool:
        """Read the next chunk between two watermarks, if one is due; True when one was read.
        `reading()`: binlog data is waiting (then the stream does not wait for commits here)."""
        feed, w = self.feed, self.window
        if w is not None:
            if not w.late and time.monotonic() - w.since > LATE_S:
                w.late = True
                self.log.warning(
                    "backfill_watermark_late",
                    snapshot=w.work.snap_id,
                    after_s=LATE_S,
                    hint="the binlog read is far behind, or the signal table's database is left out of "
                    f"the binlog ({self.signal.full_name}: binlog_do_db / binlog_ignore_db?)",
                )
            return False
        if feed is None or feed.count >= feed.limit // 2 or not self.jobs.running():
            return False  # (the common case, on every transaction: no snapshot running, no lock taken)
        if time.monotonic() < self.retry_at:
            return False
        if self.jobs.in_flight() >= IN_FLIGHT and (reading() or not self.jobs.wait_in_flight(IN_FLIGHT, WAIT_S)):
            return False  # (an idle binlog sends its next event, a heartbeat, only in a second)
        work = self.jobs.next_work()
        if work is None:
            return False
        t = self.by_name.get(work.table)
        if t is None:
            self.jobs.fail(work, f"table {work.table} is no longer captured by this pipeline's source")
            return False
        self.seq += 1
        token = f"{self.nonce}-{self.seq}"
        sql, args = chunk_query(t, work.after, work.chunk_rows + 1)
        stage = "writing the low watermark"
        try:
            cur = self._cursor()
            write_signal(cur, self.signal.db, self.pipeline, "L:" + token)
            stage = "reading the chunk"
            cur.execute(sql, args)
            rows = cur.fetchall()
            stage = "writing the high watermark"
            write_signal(cur, self.signal.db, self.pipeline, "H:" + token)
        except (pymysql.MySQLError, OSError) as exc:
            self._failed(work, stage, exc)
            return False
        done = len(rows) <= work.chunk_rows
        rows = rows[: work.chunk_rows]
        events, keys, last = self._events(t, rows)
        self.window = Window(token, work, t, events, keys, last, done)
        return True

    def _failed(self, work: Work, stage: str, exc: BaseException) -> None:
        self.close()
        self._created = False
        code = exc.args[0] if isinstance(exc, pymysql.MySQLError) and exc.args else None
        text = f"{self.dsn.where}: {stage} of {work.table}: {exc}"
        chunk = stage == "reading the chunk"
        if code in (CHUNK_FATAL if chunk else SIGNAL_FATAL):
            if not chunk:
                text += (
                    f"; the watermarks are rows of {self.signal.full_name}: GRANT CREATE, INSERT, UPDATE on it "
                    "to the dsn's user (on a server that is not read-only)"
                )
            self.jobs.fail(work, text)
            return
        self.retry_at = time.monotonic() + RETRY_S
        self.log.warning("backfill_chunk_retry", snapshot=work.snap_id, error=text, in_s=RETRY_S)

    def _events(
        self, t: TableInfo, rows: list[Any]
    ) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]], dict[str, str] | None]:
        names = [c.name for c in t.columns]
        pk, conv = t.pk, t.convert
        now = int(time.time() * 1000)
        events, keys = [], []
        for r in rows:
            after = conv(dict(zip(names, r)))
            keys.append(tuple(after.get(k) for k in pk))
            src: dict[str, Any] = {"connector": "mysql", "db": t.db, "schema": None, "table": t.name, "position": ""}
            src.update(tx_id=None, ts_ms=now, snapshot="incremental")
            events.append({"op": "r", "ts_ms": now, "source": src, "before": None, "after": after})
        last = None
        if rows:
            idx = [names.index(k) for k in pk]
            last = {k: key_text(rows[-1][i]) for k, i in zip(pk, idx)}
        return events, keys, last

    # ------------------------------------------------------------ the stream
    def observe(self, t: TableInfo, events: list[dict[str, Any]]) -> None:
        """Change events of table t the stream emits: inside an open window their keys leave the chunk."""
        w = self.window
        if w is None or not w.open or (t.db, t.name) != (w.table.db, w.table.name):
            return
        pk, changed = t.pk, w.changed
        for e in events:
            for row in (e["before"], e["after"]):
                if row is not None:
                    changed.add(tuple(row.get(k) for k in pk))

    def on_ddl(self, tables: list[TableInfo], query: str) -> None:
        """A statement that may concern these tables (a TRUNCATE, an ALTER): a chunk of one of them
        whose watermarks surround it is read again (its rows may predate it)."""
        w = self.window
        if w is None or SIGNAL_TABLE in query:
            return  # (the signal table's CREATE names no table of ours)
        if any((t.db, t.name) == (w.table.db, w.table.name) for t in tables):
            self.window = None
            self.log.info("backfill_chunk_again", snapshot=w.work.snap_id, reason="a statement on its table")

    def on_signal(self, after: dict[str, Any] | None, tx: tuple[str, str, str], flush: Callable[[], None]) -> None:
        """A row of the signal table (its after image); `tx`: its transaction's position prefix and
        suffix and GTID set; `flush` hands the stream's held rows over. At the high watermark what
        is left of the chunk is handed over."""
        w, feed = self.window, self.feed
        if w is None or feed is None or after is None:
            return
        wm = after.get("wm")
        if wm == "L:" + w.token:
            w.open = True
            return
        if wm != "H:" + w.token:
            return  # another pipeline's, or an earlier process's
        self.window = None
        if not w.open or not self.jobs.is_current(w.work):
            return  # the low watermark went by unseen (read again), or paused/cancelled meanwhile
        prefix, suffix, gtid_set = tx
        kept = [e for e, k in zip(w.events, w.keys) if k not in w.changed]
        for i, e in enumerate(kept, 1):
            src = e["source"]
            src["position"] = f"{prefix}{i}{suffix}"
            if gtid_set:
                src["gtid_set"] = gtid_set
        if kept:
            flush()  # (may raise Stopped: then nothing of the chunk counts as emitted)
        last = position_key(kept[-1]["source"]["position"]) if kept else None
        self.jobs.emitted(w.work, w.last_key, len(w.events), w.done, last)  # first: its commit may come at once
        step = self.max_chunk
        for i in range(0, len(kept), step):  # put: never blocks (the chunk is bounded by step())
            piece = kept[i : i + step]
            feed.put(piece, i + step >= len(kept), None, None)
