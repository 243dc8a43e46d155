"""SQL of the mysql source's incremental snapshots: the signal table, key chunks, the request check.

Imports: stdlib + worker.sources.mysql.setup/snapshot/values. Pure but for the cursor calls.

- The signal table ``<db>.tidegate_signal (id varchar(128) primary key, wm varchar(64))`` lives in
  the dsn's database (else the first captured table's): created on the first backfill, one row
  per pipeline (id = the pipeline's name) whose ``wm`` each watermark overwrites in its own
  autocommit transaction (``L:<token>`` / ``H:<token>``), so the table never grows. Discovering
  every table of the dsn's database leaves it out.
- A chunk: ``SELECT <columns> FROM t WHERE (pk) > (last key) ORDER BY pk LIMIT n + 1`` (the row
  comparison written out as ORs, as the initial snapshot does, so every server uses the key range).
- The last key is kept as text (``last_key`` of the Snapshot, a JSON object of strings): integers in
  decimal, binary strings in hex, TIME as ``[-]HH:MM:SS[.ffffff]``, the rest as the server prints
  them; it goes back into the query typed like its column (an integer compares as an integer, not
  as a double). ENUM and SET keys order by their index, not their text: not supported.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from worker.sources.mysql.setup import INT_TYPES, TableInfo
from worker.sources.mysql.snapshot import after_args, q
from worker.sources.mysql.values import Column, make_converter, time_str

SIGNAL_TABLE = "tidegate_signal"
BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
UNORDERED_TYPES = frozenset({"enum", "set", "bit"})


def signal_info(db: str) -> TableInfo:
    """The signal table, as the stream decodes its rows."""
    cols = [Column("id", "varchar", "varchar(128)", False), Column("wm", "varchar", "varchar(64)", False)]
    return TableInfo(db, SIGNAL_TABLE, -1, cols, ["id"], 0, make_converter(cols))


def create_signal(cur: Any, db: str) -> None:
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS {q(db)}.{q(SIGNAL_TABLE)} "
        "(id varchar(128) NOT NULL PRIMARY KEY, wm varchar(64) NOT NULL) ENGINE=InnoDB"
    )


def write_signal(cur: Any, db: str, pipeline: str, wm: str) -> None:
    """One watermark, in its own (autocommit) transaction."""
    cur.execute(
        f"INSERT INTO {q(db)}.{q(SIGNAL_TABLE)} (id, wm) VALUES (%s, %s) ON DUPLICATE KEY UPDATE wm = VALUES(wm)",
        (pipeline, wm),
    )


def key_text(v: Any) -> str:
    """A key value from pymysql as the text kept in the Snapshot's `last_key`."""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, dt.timedelta):
        return time_str(v)
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, float):
        return repr(v)
    return str(v)


def key_param(data_type: str, text: str) -> Any:
    """`key_text` back into a query parameter typed like its column."""
    if data_type in INT_TYPES or data_type == "year":
        return int(text)
    if data_type == "decimal":
        return Decimal(text)
    if data_type in ("float", "double"):
        return float(text)
    if data_type in BINARY_TYPES:
        return bytes.fromhex(text)
    return text


def after_where(pk: list[str]) -> str:
    """(a, b) > (%s, %s) as ORs (see snapshot.after_key)."""
    ors = []
    for i in range(len(pk)):
        eq = [f"{q(c)} = %s" for c in pk[:i]]
        ors.append("(" + " AND ".join(eq + [f"{q(pk[i])} > %s"]) + ")")
    return " OR ".join(ors)


def chunk_query(t: TableInfo, after: dict[str, str] | None, rows: int) -> tuple[str, list[Any]]:
    """The SELECT of the `rows` rows after key `after` (None: from the start), and its parameters."""
    cols = ", ".join(q(c.name) for c in t.columns)
    order = ", ".join(q(c) for c in t.pk)
    head = f"SELECT {cols} FROM {q(t.db)}.{q(t.name)}"
    if after is None:
        return f"{head} ORDER BY {order} LIMIT {int(rows)}", []
    types = {c.name: c.data_type for c in t.columns}
    values = tuple(key_param(types.get(c, ""), after[c]) for c in t.pk)
    return f"{head} WHERE {after_where(t.pk)} ORDER BY {order} LIMIT {int(rows)}", after_args(values)


def check(tables: dict[str, TableInfo], names: list[str], default_db: str | None) -> tuple[list[str], int, str | None]:
    """A snapshot request's tables: (canonical names, rows estimated, None) or the 422's reason."""
    out, estimate = [], 0
    for name in names:
        full = name if "." in name else f"{default_db}.{name}"
        t = tables.get(full)
        if t is None:
            return [], 0, f"table {name!r} is not captured by this pipeline's source"
        if not t.pk:
            return [], 0, f"table {full} has no primary key, so it cannot be read in key chunks"
        types = {c.name: c.data_type for c in t.columns}
        odd = [c for c in t.pk if types.get(c) in UNORDERED_TYPES]
        if odd:
            return [], 0, f"table {full}: primary key column {odd[0]} is an ENUM/SET/BIT, which key chunks cannot order"
        out.append(full)
        estimate += max(0, t.estimated_rows)
    return out, estimate, None
