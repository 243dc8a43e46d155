"""Fast decoding of binlog row images straight to JSON-ready values (the mysql source's hot path).

mysql-replication decodes rows in pure Python through many small reads and builds Decimal/datetime
objects that the source then turns into strings; it is the source's bottleneck. This module decodes
the rows event body in one pass from bytes (struct.unpack_from), producing the values of values.py
directly. It covers the column types of MariaDB and MySQL rows (integers, FLOAT/DOUBLE, DECIMAL,
CHAR/VARCHAR/TEXT/BLOB/BINARY, DATE, DATETIME, TIMESTAMP, TIME, YEAR, ENUM, SET, BIT, MariaDB JSON);
a table with any other column (MySQL's binary JSON, GEOMETRY, pre-5.6 temporal types), or without the
column names and charsets of binlog_row_metadata=FULL, or a partial JSON update, is left to
mysql-replication (`compile_table` returns None). tests/integration/test_mysql_source_decode.py holds
both decoders to the same output for every type.

Imports: stdlib + pymysqlreplication + worker.sources.mysql.columns (the per-column decoders).
"""

from __future__ import annotations

from typing import Any, Literal

from pymysqlreplication.constants import BINLOG
from pymysqlreplication.row_event import UpdateRowsEvent, WriteRowsEvent

from worker.sources.mysql.columns import Decoder, column_decoder


class TableDecoder:
    """Decodes the rows of one table map (its columns as the binlog describes them)."""

    def __init__(self, names: list[str], decoders: list[Decoder]) -> None:
        self.names, self.decoders = names, decoders
        self.ncols = len(names)
        self._present: dict[bytes, list[int]] = {}

    def image(self, b: bytes, o: int, present: bytes) -> tuple[dict[str, Any], int]:
        cols = self._present.get(present)
        if cols is None:
            cols = self._present[present] = [i for i in range(self.ncols) if present[i >> 3] >> (i & 7) & 1]
        nb = (len(cols) + 7) >> 3
        nulls = b[o : o + nb]
        o += nb
        row: dict[str, Any] = {}
        names, decs = self.names, self.decoders
        for j, i in enumerate(cols):
            if nulls[j >> 3] >> (j & 7) & 1:
                row[names[i]] = None
            else:
                row[names[i]], o = decs[i](b, o)
        return row, o

    def rows(self, ev: Any) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
        """(before, after) per row of a Write/Update/DeleteRowsEvent."""
        body = ev.packet.read(ev.event_size - ev.packet.read_bytes)
        out: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
        o, end = 0, len(body)
        p1 = ev.columns_present_bitmap
        if ev.event_type in (BINLOG.UPDATE_ROWS_EVENT_V1, BINLOG.UPDATE_ROWS_EVENT_V2):
            p2 = ev.columns_present_bitmap2
            while o < end:
                before, o = self.image(body, o, p1)
                after, o = self.image(body, o, p2)
                out.append((before, after))
        elif ev.event_type in (BINLOG.WRITE_ROWS_EVENT_V1, BINLOG.WRITE_ROWS_EVENT_V2):
            while o < end:
                after, o = self.image(body, o, p1)
                out.append((None, after))
        else:
            while o < end:
                before, o = self.image(body, o, p1)
                out.append((before, None))
        return out


def compile_table(columns: list[Any], json_names: set[str]) -> TableDecoder | None:
    """A decoder for this table map's columns, or None when mysql-replication must decode."""
    names, decs = [], []
    for c in columns:
        if not c.name:
            return None
        d = column_decoder(c, c.name in json_names)
        if d is None:
            return None
        names.append(c.name)
        decs.append(d)
    return TableDecoder(names, decs)


FAST_EVENT_TYPES = frozenset(
    {
        BINLOG.WRITE_ROWS_EVENT_V1,
        BINLOG.WRITE_ROWS_EVENT_V2,
        BINLOG.UPDATE_ROWS_EVENT_V1,
        BINLOG.UPDATE_ROWS_EVENT_V2,
        BINLOG.DELETE_ROWS_EVENT_V1,
        BINLOG.DELETE_ROWS_EVENT_V2,
    }
)


class RowImages:
    """(before, after) images of a rows event's rows, values JSON-ready: the fast decoder when the
    table map allows it, else mysql-replication's rows + the table's converter."""

    def __init__(self, fast: bool) -> None:
        self.fast = fast
        self._decoders: dict[tuple[Any, ...], TableDecoder | None] = {}

    def clear(self) -> None:
        """Forget the compiled tables (table ids may be reused; columns may have changed)."""
        self._decoders.clear()

    def __call__(self, ev: Any, t: Any, cls: Any) -> list[tuple[Any, Any]]:
        if self.fast and ev.event_type in FAST_EVENT_TYPES:
            k = (ev.table_id, ev.schema, ev.table, len(ev.columns))
            dec: TableDecoder | None | Literal[False] = self._decoders.get(k, False)
            if dec is False:
                dec = self._decoders[k] = compile_table(ev.columns, {c.name for c in t.columns if c.is_json})
            if dec is not None:
                return dec.rows(ev)
        conv = t.convert
        if cls is WriteRowsEvent:
            return [(None, conv(r["values"], r.get("none_sources"))) for r in ev.rows]
        if cls is UpdateRowsEvent:
            return [
                (
                    conv(r["before_values"], r.get("before_none_sources")),
                    conv(r["after_values"], r.get("after_none_sources")),
                )
                for r in ev.rows
            ]
        return [(conv(r["values"], r.get("none_sources")), None) for r in ev.rows]
