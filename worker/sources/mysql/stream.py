"""Binlog streaming for the mysql source: mysql-replication events -> chunks of change events.

Runs on the source's reader thread (mysql-replication blocks). Imports: stdlib, pymysql,
pymysqlreplication and the sibling modules of worker.sources.mysql.

Transactions: a GTID event (or BEGIN without GTID) opens one at its start position `txpos`; XID (or
COMMIT, or a DDL statement) closes it. Rows get `<file>:<txpos>:<n>` (see position). Chunks end at
a transaction end (`tx_end=True`) unless a transaction outgrows `max_chunk` rows, then it is cut with
`tx_end=False`, holding back at least its last row for the closing chunk. Small transactions are
grouped while more binlog data is already waiting on the socket (bounded by size and 20 ms).
"""

from __future__ import annotations

import logging
import select
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
from worker.sources.base import Chunk
from worker.sources.mysql.decode import FAST_EVENT_TYPES, TableDecoder, compile_table
from worker.sources.mysql.feed import Feed, Stopped
from worker.sources.mysql.position import (
    BinlogPoint,
    BinlogPos,
    Entries,
    entries_after,
    file_seq,
    filter_point,
    format_entries,
    has_row_filters,
)
from worker.sources.mysql.setup import Dsn, ServerInfo, TableInfo, gtid_at, load_tables

ONLY_EVENTS = [
    MariadbGtidEvent,
    GtidEvent,
    QueryEvent,
    XidEvent,
    WriteRowsEvent,
    UpdateRowsEvent,
    DeleteRowsEvent,
    RotateEvent,
    HeartbeatLogEvent,
]
HEARTBEAT_S = 1.0


class _QuietReconnect(logging.Filter):
    """mysql-replication warns on every reconnect it does itself (also when we close the stream);
    our own log says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Re-request the connection" not in record.getMessage()


logging.getLogger("pymysqlreplication").addFilter(_QuietReconnect())
GROUP_S = 0.02
BY_ROW = (-1, -1)  # filter marker: this table's filter depends on the row's primary key


class BinlogStream:
    def __init__(
        self,
        dsn: Dsn,
        server: ServerInfo,
        tables: list[TableInfo],
        server_id: int,
        feed: Feed,
        status: dict[str, Any],
        log: Any,
        max_chunk: int = 2000,
        fast: bool = True,
    ) -> None:
        self.dsn, self.server, self.server_id, self.feed = dsn, server, server_id, feed
        self.tables = {(t.db, t.name): t for t in tables}
        self.status, self.log, self.max_chunk = status, log, max(2, max_chunk)
        self.reader: BinLogStreamReader | None = None
        self.fast = fast and server.row_metadata_full
        self._decoders: dict[tuple[Any, ...], TableDecoder | None] = {}

    # -- connection -------------------------------------------------------------------------------
    def _connect(self, **kwargs: Any) -> pymysql.connections.Connection:
        if self.feed.stop.is_set():
            raise Stopped()
        if "db" in kwargs:  # mysql-replication still passes the deprecated name
            kwargs["database"] = kwargs.pop("db")
        conn = pymysql.connect(**kwargs)
        with conn.cursor() as cur:  # a paused pipeline must not get the dump thread killed after 60 s
            cur.execute("SET SESSION net_write_timeout = 86400")
        return conn

    def open_reader(self, start: BinlogPoint) -> BinLogStreamReader:
        settings = self.dsn.connect_args(read_timeout=int(HEARTBEAT_S * 10))
        settings.pop("autocommit")
        return BinLogStreamReader(
            connection_settings=settings,
            server_id=self.server_id,
            blocking=True,
            resume_stream=True,
            log_file=start.file,
            log_pos=start.pos,
            only_events=ONLY_EVENTS,
            only_schemas=sorted({t.db for t in self.tables.values()}),
            only_tables=sorted({t.name for t in self.tables.values()}),
            slave_heartbeat=HEARTBEAT_S,
            is_mariadb=False,
            pymysql_wrapper=self._connect,
            use_column_name_cache=not self.server.row_metadata_full,
            enable_logging=False,
        )

    def interrupt(self) -> None:
        """From another thread: unblock a read in progress (close() of the source)."""
        r = self.reader
        sock = getattr(getattr(r, "_stream_connection", None), "_sock", None)
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass

    def _data_waiting(self) -> bool:
        sock = getattr(getattr(self.reader, "_stream_connection", None), "_sock", None)
        if sock is None:
            return False
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, start: BinlogPos) -> None:
        """Stream from `start` (skipping its first n rows) until the feed stops. Raises on errors."""
        where = self.dsn.where
        gtid_state: dict[str, str] = {}
        meta = self._connect(**self.dsn.connect_args())
        try:
            with meta.cursor() as cur:
                text = gtid_at(cur, self.server.flavor, start.tx_start)
        finally:
            meta.close()
        for g in (text or "").split(","):
            if g.strip():
                gtid_state[g.split("-", 1)[0]] = g.strip()
        entries = entries_after(start.entries, start.tx_start)
        filters = self._filters(entries)
        self.reader = reader = self.open_reader(start.tx_start)
        self.status.update(connected=True, file=start.file, pos=start.txpos)
        fname = start.file
        fseq = file_seq(fname)
        skip_at, skip_n = (start.file, start.txpos), start.n
        first_tx = True
        tx_open = False
        txpos, txid, n, prefix, suffix, gtid_set = 0, "", 0, "", "", ""
        pending: list[dict[str, Any]] = []
        closed = False  # the last pending event ends its transaction
        since = 0.0
        stop, put, max_chunk = self.feed.stop, self.feed.put, self.max_chunk
        tables = self.tables
        try:
            for ev in iter(reader.fetchone, None):
                if stop.is_set():
                    raise Stopped()
                cls = ev.__class__
                if cls is WriteRowsEvent or cls is UpdateRowsEvent or cls is DeleteRowsEvent:
                    t = tables.get((ev.schema, ev.table))
                    if t is None or not tx_open:
                        continue
                    by_row = None
                    if filters:
                        p = filters.get((ev.schema, ev.table))
                        if p is BY_ROW:
                            by_row = t
                        elif p is not None and (fseq, txpos) < p:
                            continue
                    pairs = self._pairs(ev, t, cls)
                    src_ts = ev.timestamp * 1000
                    now = int(time.time() * 1000)
                    db, name = t.db, t.name
                    if not pending:
                        since = time.monotonic()
                    op = "c" if cls is WriteRowsEvent else "u" if cls is UpdateRowsEvent else "d"
                    for before, after in pairs:
                        if by_row is not None and self._in_snapshot(by_row, before, after, entries, (fseq, txpos)):
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
                            put(Chunk(pending, tx_end=False))
                            pending, since = [last], time.monotonic()
                elif cls is XidEvent or cls is QueryEvent or cls is MariadbGtidEvent or cls is GtidEvent:
                    if cls is QueryEvent:
                        q = ev.query.strip().upper()
                        if q == "BEGIN":
                            if tx_open:
                                continue
                            cls = None  # opens a transaction without a GTID
                        elif q.startswith(("SAVEPOINT", "ROLLBACK TO", "XA ")):
                            continue
                        elif q not in ("COMMIT", "ROLLBACK"):
                            self._ddl(ev)
                    if cls is XidEvent or cls is QueryEvent:
                        if tx_open:
                            tx_open = False
                            skip_n = 0
                            if pending:
                                closed = True
                                if (
                                    len(pending) >= max_chunk // 2
                                    or time.monotonic() - since > GROUP_S
                                    or not self._data_waiting()
                                ):
                                    put(Chunk(pending, tx_end=True))
                                    pending = []
                        continue
                    # a transaction starts here
                    start_pos = ev.packet.log_pos - ev.packet.event_size
                    if first_tx:
                        first_tx = False
                        if skip_n and (fname, start_pos) != skip_at:
                            raise SourceError(
                                f"{where}: position {start} does not start a transaction in "
                                f"the binlog (found one at {fname}:{start_pos}); was the "
                                "binlog reset? DELETE /pipelines/<name>/checkpoints to "
                                "start over",
                                retryable=False,
                            )
                    elif (fname, start_pos) != skip_at:
                        skip_n = 0
                    tx_open, txpos, n = True, start_pos, 0
                    fseq = int(fname.rpartition(".")[2])
                    if cls is MariadbGtidEvent:
                        txid = ev.gtid
                        gtid_state[str(ev.domain_id)] = txid
                        gtid_set = ",".join(gtid_state[d] for d in sorted(gtid_state))
                    elif cls is GtidEvent:
                        txid = ev.gtid
                    else:
                        txid = f"{fname}:{start_pos}"
                    prefix = f"{fname}:{txpos}:"
                    if entries:
                        entries = entries_after(entries, BinlogPoint.of(fname, txpos))
                        filters = self._filters(entries)
                        suffix = f"@{format_entries(entries)}" if entries else ""
                    self.status["pos"] = txpos
                elif cls is RotateEvent:
                    self._decoders.clear()  # table ids may be reused after a server restart
                    if ev.next_binlog != fname:
                        fname = ev.next_binlog
                        self.status["file"] = fname
                        fseq = int(fname.rpartition(".")[2])
                elif cls is HeartbeatLogEvent and pending and closed:
                    put(Chunk(pending, tx_end=True))
                    pending = []
        finally:
            self.status["connected"] = False
            self.reader = None
            reader.close()
        raise SourceError(f"{where}: the binlog stream ended", retryable=True)

    def _filters(self, entries: Entries) -> dict[tuple[str, str], tuple[int, int]]:
        """Per table: transactions starting before this (file seq, pos) are in its snapshot already
        (BY_ROW: that depends on the row's key)."""
        out = {}
        for key, t in self.tables.items():
            if has_row_filters(entries, t.index):
                out[key] = BY_ROW
                continue
            p = filter_point(entries, t.index, None)
            if p is not None:
                out[key] = p.sort_key
        return out

    def _pairs(self, ev: Any, t: TableInfo, cls: Any) -> list[tuple[Any, Any]]:
        """(before, after) images of the event's rows, values JSON-ready (decode.py, or
        mysql-replication + the table's converter)."""
        if self.fast and ev.event_type in FAST_EVENT_TYPES:
            k = (ev.table_id, ev.schema, ev.table, len(ev.columns))
            dec = self._decoders.get(k, False)
            if dec is False:
                dec = self._decoders[k] = compile_table(ev.columns, {c.name for c in t.columns if c.is_json})
            if dec is not None:
                return dec.rows(ev)
        conv = t.convert
        if cls is WriteRowsEvent:
            return [(None, conv(r["values"], r.get("none_sources"))) for r in ev.rows]
        if cls is UpdateRowsEvent:
            return [
                (
                    conv(r["before_values"], r.get("before_none_sources")),
                    conv(r["after_values"], r.get("after_none_sources")),
                )
                for r in ev.rows
            ]
        return [(conv(r["values"], r.get("none_sources")), None) for r in ev.rows]

    @staticmethod
    def _in_snapshot(t: TableInfo, before: Any, after: Any, entries: Entries, tx: tuple[int, int]) -> bool:
        """Is this binlog row already in the table's snapshot rows? (Emitted if any image needs it.)"""
        for values in (before, after):
            if values is None:
                continue
            pk = None
            if t.int_pk:
                try:
                    pk = tuple(int(values[c]) for c in t.pk)
                except (KeyError, TypeError, ValueError):
                    pk = None
            p = filter_point(entries, t.index, pk)
            if p is None or tx >= p.sort_key:
                return False
        return True

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
        self._decoders.clear()
        self.log.info("mysql_schema_refreshed", tables=[t.full_name for t in hit])
