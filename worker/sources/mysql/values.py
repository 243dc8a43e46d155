"""Column values of MySQL/MariaDB rows as JSON-friendly values, the same for snapshot and binlog rows.

Pure (stdlib only). pymysql (snapshot) and mysql-replication (binlog) hand out different Python values for
some types; both go through the converter of the table, built from its information_schema columns:

  integers, text         as they are (TEXT/VARCHAR are str; BOOLEAN is TINYINT(1): 0/1)
  DECIMAL                string ("12.34", never exponent notation), exact
  FLOAT                  float rounded to 6 significant digits (what the server prints), DOUBLE as is
  DATETIME, DATE         ISO-8601 without zone ("2024-01-02T03:04:05.123000", "2024-01-02")
  TIMESTAMP              ISO-8601 UTC with "Z" (the snapshot session runs with time_zone '+00:00')
  TIME                   "[-]HH:MM:SS[.ffffff]" (hours may exceed 24)
  BINARY/VARBINARY/BLOB  base64 string (BINARY(n) zero-padded to n bytes, as stored)
  JSON                   parsed (MariaDB stores JSON as LONGTEXT with a json_valid() check)
  ENUM                   string; SET: list of members in definition order; BIT: integer
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

Row = dict[str, Any]
PLAIN = frozenset({int, str, float, type(None), bool, list, dict})


def time_str(v: dt.timedelta) -> str:
    us = (v.days * 86400 + v.seconds) * 1_000_000 + v.microseconds
    sign = "-" if us < 0 else ""
    us = abs(us)
    secs, frac = divmod(us, 1_000_000)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    text = f"{sign}{h:02d}:{m:02d}:{s:02d}"
    return f"{text}.{frac:06d}" if frac else text


def plain(v: Any) -> Any:
    """Any Python value from a driver -> a JSON-friendly value (no column knowledge)."""
    cls = v.__class__
    if cls in PLAIN:
        if cls is list:
            return [plain(x) for x in v]
        if cls is dict:
            return {(k.decode() if isinstance(k, bytes) else str(k)): plain(x) for k, x in v.items()}
        return v
    if cls is Decimal:
        return format(v, "f")
    if cls is dt.datetime:
        return v.isoformat()
    if cls is dt.date:
        return v.isoformat()
    if cls is dt.timedelta:
        return time_str(v)
    if cls is bytes or cls is bytearray or cls is memoryview:
        return base64.b64encode(bytes(v)).decode("ascii")
    if cls is set or cls is frozenset or cls is tuple:
        return sorted(plain(x) for x in v) if cls is not tuple else [plain(x) for x in v]
    return str(v)


def _json(v: Any) -> Any:
    if isinstance(v, (str, bytes, bytearray)):
        try:
            return json.loads(v)
        except ValueError:
            return v if isinstance(v, str) else plain(v)
    return plain(v)


def _bit(v: Any) -> Any:
    if isinstance(v, str):  # mysql-replication: "1010"
        return int(v, 2) if v else 0
    if isinstance(v, (bytes, bytearray)):  # pymysql: big-endian bytes
        return int.from_bytes(v, "big")
    return v


def _timestamp(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None).isoformat() + "Z"
    return plain(v)


def _float(v: Any) -> Any:
    if isinstance(v, float):
        return float(f"{v:.6g}")
    return v


def _set_of(members: list[str]) -> Callable[[Any], Any]:
    order = {m: i for i, m in enumerate(members)}

    def conv(v: Any) -> Any:
        if isinstance(v, str):  # pymysql: "x,z"
            return v.split(",") if v else []
        if isinstance(v, (set, frozenset, list, tuple)):
            return sorted((str(x) for x in v), key=lambda m: order.get(m, len(order)))
        return plain(v)

    return conv


_SET_RE = re.compile(r"'((?:[^']|'')*)'")


def set_members(column_type: str) -> list[str]:
    """ "set('x','y','it''s')" -> ["x", "y", "it's"]."""
    return [m.replace("''", "'") for m in _SET_RE.findall(column_type)]


class Column:
    __slots__ = ("column_type", "data_type", "is_json", "name")

    def __init__(self, name: str, data_type: str, column_type: str = "", is_json: bool = False) -> None:
        self.name = name
        self.data_type = data_type.lower()
        self.column_type = column_type
        self.is_json = is_json or self.data_type == "json"


def _binary_of(size: int) -> Callable[[Any], Any]:
    """BINARY(n) is zero-padded to n bytes; the binlog leaves the padding out, a SELECT keeps it."""

    def conv(v: Any) -> Any:
        if isinstance(v, str):  # mysql-replication hands out "" for an all-padding value
            v = v.encode("utf-8")
        if isinstance(v, (bytes, bytearray)):
            return base64.b64encode(bytes(v).ljust(size, b"\0")).decode("ascii")
        return plain(v)

    return conv


def binary_size(column_type: str) -> int:
    m = re.search(r"\((\d+)\)", column_type)
    return int(m.group(1)) if m else 1


def special_converters(columns: list[Column]) -> dict[str, Callable[[Any], Any]]:
    out: dict[str, Callable[[Any], Any]] = {}
    for c in columns:
        if c.data_type == "binary":
            out[c.name] = _binary_of(binary_size(c.column_type))
        elif c.is_json:
            out[c.name] = _json
        elif c.data_type == "bit":
            out[c.name] = _bit
        elif c.data_type == "timestamp":
            out[c.name] = _timestamp
        elif c.data_type == "float":
            out[c.name] = _float
        elif c.data_type == "set":
            out[c.name] = _set_of(set_members(c.column_type))
    return out


BINARY_TYPES = frozenset(
    {
        "binary",
        "varbinary",
        "tinyblob",
        "blob",
        "mediumblob",
        "longblob",
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
    }
)


def _b64(v: Any) -> Any:
    return base64.b64encode(v).decode("ascii") if isinstance(v, (bytes, bytearray)) else plain(v)


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else plain(v)


def _decimal(v: Any) -> Any:
    return format(v, "f") if isinstance(v, Decimal) else plain(v)


def _time(v: Any) -> Any:
    return time_str(v) if isinstance(v, dt.timedelta) else plain(v)


def typed_converters(columns: list[Column]) -> dict[str, Callable[[Any], Any]]:
    """Every column whose driver values are not JSON-ready, by its declared type."""
    out = special_converters(columns)
    for c in columns:
        if c.name in out:
            continue
        if c.data_type == "decimal":
            out[c.name] = _decimal
        elif c.data_type in ("datetime", "date"):
            out[c.name] = _iso
        elif c.data_type == "time":
            out[c.name] = _time
        elif c.data_type in BINARY_TYPES:
            out[c.name] = _b64
    return out


def make_converter(columns: list[Column]) -> Callable[[Row, Any], Row]:
    """A function converting a row dict in place (and returning it).

    Fast path: the row has exactly the table's columns: convert the typed ones only. Otherwise (the
    binlog row predates a schema change) every value is checked by its Python class.
    The second argument is mysql-replication's `none_sources` for the row (or None): an empty SET
    arrives there as None with reason "empty set", which becomes [] like in the snapshot.
    """
    specials = special_converters(columns)
    typed = tuple(typed_converters(columns).items())
    known = {c.name for c in columns}
    sets = {c.name for c in columns if c.data_type == "set"}
    items = tuple(specials.items())
    plain_classes = PLAIN

    def convert(row: Row, none_sources: Any = None) -> Row:
        if row.keys() == known:
            for name, fn in typed:
                v = row[name]
                if v is not None:
                    row[name] = fn(v)
        else:
            for name, fn in items:
                v = row.get(name)
                if v is not None:
                    row[name] = fn(v)
            for k, v in row.items():
                if v.__class__ not in plain_classes:
                    row[k] = plain(v)
        if sets and none_sources:
            for name in sets:
                if row.get(name) is None and none_sources.get(name) == "empty set":
                    row[name] = []
        return row

    return convert
