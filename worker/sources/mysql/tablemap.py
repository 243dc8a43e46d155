"""TABLE_MAP events of the binlog, parsed: the columns of a rows event as the binlog describes them.

Pure (stdlib + pymysqlreplication's type and charset tables). `parse_table_map(body, id_size, dbms)`
reads the event body (after the common header, without the checksum): table id, schema, table, one
`Col` per column with the type metadata, nullability and the optional metadata of
binlog_row_metadata=FULL (names, signedness, charsets, ENUM/SET values). `Col` carries the attribute
names that columns.column_decoder reads (the same as mysql-replication's Column), so one decoder
serves both. A column type whose metadata length is unknown makes `TableMap.ok` False: its rows
cannot be read here.
"""

from __future__ import annotations

from typing import Any

from pymysqlreplication.constants import CHARSET, FIELD_TYPE

T = FIELD_TYPE
# bytes of type metadata per column type in the table map (absent: 0)
META_1 = frozenset(
    {T.FLOAT, T.DOUBLE, T.TIMESTAMP2, T.DATETIME2, T.TIME2, T.BLOB, T.TINY_BLOB}
    | {T.MEDIUM_BLOB, T.LONG_BLOB, T.GEOMETRY, T.JSON}
)
META_2 = frozenset({T.VARCHAR, T.BIT, T.NEWDECIMAL, T.VAR_STRING, T.STRING, T.ENUM, T.SET, T.DECIMAL})
META_0 = frozenset(
    {T.TINY, T.SHORT, T.LONG, T.NULL, T.TIMESTAMP, T.LONGLONG, T.INT24, T.DATE, T.TIME}
    | {T.DATETIME, T.YEAR, T.NEWDATE}
)
NUMERIC = frozenset({T.TINY, T.SHORT, T.INT24, T.LONG, T.LONGLONG, T.NEWDECIMAL, T.FLOAT, T.DOUBLE, T.YEAR})
CHARACTER = frozenset({T.STRING, T.VAR_STRING, T.VARCHAR, T.BLOB})
ENUM_SET = frozenset({T.ENUM, T.SET})
SIGNEDNESS, DEFAULT_CHARSET, COLUMN_CHARSET, COLUMN_NAME, SET_STR_VALUE, ENUM_STR_VALUE = 1, 2, 3, 4, 5, 6
ENUM_AND_SET_DEFAULT_CHARSET, ENUM_AND_SET_COLUMN_CHARSET = 10, 11


class Col:
    """One column of a table map (attribute names as mysql-replication's Column)."""

    __slots__ = (
        "bits",
        "bytes",
        "character_set_name",
        "decimals",
        "enum_values",
        "fsp",
        "length_size",
        "max_length",
        "name",
        "nullable",
        "precision",
        "set_values",
        "size",
        "type",
        "unsigned",
    )

    def __init__(self, type_: int) -> None:
        self.type, self.unsigned, self.nullable = type_, False, True
        self.name: str | None = None
        self.character_set_name: str | None = None
        self.enum_values: list[str] | None = None
        self.set_values: list[str] | None = None
        self.max_length = self.size = self.fsp = self.length_size = self.precision = self.decimals = 0
        self.bits = self.bytes = 0

    def meta(self, m: bytes, p: int) -> int:
        """Read this column's type metadata at m[p:]; the offset after it."""
        t = self.type
        if t in META_0:
            return p
        if t in META_1:
            self.fsp = self.length_size = self.size = m[p]
            return p + 1
        if t == T.VARCHAR:
            self.max_length = m[p] | m[p + 1] << 8
        elif t == T.NEWDECIMAL:
            self.precision, self.decimals = m[p], m[p + 1]
        elif t == T.BIT:
            self.bits = m[p + 1] * 8 + m[p]
            self.bytes = (self.bits + 7) // 8
        elif t in (T.STRING, T.VAR_STRING):
            real, low = m[p], m[p + 1]
            if real in ENUM_SET:
                self.type, self.size = real, low
            else:
                self.max_length = ((((real << 8 | low) >> 4) & 0x300) ^ 0x300) + low
        return p + 2


def lenenc(b: bytes, p: int) -> tuple[int, int]:
    """A length-encoded integer at b[p:] and the offset after it."""
    v = b[p]
    if v < 251:
        return v, p + 1
    if v == 252:
        return int.from_bytes(b[p + 1 : p + 3], "little"), p + 3
    if v == 253:
        return int.from_bytes(b[p + 1 : p + 4], "little"), p + 4
    return int.from_bytes(b[p + 1 : p + 9], "little"), p + 9


def _strings(b: bytes, p: int, end: int) -> list[str]:
    out = []
    while p < end:
        n, p = lenenc(b, p)
        out.append(bytes(b[p : p + n]).decode())
        p += n
    return out


def _ints(b: bytes, p: int, end: int) -> list[int]:
    out = []
    while p < end:
        v, p = lenenc(b, p)
        out.append(v)
    return out


def _value_lists(b: bytes, p: int, end: int) -> list[list[str]]:
    out = []
    while p < end:
        count, p = lenenc(b, p)
        values = []
        for _ in range(count):
            n, p = lenenc(b, p)
            try:
                values.append(bytes(b[p : p + n]).decode())
            except UnicodeDecodeError:
                values.append("")
            p += n
        out.append(values)
    return out


def _charsets(b: bytes, p: int, end: int, default: bool, count: int) -> list[int]:
    """Collation ids of the `count` columns the field covers (DEFAULT_ form: default + exceptions)."""
    if not default:
        return _ints(b, p, end)
    if p >= end:
        return []
    first, p = lenenc(b, p)
    out = [first] * count
    while p < end:
        i, p = lenenc(b, p)
        cid, p = lenenc(b, p)
        if i < count:
            out[i] = cid
    return out


class TableMap:
    """A parsed TABLE_MAP event. `key`: its body, which identifies it (id, names and columns)."""

    __slots__ = ("columns", "key", "ok", "schema", "table", "table_id")

    def __init__(self, key: bytes, table_id: int, schema: str, table: str, columns: list[Col], ok: bool) -> None:
        self.key, self.table_id, self.schema, self.table = key, table_id, schema, table
        self.columns, self.ok = columns, ok


def names(b: bytes, id_size: int) -> tuple[int, str, str, int]:
    """The table id, schema and table of a table map body, and the offset of its column count."""
    table_id = int.from_bytes(b[:id_size], "little")
    p = id_size + 2
    n = b[p]
    schema = bytes(b[p + 1 : p + 1 + n]).decode()
    p += n + 2
    n = b[p]
    table = bytes(b[p + 1 : p + 1 + n]).decode()
    return table_id, schema, table, p + n + 2


def parse_table_map(body: bytes, id_size: int, dbms: str) -> TableMap:
    """The table map of this body; `ok` False (no columns) when it cannot be read."""
    table_id, schema, table, p = names(body, id_size)
    try:
        columns, ok = _columns(body, p, dbms)
    except (IndexError, ValueError):  # a layout this parser does not know
        columns, ok = [], False
    return TableMap(bytes(body), table_id, schema, table, columns, ok)


def _columns(body: bytes, p: int, dbms: str) -> tuple[list[Col], bool]:
    ncols, p = lenenc(body, p)
    columns = [Col(t) for t in body[p : p + ncols]]
    p += ncols
    mlen, p = lenenc(body, p)
    meta, m, ok = body[p : p + mlen], 0, True
    for c in columns:
        if c.type not in META_0 and c.type not in META_1 and c.type not in META_2:
            ok = False  # unknown metadata length: the rest of the block cannot be read
            break
        m = c.meta(meta, m)
    p += mlen
    nb = (ncols + 7) // 8
    nulls = int.from_bytes(body[p : p + nb], "little")
    for i, c in enumerate(columns):
        c.nullable = bool(nulls >> i & 1)
    _optional(body, p + nb, columns, dbms)
    return columns, ok


def _optional(b: bytes, p: int, columns: list[Col], dbms: str) -> None:
    """The optional metadata fields (TLV) after the null bitmap."""
    char = [c for c in columns if c.type in CHARACTER or (c.type == T.GEOMETRY and dbms == "mariadb")]
    enum_set = [c for c in columns if c.type in ENUM_SET]
    numeric = [c for c in columns if c.type in NUMERIC]
    char_ids: list[int] = []
    es_ids: list[int] = []
    end = len(b)
    while p < end:
        kind = b[p]
        n, p = lenenc(b, p + 1)
        q, p = p, p + n
        if kind == SIGNEDNESS:
            for i, c in enumerate(numeric):
                c.unsigned = bool(b[q + (i >> 3)] & (0x80 >> (i & 7)))
        elif kind in (DEFAULT_CHARSET, COLUMN_CHARSET):
            char_ids = _charsets(b, q, p, kind == DEFAULT_CHARSET, len(char))
        elif kind in (ENUM_AND_SET_DEFAULT_CHARSET, ENUM_AND_SET_COLUMN_CHARSET):
            es_ids = _charsets(b, q, p, kind == ENUM_AND_SET_DEFAULT_CHARSET, len(enum_set))
        elif kind == COLUMN_NAME:
            for c, name in zip(columns, _strings(b, q, p)):
                c.name = name
        elif kind == ENUM_STR_VALUE:
            for c, values in zip((c for c in enum_set if c.type == T.ENUM), _value_lists(b, q, p)):
                c.enum_values = ["", *values]
        elif kind == SET_STR_VALUE:
            for c, values in zip((c for c in enum_set if c.type == T.SET), _value_lists(b, q, p)):
                c.set_values = values
    for cols, ids in ((char, char_ids), (enum_set, es_ids)):
        for c, cid in zip(cols, ids):
            cs = CHARSET.charset_by_id(cid, dbms)
            c.character_set_name = cs.encoding if cs is not None else "utf8"


def describe(columns: list[Any]) -> str:
    """For error messages: the column types of a table map."""
    return ", ".join(f"{c.name or '?'}:{c.type}" for c in columns)
