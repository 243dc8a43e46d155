"""Per-column binary decoders of the mysql source's fast row decoder (decode.py).

`column_decoder(column, is_json)` returns, for one column of a binlog table map, a function
`(bytes, offset) -> (JSON-ready value, next offset)` reading that column's binary row format, or None
for a type the fast path leaves to mysql-replication. The values equal those of values.py.

Imports: stdlib + pymysqlreplication constants/helpers + worker.sources.mysql.values.
"""

from __future__ import annotations

import base64
import codecs
import datetime as dt
import json
import struct
from collections.abc import Callable
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE
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


def fsp_reader(fsp: int) -> tuple[int, Callable[[bytes, int], int]]:
    n = (fsp + 1) // 2

    def read(b: bytes, o: int) -> int:
        if not n:
            return 0
        v = int.from_bytes(b[o : o + n], "big", signed=True)  # signed, as mysql-replication reads it:
        if fsp % 2:  # that is what makes negative TIME right
            v = int(v / 10)
        return v * 10 ** (6 - fsp)

    return n, read


def datetime2_text(v: int) -> str | None:
    """DATETIME2's 5-byte integer (seconds part) -> "YYYY-MM-DDTHH:MM:SS", None for an invalid date."""
    ym = (v >> 22) & 0x1FFFF
    y, mo, d = ym // 13, ym % 13, (v >> 17) & 0x1F
    if not (1 <= mo <= 12 and 1 <= d <= 31 and 1 <= y):
        return None
    try:
        dt.date(y, mo, d)
    except ValueError:
        return None
    return f"{y:04d}-{mo:02d}-{d:02d}T{(v >> 12) & 0x1F:02d}:{(v >> 6) & 0x3F:02d}:{v & 0x3F:02d}"


def timestamp_text(seconds: int) -> str:
    """TIMESTAMP2's seconds since the epoch -> "YYYY-MM-DDTHH:MM:SS" (UTC, no zone letter)."""
    return (_EPOCH + dt.timedelta(seconds=seconds)).isoformat()


def date_text(v: int) -> str | None:
    """DATE's 3-byte integer -> "YYYY-MM-DD", None for a zero part."""
    y, mo, d = (v >> 9) & 0x7FFF, (v >> 5) & 0xF, v & 0x1F
    if not (y and mo and d):
        return None
    return f"{y:04d}-{mo:02d}-{d:02d}"


def _datetime2(fsp: int) -> Decoder:
    n, frac = fsp_reader(fsp)

    def dec(b: bytes, o: int) -> tuple[Any, int]:
        text = datetime2_text(int.from_bytes(b[o : o + 5], "big"))
        us = frac(b, o + 5)
        return (f"{text}.{us:06d}" if us and text is not None else text), o + 5 + n

    return dec


def _timestamp2(fsp: int) -> Decoder:
    n, frac = fsp_reader(fsp)

    def dec(b: bytes, o: int) -> tuple[Any, int]:
        t = _EPOCH + dt.timedelta(seconds=int.from_bytes(b[o : o + 4], "big"), microseconds=frac(b, o + 4))
        return t.isoformat() + "Z", o + 4 + n

    return dec


def _date(b: bytes, o: int) -> tuple[Any, int]:
    return date_text(int.from_bytes(b[o : o + 3], "little")), o + 3


def _time2(fsp: int) -> Decoder:
    n, frac = fsp_reader(fsp)

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


def encoding(column: Any) -> str | None:
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
        return _text(prefix, encoding(c), is_json, c.max_length if t == FIELD_TYPE.STRING else 0)
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
