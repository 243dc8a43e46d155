"""SqliteStore's dead-letter queue (see shared.store.dlq). Imports: stdlib + shared.store.dlq."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from shared.store.dlq import COLS, DlqEntry, DlqFull, DlqNew, entry, full_message

SCHEMA = """
CREATE TABLE IF NOT EXISTS dlq (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  pipeline TEXT NOT NULL,
  stage TEXT NOT NULL,
  error TEXT NOT NULL,
  position TEXT NOT NULL,
  digest TEXT NOT NULL,
  event BLOB NOT NULL,
  nbytes INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  first_seen TEXT NOT NULL,
  last_seen TEXT NOT NULL,
  generation INTEGER NOT NULL,
  UNIQUE (pipeline, stage, position, digest)
);
"""


def _where(pipeline: str, ids: list[str] | None, stage: str | None) -> tuple[str, list[Any]]:
    sql = " WHERE pipeline = ?"
    args: list[Any] = [pipeline]
    if ids is not None:
        nums = [int(i) for i in ids if str(i).isdigit()]  # an id that is not a number matches nothing
        sql += f" AND id IN ({','.join('?' * len(nums))})" if nums else " AND 0"
        args += nums
    if stage is not None:
        sql += " AND stage = ?"
        args.append(stage)
    return sql, args


class SqliteDlq:
    _lock: threading.Lock

    @property
    def conn(self) -> sqlite3.Connection:
        raise NotImplementedError  # SqliteStore's

    def dlq_add(self, pipeline: str, new: list[DlqNew], max_events: int, max_bytes: int, now: str) -> int:
        """Park `new` (already parked ones are left as they are) in one transaction; DlqFull,
        and nothing stored, when that takes the DLQ past its bounds. Returns how many are new."""
        if not new:
            return 0
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                added = 0
                for n in new:
                    cur = c.execute(
                        "INSERT OR IGNORE INTO dlq(pipeline, stage, error, position, digest, event, nbytes, attempts, "
                        "first_seen, last_seen, generation) VALUES (?,?,?,?,?,?,?,1,?,?,?)",
                        (
                            pipeline,
                            n.stage,
                            n.error,
                            n.position,
                            n.digest,
                            n.event,
                            len(n.event),
                            now,
                            now,
                            n.generation,
                        ),
                    )
                    added += cur.rowcount
                events, nbytes = c.execute(
                    "SELECT count(*), coalesce(sum(nbytes), 0) FROM dlq WHERE pipeline = ?", (pipeline,)
                ).fetchone()
                if added and (events > max_events or nbytes > max_bytes):
                    c.execute("ROLLBACK")
                    raise DlqFull(full_message(pipeline, events - added, nbytes, max_events, max_bytes))
                c.execute("COMMIT")
            except DlqFull:
                raise
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return added

    def dlq_list(
        self, pipeline: str, stage: str | None = None, limit: int = 100, after: str | None = None
    ) -> tuple[list[DlqEntry], str | None]:
        """Oldest first; `next` is the id to pass as `after` for the next page (None: no more)."""
        sql, args = _where(pipeline, None, stage)
        if after is not None:
            sql += " AND id > ?"
            args.append(int(after) if str(after).isdigit() else 0)
        with self._lock:
            rows = self.conn.execute(f"SELECT {COLS} FROM dlq{sql} ORDER BY id LIMIT ?", (*args, limit + 1)).fetchall()
        out = [entry(r) for r in rows[:limit]]
        return out, (out[-1].id if len(rows) > limit else None)

    def dlq_get(self, pipeline: str, entry_id: str) -> DlqEntry | None:
        if not str(entry_id).isdigit():
            return None
        with self._lock:
            r = self.conn.execute(
                f"SELECT {COLS} FROM dlq WHERE pipeline = ? AND id = ?", (pipeline, int(entry_id))
            ).fetchone()
        return entry(r) if r else None

    def dlq_delete(self, pipeline: str, ids: list[str] | None = None, stage: str | None = None) -> int:
        """Delete the entries named (ids and/or stage; neither: all of the pipeline's)."""
        sql, args = _where(pipeline, ids, stage)
        with self._lock:
            return self.conn.execute(f"DELETE FROM dlq{sql}", args).rowcount

    def dlq_failed(self, pipeline: str, entry_id: str, error: str, now: str) -> None:
        """A replay of the entry failed again: its error, attempts and last_seen change."""
        with self._lock:
            self.conn.execute(
                "UPDATE dlq SET error = ?, attempts = attempts + 1, last_seen = ? WHERE pipeline = ? AND id = ?",
                (error, now, pipeline, int(entry_id)),
            )

    def dlq_counts(self, pipeline: str) -> dict[str, int]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT stage, count(*) FROM dlq WHERE pipeline = ? GROUP BY stage ORDER BY stage", (pipeline,)
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}
