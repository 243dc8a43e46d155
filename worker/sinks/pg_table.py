"""The Postgres sink's view of its target table, and how a batch becomes SQL.

`TableInfo` is read from the catalog at open (columns with their types, the key
columns), `plan()` folds a batch into the final state per key (the batch is
applied in one transaction, so only that state is visible), and the SQL helpers
build the upsert/delete statements (head + mogrified rows + tail).
Pure except `load_table` (one catalog query on a given cursor).
Imports: stdlib, psycopg2 (adapters).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg2.extras import Json


class TableError(ValueError):
    """The table or an event cannot work with this sink (a fatal sink error)."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def split_table(table: str) -> tuple[str, str]:
    """`schema.table` or `table` (in `public`); a quoted part may hold dots."""
    parts: list[str] = []
    cur, quoted, i = "", False, 0
    while i < len(table):
        ch = table[i]
        if ch == '"':
            if quoted and i + 1 < len(table) and table[i + 1] == '"':
                cur += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    parts.append(cur)
    if len(parts) == 1:
        return "public", parts[0]
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    raise ValueError(f"table {table!r} is not `schema.table` or `table`")


def _bytea(v: Any) -> Any:
    if isinstance(v, str) and not v.startswith("\\x"):
        try:
            return base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            return v
    return v


def _json(v: Any) -> Any:
    return Json(v)


@dataclass(slots=True)
class TableInfo:
    schema: str
    name: str
    columns: dict[str, str]  # name -> format_type, in table order
    keys: list[str]
    convert: dict[str, Callable[[Any], Any]] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"


def load_table(cur: Any, schema: str, name: str, key_columns: list[str] | None) -> TableInfo | None:
    """Columns, types and key columns of `schema.name`; None when the table does not exist."""
    cur.execute("SELECT to_regclass(%s)::oid", (f"{quote_ident(schema)}.{quote_ident(name)}",))
    oid = cur.fetchone()[0]
    if oid is None:
        return None
    cur.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typcategory
                   FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                   WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                   ORDER BY a.attnum""",
        (oid,),
    )
    columns: dict[str, str] = {}
    convert: dict[str, Callable[[Any], Any]] = {}
    for col, ftype, typname, _cat in cur.fetchall():
        columns[col] = ftype
        if typname in ("json", "jsonb"):
            convert[col] = _json
        elif typname == "bytea":
            convert[col] = _bytea
    # unique, non-partial indexes: the primary key first
    cur.execute(
        """SELECT i.indisprimary,
                          array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
                                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)
                   FROM pg_index i WHERE i.indrelid = %s AND i.indisunique AND i.indpred IS NULL
                         AND i.indexprs IS NULL
                   ORDER BY i.indisprimary DESC""",
        (oid,),
    )
    uniques = [(primary, list(cols)) for primary, cols in cur.fetchall()]
    if key_columns:
        keys = list(key_columns)
        missing = [k for k in keys if k not in columns]
        if missing:
            raise TableError(f"key_columns {missing} are not columns of {schema}.{name}")
        if not any(set(cols) == set(keys) for _p, cols in uniques):
            raise TableError(
                f"no unique index or primary key on {schema}.{name} ({', '.join(keys)}); "
                "an upsert needs one: add it, or change key_columns"
            )
    else:
        primary = [cols for p, cols in uniques if p]
        if not primary:
            raise TableError(f"table {schema}.{name} has no primary key; add one or set key_columns")
        keys = primary[0]
    return TableInfo(schema, name, columns, keys, convert)


@dataclass(slots=True)
class Plan:
    deletes: list[tuple[Any, ...]]
    upserts: dict[tuple[str, ...], list[tuple[Any, ...]]]  # column tuple -> rows
    ignored_columns: set[str]
    ignored_ops: set[str]


def plan(info: TableInfo, events: list[dict[str, Any]]) -> Plan:
    """The batch as its final state per key: deletes, and upserts grouped by column set."""
    keys = info.keys
    columns = info.columns
    final: dict[tuple[Any, ...], tuple[bool, dict[str, Any]]] = {}
    ignored_ops: set[str] = set()

    def key_of(row: dict[str, Any], ev: dict[str, Any]) -> tuple[Any, ...]:
        try:
            return tuple([row[k] for k in keys])
        except KeyError as exc:
            pos = (ev.get("source") or {}).get("position")
            raise TableError(f"event at position {pos} has no value for key column {exc.args[0]!r}") from None

    for ev in events:
        op = ev.get("op")
        if op == "d":
            row = ev.get("before") or ev.get("after")
            if isinstance(row, dict):
                final[key_of(row, ev)] = (False, row)
        elif op in ("c", "u", "r"):
            after = ev.get("after")
            if not isinstance(after, dict):
                continue
            k = key_of(after, ev)
            before = ev.get("before")
            if op == "u" and isinstance(before, dict) and all(c in before for c in keys):
                old = key_of(before, ev)
                if old != k:  # the key itself changed: the old row goes
                    final[old] = (False, before)
            prev = final.get(k)
            if prev is not None and prev[0]:
                after = {**prev[1], **after}  # consecutive changes: later columns win
            final[k] = (True, after)
        else:
            ignored_ops.add(str(op))
    deletes: list[tuple[Any, ...]] = []
    upserts: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    ignored: set[str] = set()
    convert = info.convert
    for k, (is_upsert, row) in final.items():
        if not is_upsert:
            deletes.append(k)
            continue
        cols = tuple(row)
        if any(c not in columns for c in cols):
            ignored.update(c for c in cols if c not in columns)
            cols = tuple(c for c in cols if c in columns)
        if convert:
            values = tuple([convert[c](row[c]) if c in convert and row[c] is not None else row[c] for c in cols])
        else:
            values = tuple([row[c] for c in cols])
        upserts.setdefault(cols, []).append(values)
    return Plan(deletes, upserts, ignored, ignored_ops)


def upsert_sql(info: TableInfo, cols: tuple[str, ...]) -> tuple[str, str, str]:
    """(head, tail, per-row template): the statement is head + rows joined by "," + tail.

    INSERT ... VALUES coerces each value to its target column's type, so the
    row template needs no casts."""
    names = ", ".join(quote_ident(c) for c in cols)
    conflict = ", ".join(quote_ident(k) for k in info.keys)
    updates = [c for c in cols if c not in info.keys]
    action = (
        "DO UPDATE SET " + ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in updates)
        if updates
        else "DO NOTHING"
    )
    head = f"INSERT INTO {info.qualified} ({names}) VALUES "
    tail = f" ON CONFLICT ({conflict}) {action}"
    return head, tail, "(" + ", ".join("%s" for _c in cols) + ")"


def delete_sql(info: TableInfo) -> tuple[str, str, str]:
    """(head, tail, per-row template with casts: a VALUES list in USING is not coerced)."""
    keys = info.keys
    alias = ", ".join(f"k{i}" for i in range(len(keys)))
    match = " AND ".join(f"t.{quote_ident(k)} = d.k{i}" for i, k in enumerate(keys))
    head = f"DELETE FROM {info.qualified} AS t USING (VALUES "
    tail = f") AS d({alias}) WHERE {match}"
    return head, tail, "(" + ", ".join(f"%s::{info.columns[k]}" for k in keys) + ")"


def values_literal(rows: list[tuple[Any, ...]], mogrify: Callable[[str, tuple[Any, ...]], bytes]) -> str:
    """`(v, ...),(v, ...)` for an INSERT: common types quoted here (needs
    standard_conforming_strings = on), anything else by psycopg2's adapters."""
    out: list[str] = []
    append = out.append
    for row in rows:
        parts: list[str] = []
        add = parts.append
        for v in row:
            cl = v.__class__
            if cl is int:
                add(str(v))
            elif cl is str and "\x00" not in v:
                add("'" + v.replace("'", "''") + "'")
            elif v is None:
                add("NULL")
            elif cl is bool:
                add("true" if v else "false")
            elif cl is float and math.isfinite(v):
                add(repr(v))
            else:
                add(mogrify("%s", (v,)).decode())
        append("(" + ",".join(parts) + ")")
    return ",".join(out)


def convert_keys(info: TableInfo, keys: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    conv = [info.convert.get(k) for k in info.keys]
    if not any(conv):
        return keys
    return [tuple([c(v) if c and v is not None else v for c, v in zip(conv, k)]) for k in keys]
