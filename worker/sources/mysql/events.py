"""The binlog events the mysql source handles, as plain objects, and their parsing from raw bytes.

Pure (stdlib + tablemap.py). Both readers hand these to stream.py: wire.py parses them from the
replication protocol's packets (`Parser`), libreader.py converts mysql-replication's events. `Mark`
is a transaction boundary or a statement (kind GTID, QUERY, XID), a ROTATE or a HEARTBEAT; `Rows`
is one rows event (its rows are decoded later, by decode.RowImages, only if they are captured).

Raw event: the packet's payload after its OK byte: the 19-byte common header (timestamp, type,
server_id, event_size, log_pos, flags), the body, and a 4-byte CRC32 when checksums are on.
"""

from __future__ import annotations

import struct
from typing import Any

from worker.sources.mysql.tablemap import TableMap, lenenc, names, parse_table_map

GTID, QUERY, XID, ROTATE, HEARTBEAT, ROWS = range(6)
HEADER = struct.Struct("<IBIII")  # timestamp, type, server_id, event_size, log_pos (flags unread)
E_QUERY, E_ROTATE, E_FORMAT, E_XID, E_TABLE_MAP, E_HEARTBEAT, E_GTID_MYSQL = 2, 4, 15, 16, 19, 27, 33
E_GTID_MARIADB, E_PARTIAL_UPDATE, E_PAYLOAD, E_HEARTBEAT_V2 = 162, 39, 40, 41
ROWS_OP = {23: "c", 24: "u", 25: "d", 30: "c", 31: "u", 32: "d"}
COMPRESSED_ROWS = frozenset({166, 167, 168, 169, 170, 171})  # MariaDB log_bin_compress (zlib)


class UnsupportedEvent(Exception):
    """An event of a captured table this parser cannot read (compressed rows, partial JSON update).
    (mysql-replication skips them without a word; a compressed DDL statement is skipped here too.)"""


class Mark:
    __slots__ = ("domain", "gtid", "kind", "next_binlog", "query", "start")

    def __init__(self, kind: int, start: int, gtid: str = "", domain: int | None = None, query: str = "") -> None:
        self.kind, self.start, self.gtid, self.domain, self.query = kind, start, gtid, domain, query
        self.next_binlog = ""


class Rows:
    """One rows event. Own reader: `tm`, `data` and `offset` (its rows are data[offset:end]);
    mysql-replication's: `lib` (the library's event, tm None)."""

    __slots__ = ("data", "end", "lib", "offset", "op", "present", "schema", "table", "timestamp", "tm")
    kind = ROWS

    def __init__(self, op: str, schema: str, table: str, timestamp: int) -> None:
        self.op, self.schema, self.table, self.timestamp = op, schema, table, timestamp
        self.tm: TableMap | None = None
        self.lib: Any = None
        self.data, self.offset, self.end, self.present = b"", 0, 0, (b"", b"")


class Parser:
    """Raw events -> Mark / Rows / None (an event stream.py does not need). Keeps the table maps."""

    def __init__(self, dbms: str, checksum: bool, wanted: set[tuple[str, str]]) -> None:
        self.dbms, self.tail, self.wanted = dbms, 4 if checksum else 0, wanted
        self.id_size = 6
        self.query_post = 13
        self.rows_post = {t: 8 if t < 30 else 10 for t in ROWS_OP}
        self.maps: dict[int, TableMap] = {}  # table id -> its last table map (captured tables only)
        self.known: dict[bytes, TableMap] = {}  # table map body -> parsed

    def parse(self, ev: bytes) -> Mark | Rows | None:
        ts, etype, server_id, size, log_pos = HEADER.unpack_from(ev, 0)
        end = len(ev) - self.tail
        op = ROWS_OP.get(etype)
        if op is not None:
            return self._rows(ev, end, op, ts, etype)
        if etype == E_TABLE_MAP:
            self._table_map(ev[19:end])
        elif etype == E_GTID_MARIADB:
            seq, domain = struct.unpack_from("<QI", ev, 19)
            return Mark(GTID, log_pos - size, f"{domain}-{server_id}-{seq}", domain)
        elif etype == E_XID:
            return Mark(XID, log_pos - size)
        elif etype == E_QUERY:
            return self._query(ev, end, log_pos - size)
        elif etype == E_GTID_MYSQL:
            sid = ev[20:36].hex()
            (gno,) = struct.unpack_from("<Q", ev, 36)
            gtid = f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}:{gno}"
            return Mark(GTID, log_pos - size, gtid)
        elif etype == E_ROTATE:
            m = Mark(ROTATE, 0)
            m.next_binlog = ev[27:end].decode()
            return m
        elif etype == E_HEARTBEAT or etype == E_HEARTBEAT_V2:
            return Mark(HEARTBEAT, 0)
        elif etype == E_FORMAT:
            self._format(ev, end)
        elif etype in COMPRESSED_ROWS or etype == E_PARTIAL_UPDATE:
            if int.from_bytes(ev[19 : 19 + self.id_size], "little") in self.maps:  # a captured table's
                raise UnsupportedEvent(etype)
        elif etype == E_PAYLOAD:  # MySQL binlog_transaction_compression: any table's rows
            raise UnsupportedEvent(etype)
        return None

    def _format(self, ev: bytes, end: int) -> None:
        """FORMAT_DESCRIPTION: the post-header lengths of the event types (index type - 1)."""
        lengths = ev[19 + 57 : end]

        def post(etype: int, default: int) -> int:
            return lengths[etype - 1] if etype - 1 < len(lengths) else default

        self.id_size = 4 if post(E_TABLE_MAP, 8) == 6 else 6
        self.query_post = post(E_QUERY, 13)
        self.rows_post = {t: post(t, 8 if t < 30 else 10) for t in ROWS_OP}

    def _table_map(self, body: bytes) -> None:
        tm = self.known.get(body)
        if tm is None:
            table_id, schema, table, _ = names(body, self.id_size)
            if (schema, table) not in self.wanted:
                self.maps.pop(table_id, None)
                return
            tm = parse_table_map(body, self.id_size, self.dbms)
            if len(self.known) > 1000:
                self.known.clear()
            self.known[body] = tm
        self.maps[tm.table_id] = tm

    def _rows(self, ev: bytes, end: int, op: str, ts: int, etype: int) -> Rows | None:
        p = 19
        tm = self.maps.get(int.from_bytes(ev[p : p + self.id_size], "little"))
        if tm is None:
            return None
        post = self.rows_post[etype]
        p += post
        if post == 10:  # v2: extra data, its length counting its own 2 bytes
            p += ev[p - 2] | ev[p - 1] << 8
            p -= 2
        ncols, p = lenenc(ev, p)
        nb = (ncols + 7) // 8
        first = ev[p : p + nb]
        p += nb
        second = b""
        if op == "u":
            second = ev[p : p + nb]
            p += nb
        r = Rows(op, tm.schema, tm.table, ts)
        r.tm, r.data, r.offset, r.end, r.present = tm, ev, p, end, (first, second)
        return r

    def _query(self, ev: bytes, end: int, start: int) -> Mark:
        p = 19
        db_len = ev[p + 8]
        status_len = ev[p + 11] | ev[p + 12] << 8 if self.query_post >= 13 else 0
        p += self.query_post + status_len + db_len + 1
        return Mark(QUERY, start, query=ev[p:end].decode("utf-8", errors="backslashreplace"))
