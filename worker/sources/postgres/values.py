"""PostgreSQL text values -> JSON values, by type OID.

Imports: stdlib + msgspec. pgoutput (and our snapshot queries, which select
``col::text``) deliver every value in its text output form, produced in the
session settings ``setup.SESSION_OPTIONS`` sets (DateStyle ISO, TimeZone
UTC, IntervalStyle iso_8601, extra_float_digits 3), so one converter serves both.

Mapping (documented in the report and README of the source):
  int2/int4/int8/oid/xid -> int        float4/float8 -> float ("NaN"/"Infinity" stay strings)
  numeric/money -> string (exact)      bool -> bool
  json/jsonb -> parsed value           bytea -> base64 string
  timestamptz -> "2024-01-02T03:04:05.123456Z"   timestamp -> "2024-01-02T03:04:05"
  date/time/timetz -> ISO text         interval -> ISO-8601 duration ("P1DT2H")
  arrays (comma-delimited) -> JSON arrays of converted elements (NULL -> null)
  domains -> their base type           everything else (text, uuid, enum, inet...) -> string
Two forms per type: ``bytes_conv`` (the hot pgoutput path) and ``str_conv``
(array elements, snapshot rows).
"""

from __future__ import annotations

import binascii
import math
from base64 import b64encode
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

Conv = Callable[[Any], Any]

_json_decode = msgspec.json.decode

INT_OIDS = {20, 21, 23, 26, 28}
FLOAT_OIDS = {700, 701}
BOOL, BYTEA, JSON, JSONB = 16, 17, 114, 3802
TIMESTAMP, TIMESTAMPTZ = 1114, 1184


def _float(v: Any) -> Any:
    f = float(v)
    if math.isfinite(f):
        return f
    return v.decode() if isinstance(v, bytes) else v


def _tstz(s: str) -> str:
    if len(s) < 19 or s[10] != " " or s.endswith("BC"):
        return s
    body = f"{s[:10]}T{s[11:]}"
    if body.endswith("+00"):
        return body[:-3] + "Z"
    if body[-3] in "+-":
        return body + ":00"
    return body


def _ts(s: str) -> str:
    if len(s) < 19 or s[10] != " " or s.endswith("BC"):
        return s
    return f"{s[:10]}T{s[11:]}"


def _bytea_s(s: str) -> str:
    if s.startswith("\\x"):
        return b64encode(bytes.fromhex(s[2:])).decode()
    return s  # bytea_output=escape would land here; we set hex


def _bytea_b(b: bytes) -> str:
    if b[:2] == b"\\x":
        return b64encode(binascii.unhexlify(b[2:])).decode()
    return b.decode()


def _bool_s(s: str) -> bool:
    return s == "t" or s == "true"


def _bool_b(b: bytes) -> bool:
    return b == b"t"


def _tstz_b(b: bytes) -> str:
    if b[-3:] == b"+00" and len(b) >= 22 and b[10] == 32:  # the common UTC form, fast
        s = b.decode()
        return f"{s[:10]}T{s[11:-3]}Z"
    return _tstz(b.decode())


def _ts_b(b: bytes) -> str:
    return _ts(b.decode())


_STR: dict[int, Conv] = {
    BOOL: _bool_s,
    BYTEA: _bytea_s,
    JSON: _json_decode,
    JSONB: _json_decode,
    TIMESTAMPTZ: _tstz,
    TIMESTAMP: _ts,
}
_BYTES: dict[int, Conv] = {
    BOOL: _bool_b,
    BYTEA: _bytea_b,
    JSON: _json_decode,
    JSONB: _json_decode,
    TIMESTAMPTZ: _tstz_b,
    TIMESTAMP: _ts_b,
}
for _oid in INT_OIDS:
    _STR[_oid] = int
    _BYTES[_oid] = int
for _oid in FLOAT_OIDS:
    _STR[_oid] = _float
    _BYTES[_oid] = _float


def parse_array(text: str, conv: Conv) -> list[Any]:
    """Parse PostgreSQL array text output (``{1,2,NULL}``, nested, quoted) with element conv."""
    if text.startswith("["):  # explicit bounds: [0:2]={1,2,3}
        text = text[text.index("=") + 1 :]
    value, _ = _parse_level(text, 0, conv)
    return value


def _parse_level(s: str, i: int, conv: Conv) -> tuple[list[Any], int]:
    out: list[Any] = []
    i += 1  # skip "{"
    if s[i] == "}":
        return out, i + 1
    while True:
        c = s[i]
        if c == "{":
            sub, i = _parse_level(s, i, conv)
            out.append(sub)
        elif c == '"':
            j = i + 1
            end = s.index('"', j)
            if "\\" not in s[j:end]:
                out.append(conv(s[j:end]))
                i = end + 1
            else:
                buf = []
                while s[j] != '"':
                    if s[j] == "\\":
                        j += 1
                    buf.append(s[j])
                    j += 1
                out.append(conv("".join(buf)))
                i = j + 1
        else:
            j = i
            while s[j] not in ",}":
                j += 1
            tok = s[i:j]
            out.append(None if tok == "NULL" else conv(tok))
            i = j
        if s[i] == ",":
            i += 1
            continue
        return out, i + 1  # "}"


class TypeInfo(msgspec.Struct, frozen=True):
    elem: int
    base: int
    category: str
    delim: str


TYPES_SQL = "SELECT oid, typelem, typbasetype, typcategory, typdelim FROM pg_type"


class Types:
    """Converter lookup by type OID, built from ``TYPES_SQL`` rows; unknown OIDs give strings."""

    def __init__(self, rows: Iterable[tuple[int, int, int, str, str]] = ()) -> None:
        self._info = {int(o): TypeInfo(int(e), int(b), c, d) for o, e, b, c, d in rows}
        self._s: dict[int, Conv] = {}
        self._b: dict[int, Conv] = {}

    def oids(self) -> list[int]:
        return list(self._info)

    def _resolve(self, oid: int, depth: int = 0) -> tuple[int, TypeInfo | None]:
        info = self._info.get(oid)
        while info is not None and info.base and depth < 10:  # domain -> base type
            oid, info, depth = info.base, self._info.get(info.base), depth + 1
        return oid, info

    def str_conv(self, oid: int) -> Conv:
        conv = self._s.get(oid)
        if conv is None:
            conv = self._s[oid] = self._make_str(oid)
        return conv

    def _make_str(self, oid: int) -> Conv:
        base, info = self._resolve(oid)
        if base in _STR:
            return _STR[base]
        if info is not None and info.category == "A" and info.elem and info.delim == ",":
            elem = self.str_conv(info.elem)
            return lambda s: parse_array(s, elem)
        return str

    def bytes_conv(self, oid: int) -> Conv:
        conv = self._b.get(oid)
        if conv is None:
            base, _ = self._resolve(oid)
            if base in _BYTES:
                conv = _BYTES[base]
            else:
                sconv = self.str_conv(oid)
                conv = bytes.decode if sconv is str else (lambda b, f=sconv: f(b.decode()))
            self._b[oid] = conv
        return conv
