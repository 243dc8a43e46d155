"""The postgres source's replication slot: look it up, check it, wait for it, create and drop it.

Imports: stdlib + psycopg2 + shared.errors + worker.sources.postgres.position/setup. Blocking calls
only: run them on a thread, never on the event loop. Every error names the cause and the fix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors

from worker.sources.postgres.position import lsn_to_int
from worker.sources.postgres.setup import fail, slot_in_use


@dataclass
class SlotInfo:
    plugin: str
    database: str
    active_pid: int | None
    confirmed_flush: str | None
    restart_lsn: str | None = None
    wal_status: str | None = None

    @property
    def lost(self) -> bool:
        """Invalidated by the server (max_slot_wal_keep_size): it can never stream again."""
        return self.wal_status == "lost" or self.restart_lsn is None


def slot_info(cur: Any, slot: str) -> SlotInfo | None:
    status = "wal_status" if cur.connection.server_version >= 130000 else "NULL"
    cur.execute(
        f"""SELECT plugin, database, active_pid, confirmed_flush_lsn::text, restart_lsn::text, {status}
            FROM pg_replication_slots WHERE slot_name = %s""",
        (slot,),
    )
    row = cur.fetchone()
    return SlotInfo(*row) if row else None


def check_slot(info: SlotInfo, slot: str, db: str) -> None:
    if info.plugin != "pgoutput" or info.database != db:
        raise fail(
            f"replication slot {slot} exists for plugin {info.plugin!r} in database {info.database!r}, "
            f"not pgoutput in {db!r}. Fix: set another `slot`, or drop it: "
            f"SELECT pg_drop_replication_slot('{slot}')"
        )


def wait_slot_free(cur: Any, slot: str, info: SlotInfo | None, wait_s: float = 5.0) -> SlotInfo | None:
    """Give a dying walsender (of a killed worker) `wait_s` to release the slot; else it is in use."""
    deadline = time.monotonic() + wait_s
    while info is not None and info.active_pid is not None:
        if time.monotonic() >= deadline:
            raise slot_in_use(slot, info.active_pid)
        time.sleep(0.1)
        info = slot_info(cur, slot)
    return info


def drop_slot(cur: Any, slot: str, wait_s: float = 10.0) -> bool:
    """Drop `slot` if it exists; wait up to `wait_s` for a dying walsender to release it."""
    deadline = time.monotonic() + wait_s
    while True:
        info = slot_info(cur, slot)
        if info is None:
            return False
        try:
            cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return True
        except psycopg2.errors.UndefinedObject:
            return False
        except psycopg2.errors.ObjectInUse as exc:
            if time.monotonic() >= deadline:
                raise slot_in_use(slot, info.active_pid) from exc
            time.sleep(0.2)


def create_slot(repl_conn: Any, slot: str, *, temporary: bool, export: bool) -> tuple[int, str | None]:
    """CREATE_REPLICATION_SLOT; returns (consistent point as int, exported snapshot name or None)."""
    cur = repl_conn.cursor()
    kind = "TEMPORARY LOGICAL" if temporary else "LOGICAL"
    snap = "EXPORT_SNAPSHOT" if export else "NOEXPORT_SNAPSHOT"
    try:
        cur.execute(f'CREATE_REPLICATION_SLOT "{slot}" {kind} pgoutput {snap}')
    except psycopg2.errors.DuplicateObject as exc:
        raise fail(
            f"replication slot {slot} already exists (created concurrently?). Fix: set another `slot`", retryable=True
        ) from exc
    except psycopg2.errors.ConfigurationLimitExceeded as exc:
        raise fail(
            f"cannot create replication slot {slot}: {str(exc).strip()}. Fix: raise "
            "max_replication_slots, or drop unused slots (SELECT * FROM pg_replication_slots)",
            retryable=True,
        ) from exc
    row = cur.fetchone()
    return lsn_to_int(row[1]), (row[2] if export else None)
