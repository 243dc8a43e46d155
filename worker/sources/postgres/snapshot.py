"""The postgres source's snapshot: keyset-paginated reads of each table inside one exported snapshot.

Imports: stdlib + psycopg2 + worker.sources.handoff + worker.sources.postgres.position/setup/values.
Blocking; runs on the stream thread. ``SnapshotReader`` runs the phase (which tables, which snapshot,
progress, hand-off); ``read_table`` reads one table inside its REPEATABLE READ transaction with
SET TRANSACTION SNAPSHOT (the slot's exported snapshot), so every chunk sees the same consistent state.

Rows come as the types' text output (a pass-through typecaster for every OID, see
``raw_text``; ``::text`` casts would differ for bool and char(n)) so they convert exactly like
pgoutput values (same session settings). Pagination is by primary key; a table without one
(REPLICA IDENTITY FULL or USING INDEX) is paginated by ctid, stable inside one snapshot. Each chunk
fetches ``chunk + 1`` rows
to know whether its last row is the table's last one (that row's position gets ``:last``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from worker.sources.handoff import Handoff
from worker.sources.postgres.position import Runs, SnapshotPos, format_runs, lsn_str
from worker.sources.postgres.setup import TableInfo, connect_repl, connect_sql
from worker.sources.postgres.slot import create_slot
from worker.sources.postgres.values import Types


def raw_text(conn: Any, oids: list[int]) -> None:
    """Make `conn` return every value of these types as its text output form, unparsed."""
    caster = psycopg2.extensions.new_type(tuple(oids), "TIDEGATE_RAW", lambda value, _cur: value)
    psycopg2.extensions.register_type(caster, conn)


def _query(table: TableInfo, first: bool) -> tuple[sql.Composed, int]:
    """SELECT for one chunk, and how many key columns trail the row columns."""
    cols = [sql.Identifier(n) for n, _ in table.columns]
    key_sel: list[sql.Composable]
    where: sql.Composable
    order: sql.Composable
    if table.pk:
        keys = [sql.Identifier(n) for n, _ in table.pk]
        key_sel = list(keys)
        params = [sql.SQL("%s::{}").format(sql.SQL(t)) for _, t in table.pk]
        where = sql.SQL("({}) > ({})").format(sql.SQL(", ").join(keys), sql.SQL(", ").join(params))
        order = sql.SQL(", ").join(keys)
    else:
        key_sel = [sql.SQL("ctid")]
        where = sql.SQL("ctid > %s::tid")
        order = sql.SQL("ctid")
    only = sql.SQL("ONLY ") if table.relkind == "r" else sql.SQL("")
    q = sql.SQL("SELECT {} FROM {}{} {} ORDER BY {} LIMIT %s").format(
        sql.SQL(", ").join(cols + key_sel),
        only,
        table.ident,
        sql.SQL("") if first else sql.SQL("WHERE ") + where,
        order,
    )
    return q, len(key_sel)


def read_table(
    cur: Any,
    table: TableInfo,
    *,
    index: int,
    runs: Runs,
    epoch: int,
    types: Types,
    db: str,
    chunk: int,
    progress: Callable[[int], None],
    stopping: Callable[[], bool],
) -> Iterator[tuple[list[dict[str, Any]], int, bool]]:
    """Yield (op-r events, number of the chunk's last row, whether it is the table's last row)."""
    first_q, nkeys = _query(table, True)
    next_q, _ = _query(table, False)
    convs = [(name, types.str_conv(oid)) for name, oid in table.columns]
    ncols = len(convs)
    source: dict[str, Any] = {
        "connector": "postgres",
        "db": db,
        "schema": table.schema,
        "table": table.name,
        "position": "",
    }
    source.update(tx_id=None, ts_ms=int(time.time() * 1000), lsn=epoch, snapshot=True)
    at = (f"snapshot:{index}:", f":{format_runs(runs)}")
    after_key: list[str] | None = None
    row_no = 0
    while not stopping():
        if after_key is None:
            cur.execute(first_q, (chunk + 1,))
        else:
            cur.execute(next_q, (*after_key, chunk + 1))
        rows = cur.fetchall()
        more = len(rows) > chunk
        if more:
            rows = rows[:chunk]
        if not rows:
            return
        events = _events(rows, convs, source, at, row_no)
        row_no += len(rows)
        if not more:
            events[-1]["source"]["position"] += ":last"
        after_key = list(rows[-1][ncols : ncols + nkeys])
        progress(len(events))
        yield events, row_no, not more
        if not more:
            return


def _events(
    rows: list[Any], convs: list[tuple[str, Any]], source: dict[str, Any], at: tuple[str, str], row_no: int
) -> list[dict[str, Any]]:
    """The op-r events of these rows, numbered after `row_no` (position: at[0] + number + at[1]);
    `source` is the template of their `source`."""
    events = []
    now = int(time.time() * 1000)
    head, tail = at
    for r in rows:
        row_no += 1
        after = {n: (None if v is None else c(v)) for (n, c), v in zip(convs, r)}
        src = dict(source)
        src["position"] = f"{head}{row_no}{tail}"
        events.append({"op": "r", "ts_ms": now, "source": src, "before": None, "after": after})
    return events


class SnapshotReader:
    """The snapshot phase of the stream thread: the tables from a SnapshotPos on, read inside the
    exported snapshot (the slot's, handed over as `exported`; or, resuming, a new one exported by a
    TEMPORARY slot: a new run). Hands the rows to `handoff`; progress goes to `stats["snapshot"]`."""

    def __init__(
        self, *, params: Any, tables: list[TableInfo], types: Types, handoff: Handoff, stats: dict[str, Any], log: Any
    ) -> None:
        self.p, self.tables, self.types, self.handoff, self.stats, self.log = params, tables, types, handoff, stats, log
        self.exported: tuple[Any, str, int] | None = None  # (replication connection, snapshot name, epoch)

    def close_exported(self) -> None:
        if self.exported is not None:
            try:
                self.exported[0].close()
            except psycopg2.Error:
                pass
            self.exported = None

    def run(self, pos: SnapshotPos) -> Runs:
        """Read the tables not done yet; the runs (epochs) the stream must know about."""
        n = len(self.tables)
        start_t = pos.table + 1 if pos.last else pos.table
        if start_t >= n:
            self.stats["snapshot"] = {"table": None, "rows_done": 0, "rows_estimated": 0, "done": True}
            return pos.runs
        snap_name, epoch, runs = self._export(pos, start_t)
        conn = connect_sql(self.p.dsn, f"tidegate_{self.p.pipeline}_snapshot")
        try:
            conn.autocommit = False
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            raw_text(conn, self.types.oids())
            cur = conn.cursor()
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snap_name,))
            self.close_exported()  # imported: the exporting connection may go
            todo = self.tables[start_t:]
            snap = {
                "table": todo[0].full,
                "rows_done": 0,
                "rows_estimated": sum(t.estimate for t in todo),
                "done": False,
                "tables_done": start_t,
                "tables_total": n,
            }
            self.stats["snapshot"] = snap
            self.log.info(
                "pg_snapshot_started",
                tables=[t.full for t in todo],
                epoch=lsn_str(epoch),
                rows_estimated=snap["rows_estimated"],
            )
            for ti in range(start_t, n):
                if not self._table(cur, ti, runs, epoch, snap):
                    return runs
            conn.commit()
        finally:
            conn.close()
        snap["done"] = True
        self.log.info("pg_snapshot_done", rows=snap["rows_done"], tables=n - start_t)
        return runs

    def _export(self, pos: SnapshotPos, start_t: int) -> tuple[str, int, Runs]:
        if self.exported is not None:
            _repl, snap_name, epoch = self.exported
            return snap_name, epoch, pos.runs
        # the exported snapshot died with an earlier process or connection: export a new one
        repl = connect_repl(self.p.dsn, f"tidegate_{self.p.pipeline}_snapshot")
        self.exported = (repl, "", 0)
        temp = f"{self.p.slot[:40]}_snap_{secrets.token_hex(4)}"
        epoch, snap_name = create_slot(repl, temp, temporary=True, export=True)  # type: ignore[assignment]  # exported: named
        runs = tuple(r for r in pos.runs if r[0] < start_t) + ((start_t, epoch),)
        self.log.info(
            "pg_snapshot_reexported",
            from_table=self.tables[start_t].full,
            epoch=lsn_str(epoch),
            reason="resuming an interrupted snapshot; later stream changes of these tables below this LSN are skipped",
        )
        return snap_name or "", epoch, runs

    def _table(self, cur: Any, ti: int, runs: Runs, epoch: int, snap: dict[str, Any]) -> bool:
        """Read table #ti; False when stopping."""
        table, handoff = self.tables[ti], self.handoff
        snap["table"] = table.full
        t0 = time.monotonic()
        before = snap["rows_done"]

        def progress(k: int) -> None:
            snap["rows_done"] += k

        for events, row_no, last in read_table(
            cur,
            table,
            index=ti,
            runs=runs,
            epoch=epoch,
            types=self.types,
            db=self.p.db,
            chunk=self.p.snapshot_chunk,
            progress=progress,
            stopping=handoff.stopping.is_set,
        ):
            if not handoff.wait_room():
                return False
            handoff.put(events, True, SnapshotPos(ti, row_no, runs, last), (0, epoch, ti, row_no))
        snap["tables_done"] = ti + 1
        self.log.info(
            "pg_snapshot_table_done",
            table=table.full,
            rows=snap["rows_done"] - before,
            seconds=round(time.monotonic() - t0, 3),
            rows_done=snap["rows_done"],
            rows_estimated=snap["rows_estimated"],
        )
        return True
