"""PgStore's dead-letter queue (see shared.store.dlq), in `tidegate_dlq`; parking is
fenced like checkpoint writes. Imports: stdlib + psycopg2 + shared.store.dlq."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2

from shared.store.dlq import COLS, DlqEntry, DlqFull, DlqNew, entry, full_message

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tidegate_dlq (
  id BIGSERIAL PRIMARY KEY,
  pipeline TEXT NOT NULL,
  stage TEXT NOT NULL,
  error TEXT NOT NULL,
  position TEXT NOT NULL,
  digest TEXT NOT NULL,
  event BYTEA NOT NULL,
  nbytes BIGINT NOT NULL,
  attempts INTEGER NOT NULL,
  first_seen TEXT NOT NULL,
  last_seen TEXT NOT NULL,
  generation INTEGER NOT NULL,
  UNIQUE (pipeline, stage, position, digest)
);
"""


def _where(pipeline: str, ids: list[str] | None, stage: str | None) -> tuple[str, list[Any]]:
    sql: str = " WHERE pipeline = %s"
    args: list[Any] = [pipeline]
    if ids is not None:
        sql += " AND id = ANY(%s::bigint[])"
        args.append([int(i) for i in ids if str(i).isdigit()])  # an id that is not a number matches nothing
    if stage is not None:
        sql += " AND stage = %s"
        args.append(stage)
    return sql, args


class PgDlq:
    _tx: Callable[..., Any]
    _check_fence: Callable[[Any, str], None]

    def dlq_add(self, pipeline: str, new: list[DlqNew], max_events: int, max_bytes: int, now: str) -> int:
        """Park `new` (already parked ones are left as they are) in one transaction; DlqFull,
        and nothing stored, when that takes the DLQ past its bounds. Returns how many are new."""
        if not new:
            return 0

        def q(cur: Any) -> int:
            self._check_fence(cur, pipeline)
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('tidegate_dlq:' || %s))", (pipeline,))
            added = 0
            for n in new:
                cur.execute(
                    "INSERT INTO tidegate_dlq(pipeline, stage, error, position, digest, event, nbytes, attempts, "
                    "first_seen, last_seen, generation) VALUES (%s,%s,%s,%s,%s,%s,%s,1,%s,%s,%s) "
                    "ON CONFLICT (pipeline, stage, position, digest) DO NOTHING",
                    (pipeline, n.stage, n.error, n.position, n.digest, psycopg2.Binary(n.event), len(n.event))
                    + (now, now, n.generation),
                )
                added += cur.rowcount
            cur.execute("SELECT count(*), coalesce(sum(nbytes), 0) FROM tidegate_dlq WHERE pipeline = %s", (pipeline,))
            events, nbytes = cur.fetchone()
            if added and (events > max_events or nbytes > max_bytes):
                raise DlqFull(full_message(pipeline, events - added, int(nbytes), max_events, max_bytes))
            return added

        return int(self._tx(q, retry=False))

    def dlq_list(
        self, pipeline: str, stage: str | None = None, limit: int = 100, after: str | None = None
    ) -> tuple[list[DlqEntry], str | None]:
        """Oldest first; `next` is the id to pass as `after` for the next page (None: no more)."""
        sql, args = _where(pipeline, None, stage)
        if after is not None:
            sql += " AND id > %s"
            args.append(int(after) if str(after).isdigit() else 0)

        def q(cur: Any) -> list[Any]:
            cur.execute(f"SELECT {COLS} FROM tidegate_dlq{sql} ORDER BY id LIMIT %s", (*args, limit + 1))
            rows: list[Any] = cur.fetchall()
            return rows

        rows = self._tx(q)
        out = [entry(r) for r in rows[:limit]]
        return out, (out[-1].id if len(rows) > limit else None)

    def dlq_get(self, pipeline: str, entry_id: str) -> DlqEntry | None:
        if not str(entry_id).isdigit():
            return None

        def q(cur: Any) -> Any:
            cur.execute(f"SELECT {COLS} FROM tidegate_dlq WHERE pipeline = %s AND id = %s", (pipeline, int(entry_id)))
            return cur.fetchone()

        r = self._tx(q)
        return entry(r) if r else None

    def dlq_delete(self, pipeline: str, ids: list[str] | None = None, stage: str | None = None) -> int:
        """Delete the entries named (ids and/or stage; neither: all of the pipeline's)."""
        sql, args = _where(pipeline, ids, stage)

        def q(cur: Any) -> int:
            cur.execute(f"DELETE FROM tidegate_dlq{sql}", args)
            return int(cur.rowcount)

        return int(self._tx(q))

    def dlq_failed(self, pipeline: str, entry_id: str, error: str, now: str) -> None:
        """A replay of the entry failed again: its error, attempts and last_seen change."""
        self._tx(
            lambda cur: cur.execute(
                "UPDATE tidegate_dlq SET error = %s, attempts = attempts + 1, last_seen = %s "
                "WHERE pipeline = %s AND id = %s",
                (error, now, pipeline, int(entry_id)),
            )
        )

    def dlq_counts(self, pipeline: str) -> dict[str, int]:
        def q(cur: Any) -> dict[str, int]:
            cur.execute(
                "SELECT stage, count(*) FROM tidegate_dlq WHERE pipeline = %s GROUP BY stage ORDER BY stage",
                (pipeline,),
            )
            return {r[0]: int(r[1]) for r in cur.fetchall()}

        return dict(self._tx(q))
