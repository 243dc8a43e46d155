"""Binlog streaming for the mysql source: mysql-replication events -> chunks of change events.

Runs on the source's reader thread (mysql-replication blocks). Imports: stdlib, pymysql,
pymysqlreplication and the sibling modules of worker.sources.mysql (the reader itself: binlog.py).

Transactions: a GTID event (or BEGIN without GTID) opens one at its start position `txpos`; XID (or
COMMIT, or a DDL statement) closes it. Rows get `<file>:<txpos>:<n>` (see position). Chunks end at
a transaction end (`tx_end=True`) unless a transaction outgrows `max_chunk` rows, then it is cut with
`tx_end=False`, holding back at least its last row for the closing chunk. Small transactions are
grouped while more binlog data is already waiting on the socket (bounded by size and 20 ms).
"""

from __future__ import annotations

import time
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication import row_event as rowmod
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from shared.errors import SourceError
from worker.sources.handoff import Handoff, Stopped
from worker.sources.mysql import binlog
from worker.sources.mysql.binlog import gtid_at
from worker.sources.mysql.decode import RowImages
from worker.sources.mysql.position import (
    BY_ROW,
    BinlogPoint,
    BinlogPos,
    entries_after,
    file_seq,
    format_entries,
    in_snapshot,
    snapshot_filters,
)
from worker.sources.mysql.setup import Dsn, ServerInfo, TableInfo, load_tables

GROUP_S = 0.02


class BinlogStream:
    def __init__(
        self,
        dsn: Dsn,
        server: ServerInfo,
        tables: list[TableInfo],
        server_id: int,
        feed: Handoff,
        status: dict[str, Any],
        log: Any,
        max_chunk: int = 2000,
        fast: bool = True,
    ) -> None:
        self.dsn, self.server, self.server_id, self.feed = dsn, server, server_id, feed
        self.tables = {(t.db, t.name): t for t in tables}
        self.status, self.log, self.max_chunk = status, log, max(2, max_chunk)
        self.reader: BinLogStreamReader | None = None
        self.images = RowImages(fast and server.row_metadata_full)

    # -- connection -------------------------------------------------------------------------------
    def _connect(self, **kwargs: Any) -> pymysql.connections.Connection:
        if self.feed.stopping.is_set():
            raise Stopped()
        return binlog.connect(**kwargs)

    def open_reader(self, start: BinlogPoint) -> BinLogStreamReader:
        return binlog.open_reader(
            self.dsn, self.server, self.server_id, list(self.tables.values()), start, self._connect
        )

    def interrupt(self) -> None:
        """From another thread: unblock a read in progress (close() of the source)."""
        binlog.interrupt(self.reader)

    def _data_waiting(self) -> bool:
        return binlog.data_waiting(self.reader)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, start: BinlogPos) -> None:
        """Stream from `start` (skipping its first n rows) until the feed stops. Raises on errors."""
        meta = self._connect(**self.dsn.connect_args())
        try:
            with meta.cursor() as cur:
                text = gtid_at(cur, self.server.flavor, start.tx_start)
        finally:
            meta.close()
        self.gtid_state = {g.split("-", 1)[0]: g.strip() for g in (text or "").split(",") if g.strip()}
        self.start = start
        self.entries = entries_after(start.entries, start.tx_start)
        self.filters = snapshot_filters(self.tables, self.entries)
        self.reader = reader = self.open_reader(start.tx_start)
        self.status.update(connected=True, file=start.file, pos=start.txpos)
        self.fname, self.fseq = start.file, file_seq(start.file)
        self.skip_at, self.skip_n = (start.file, start.txpos), start.n
        self.first_tx, self.tx_open = True, False
        self.txpos, self.txid, self.n, self.prefix, self.suffix, self.gtid_set = 0, "", 0, "", "", ""
        self.pending: list[dict[str, Any]] = []
        self.closed = False  # the last pending event ends its transaction
        self.since = 0.0
        stop, rows, mark = self.feed.stopping, self._rows, self._mark
        try:
            for ev in iter(reader.fetchone, None):
                if stop.is_set():
                    raise Stopped()
                cls = ev.__class__
                if cls is WriteRowsEvent or cls is UpdateRowsEvent or cls is DeleteRowsEvent:
                    rows(ev, cls)
                elif cls is XidEvent or cls is QueryEvent or cls is MariadbGtidEvent or cls is GtidEvent:
                    mark(ev, cls)
                elif cls is RotateEvent:
                    self._rotate(ev)
                elif cls is HeartbeatLogEvent and self.pending and self.closed:
                    self.feed.send(self.pending, True)
                    self.pending = []
        finally:
            self.status["connected"] = False
            self.reader = None
            reader.close()
        raise SourceError(f"{self.dsn.where}: the binlog stream ended", retryable=True)

    def _rows(self, ev: Any, cls: Any) -> None:
        """A rows event: its captured rows join `pending` (sent in pieces of max_chunk)."""
        t = self.tables.get((ev.schema, ev.table))
        if t is None or not self.tx_open:
            return
        by_row = None
        tx = (self.fseq, self.txpos)
        if self.filters:
            p = self.filters.get((ev.schema, ev.table))
            if p is BY_ROW:
                by_row = t
            elif p is not None and tx < p:
                return
        pairs = self.images(ev, t, cls)
        src_ts = ev.timestamp * 1000
        now = int(time.time() * 1000)
        db, name = t.db, t.name
        pending, n, skip_n, max_chunk, closed = self.pending, self.n, self.skip_n, self.max_chunk, self.closed
        prefix, suffix, txid, gtid_set, entries = self.prefix, self.suffix, self.txid, self.gtid_set, self.entries
        if not pending:
            self.since = time.monotonic()
        op = "c" if cls is WriteRowsEvent else "u" if cls is UpdateRowsEvent else "d"
        for before, after in pairs:
            if by_row is not None and in_snapshot(by_row, before, after, entries, tx):
                continue
            n += 1
            if n <= skip_n:
                continue
            source = {
                "connector": "mysql",
                "db": db,
                "schema": None,
                "table": name,
                "position": f"{prefix}{n}{suffix}",
                "tx_id": txid,
                "ts_ms": src_ts,
            }
            if gtid_set:
                source["gtid_set"] = gtid_set
            pending.append({"op": op, "ts_ms": now, "source": source, "before": before, "after": after})
            closed = False
            if len(pending) > max_chunk:
                last = pending.pop()
                self.feed.send(pending, False)
                pending, self.since = [last], time.monotonic()
        self.pending, self.n, self.closed = pending, n, closed

    def _mark(self, ev: Any, cls: Any) -> None:
        """A transaction boundary (GTID, BEGIN, XID, COMMIT) or a statement (DDL ends a transaction)."""
        if cls is QueryEvent:
            q = ev.query.strip().upper()
            if q == "BEGIN":
                if self.tx_open:
                    return
                cls = None  # opens a transaction without a GTID
            elif q.startswith(("SAVEPOINT", "ROLLBACK TO", "XA ")):
                return
            elif q not in ("COMMIT", "ROLLBACK"):
                self._ddl(ev)
        if cls is not XidEvent and cls is not QueryEvent:
            self._begin(ev, cls)
        elif self.tx_open:
            self.tx_open = False
            self.skip_n = 0
            pending = self.pending
            if pending:
                self.closed = True
                if (
                    len(pending) >= self.max_chunk // 2
                    or time.monotonic() - self.since > GROUP_S
                    or not self._data_waiting()
                ):
                    self.feed.send(pending, True)
                    self.pending = []

    def _begin(self, ev: Any, cls: Any) -> None:
        """A transaction starts at this event (GTID event, or BEGIN without one)."""
        fname = self.fname
        start_pos = ev.packet.log_pos - ev.packet.event_size
        if self.first_tx:
            self.first_tx = False
            if self.skip_n and (fname, start_pos) != self.skip_at:
                raise SourceError(
                    f"{self.dsn.where}: position {self.start} does not start a transaction in "
                    f"the binlog (found one at {fname}:{start_pos}); was the "
                    "binlog reset? DELETE /pipelines/<name>/checkpoints to "
                    "start over",
                    retryable=False,
                )
        elif (fname, start_pos) != self.skip_at:
            self.skip_n = 0
        self.tx_open, self.txpos, self.n = True, start_pos, 0
        self.fseq = int(fname.rpartition(".")[2])
        if cls is MariadbGtidEvent:
            self.txid = ev.gtid
            self.gtid_state[str(ev.domain_id)] = ev.gtid
            self.gtid_set = ",".join(self.gtid_state[d] for d in sorted(self.gtid_state))
        elif cls is GtidEvent:
            self.txid = ev.gtid
        else:
            self.txid = f"{fname}:{start_pos}"
        self.prefix = f"{fname}:{start_pos}:"
        if self.entries:
            self.entries = entries_after(self.entries, BinlogPoint.of(fname, start_pos))
            self.filters = snapshot_filters(self.tables, self.entries)
            self.suffix = f"@{format_entries(self.entries)}" if self.entries else ""
        self.status["pos"] = start_pos

    def _rotate(self, ev: Any) -> None:
        self.images.clear()  # table ids may be reused after a server restart
        if ev.next_binlog != self.fname:
            self.fname = ev.next_binlog
            self.status["file"] = self.fname
            self.fseq = int(self.fname.rpartition(".")[2])

    def _ddl(self, ev: QueryEvent) -> None:
        """A statement on one of our tables may have changed its columns: refresh their converters."""
        text = ev.query.lower()
        hit = [t for t in self.tables.values() if t.name.lower() in text]
        if not hit:
            return
        for t in hit:
            rowmod._COLUMN_NAME_CACHE.pop(f"{t.db}.{t.name}", None)
        conn = self._connect(**self.dsn.connect_args())
        try:
            with conn.cursor() as cur:
                fresh = load_tables(cur, [(t.db, t.name) for t in hit], self.server.flavor, self.dsn.where)
        except SourceError as exc:  # dropped table: keep the old converter, say so
            self.log.warning("mysql_schema_refresh_failed", error=exc.message)
            return
        finally:
            conn.close()
        for t, f in zip(hit, fresh):
            t.columns, t.pk, t.convert = f.columns, f.pk, f.convert
        self.images.clear()
        self.log.info("mysql_schema_refreshed", tables=[t.full_name for t in hit])
