"""The postgres source's dedicated thread: snapshot, then pgoutput streaming, with reconnects.

Imports: stdlib + psycopg2 + shared.errors + worker.sources.postgres.*. All blocking
PostgreSQL I/O of a running source happens here, never on the event loop.

- Hand-off: ``worker.sources.handoff.Handoff`` (bounded). When it is full the thread stops reading the
  socket but keeps sending status updates (no flush advance) every status
  interval, so the walsender never times out while the pipeline is paused; after
  ``PARK_AFTER_S`` of a full buffer it closes the replication connection (so a
  paused pipeline never holds up a server shutdown) and reconnects after the last
  event handed out once the buffer has drained.
- Flush feedback (through ``wire``, not psycopg2's feedback: see there why):
  only ``Feedback.flush_target`` (set by ``commit()``, i.e. the pipeline's durable
  committed position) is ever confirmed; routine status updates and keepalive
  replies report WAL received with an invalid flush. Idle advance: when
  nothing is in flight (no open transaction, buffer empty, committed == last
  published), once per heartbeat tick the slot is confirmed up to the server's
  WAL end; ``heartbeat_ms`` also emits ``pg_logical_emit_message`` then.
- Reconnects (server restart, dropped connection): internal, with backoff
  0.5 s doubling to 10 s, resuming strictly after the last event handed to the
  buffer (the same path as ``open()`` at a position). Fatal errors (slot gone,
  publication dropped) go to ``Handoff.fail`` and surface from ``read()``.
- Restart mid-snapshot (the exported snapshot died with the old process): the
  slot and its consistent point are kept; the unfinished tables are read from a
  new snapshot exported by a TEMPORARY slot at LSN E (a new "run"), and the
  stream skips changes to those tables whose commit LSN < E (already in the
  snapshot). Finished tables are not read again; the rows of the interrupted
  table are read again under the new epoch (they sort after the old ones).
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from worker.backoff import backoff
from worker.sources.handoff import Handoff
from worker.sources.postgres.backfill import PgBackfill
from worker.sources.postgres.decode import Decoder
from worker.sources.postgres.heartbeat import Heartbeat
from worker.sources.postgres.position import SnapshotPos, StreamPos, lsn_str
from worker.sources.postgres.setup import TableInfo, classify, connect_repl
from worker.sources.postgres.snapshot import SnapshotReader
from worker.sources.postgres.values import Types
from worker.sources.postgres.wire import CopyBoth, parse_keepalive

PARK_AFTER_S = 30.0  # a full buffer for this long closes the replication connection (see _stream)
_XLOG = struct.Struct(">QQ").unpack_from


@dataclass
class Feedback:
    """What the loop tells the thread: the pipeline's committed position and the LSN to confirm."""

    committed_key: tuple[int, ...] | None = None
    flush_target: int = 0


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
        handoff: Handoff,
        feedback: Feedback,
        start: SnapshotPos | StreamPos | None,
        exported: tuple[Any, str, int] | None,
        tables: list[TableInfo],
        filter_: set[str] | None,
        types: Types,
        log: Any,
        backfill: PgBackfill | None = None,
    ) -> None:
        super().__init__(name=f"pg-source-{params.pipeline}", daemon=True)
        self.p, self.buf, self.fb, self.start_pos = params, handoff, feedback, start
        self.tables, self.filter, self.types, self.log = tables, filter_, types, log
        self.table_index = {t.full: i for i, t in enumerate(tables)}
        self.stop_event = handoff.stopping
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
        self.snapshot = SnapshotReader(
            params=params, tables=tables, types=types, handoff=handoff, stats=self.stats, log=log
        )
        self.snapshot.exported = exported
        self.heartbeat = Heartbeat(params.dsn, params.pipeline, log)
        self._decoder: Decoder | None = None
        self.backfill = backfill  # incremental snapshots (None: not supported here)

    # ------------------------------------------------------------------ main
    def run(self) -> None:
        pos, attempt, in_use = self.start_pos, 0, 0
        while not self.stop_event.is_set():
            try:
                if isinstance(pos, SnapshotPos):
                    runs = self.snapshot.run(pos)
                    self._stream(runs, None)
                elif isinstance(pos, StreamPos):
                    self._stream(pos.runs, pos)
                else:
                    self._stream((), None)
                return
            except BaseException as exc:  # noqa: BLE001 - classified below
                err = classify(exc, self.p.slot, self.p.pipeline)
                in_use = in_use + 1 if "is active for PID" in err.message else 0
                if not err.retryable or in_use >= 4:
                    self.log.error("pg_source_failed", error=err.message)
                    self.buf.fail(err)
                    return
            finally:
                self.snapshot.close_exported()
                self.heartbeat.close()
                if self.backfill is not None:
                    self.backfill.close()
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
        self.buf.stop()

    # ----------------------------------------------------------------- stream
    def _publish(self, events: list[dict[str, Any]], tx_end: bool, pos: StreamPos) -> None:
        if self.backfill is not None:
            self.backfill.observe(events)
        self.buf.put(events, tx_end, pos, (1, pos.lsn, pos.index))

    def _stream(self, runs: tuple[tuple[int, int], ...], resume: StreamPos | None) -> None:
        while not self.stop_event.is_set():
            if not self._stream_once(runs, resume):
                return
            # parked: the buffer stayed full for PARK_AFTER_S; the connection is closed so that the
            # walsender is neither kept waiting (server shutdown) nor timed out; resume once drained
            self.log.info("pg_stream_parked", after_s=PARK_AFTER_S, reason="pipeline not reading (paused?)")
            if not self.buf.wait_room(self.buf.limit // 2):
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
                on_message=self.backfill.bind(self.buf, runs) if self.backfill is not None else None,
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
        buf, fb, stop = self.buf, self.fb, self.stop_event
        burst, feed, status = self._burst, decoder.feed, wire.status
        fd = conn.fileno()
        status_s = self.p.status_interval_ms / 1000
        tick_s = (self.p.heartbeat_ms or self.p.status_interval_ms) / 1000
        next_tick = time.monotonic() + tick_s
        last_status = time.monotonic()
        blocked_since: float | None = None
        while not stop.is_set():
            if fb.flush_target > self.flushed:
                self._confirm(wire, fb.flush_target, wal_end)
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
                buf.wait_wake(min(0.5, status_s))
                continue
            blocked_since = None
            buf.thread_blocked = False
            if self.backfill is not None:
                self.backfill.step()  # a chunk between two watermarks, handed over at the high one
            more, wal_end, replied = burst(wire, feed, wal_end)
            if replied:
                last_status = time.monotonic()
            if more:
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
                        self.heartbeat.emit()
                    if wal_end > self.flushed:
                        self._confirm(wire, wal_end, wal_end)
            buf.wait_wake(max(0.0, min(0.5, next_tick - now)), fd)
        if fb.flush_target > self.flushed:  # final confirm at shutdown
            self._confirm(wire, fb.flush_target, wal_end)
        return False

    @staticmethod
    def _burst(wire: CopyBoth, feed: Any, wal_end: int) -> tuple[bool, int, bool]:
        """Up to 1000 messages: (more may be waiting, the WAL end seen, a keepalive reply was sent)."""
        read, replied = wire.read, False
        for _ in range(1000):
            data = read()
            if data is None:
                return False, wal_end, replied
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
                    wire.status(wal_end)
                    replied = True
        return True, wal_end, replied

    def _idle(self, decoder: Decoder) -> bool:
        """Nothing in flight: no open transaction, nothing buffered, everything published committed."""
        buf = self.buf
        if decoder.in_tx or buf.count:
            return False
        committed = self.fb.committed_key
        return buf.published_key is None or (committed is not None and committed >= buf.published_key)
