"""The mysql source's binlog: the server's binlog points, and mysql-replication's reader.

Imports: stdlib + pymysql + pymysqlreplication + shared.errors + worker.sources.mysql.position/setup.
`current_point`, `require_binlog` and `gtid_at` ask the server about its binlogs (blocking: call them
on a thread). `open_reader` asks the server for exactly the events stream.py handles, with a
replication heartbeat every HEARTBEAT_S; `interrupt` (from another thread) and `data_waiting` look at
the reader's socket.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Callable
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from shared.errors import SourceError
from worker.sources.mysql.position import BinlogPoint
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
HEARTBEAT_S = 1.0


class _QuietReconnect(logging.Filter):
    """mysql-replication warns on every reconnect it does itself (also when we close the stream);
    our own log says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Re-request the connection" not in record.getMessage()


logging.getLogger("pymysqlreplication").addFilter(_QuietReconnect())


def connect(**kwargs: Any) -> pymysql.connections.Connection:
    """A connection for mysql-replication (its `pymysql_wrapper`), kept alive while the pipeline is paused."""
    if "db" in kwargs:  # mysql-replication still passes the deprecated name
        kwargs["database"] = kwargs.pop("db")
    conn = pymysql.connect(**kwargs)
    with conn.cursor() as cur:  # a paused pipeline must not get the dump thread killed after 60 s
        cur.execute("SET SESSION net_write_timeout = 86400")
    return conn


def open_reader(
    dsn: Dsn,
    server: ServerInfo,
    server_id: int,
    tables: list[Any],
    start: BinlogPoint,
    wrapper: Callable[..., pymysql.connections.Connection],
) -> BinLogStreamReader:
    settings = dsn.connect_args(read_timeout=int(HEARTBEAT_S * 10))
    settings.pop("autocommit")
    return BinLogStreamReader(
        connection_settings=settings,
        server_id=server_id,
        blocking=True,
        resume_stream=True,
        log_file=start.file,
        log_pos=start.pos,
        only_events=ONLY_EVENTS,
        only_schemas=sorted({t.db for t in tables}),
        only_tables=sorted({t.name for t in tables}),
        slave_heartbeat=HEARTBEAT_S,
        is_mariadb=False,
        pymysql_wrapper=wrapper,
        use_column_name_cache=not server.row_metadata_full,
        enable_logging=False,
    )


def _socket(reader: Any) -> Any:
    return getattr(getattr(reader, "_stream_connection", None), "_sock", None)


def interrupt(reader: Any) -> None:
    """From another thread: unblock a read in progress (close() of the source)."""
    sock = _socket(reader)
    if sock is not None:
        try:
            sock.shutdown(2)
        except OSError:
            pass


def data_waiting(reader: Any) -> bool:
    """More binlog data already arrived on the reader's socket."""
    sock = _socket(reader)
    if sock is None:
        return False
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return False


def current_point(cur: Any, where: str) -> BinlogPoint:
    for stmt in ("SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"):
        try:
            cur.execute(stmt)
        except pymysql.err.ProgrammingError:
            continue
        row = cur.fetchone()
        if not row:
            raise SourceError(f"{where}: the binary log is off: set log_bin and restart the server", retryable=False)
        return BinlogPoint.of(row[0], int(row[1]))
    raise SourceError(f"{where}: cannot read the binlog position (SHOW MASTER STATUS)", retryable=False)


def binlog_files(cur: Any) -> list[str]:
    cur.execute("SHOW BINARY LOGS")
    return [r[0] for r in cur.fetchall()]


def require_binlog(cur: Any, where: str, point: BinlogPoint) -> None:
    files = binlog_files(cur)
    if point.file not in files:
        oldest = files[0] if files else "none"
        raise SourceError(
            f"{where}: binlog {point.file} needed to resume at {point} is gone (oldest is "
            f"{oldest}): the checkpoint is lost; DELETE /pipelines/<name>/checkpoints to take "
            "a new snapshot, and keep binlogs longer (binlog_expire_logs_seconds)",
            retryable=False,
        )


def gtid_at(cur: Any, flavor: str, point: BinlogPoint) -> str | None:
    """MariaDB: the GTID position (domain-server-seq per domain) at a binlog point."""
    if flavor != "mariadb":
        return None
    cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (point.file, point.pos))
    row = cur.fetchone()
    return (row[0] or "") if row else None
