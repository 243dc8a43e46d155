"""mysql-replication's binlog reader, for what the source's own reader (wire.py) leaves to it.

Imports: stdlib + pymysql + pymysqlreplication + worker.sources.mysql.events/setup. Used when the
column names do not travel in the binlog (binlog_row_metadata is not FULL: mysql-replication reads
them from information_schema) or a captured table has a column type the own decoder does not read
(decode.fast_types). `LibReader` asks the server for exactly the events stream.py handles, with a
replication heartbeat, and hands them out as events.Mark / events.Rows (rows still the library's,
converted by decode.RowImages), with the same interface as wire.FastReader.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Callable
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
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from worker.sources.mysql.events import GTID, HEARTBEAT, QUERY, ROTATE, XID, Mark, Rows
from worker.sources.mysql.setup import Dsn, ServerInfo

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
OPS = {WriteRowsEvent: "c", UpdateRowsEvent: "u", DeleteRowsEvent: "d"}


class _QuietReconnect(logging.Filter):
    """mysql-replication warns on every reconnect it does itself (also when we close the stream);
    our own log says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Re-request the connection" not in record.getMessage()


logging.getLogger("pymysqlreplication").addFilter(_QuietReconnect())


def forget_columns(tables: list[Any]) -> None:
    """After a DDL: mysql-replication reads these tables' column names again (binlog_row_metadata not FULL)."""
    for t in tables:
        rowmod._COLUMN_NAME_CACHE.pop(f"{t.db}.{t.name}", None)


def _start(ev: Any) -> int:
    return int(ev.packet.log_pos - ev.packet.event_size)


class LibReader:
    def __init__(
        self,
        dsn: Dsn,
        server: ServerInfo,
        server_id: int,
        tables: list[Any],
        start: Any,
        wrapper: Callable[..., pymysql.connections.Connection],
        heartbeat: float,
    ) -> None:
        settings = dsn.connect_args(read_timeout=int(heartbeat * 10))
        settings.pop("autocommit")
        self.reader = BinLogStreamReader(
            connection_settings=settings,
            server_id=server_id,
            blocking=True,
            resume_stream=True,
            log_file=start.file,
            log_pos=start.pos,
            only_events=ONLY_EVENTS,
            only_schemas=sorted({t.db for t in tables}),
            only_tables=sorted({t.name for t in tables}),
            slave_heartbeat=heartbeat,
            is_mariadb=False,
            pymysql_wrapper=wrapper,
            use_column_name_cache=not server.row_metadata_full,
            enable_logging=False,
        )

    def fetchone(self) -> Mark | Rows | None:
        ev = self.reader.fetchone()
        if ev is None:
            return None
        cls = ev.__class__
        op = OPS.get(cls)
        if op is not None:
            r = Rows(op, ev.schema, ev.table, ev.timestamp)
            r.lib = ev
            return r
        if cls is MariadbGtidEvent:
            return Mark(GTID, _start(ev), ev.gtid, ev.domain_id)
        if cls is GtidEvent:
            return Mark(GTID, _start(ev), ev.gtid)
        if cls is QueryEvent:
            return Mark(QUERY, _start(ev), query=ev.query)
        if cls is XidEvent:
            return Mark(XID, _start(ev))
        if cls is RotateEvent:
            m = Mark(ROTATE, 0)
            m.next_binlog = ev.next_binlog
            return m
        return Mark(HEARTBEAT, 0)

    def _socket(self) -> Any:
        return getattr(getattr(self.reader, "_stream_connection", None), "_sock", None)

    def interrupt(self) -> None:
        sock = self._socket()
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass

    def data_waiting(self) -> bool:
        sock = self._socket()
        if sock is None:
            return False
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        self.reader.close()
