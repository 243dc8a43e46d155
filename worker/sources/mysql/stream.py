"""Binlog streaming for the mysql source: binlog events -> chunks of change events.

Runs on the source's reader thread (the readers block). Imports: stdlib, pymysql, the siblings. The
events come from the source's own reader (wire.py, rows decoded by generated code) or, where that
cannot decode the tables, mysql-replication (libreader.py): both hand out events.Mark / Rows.

Transactions: a GTID event (or BEGIN without GTID) opens one at its start position `txpos`; XID (or
COMMIT, or a DDL statement) closes it. Rows get `<file>:<txpos>:<n>` (see position). Chunks end at
a transaction end (`tx_end=True`) unless a transaction outgrows `max_chunk` rows, then it is cut with
`tx_end=False`, holding back at least its last row for the closing chunk. Small transactions are
grouped while more binlog data waits on the socket (bounded by size and 20 ms). Backfills (backfill.py):
signal-table rows are watermarks, never emitted; a chunk goes out at its high one, after the held rows.
"""

from __future__ import annotations

import time
from typing import Any

import pymysql

from shared.errors import SourceError
from worker.sources.handoff import Handoff, Stopped
from worker.sources.mysql import binlog, libreader, statements
from worker.sources.mysql.backfill import MyBackfill
from worker.sources.mysql.binlog import HEARTBEAT_S, gtid_at
from worker.sources.mysql.decode import LibraryNeeded, RowImages, change_events, fast_types
from worker.sources.mysql.events import GTID, HEARTBEAT, QUERY, ROTATE, ROWS, Mark, Rows, UnsupportedEvent
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
from worker.sources.mysql.wire import FastReader

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
        backfill: MyBackfill | None = None,
    ) -> None:
        self.dsn, self.server, self.server_id, self.feed = dsn, server, server_id, feed
        self.tables = {(t.db, t.name): t for t in tables}
        self.status, self.log, self.max_chunk = status, log, max(2, max_chunk)
        self.reader: FastReader | libreader.LibReader | None = None
        self.fast = fast and fast_types(server, tables)
        self.images = RowImages()
        self.backfill = backfill  # incremental snapshots: the signal table's rows are its watermarks

    # -- connection -------------------------------------------------------------------------------
    def _connect(self, **kwargs: Any) -> pymysql.connections.Connection:
        if self.feed.stopping.is_set():
            raise Stopped()
        return binlog.connect(**kwargs)

    def open_reader(self, start: BinlogPoint) -> FastReader | libreader.LibReader:
        tables = list(self.tables.values()) + ([self.backfill.signal] if self.backfill is not None else [])
        if not self.fast:
            return libreader.LibReader(self.dsn, self.server, self.server_id, tables, start, self._connect, HEARTBEAT_S)
        settings = self.dsn.connect_args(read_timeout=int(HEARTBEAT_S * 10))
        wanted = {(t.db, t.name) for t in tables}
        return FastReader(self._connect, settings, self.server_id, start, self.server.flavor, wanted, HEARTBEAT_S)

    def interrupt(self) -> None:
        """From another thread: unblock a read in progress (close() of the source)."""
        reader = self.reader
        if reader is not None:
            reader.interrupt()

    def _data_waiting(self) -> bool:
        reader = self.reader
        return reader is not None and reader.data_waiting()

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
        if self.backfill is not None:
            self.backfill.bind(self.feed, self.max_chunk)
        try:
            self._loop(reader)
        except UnsupportedEvent as exc:
            raise SourceError(
                f"{self.dsn.where}: the binlog has events of type {exc.args[0]} (compressed: "
                "log_bin_compress, binlog_transaction_compression; or partial JSON updates: "
                "binlog_row_value_options) that the mysql source cannot read: turn that off",
                retryable=False,
            ) from exc
        except (pymysql.MySQLError, OSError):
            if self.feed.stopping.is_set():
                raise Stopped() from None
            raise
        finally:
            self.status["connected"] = False
            self.reader = None
            reader.close()
        raise SourceError(f"{self.dsn.where}: the binlog stream ended", retryable=True)

    def _loop(self, reader: Any) -> None:
        stop, rows, mark, bf = self.feed.stopping, self._rows, self._mark, self.backfill
        for ev in iter(reader.fetchone, None):
            if stop.is_set():
                raise Stopped()
            kind = ev.kind
            if kind == ROWS:
                rows(ev)
                continue
            if bf is not None:
                bf.step(self._data_waiting)  # a chunk between two watermarks, handed over at the high one
            if kind == ROTATE:
                self._rotate(ev)
            elif kind == HEARTBEAT:
                if self.closed:
                    self._flush()
            else:
                mark(ev, kind)

    def _rows(self, ev: Rows) -> None:
        """A rows event: its captured rows join `pending` (sent in pieces of max_chunk)."""
        t = self.tables.get((ev.schema, ev.table))
        if t is None or not self.tx_open:
            if (bf := self.backfill) is not None and self.tx_open and (ev.schema, ev.table) == bf.signal_key:
                for _, after in self.images(ev, bf.signal):
                    bf.on_signal(after, (self.prefix, self.suffix, self.gtid_set), self._flush)
            return
        by_row = None
        tx = (self.fseq, self.txpos)
        if self.filters:
            p = self.filters.get((ev.schema, ev.table))
            if p is BY_ROW:
                by_row = t
            elif p is not None and tx < p:
                return
        n, txinfo = self.n, (self.prefix, self.suffix, self.txid, self.gtid_set)
        if by_row is None and self.skip_n <= n and ev.tm is not None:  # the common case, in one pass
            events = self.images.events(ev, t, n, txinfo)
        else:
            pairs = self.images(ev, t)
            if by_row is not None:
                pairs = [(b, a) for b, a in pairs if not in_snapshot(by_row, b, a, self.entries, tx)]
            if self.skip_n > n:  # the first rows of the transaction were handed over before a resume
                skip = min(len(pairs), self.skip_n - n)
                n, pairs = n + skip, pairs[skip:]
            events = change_events(t, ev, pairs, n, txinfo)
        self.n = n + len(events)
        if not events:
            return
        if self.backfill is not None:
            self.backfill.observe(t, events)
        pending = self.pending
        if not pending:
            self.since = time.monotonic()
        pending += events
        self.closed = False
        max_chunk = self.max_chunk
        while len(pending) > max_chunk:  # a big transaction: cut it, at least one row held back
            self.feed.send(pending[:max_chunk], False)
            pending = pending[max_chunk:]
            self.since = time.monotonic()
        self.pending = pending

    def _flush(self) -> None:
        """Hand the rows held so far over (a chunk of an incremental snapshot goes out after them)."""
        if self.pending:
            self.feed.send(self.pending, self.closed)
            self.pending = []

    def _mark(self, ev: Mark, kind: int) -> None:
        """A transaction boundary (GTID, BEGIN, XID, COMMIT) or a statement (DDL ends a transaction)."""
        if kind == QUERY:
            q = ev.query.strip().upper()
            if q == "BEGIN":
                if self.tx_open:
                    return
                self._begin(ev, False)  # a transaction without a GTID
                return
            if q.startswith(("SAVEPOINT", "ROLLBACK TO", "XA ")):
                return
            if q not in ("COMMIT", "ROLLBACK"):  # DML as a statement or a DROP of ours stops here,
                self._flush()  # after every row before it is handed over
                statements.check(ev.query, self.tables, self.dsn.where, f"{self.fname}:{ev.start}")
                self._ddl(ev)
        elif kind == GTID:
            self._begin(ev, True)
            return
        if self.tx_open:
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

    def _begin(self, ev: Mark, gtid: bool) -> None:
        """A transaction starts at this event (GTID event, or BEGIN without one)."""
        fname = self.fname
        start_pos = ev.start
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
        if gtid and ev.domain is not None:  # MariaDB
            self.txid = ev.gtid
            self.gtid_state[str(ev.domain)] = ev.gtid
            self.gtid_set = ",".join(self.gtid_state[d] for d in sorted(self.gtid_state))
        elif gtid:
            self.txid = ev.gtid
        else:
            self.txid = f"{fname}:{start_pos}"
        self.prefix = f"{fname}:{start_pos}:"
        if self.entries:
            self.entries = entries_after(self.entries, BinlogPoint.of(fname, start_pos))
            self.filters = snapshot_filters(self.tables, self.entries)
            self.suffix = f"@{format_entries(self.entries)}" if self.entries else ""
        self.status["pos"] = start_pos

    def _rotate(self, ev: Mark) -> None:
        self.images.clear()  # table ids may be reused after a server restart
        if ev.next_binlog != self.fname:
            self.fname = ev.next_binlog
            self.status["file"] = self.fname
            self.fseq = int(self.fname.rpartition(".")[2])

    def _ddl(self, ev: Mark) -> None:
        """A statement on one of our tables may have changed its columns: refresh their converters."""
        hit = [t for t in self.tables.values() if t.name.lower() in ev.query.lower()]
        if self.backfill is not None:
            self.backfill.on_ddl(hit, ev.query)  # a chunk read around it is read again
        if not hit:
            return
        libreader.forget_columns(hit)
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
        if self.fast and not fast_types(self.server, list(self.tables.values())):
            raise LibraryNeeded(
                f"{self.dsn.where}: {', '.join(t.full_name for t in hit)} now has column types "
                "that need mysql-replication's decoder; switching to it"
            )
