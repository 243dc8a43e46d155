"""Rows events -> (before, after) images, values JSON-ready (generated decoders, or mysql-replication)
-> change events (`change_events`).

Imports: stdlib + shared.errors + worker.sources.mysql.events/rowcode/tablemap. Events read by the source's
own reader (wire.py) carry their raw rows and table map: `RowImages` compiles one decoder per table
map and column image (rowcode.py) and keeps it. Events read by mysql-replication carry the library's
decoded rows, which go through the table's converter (values.py). `fast_types` says which readers
a stream can use: the own one needs the column names of binlog_row_metadata=FULL and column types
it reads; a table map it cannot read anyway raises LibraryNeeded (the source then switches to
mysql-replication and resumes). tests/integration/test_mysql_source_decode.py holds both to the
same output for every type.
"""

from __future__ import annotations

import time
from typing import Any

from shared.errors import SourceError
from worker.sources.mysql.events import Rows
from worker.sources.mysql.rowcode import compile_rows
from worker.sources.mysql.tablemap import describe

# information_schema DATA_TYPEs whose binlog form rowcode/columns read (MariaDB's JSON is LONGTEXT)
FAST_DATA_TYPES = frozenset(
    {
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "integer",
        "bigint",
        "float",
        "double",
        "decimal",
        "char",
        "varchar",
        "tinytext",
        "text",
        "mediumtext",
        "longtext",
        "binary",
        "varbinary",
        "tinyblob",
        "blob",
        "mediumblob",
        "longblob",
        "date",
        "datetime",
        "timestamp",
        "time",
        "year",
        "enum",
        "set",
        "bit",
    }
)


class LibraryNeeded(SourceError):
    """A table map the own decoder cannot read: read the binlog with mysql-replication instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


def fast_types(server: Any, tables: list[Any]) -> bool:
    """Can the source's own reader decode every captured table's rows?"""
    if not server.row_metadata_full:
        return False
    return all(c.data_type in FAST_DATA_TYPES for t in tables for c in t.columns)


class RowImages:
    """(before, after) images of a rows event's rows."""

    def __init__(self) -> None:
        self._decoders: dict[tuple[Any, ...], Any] = {}

    def clear(self) -> None:
        """Forget the compiled decoders (a column may have become JSON, or its table changed)."""
        self._decoders.clear()

    def __call__(self, ev: Rows, t: Any) -> list[tuple[Any, Any]]:
        tm = ev.tm
        if tm is not None:
            fn = self._decoders.get((tm.key, ev.op, ev.present, None))
            if fn is None:
                fn = self._compile(ev, t, None)
            return fn(ev.data, ev.offset, ev.end)
        return _converted(ev.lib, ev.op, t.convert)

    def events(self, ev: Rows, t: Any, n: int, tx: tuple[str, str, str, str]) -> list[Any]:
        """change_events(t, ev, self(ev, t), n, tx) in one pass (events of the own reader only)."""
        tm = ev.tm
        assert tm is not None
        prefix, suffix, txid, gtid_set = tx
        envelope = (t.db, t.name, bool(gtid_set))
        fn = self._decoders.get((tm.key, ev.op, ev.present, envelope))
        if fn is None:
            fn = self._compile(ev, t, envelope)
        now = int(time.time() * 1000)
        return fn(ev.data, ev.offset, ev.end, n, now, ev.timestamp * 1000, prefix, suffix, txid, gtid_set)

    def _compile(self, ev: Rows, t: Any, envelope: Any) -> Any:
        tm = ev.tm
        assert tm is not None
        first, second = ev.present
        fn = None
        if tm.ok:
            json_names = {c.name for c in t.columns if c.is_json}
            fn = compile_rows(tm.columns, first, second, ev.op, json_names, envelope)
        if fn is None:
            raise LibraryNeeded(
                f"the binlog rows of {tm.schema}.{tm.table} ({describe(tm.columns)}) need "
                "mysql-replication's decoder; switching to it"
            )
        if len(self._decoders) > 1000:
            self._decoders.clear()
        self._decoders[(tm.key, ev.op, ev.present, envelope)] = fn
        return fn


def _converted(lib: Any, op: str, conv: Any) -> list[tuple[Any, Any]]:
    """mysql-replication's rows through the table's converter."""
    if op == "c":
        return [(None, conv(r["values"], r.get("none_sources"))) for r in lib.rows]
    if op == "u":
        return [
            (
                conv(r["before_values"], r.get("before_none_sources")),
                conv(r["after_values"], r.get("after_none_sources")),
            )
            for r in lib.rows
        ]
    return [(conv(r["values"], r.get("none_sources")), None) for r in lib.rows]


def change_events(t: Any, ev: Rows, pairs: list[tuple[Any, Any]], n: int, tx: tuple[str, str, str, str]) -> list[Any]:
    """The change events of these rows, the first being row n + 1 of its transaction; `tx`: the
    transaction's position prefix and suffix, id and GTID set (see stream.py)."""
    src_ts, now = ev.timestamp * 1000, int(time.time() * 1000)
    db, name, op = t.db, t.name, ev.op
    prefix, suffix, txid, gtid_set = tx
    if gtid_set:
        return [
            {
                "op": op,
                "ts_ms": now,
                "source": {
                    "connector": "mysql",
                    "db": db,
                    "schema": None,
                    "table": name,
                    "position": f"{prefix}{i}{suffix}",
                    "tx_id": txid,
                    "ts_ms": src_ts,
                    "gtid_set": gtid_set,
                },
                "before": before,
                "after": after,
            }
            for i, (before, after) in enumerate(pairs, n + 1)
        ]
    return [
        {
            "op": op,
            "ts_ms": now,
            "source": {
                "connector": "mysql",
                "db": db,
                "schema": None,
                "table": name,
                "position": f"{prefix}{i}{suffix}",
                "tx_id": txid,
                "ts_ms": src_ts,
            },
            "before": before,
            "after": after,
        }
        for i, (before, after) in enumerate(pairs, n + 1)
    ]
