"""The slot's replication health (CONTRACT section 8, `ops.source` for postgres): how
much WAL the slot pins on the server, read from pg_replication_slots by
worker.sources.health.HealthPoller on its own connection.
Imports: stdlib + psycopg2 + worker.sources.postgres.setup.
"""

from __future__ import annotations

from typing import Any

from worker.sources.postgres.setup import connect_sql

FIELDS = (
    "slot",
    "restart_lsn",
    "confirmed_flush_lsn",
    "retained_wal_bytes",
    "wal_status",
    "safe_wal_size",
    "slot_active",
    "tables_dropped",
)
# wal_status and safe_wal_size are PostgreSQL 13+; on a standby the current LSN is the replayed one
SLOT_SQL = """
SELECT restart_lsn::text, confirmed_flush_lsn::text,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
                       restart_lsn)::bigint,
       {extra}, active
FROM pg_replication_slots WHERE slot_name = %s
"""


DROPPED_SQL = "SELECT o FROM unnest(%s::oid[]) o WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = o)"


def slot_lost(values: dict[str, Any]) -> bool:
    """The probe read the slot and the server has invalidated it: wal_status `lost`, or (before
    PostgreSQL 13) a logical slot without a restart_lsn. Not before the first read (all null)."""
    if values.get("wal_status") == "lost":
        return True
    return values.get("slot_active") is not None and values.get("restart_lsn") is None


class SlotProbe:
    fields: tuple[str, ...] = FIELDS

    def __init__(self, dsn: str, slot: str, pipeline: str, tables: dict[int, str] | None = None) -> None:
        self.dsn, self.slot, self.app = dsn, slot, f"tidegate_{pipeline}_health"
        self.tables = tables or {}  # oid -> name of the tables the pipeline captures by name
        self._conn: Any = None

    def read(self) -> dict[str, Any]:
        out: dict[str, Any] = {"slot": self.slot}
        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect_sql(self.dsn, self.app)
            extra = "wal_status, safe_wal_size" if self._conn.server_version >= 130000 else "NULL, NULL"
            with self._conn.cursor() as cur:
                cur.execute(SLOT_SQL.format(extra=extra), (self.slot,))
                row = cur.fetchone()
                if self.tables:  # a captured table dropped under the pipeline (its oid is gone)
                    cur.execute(DROPPED_SQL, (list(self.tables),))
                    out["tables_dropped"] = sorted(self.tables[r[0]] for r in cur.fetchall())
        except Exception as exc:
            self.close()
            out["errors"] = {"slot": f"{exc.__class__.__name__}: {str(exc).strip()}"}
            return out
        if row is None:
            out["errors"] = {"slot": f"replication slot {self.slot} does not exist"}
            return out
        keys = (
            "restart_lsn",
            "confirmed_flush_lsn",
            "retained_wal_bytes",
            "wal_status",
            "safe_wal_size",
            "slot_active",
        )
        out.update(zip(keys, row))
        return out

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
