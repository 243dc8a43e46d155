"""The postgres source's dedicated thread: snapshot, then pgoutput streaming, with reconnects.

Imports: stdlib + psycopg2 + shared.errors + worker.sources.postgres.*. All blocking
PostgreSQL I/O of a running source happens here, never on the event loop.

- Hand-off: ``Buffer`` (bounded). When it is full the thread stops reading the
  socket but keeps sending status updates (no flush advance) every status
  interval, so the walsender never times out while the pipeline is paused; after
  ``PARK_AFTER_S`` of a full buffer it closes the replication connection (so a
  paused pipeline never holds up a server shutdown) and reconnects after the last
  event handed out once the buffer has drained.
- Flush feedback (through ``wire``, not psycopg2's feedback: see there why):
  only ``Buffer.flush_target`` (set by ``commit()``, i.e. the pipeline's durable
  committed position) is ever confirmed; routine status updates and keepalive
  replies report WAL received with an invalid flush. Idle advance: when
  nothing is in flight (no open transaction, buffer empty, committed == last
  published), once per heartbeat tick the slot is confirmed up to the server's
  WAL end; ``heartbeat_ms`` also emits ``pg_logical_emit_message`` then.
- Reconnects (server restart, dropped connection): internal, with backoff
  0.5 s doubling to 10 s, resuming strictly after the last event handed to the
  buffer (the same path as ``open()`` at a position). Fatal errors (slot gone,
  publication dropped) go to ``Buffer.error`` and surface from ``read()``.
- Restart mid-snapshot (the exported snapshot died with the old process): the
  slot and its consistent point are kept; the unfinished tables are read from a
  new snapshot exported by a TEMPORARY slot at LSN E (a new "run"), and the
  stream skips changes to those tables whose commit LSN < E (already in the
  snapshot). Finished tables are not read again; the rows of the interrupted
  table are read again under the new epoch (they sort after the old ones).
"""

from __future__ import annotations

import secrets
import select
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors

from shared.errors import SourceError
from worker.backoff import backoff
from worker.sources.postgres.buffer import Buffer
from worker.sources.postgres.decode import Decoder
from worker.sources.postgres.position import SnapshotPos, StreamPos, lsn_str
from worker.sources.postgres.setup import HEARTBEAT_PREFIX, TableInfo, classify, connect_repl, connect_sql, create_slot
from worker.sources.postgres.snapshot import raw_text, read_table
from worker.sources.postgres.values import Types
from worker.sources.postgres.wire import CopyBoth, parse_keepalive

PARK_AFTER_S = 30.0  # a full buffer for this long closes the replication connection (see _stream)
_XLOG = struct.Struct(">QQ").unpack_from


@dataclass
class StreamParams:
    dsn: str
    slot: str
    publication: str
    pipeline: str
    snapshot_chunk: int
    heartbeat_ms: int
    status_interval_ms: int
    server_version: int
    db: str


class StreamThread(threading.Thread):
    def __init__(
        self,
        *,
        params: StreamParams,
        buf: Buffer,
        start: SnapshotPos | StreamPos | None,
        exported: tuple[Any, str, int] | None,
        tables: list[TableInfo],
        filter_: set[str] | None,
        types: Types,
        log: Any,
    ) -> None:
        super().__init__(name=f"pg-source-{params.pipeline}", daemon=True)
        self.p, self.buf, self.start_pos, self.exported = params, buf, start, exported
        self.tables, self.filter, self.types, self.log = tables, filter_, types, log
        self.table_index = {t.full: i for i, t in enumerate(tables)}
        self.stop_event = threading.Event()
        self.flushed = 0
        self.stats: dict[str, Any] = {
            "snapshot": {"table": None, "rows_done": 0, "rows_estimated": 0, "done": True},
            "stream": {
                "connected": False,
                "flushed_lsn": None,
                "wal_end": None,
                "reconnects": 0,
                "truncates_skipped": 0,
                "last_error": None,
            },
        }
        self._hb_conn: Any = None
        self._hb_off = False
        self._decoder: Decoder | None = None

    # ------------------------------------------------------------------ main
    def run(self) -> None:
        pos, attempt, in_use = self.start_pos, 0, 0
        while not self.stop_event.is_set():
            try:
                if isinstance(pos, SnapshotPos):
                    runs = self._snapshot(pos)
                    self._stream(runs, None)
                elif isinstance(pos, StreamPos):
                    self._stream(pos.runs, pos)
                else:
                    self._stream((), None)
                return
            except BaseException as exc:  # noqa: BLE001 - classified below
                err = classify(exc, self.p.slot)
                in_use = in_use + 1 if "is active for PID" in err.message else 0
                if not err.retryable or in_use >= 4:
                    self.log.error("pg_source_failed", error=err.message)
                    self.buf.fail(err)
                    return
            finally:
                self._close_exported()
                self._close_heartbeat()
            pos = self.buf.published or pos
            delay = backoff(attempt, 0.5, 10.0, jitter=0.0)
            attempt += 1
            self.stats["stream"]["reconnects"] += 1
            self.stats["stream"]["last_error"] = err.message
            self.log.warning(
                "pg_reconnecting",
                error=err.message,
                attempt=attempt,
                delay_s=delay,
                resume_after=pos.format() if pos else None,
            )
            self.stop_event.wait(delay)

    def stop(self) -> None:
        self.stop_event.set()
        self.buf.wake_thread()

    def _close_exported(self) -> None:
        if self.exported is not None:
            try:
                self.exported[0].close()
            except psycopg2.Error:
                pass
            self.exported = None

    def _wait_room(self, below: int | None = None) -> bool:
        """Block while the buffer holds `below` (default: its limit) events or more; False when stopping."""
        limit = self.buf.limit if below is None else below
        while self.buf.count >= limit and not self.stop_event.is_set():
            self.buf.thread_blocked = True
            select.select([self.buf.wake_r], [], [], 0.5)
            self.buf.drain_wake()
        self.buf.thread_blocked = False
        return not self.stop_event.is_set()

    # -------------------------------------------------------------- snapshot
    def _snapshot(self, pos: SnapshotPos) -> tuple[tuple[int, int], ...]:
        n = len(self.tables)
        start_t = pos.table + 1 if pos.last else pos.table
        if start_t >= n:
            self.stats["snapshot"] = {"table": None, "rows_done": 0, "rows_estimated": 0, "done": True}
            return pos.runs
        if self.exported is not None:
            repl, snap_name, epoch = self.exported
            runs = pos.runs
        else:  # the exported snapshot died with an earlier process or connection: export a new one
            repl = connect_repl(self.p.dsn, f"tidegate_{self.p.pipeline}_snapshot")
            self.exported = (repl, "", 0)
            temp = f"{self.p.slot[:40]}_snap_{secrets.token_hex(4)}"
            epoch, snap_name = create_slot(repl, temp, temporary=True, export=True)
            runs = tuple(r for r in pos.runs if r[0] < start_t) + ((start_t, epoch),)
            self.log.info(
                "pg_snapshot_reexported",
                from_table=self.tables[start_t].full,
                epoch=lsn_str(epoch),
                reason="resuming an interrupted snapshot; later stream changes of these tables "
                "below this LSN are skipped",
            )
        conn = connect_sql(self.p.dsn, f"tidegate_{self.p.pipeline}_snapshot")
        try:
            conn.autocommit = False
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            raw_text(conn, self.types.oids())
            cur = conn.cursor()
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snap_name,))
            self._close_exported()  # imported: the exporting connection may go
            todo = self.tables[start_t:]
            snap = {
                "table": todo[0].full,
                "rows_done": 0,
                "rows_estimated": sum(t.estimate for t in todo),
                "done": False,
                "tables_done": start_t,
                "tables_total": n,
            }
            self.stats["snapshot"] = snap
            self.log.info(
                "pg_snapshot_started",
                tables=[t.full for t in todo],
                epoch=lsn_str(epoch),
                rows_estimated=snap["rows_estimated"],
            )

            def progress(k: int) -> None:
                snap["rows_done"] += k

            for ti in range(start_t, n):
                table = self.tables[ti]
                snap["table"] = table.full
                t0 = time.monotonic()
                before = snap["rows_done"]
                for events, row_no, last in read_table(
                    cur,
                    table,
                    index=ti,
                    runs=runs,
                    epoch=epoch,
                    types=self.types,
                    db=self.p.db,
                    chunk=self.p.snapshot_chunk,
                    progress=progress,
                    stopping=self.stop_event.is_set,
                ):
                    if not self._wait_room():
                        return runs
                    p = SnapshotPos(ti, row_no, runs, last)
                    self.buf.put(events, True, p, (0, epoch, ti, row_no))
                snap["tables_done"] = ti + 1
                self.log.info(
                    "pg_snapshot_table_done",
                    table=table.full,
                    rows=snap["rows_done"] - before,
                    seconds=round(time.monotonic() - t0, 3),
                    rows_done=snap["rows_done"],
                    rows_estimated=snap["rows_estimated"],
                )
            conn.commit()
        finally:
            conn.close()
        snap["done"] = True
        self.log.info("pg_snapshot_done", rows=snap["rows_done"], tables=n - start_t)
        return runs

    # ----------------------------------------------------------------- stream
    def _publish(self, events: list[dict[str, Any]], tx_end: bool, pos: StreamPos) -> None:
        self.buf.put(events, tx_end, pos, (1, pos.lsn, pos.index))

    def _stream(self, runs: tuple[tuple[int, int], ...], resume: StreamPos | None) -> None:
        while not self.stop_event.is_set():
            if not self._stream_once(runs, resume):
                return
            # parked: the buffer stayed full for PARK_AFTER_S; the connection is closed so that the
            # walsender is neither kept waiting (server shutdown) nor timed out; resume once drained
            self.log.info("pg_stream_parked", after_s=PARK_AFTER_S, reason="pipeline not reading (paused?)")
            if not self._wait_room(self.buf.limit // 2):
                return
            if isinstance(self.buf.published, StreamPos):
                resume = self.buf.published

    def _stream_once(self, runs: tuple[tuple[int, int], ...], resume: StreamPos | None) -> bool:
        """Stream until stopped (False) or parked (True)."""
        conn = connect_repl(self.p.dsn, f"tidegate_{self.p.pipeline}")
        try:
            cur = conn.cursor()
            opts = {"proto_version": "1", "publication_names": self.p.publication}
            if self.p.server_version >= 140000:
                opts["messages"] = "true"
            cur.start_replication(
                slot_name=self.p.slot, decode=False, start_lsn=resume.lsn if resume else 0, options=opts
            )
            self.stats["stream"]["connected"] = True
            self.log.info(
                "pg_streaming",
                slot=self.p.slot,
                publication=self.p.publication,
                resume_after=resume.format() if resume else None,
            )
            decoder = self._decoder = Decoder(
                types=self.types,
                db=self.p.db,
                publish=self._publish,
                log=self.log,
                tables=self.filter,
                table_index=self.table_index,
                runs=runs,
                resume=resume,
            )
            return self._loop(conn, CopyBoth(conn), decoder, resume.lsn if resume else 0)
        finally:
            self.stats["stream"]["connected"] = False
            conn.close()

    def _confirm(self, wire: CopyBoth, lsn: int, wal_end: int) -> None:
        wire.status(max(wal_end, lsn), lsn)
        self.flushed = lsn
        self.stats["stream"]["flushed_lsn"] = lsn_str(lsn)

    def _loop(self, conn: Any, wire: CopyBoth, decoder: Decoder, wal_end: int) -> bool:
        buf, stop = self.buf, self.stop_event
        read, feed, status = wire.read, decoder.feed, wire.status
        fd = conn.fileno()
        status_s = self.p.status_interval_ms / 1000
        tick_s = (self.p.heartbeat_ms or self.p.status_interval_ms) / 1000
        next_tick = time.monotonic() + tick_s
        last_status = time.monotonic()
        blocked_since: float | None = None
        while not stop.is_set():
            if buf.flush_target > self.flushed:
                self._confirm(wire, buf.flush_target, wal_end)
            if buf.count >= buf.limit:  # back-pressure: keep answering, stop reading
                now = time.monotonic()
                if blocked_since is None:
                    blocked_since = now
                elif now - blocked_since >= PARK_AFTER_S:
                    return True
                buf.thread_blocked = True
                if now - last_status >= status_s:
                    status(wal_end)  # keeps the walsender alive; flush unchanged
                    last_status = now
                select.select([buf.wake_r], [], [], min(0.5, status_s))
                buf.drain_wake()
                continue
            blocked_since = None
            buf.thread_blocked = False
            data = None
            for _ in range(1000):
                data = read()
                if data is None:
                    break
                if data[0] == 119:  # 'w' XLogData
                    start, end = _XLOG(data, 1)
                    if end > wal_end:
                        wal_end = end
                    feed(data[25:], start)
                elif data[0] == 107:  # 'k' keepalive
                    end, reply = parse_keepalive(data)
                    if end > wal_end:
                        wal_end = end
                    if reply:
                        status(wal_end)
                        last_status = time.monotonic()
            if data is not None:
                continue
            now = time.monotonic()
            if now - last_status >= status_s:
                status(wal_end)
                last_status = now
            self.stats["stream"]["wal_end"] = lsn_str(wal_end)
            self.stats["stream"]["truncates_skipped"] = decoder.truncates
            if now >= next_tick:
                next_tick = now + tick_s
                if self._idle(decoder):
                    if self.p.heartbeat_ms:
                        self._heartbeat()
                    if wal_end > self.flushed:
                        self._confirm(wire, wal_end, wal_end)
            select.select([fd, buf.wake_r], [], [], max(0.0, min(0.5, next_tick - now)))
            buf.drain_wake()
        if buf.flush_target > self.flushed:  # final confirm at shutdown
            self._confirm(wire, buf.flush_target, wal_end)
        return False

    def _idle(self, decoder: Decoder) -> bool:
        """Nothing in flight: no open transaction, nothing buffered, everything published committed."""
        buf = self.buf
        if decoder.in_tx or buf.count:
            return False
        return buf.published_key is None or (buf.committed_key is not None and buf.committed_key >= buf.published_key)

    def _heartbeat(self) -> None:
        if self._hb_off:
            return
        try:
            if self._hb_conn is None or self._hb_conn.closed:
                self._hb_conn = connect_sql(self.p.dsn, f"tidegate_{self.p.pipeline}_heartbeat")
            with self._hb_conn.cursor() as cur:
                cur.execute("SELECT pg_logical_emit_message(false, %s, '')", (HEARTBEAT_PREFIX,))
        except psycopg2.errors.InsufficientPrivilege as exc:
            self._hb_off = True  # once: the idle slot still advances on the WAL end
            self.log.warning(
                "pg_heartbeat_disabled",
                error=str(exc).strip(),
                fix="GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) "
                "to the source's role, or set heartbeat_ms: 0",
            )
            self._close_heartbeat()
        except (psycopg2.Error, SourceError) as exc:
            self.log.warning("pg_heartbeat_failed", error=str(exc).strip())
            self._close_heartbeat()

    def _close_heartbeat(self) -> None:
        if self._hb_conn is not None:
            try:
                self._hb_conn.close()
            except psycopg2.Error:
                pass
            self._hb_conn = None
