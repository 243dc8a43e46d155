"""Initial snapshot for the mysql source: consistent reads of the configured tables, op "r".

Runs on the source's reader thread. Imports: stdlib, pymysql and the sibling modules of worker.sources.mysql.

One snapshot run reads tables[start:] inside one `START TRANSACTION WITH CONSISTENT SNAPSHOT` and
learns the binlog point that transaction sees: MariaDB reports it without any lock
(`binlog_snapshot_file/position`); MySQL takes FLUSH TABLES WITH READ LOCK for the instant of
SHOW MASTER STATUS. Rows come by primary key in chunks of `snapshot_chunk` (keyset pagination, so a
paused pipeline holds no server cursor open); a table without primary key is read with one
unbuffered query. The last row of a table is marked `:end` in its position, so a resume knows the
table is complete. Binlog streaming then starts at the earliest point (see position).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pymysql.cursors

from worker.sources.handoff import Handoff
from worker.sources.mysql.binlog import current_point, gtid_at
from worker.sources.mysql.position import (
    PLAIN,
    SNAPSHOT,
    BinlogPoint,
    Entries,
    Entry,
    format_entries,
    format_pk,
)
from worker.sources.mysql.setup import Dsn, ServerInfo, TableInfo, connect

PROGRESS_EVERY_S = 2.0


def q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def after_key(pk: list[str]) -> str:
    """(a, b) > (%s, %s) written so that every server uses the primary key range."""
    ors = []
    for i in range(len(pk)):
        eq = [f"{q(c)} = %s" for c in pk[:i]]
        ors.append("(" + " AND ".join(eq + [f"{q(pk[i])} > %s"]) + ")")
    return " OR ".join(ors)


def after_args(pk_values: tuple[Any, ...]) -> list[Any]:
    args: list[Any] = []
    for i in range(len(pk_values)):
        args.extend(pk_values[: i + 1])
    return args


class Snapshot:
    def __init__(
        self,
        dsn: Dsn,
        server: ServerInfo,
        tables: list[TableInfo],
        chunk: int,
        feed: Handoff,
        progress: dict[str, Any],
        log: Any,
    ) -> None:
        self.dsn, self.server, self.tables, self.chunk = dsn, server, tables, chunk
        self.feed, self.progress, self.log = feed, progress, log
        self._logged = 0.0

    def run(self, start: int, entries: Entries, mode: str = PLAIN, after: tuple[int, ...] = ()) -> Entries:
        """Read tables[start:] at one new consistent point (table `start` only above key `after` when
        mode is CONTINUE); return the entries including the new one (see position)."""
        entries = tuple(e for e in entries if e.k <= start)
        todo = self.tables[start:]
        prog = self.progress
        prog.update(
            tables_total=len(self.tables),
            tables_done=start,
            done=False,
            rows_estimated=sum(t.estimated_rows for t in todo),
            rows_done=0,
        )
        if not todo:
            prog.update(done=True, table=None)
            return entries
        conn = connect(self.dsn, autocommit=False, read_timeout=3600)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION time_zone = '+00:00'")
                cur.execute("SET SESSION net_write_timeout = 86400")
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                point = self._begin(cur)
                entries = entries + (Entry(start, point, mode, after),)
                gtid = gtid_at(cur, self.server.flavor, point)
            self.log.info(
                "snapshot_started",
                point=str(point),
                gtid=gtid,
                tables=[t.full_name for t in todo],
                rows_estimated=prog["rows_estimated"],
            )
            ts_ms = int(time.time() * 1000)
            for t in todo:
                self._table(conn, t, entries, ts_ms, gtid, after if t.index == start else None)
                prog["tables_done"] = t.index + 1
                self.log.info("snapshot_table_done", table=t.full_name, rows_done=prog["rows_done"])
            conn.commit()
        finally:
            conn.close()
        prog.update(done=True, table=None)
        self.log.info("snapshot_done", rows=prog["rows_done"], point=str(point))
        return entries

    def _begin(self, cur: Any) -> BinlogPoint:
        if self.server.flavor == "mariadb":
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
            st = {str(k).lower(): str(v) for k, v in cur.fetchall()}
            return BinlogPoint.of(st["binlog_snapshot_file"], int(st["binlog_snapshot_position"]))
        cur.execute("FLUSH TABLES WITH READ LOCK")
        try:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            return current_point(cur, self.dsn.where)
        finally:
            cur.execute("UNLOCK TABLES")

    def _table(
        self, conn: Any, t: TableInfo, entries: Entries, ts_ms: int, gtid: str | None, after: tuple[int, ...] | None
    ) -> None:
        names = [c.name for c in t.columns]
        select = f"SELECT {', '.join(q(c) for c in names)} FROM {q(t.db)}.{q(t.name)}"
        prefix = f"{SNAPSHOT}{t.index}:"
        suffix = f"@{format_entries(entries)}"
        by_key = t.int_pk
        idx = [names.index(c) for c in t.pk]
        self.progress["table"] = t.full_name
        self.log.info("snapshot_table_started", table=t.full_name, rows_estimated=t.estimated_rows)
        ordinal = 0
        for rows, last in self._chunks(conn, t, select, names, after or None):
            events: list[dict[str, Any]] = []
            conv = t.convert
            for row in rows:
                ordinal += 1
                n = format_pk(tuple(row[i] for i in idx)) if by_key else f"#{ordinal}"
                source = {
                    "connector": "mysql",
                    "db": t.db,
                    "schema": None,
                    "table": t.name,
                    "position": f"{prefix}{n}{suffix}",
                    "tx_id": None,
                    "ts_ms": ts_ms,
                }
                if gtid:
                    source["gtid_set"] = gtid
                events.append(
                    {
                        "op": "r",
                        "ts_ms": int(time.time() * 1000),
                        "source": source,
                        "before": None,
                        "after": conv(dict(zip(names, row))),
                    }
                )
            if events:
                if last:
                    src = events[-1]["source"]
                    src["position"] = src["position"].replace("@", ":end@", 1)
                self.feed.send(events, True)
                self.progress["rows_done"] += len(events)
                self._log_progress()

    def _chunks(
        self,
        conn: Any,
        t: TableInfo,
        select: str,
        names: list[str],
        after: tuple[int, ...] | None,
    ) -> Iterator[tuple[Any, bool]]:
        """Yield (rows, is_last_chunk), rows above primary key `after` when given."""
        size = self.chunk
        if not t.pk:
            with conn.cursor(pymysql.cursors.SSCursor) as cur:
                cur.execute(select)
                rows = cur.fetchmany(size)
                while rows:
                    nxt = cur.fetchmany(size)
                    yield rows, not nxt
                    rows = nxt
            return
        order = ", ".join(q(c) for c in t.pk)
        idx = [names.index(c) for c in t.pk]
        key: tuple[Any, ...] | None = after
        with conn.cursor() as cur:
            while True:
                if key is None:
                    cur.execute(f"{select} ORDER BY {order} LIMIT {size + 1}")
                else:
                    cur.execute(f"{select} WHERE {after_key(t.pk)} ORDER BY {order} LIMIT {size + 1}", after_args(key))
                rows = cur.fetchall()
                more = len(rows) > size
                rows = rows[:size]
                if rows:
                    yield rows, not more
                if not more:
                    return
                key = tuple(rows[-1][i] for i in idx)

    def _log_progress(self) -> None:
        now = time.monotonic()
        if now - self._logged >= PROGRESS_EVERY_S:
            self._logged = now
            p = self.progress
            self.log.info(
                "snapshot_progress", table=p.get("table"), rows_done=p["rows_done"], rows_estimated=p["rows_estimated"]
            )
