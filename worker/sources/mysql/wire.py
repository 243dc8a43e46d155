"""The mysql source's own binlog reader: COM_BINLOG_DUMP over a pymysql connection's socket.

Imports: stdlib + pymysql + worker.sources.mysql.events. pymysql does the handshake and the session
settings; then the reader sends COM_BINLOG_DUMP itself and reads the packets from the socket into
a large buffer (one recv for many events), handing each event to events.Parser. It asks the server
for what mysql-replication asked: checksums as the server writes them, a heartbeat every
`heartbeat` s, MariaDB GTID events (slave capability 4), blocking dump from file:pos.

`fetchone()` (blocking) returns the next Mark/Rows, None when the server ends the dump;
`interrupt()` (another thread) unblocks it; `data_waiting()`: more events already arrived.
Server errors are raised as pymysql errors (the same as mysql-replication raises them), a lost
connection as pymysql.err.OperationalError 2013.
"""

from __future__ import annotations

import select
import struct
from collections.abc import Callable
from typing import Any

import pymysql

from worker.sources.mysql.events import Mark, Parser, Rows

COM_BINLOG_DUMP = 0x12
RECV = 1 << 20
LOST = 2013


class Packets:
    """The packets of a socket, through one buffer filled RECV bytes at a time."""

    def __init__(self, sock: Any) -> None:
        self.sock, self.buf, self.pos = sock, b"", 0

    @property
    def buffered(self) -> bool:
        return len(self.buf) > self.pos

    def _fill(self, need: int) -> None:
        """Make `need` bytes available from self.pos (reads at least RECV at a time)."""
        parts, have = [self.buf[self.pos :]], len(self.buf) - self.pos
        recv = self.sock.recv
        while have < need:
            try:
                chunk = recv(max(RECV, need - have))
            except OSError as exc:
                raise pymysql.err.OperationalError(LOST, f"Lost connection during the binlog read ({exc})") from exc
            if not chunk:
                raise pymysql.err.OperationalError(LOST, "Lost connection during the binlog read")
            parts.append(chunk)
            have += len(chunk)
        self.buf, self.pos = b"".join(parts), 0

    def next(self) -> bytes:
        """The next packet's payload (continuation packets of a payload of 16 MB or more joined)."""
        if len(self.buf) - self.pos < 4:
            self._fill(4)
        buf, pos = self.buf, self.pos
        n = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        if len(buf) - pos < 4 + n:
            self._fill(4 + n)
            buf, pos = self.buf, 0
        self.pos = pos + 4 + n
        data = buf[pos + 4 : pos + 4 + n]
        if n == 0xFFFFFF:
            data += self.next()
        return data


class FastReader:
    def __init__(
        self,
        connect: Callable[..., pymysql.connections.Connection],
        settings: dict[str, Any],
        server_id: int,
        start: Any,
        dbms: str,
        wanted: set[tuple[str, str]],
        heartbeat: float,
    ) -> None:
        self.conn = conn = connect(**settings)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@global.binlog_checksum")
                row = cur.fetchone()
                checksum = bool(row and row[0] and str(row[0]).upper() != "NONE")
                if checksum:
                    cur.execute("SET @master_binlog_checksum = @@global.binlog_checksum")
                timeout = float(settings.get("read_timeout") or 4294967)
                cur.execute("SET @master_heartbeat_period = %s", (int(min(timeout / 2, heartbeat) * 1e9),))
                cur.execute("SET @mariadb_slave_capability = 4")
            self.sock: Any = conn._sock  # type: ignore[attr-defined]  # pymysql's socket, after the handshake
            name = start.file.encode()
            payload = struct.pack("<BIHI", COM_BINLOG_DUMP, start.pos, 0, server_id) + name
            self.sock.sendall(len(payload).to_bytes(3, "little") + b"\0" + payload)
        except BaseException:
            conn.close()
            raise
        self.parser = Parser(dbms, checksum, wanted)
        self.packets = Packets(self.sock)

    # -- events -----------------------------------------------------------------------------------
    def fetchone(self) -> Mark | Rows | None:
        parse, packet = self.parser.parse, self.packets.next
        while True:
            data = packet()
            first = data[0]
            if first == 0:
                ev = parse(data[1:])
                if ev is not None:
                    return ev
            elif first == 0xFF:
                pymysql.err.raise_mysql_exception(data)
            elif first == 0xFE and len(data) < 9:
                return None  # EOF: the server ended the dump

    def interrupt(self) -> None:
        try:
            self.sock.shutdown(2)
        except (OSError, AttributeError):
            pass

    def data_waiting(self) -> bool:
        if self.packets.buffered:
            return True
        sock = self.sock
        try:
            if getattr(sock, "pending", None) and sock.pending():  # TLS: decrypted, not yet read
                return True
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - the socket may be shut down already
            pass
