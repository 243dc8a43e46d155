"""Generated row decoders: one Python function per table map and column image, written for its columns.

Imports: stdlib + pymysqlreplication constants + worker.sources.mysql.columns. `compile_rows(columns,
present, present2, op, json_names)` returns `rows(data, offset, end) -> [(before, after), ...]` for a
rows event of that table map, or None when a column needs mysql-replication (columns.column_decoder
has no decoder for it). The function is straight-line code per row: runs of NOT NULL fixed-width
columns in one struct unpack, strings, DECIMAL, DATETIME, TIMESTAMP and DATE inline (their text
forms cached per decoder, bounded: rows of a batch share dates and seconds), the other types
through columns.py's decoders. The values are those of columns.py (and so of values.py).
"""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Callable
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE as T

from worker.sources.mysql.columns import (
    column_decoder,
    date_text,
    datetime2_text,
    encoding,
    fsp_reader,
    timestamp_text,
)

STRUCT = {T.TINY: "bB", T.SHORT: "hH", T.LONG: "iI", T.LONGLONG: "qQ", T.FLOAT: "ff", T.DOUBLE: "dd", T.YEAR: "BB"}
CACHE_MAX = 4096
DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
BYTE_FIELDS = {1: "B", 2: "H", 3: "BH", 4: "I"}
FIELD_BYTES = {"B": 1, "H": 2, "I": 4}
PADDED = {n: [f"{i:0{n}d}" for i in range(10**n)] for n in (1, 2, 3)}  # DECIMAL's last digits
MISS = object()
Rows = Callable[[bytes, int, int], list[tuple[Any, Any]]]


def _round6(v: float) -> float:
    return float(f"{v:.6g}")


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _cached(fn: Callable[[bytes], Any]) -> tuple[dict[bytes, Any], Callable[[bytes], Any]]:
    """A bounded cache of fn's results and the function that fills it."""
    cache: dict[bytes, Any] = {}

    def miss(x: bytes) -> Any:
        if len(cache) >= CACHE_MAX:
            cache.clear()
        v = cache[x] = fn(x)
        return v

    return cache, miss


class _Gen:
    """Source lines of one image decoder; `ns` holds the names the lines use."""

    def __init__(self, ns: dict[str, Any]) -> None:
        self.ns = ns
        self.lines: list[str] = []

    def name(self, prefix: str, value: Any) -> str:
        n = f"{prefix}{len(self.ns)}"
        self.ns[n] = value
        return n

    def emit(self, indent: int, *lines: str) -> None:
        self.lines += ["    " * indent + x for x in lines]

    def run(self, indent: int, items: list[tuple[str, str, int]]) -> None:
        """NOT NULL fixed-width columns side by side: one unpack."""
        s = struct.Struct("<" + "".join(f for _, f, _ in items))
        names = ", ".join(v for v, _, _ in items) + ","
        self.emit(indent, f"{names} = {self.name('S', s.unpack_from)}(b, o)", f"o += {s.size}")
        for v, _, t in items:
            if t == T.FLOAT:
                self.emit(indent, f"{v} = {self.name('R', _round6)}({v})")
            elif t == T.YEAR:
                self.emit(indent, f"{v} += 1900")

    def column(self, indent: int, v: str, c: Any, is_json: bool) -> bool:
        """Lines that set `v` from b[o:] and advance o; False: no decoder for this column."""
        t = c.type
        if t in STRUCT:
            self.run(indent, [(v, STRUCT[t][bool(c.unsigned)], t)])
        elif t in (T.VARCHAR, T.STRING, T.BLOB) and c.character_set_name is not None:
            self._text(indent, v, c, is_json)
        elif t == T.NEWDECIMAL:
            self._decimal(indent, v, c.precision, c.decimals)
        elif t in (T.DATETIME2, T.TIMESTAMP2, T.DATE):
            self._temporal(indent, v, t, c.fsp)
        else:
            dec = column_decoder(c, is_json)
            if dec is None:
                return False
            self.emit(indent, f"{v}, o = {self.name('D', dec)}(b, o)")
        return True

    def _text(self, indent: int, v: str, c: Any, is_json: bool) -> None:
        p = c.length_size if c.type == T.BLOB else (2 if c.max_length > 255 else 1)
        if p == 1:
            self.emit(indent, "n = b[o]")
        elif p == 2:
            self.emit(indent, "n = b[o] | b[o + 1] << 8")
        else:
            self.emit(indent, f"n = int.from_bytes(b[o : o + {p}], 'little')")
        self.emit(indent, f"o += {p}")
        enc = encoding(c)
        if enc is None:
            pad = f".ljust({c.max_length}, b'\\0')" if c.type == T.STRING and c.max_length else ""
            self.emit(indent, f"{v} = {self.name('B', _b64)}(b[o : o + n]{pad})")
        elif is_json:
            self.emit(indent, f"{v} = {self.name('J', _json)}(b[o : o + n].decode({enc!r}))")
        else:
            self.emit(indent, f"{v} = b[o : o + n].decode({enc!r})")
        self.emit(indent, "o += n")

    def _decimal(self, indent: int, v: str, precision: int, scale: int) -> None:
        """DECIMAL: groups of 9 digits in 4 bytes (a shorter group for the rest), big-endian, the
        sign in the top bit, every bit flipped when negative; one unpack, one f-string."""
        ui, ci = divmod(precision - scale, 9)
        uf, cf = divmod(scale, 9)
        fields: list[str] = []  # struct codes, each field one variable q<k>

        def group(ndig: int) -> str:
            k, nbytes = len(fields), DIG2BYTES[ndig]
            fields.extend(BYTE_FIELDS[nbytes])
            return f"(q{k} << 16 | q{k + 1})" if nbytes == 3 else f"q{k}"

        lead = [group(ci)] if ci else []
        ints = lead + [group(9) for _ in range(ui)]
        fracs = [group(9) for _ in range(uf)]
        tail = group(cf) if cf else ""
        st = struct.Struct(">" + "".join(fields))
        qs = [f"q{k}" for k in range(len(fields))]
        top = 1 << (8 * FIELD_BYTES[fields[0]] - 1)  # the sign bit
        ones = [(1 << 8 * FIELD_BYTES[f]) - 1 for f in fields]
        n = len(ints)
        num = " + ".join(f"{e} * {10 ** (9 * (n - 1 - i))}" if i < n - 1 else e for i, e in enumerate(ints)) or "0"
        frac = "".join(f"{{{e}:09d}}" for e in fracs)
        if cf:
            frac += f"{{{self.name('P', PADDED[cf])}[{tail}]}}" if cf in PADDED else f"{{{tail}:0{cf}d}}"
        text = f"{{{num}}}" + (f".{frac}" if scale else "")
        self.emit(indent, f"{', '.join(qs)}, = {self.name('S', st.unpack_from)}(b, o)", f"o += {st.size}")
        self.emit(indent, f"if q0 & {top}:", f"    q0 ^= {top}", f"    {v} = f'{text}'", "else:")
        flips = [f"q0 ^= {ones[0] ^ top}"] + [f"{q} ^= {m}" for q, m in zip(qs[1:], ones[1:])]
        self.emit(indent + 1, *flips, f"{v} = f'-{text}'")

    def _temporal(self, indent: int, v: str, t: int, fsp: int) -> None:
        """DATETIME, TIMESTAMP, DATE: the text of the seconds part cached by its bytes."""
        size = {T.DATETIME2: 5, T.TIMESTAMP2: 4, T.DATE: 3}[t]
        text = {T.DATETIME2: datetime2_text, T.TIMESTAMP2: timestamp_text, T.DATE: date_text}[t]
        order: Any = "little" if t == T.DATE else "big"
        n, frac = fsp_reader(fsp) if t != T.DATE else (0, None)
        zone = "Z" if t == T.TIMESTAMP2 and not n else ""
        cache, miss = _cached(lambda raw: _with(text(int.from_bytes(raw, order)), zone))
        self.emit(indent, f"x = b[o : o + {size}]", f"o += {size}")
        self.emit(indent, f"{v} = {self.name('C', cache)}.get(x, MISS)")
        self.emit(indent, f"if {v} is MISS:", f"    {v} = {self.name('M', miss)}(x)")
        if n:
            self.emit(indent, f"us = {self.name('F', frac)}(b, o)", f"o += {n}")
            if t == T.TIMESTAMP2:
                self.emit(indent, f"{v} = f'{{{v}}}.{{us:06d}}Z' if us else {v} + 'Z'")
            else:
                self.emit(indent, f"if us and {v} is not None:", f"    {v} = f'{{{v}}}.{{us:06d}}'")


def _with(text: str | None, zone: str) -> str | None:
    return text + zone if text is not None and zone else text


def _image(g: _Gen, columns: list[Any], present: bytes, json_names: set[str], var: str) -> bool:
    """Lines decoding one row image at b[o:] into the dict `var`."""
    cols = [c for i, c in enumerate(columns) if present[i >> 3] >> (i & 7) & 1]
    nb = (len(cols) + 7) // 8
    if any(c.nullable for c in cols):
        g.emit(2, f"nulls = int.from_bytes(b[o : o + {nb}], 'little')" if nb > 1 else "nulls = b[o]")
    g.emit(2, f"o += {nb}")
    run: list[tuple[str, str, int]] = []
    names = []
    for j, c in enumerate(cols):
        v = f"v{j}"
        names.append(f"{c.name!r}: {v}")
        if not c.nullable and c.type in STRUCT:
            run.append((v, STRUCT[c.type][bool(c.unsigned)], c.type))
            continue
        if run:
            g.run(2, run)
            run = []
        if c.nullable:
            g.emit(2, f"if nulls & {1 << j}:", f"    {v} = None", "else:")
        if not g.column(3 if c.nullable else 2, v, c, c.name in json_names):
            return False
    if run:
        g.run(2, run)
    g.emit(2, f"{var} = {{{', '.join(names)}}}")
    return True


def compile_rows(
    columns: list[Any], present: bytes, present2: bytes, op: str, json_names: set[str], envelope: Any = None
) -> Rows | None:
    """`envelope` (db, table, with a gtid_set): the function makes the change events themselves,
    `rows(b, o, end, n, now, ts, head, tail, txid, gtid_set)`: rows n + 1... of the transaction, at
    position f"{head}{i}{tail}" (decode.change_events makes the same events from the pairs)."""
    if not all(c.name for c in columns):
        return None
    ns: dict[str, Any] = {"MISS": MISS}
    g = _Gen(ns)
    args = "b, o, end, i, now, ts, head, tail, txid, gs" if envelope else "b, o, end"
    g.emit(0, f"def rows({args}):", "    out = []", "    append = out.append", "    while o < end:")
    if not _image(g, columns, present, json_names, "a"):
        return None
    before, after = ("a", "z") if op == "u" else ("None", "a") if op == "c" else ("a", "None")
    if op == "u" and not _image(g, columns, present2, json_names, "z"):
        return None
    if envelope:
        db, table, gtid = envelope
        source = f"'connector': 'mysql', 'db': {db!r}, 'schema': None, 'table': {table!r}, "
        source += "'position': f'{head}{i}{tail}', 'tx_id': txid, 'ts_ms': ts" + (", 'gtid_set': gs" if gtid else "")
        g.emit(2, "i += 1", f"append({{'op': {op!r}, 'ts_ms': now, 'source': {{{source}}}, ")
        g.lines[-1] += f"'before': {before}, 'after': {after}}})"
    else:
        g.emit(2, f"append(({before}, {after}))")
    g.emit(1, "return out")
    exec(compile("\n".join(g.lines), "<mysql rows decoder>", "exec"), ns)  # noqa: S102 - our own generated code
    fn: Rows = ns["rows"]
    return fn
