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

Imports: stdlib + pymysqlreplication constants/helpers.
"""

from __future__ import annotations

import base64
import codecs
import datetime as dt
import json
import struct
from collections.abc import Callable
from typing import Any

from pymysqlreplication.constants import BINLOG, FIELD_TYPE
from pymysqlreplication.row_event import RowsEvent

from worker.sources.mysql.values import time_str

Decoder = Callable[[bytes, int], tuple[Any, int]]
_EPOCH = dt.datetime(1970, 1, 1)
_DIG2BYTES = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4]


def _int(fmt: str) -> Decoder:
    s = struct.Struct(fmt)
    size, unpack = s.size, s.unpack_from

    def dec(b: bytes, o: int) -> tuple[Any, int]:
        return unpack(b, o)[0], o + size

    return dec


def _int24(signed: bool) -> Decoder:
    def dec(b: bytes, o: int) -> tuple[Any, int]:
        return int.from_bytes(b[o : o + 3], "little", signed=signed), o + 3

    return dec


def _float(b: bytes, o: int) -> tuple[Any, int]:
    return float(f"{struct.unpack_from('<f', b, o)[0]:.6g}"), o + 4


def _text(prefix: int, encoding: str | None, is_json: bool, pad: int = 0) -> Decoder:
    def dec(b: bytes, o: int) -> tuple[Any, int]:
        n = int.from_bytes(b[o : o + prefix], "little")
        o += prefix
        raw = b[o : o + n]
        if encoding is None:
            if pad:  # BINARY(n): the binlog drops the zero padding that the column stores
                raw = raw.ljust(pad, b"\0")
            return base64.b64encode(raw).decode("ascii"), o + n
        text = raw.decode(encoding)
        if is_json:
            try:
                return json.loads(text), o + n
            except ValueError:
                return text, o + n
        return text, o + n

    return dec


def _decimal(precision: int, scale: int) -> Decoder:
    integral = precision - scale
    ui, ci = divmod(integral, 9)
    uf, cf = divmod(scale, 9)
    ci_b, cf_b = _DIG2BYTES[ci], _DIG2BYTES[cf]
    size = ci_b + ui * 4 + uf * 4 + cf_b

    def dec(b: bytes, o: int) -> tuple[Any, int]:
        raw = bytearray(b[o : o + size])
        negative = not raw[0] & 0x80
        raw[0] ^= 0x80
        if negative:
            raw = bytearray(x ^ 0xFF for x in raw)
        p = 0
        ipart = ""
        if ci_b:
            ipart = str(int.from_bytes(raw[:ci_b], "big"))
            p = ci_b
        for _ in range(ui):
            ipart += f"{int.from_bytes(raw[p : p + 4], 'big'):09d}"
            p += 4
        fpart = ""
        for _ in range(uf):
            fpart += f"{int.from_bytes(raw[p : p + 4], 'big'):09d}"
            p += 4
        if cf_b:
            fpart += f"{int.from_bytes(raw[p : p + cf_b], 'big'):0{cf}d}"
        text = (ipart.lstrip("0") or "0") + ("." + fpart if scale else "")
        return ("-" + text if negative else text), o + size

    return dec


def _fsp_reader(fsp: int) -> tuple[int, Callable[[bytes, int], int]]:
    n = (fsp + 1) // 2

    def read(b: bytes, o: int) -> int:
        if not n:
            return 0
        v = int.from_bytes(b[o : o + n], "big", signed=True)  # signed, as mysql-replication reads it:
        if fsp % 2:  # that is what makes negative TIME right
            v = int(v / 10)
        return v * 10 ** (6 - fsp)

    return n, read


def _datetime2(fsp: int) -> Decoder:
    n, frac = _fsp_reader(fsp)

    def dec(b: bytes, o: int) -> tuple[Any, int]:
        v = int.from_bytes(b[o : o + 5], "big")
        ym = (v >> 22) & 0x1FFFF
        y, mo, d = ym // 13, ym % 13, (v >> 17) & 0x1F
        h, mi, s = (v >> 12) & 0x1F, (v >> 6) & 0x3F, v & 0x3F
        us = frac(b, o + 5)
        if not (1 <= mo <= 12 and 1 <= d <= 31 and 1 <= y):
            return None, o + 5 + n
        try:
            dt.date(y, mo, d)
        except ValueError:
            return None, o + 5 + n
        text = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"
        return (f"{text}.{us:06d}" if us else text), o + 5 + n

    return dec


def _timestamp2(fsp: int) -> Decoder:
    n, frac = _fsp_reader(fsp)

    def dec(b: bytes, o: int) -> tuple[Any, int]:
        t = _EPOCH + dt.timedelta(seconds=int.from_bytes(b[o : o + 4], "big"), microseconds=frac(b, o + 4))
        return t.isoformat() + "Z", o + 4 + n

    return dec


def _date(b: bytes, o: int) -> tuple[Any, int]:
    v = int.from_bytes(b[o : o + 3], "little")
    y, mo, d = (v >> 9) & 0x7FFF, (v >> 5) & 0xF, v & 0x1F
    if not (y and mo and d):
        return None, o + 3
    return f"{y:04d}-{mo:02d}-{d:02d}", o + 3


def _time2(fsp: int) -> Decoder:
    n, frac = _fsp_reader(fsp)

    def dec(b: bytes, o: int) -> tuple[Any, int]:
        v = int.from_bytes(b[o : o + 3], "big")
        sign = 1 if v & 0x800000 else -1
        if sign < 0:
            v = (~v + 1) & 0xFFFFFF  # as mysql-replication: two's complement of the 24 bits
        t = (
            dt.timedelta(
                hours=(v >> 12) & 0x3FF, minutes=(v >> 6) & 0x3F, seconds=v & 0x3F, microseconds=frac(b, o + 3)
            )
            * sign
        )
        return time_str(t), o + 3 + n

    return dec


def _year(b: bytes, o: int) -> tuple[Any, int]:
    return b[o] + 1900, o + 1


def _enum(size: int, values: list[str]) -> Decoder:
    def dec(b: bytes, o: int) -> tuple[Any, int]:
        i = int.from_bytes(b[o : o + size], "little")
        return (values[i] if i < len(values) else None), o + size

    return dec


def _set(size: int, members: list[str]) -> Decoder:
    def dec(b: bytes, o: int) -> tuple[Any, int]:
        mask = int.from_bytes(b[o : o + size], "little")
        return [m for i, m in enumerate(members) if mask >> i & 1], o + size

    return dec


def _bit(nbytes: int, bits: int) -> Decoder:
    mask = (1 << bits) - 1

    def dec(b: bytes, o: int) -> tuple[Any, int]:
        return int.from_bytes(b[o : o + nbytes], "big") & mask, o + nbytes

    return dec


def _encoding(column: Any) -> str | None:
    """The Python codec of a character column; None: binary (bytes, sent as base64)."""
    enc = RowsEvent.charset_to_encoding(column.character_set_name)
    try:
        codecs.lookup(enc)
    except LookupError:
        return None
    return enc


def column_decoder(c: Any, is_json: bool) -> Decoder | None:
    t = c.type
    u = bool(getattr(c, "unsigned", False))
    if t == FIELD_TYPE.TINY:
        return _int("<B" if u else "<b")
    if t == FIELD_TYPE.SHORT:
        return _int("<H" if u else "<h")
    if t == FIELD_TYPE.INT24:
        return _int24(not u)
    if t == FIELD_TYPE.LONG:
        return _int("<I" if u else "<i")
    if t == FIELD_TYPE.LONGLONG:
        return _int("<Q" if u else "<q")
    if t == FIELD_TYPE.FLOAT:
        return _float
    if t == FIELD_TYPE.DOUBLE:
        return _int("<d")
    if t in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING, FIELD_TYPE.BLOB):
        if c.character_set_name is None:
            return None
        prefix = c.length_size if t == FIELD_TYPE.BLOB else (2 if c.max_length > 255 else 1)
        return _text(prefix, _encoding(c), is_json, c.max_length if t == FIELD_TYPE.STRING else 0)
    if t == FIELD_TYPE.NEWDECIMAL:
        return _decimal(c.precision, c.decimals)
    if t == FIELD_TYPE.DATETIME2:
        return _datetime2(c.fsp)
    if t == FIELD_TYPE.TIMESTAMP2:
        return _timestamp2(c.fsp)
    if t == FIELD_TYPE.DATE:
        return _date
    if t == FIELD_TYPE.TIME2:
        return _time2(c.fsp)
    if t == FIELD_TYPE.YEAR:
        return _year
    if t == FIELD_TYPE.ENUM and c.enum_values:
        return _enum(c.size, list(c.enum_values))
    if t == FIELD_TYPE.SET and c.set_values:
        return _set(c.size, list(c.set_values))
    if t == FIELD_TYPE.BIT:
        return _bit(c.bytes, c.bits)
    return None


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
