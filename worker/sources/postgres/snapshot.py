"""Initial snapshot of one table: keyset-paginated reads inside the caller's snapshot transaction.

Imports: stdlib + psycopg2 + worker.sources.postgres.position/setup/values. Blocking; runs on the
stream thread. The caller opened a REPEATABLE READ transaction with SET TRANSACTION SNAPSHOT
(the slot's exported snapshot), so every chunk sees the same consistent state.

Rows come as the types' text output (a pass-through typecaster for every OID, see
``raw_text``; ``::text`` casts would differ for bool and char(n)) so they convert exactly like
pgoutput values (same session settings). Pagination is by primary key; a table without one
(REPLICA IDENTITY FULL or USING INDEX) is paginated by ctid, stable inside one snapshot. Each chunk
fetches ``chunk + 1`` rows
to know whether its last row is the table's last one (that row's position gets ``:last``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from worker.sources.postgres.position import Runs, format_runs
from worker.sources.postgres.setup import TableInfo
from worker.sources.postgres.values import Types


def raw_text(conn: Any, oids: list[int]) -> None:
    """Make `conn` return every value of these types as its text output form, unparsed."""
    caster = psycopg2.extensions.new_type(tuple(oids), "TIDEGATE_RAW", lambda value, _cur: value)
    psycopg2.extensions.register_type(caster, conn)


def _query(table: TableInfo, first: bool) -> tuple[sql.Composed, int]:
    """SELECT for one chunk, and how many key columns trail the row columns."""
    cols = [sql.Identifier(n) for n, _ in table.columns]
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
    runs_s = format_runs(runs)
    ts = int(time.time() * 1000)
    schema, name = table.schema, table.name
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
        events = []
        now = int(time.time() * 1000)
        for r in rows:
            row_no += 1
            after = {n: (None if v is None else c(v)) for (n, c), v in zip(convs, r)}
            events.append(
                {
                    "op": "r",
                    "ts_ms": now,
                    "source": {
                        "connector": "postgres",
                        "db": db,
                        "schema": schema,
                        "table": name,
                        "position": f"snapshot:{index}:{row_no}:{runs_s}",
                        "tx_id": None,
                        "ts_ms": ts,
                        "lsn": epoch,
                        "snapshot": True,
                    },
                    "before": None,
                    "after": after,
                }
            )
        if not more:
            events[-1]["source"]["position"] += ":last"
        after_key = list(rows[-1][ncols : ncols + nkeys])
        progress(len(events))
        yield events, row_no, not more
        if not more:
            return
