"""The postgres source's heartbeat: ``pg_logical_emit_message`` on its own SQL connection.

Imports: psycopg2 + shared.errors + worker.sources.postgres.setup. Runs on the stream thread, once per
heartbeat tick while nothing is in flight (see stream.py). Without the privilege it warns once and
stays off (the idle slot still advances on the WAL end).
"""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.errors

from shared.errors import SourceError
from worker.sources.postgres.setup import HEARTBEAT_PREFIX, connect_sql


class Heartbeat:
    def __init__(self, dsn: str, pipeline: str, log: Any) -> None:
        self.dsn, self.app, self.log = dsn, f"tidegate_{pipeline}_heartbeat", log
        self.conn: Any = None
        self.off = False

    def emit(self) -> None:
        """One logical message into the WAL, so that an idle slot on a quiet database advances."""
        if self.off:
            return
        try:
            if self.conn is None or self.conn.closed:
                self.conn = connect_sql(self.dsn, self.app)
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_logical_emit_message(false, %s, '')", (HEARTBEAT_PREFIX,))
        except psycopg2.errors.InsufficientPrivilege as exc:
            self.off = True  # once: the idle slot still advances on the WAL end
            self.log.warning(
                "pg_heartbeat_disabled",
                error=str(exc).strip(),
                fix="GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) "
                "to the source's role, or set heartbeat_ms: 0",
            )
            self.close()
        except (psycopg2.Error, SourceError) as exc:
            self.log.warning("pg_heartbeat_failed", error=str(exc).strip())
            self.close()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg2.Error:
                pass
            self.conn = None
