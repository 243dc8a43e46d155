"""The mysql source's binlog: the server's binlog points, and the connection its readers use.

Imports: stdlib + pymysql + shared.errors + worker.sources.mysql.position. `current_point`,
`require_binlog` and `gtid_at` ask the server about its binlogs (blocking: call them on a thread).
The readers (wire.FastReader, libreader.LibReader) connect through `connect`, with a replication
heartbeat every HEARTBEAT_S.
"""

from __future__ import annotations

from typing import Any

import pymysql

from shared.errors import SourceError
from worker.sources.mysql.position import BinlogPoint

HEARTBEAT_S = 1.0


def connect(**kwargs: Any) -> pymysql.connections.Connection:
    """A connection for a binlog reader, kept alive while the pipeline is paused."""
    if "db" in kwargs:  # mysql-replication still passes the deprecated name
        kwargs["database"] = kwargs.pop("db")
    conn = pymysql.connect(**kwargs)
    with conn.cursor() as cur:  # a paused pipeline must not get the dump thread killed after 60 s
        cur.execute("SET SESSION net_write_timeout = 86400")
    return conn


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
