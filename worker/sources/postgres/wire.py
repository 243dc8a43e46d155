"""The COPY BOTH leg of a replication connection, driven through psycopg2's own libpq handle.

Imports: stdlib (ctypes) + psycopg2. psycopg2's LogicalReplicationConnection opens the
connection and issues START_REPLICATION; after that we read XLogData/keepalive messages and
send standby status updates ourselves with libpq's PQgetCopyData/PQputCopyData on
``connection.pgconn_ptr`` (the same libpq library psycopg2 loaded), because psycopg2's own
feedback is unsafe for a pipeline that confirms only durable positions:
- on a keepalive it forwards its flush position to the server's WAL end whenever the last
  flushed LSN is >= the start of the last message read; change messages of a transaction
  carry LSNs *below* the previous transaction's commit, so that can confirm a transaction we
  have not delivered;
- it always reports a valid flush position, and a walsender shutting down waits until the
  reported flush equals what it sent: a pipeline that has not committed everything would
  block ``pg_ctl stop`` (fast mode) indefinitely.
So routine status updates report ``write`` = WAL received and ``flush`` = invalid (0, the
slot does not move), and only ``confirm()`` sends a flush LSN (the committed position).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
import time
from typing import Any

import psycopg2._psycopg  # noqa: F401 - loads the libpq we must share

PG_EPOCH_S = 946_684_800
_STATUS = struct.Struct(">cQQQqB").pack
_Q = struct.Struct(">Q").unpack_from


class WireError(Exception):
    """The replication stream failed; `sqlstate` is set when the server sent an error."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _find_libpq() -> str:
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.rsplit(" ", 1)[-1].strip()
            if "/libpq" in path and ".so" in path:
                return path
    found = ctypes.util.find_library("pq")
    if not found:
        raise ImportError("libpq not found (psycopg2 is expected to have loaded it)")
    return found


def _load() -> tuple[Any, Any]:
    """(lib, lib_nogil): the read path holds the GIL (PyDLL: PQgetCopyData(async) and
    PQconsumeInput never block, and dropping the GIL three times per message lets a busy event
    loop thread delay each re-acquire by up to the 5 ms switch interval); sends, which may wait
    for the socket, release it (CDLL)."""
    path = _find_libpq()
    lib, send = ctypes.PyDLL(path), ctypes.CDLL(path)
    vp, ip = ctypes.c_void_p, ctypes.c_int
    lib.PQgetCopyData.argtypes = [vp, ctypes.POINTER(ctypes.POINTER(ctypes.c_char)), ip]
    lib.PQgetCopyData.restype = ip
    lib.PQfreemem.argtypes = [vp]
    lib.PQfreemem.restype = None
    lib.PQconsumeInput.argtypes = [vp]
    lib.PQconsumeInput.restype = ip
    send.PQputCopyData.argtypes = [vp, ctypes.c_char_p, ip]
    send.PQputCopyData.restype = ip
    send.PQflush.argtypes = [vp]
    send.PQflush.restype = ip
    lib.PQerrorMessage.argtypes = [vp]
    lib.PQerrorMessage.restype = ctypes.c_char_p
    lib.PQgetResult.argtypes = [vp]
    lib.PQgetResult.restype = vp
    lib.PQresultErrorField.argtypes = [vp, ip]
    lib.PQresultErrorField.restype = ctypes.c_char_p
    lib.PQresultErrorMessage.argtypes = [vp]
    lib.PQresultErrorMessage.restype = ctypes.c_char_p
    lib.PQclear.argtypes = [vp]
    lib.PQclear.restype = None
    return lib, send


_LIBS: Any = None


class CopyBoth:
    """Raw CopyData messages in, standby status updates out."""

    def __init__(self, conn: Any) -> None:
        global _LIBS
        if _LIBS is None:
            _LIBS = _load()
        self.lib, self.send = _LIBS
        self.ptr = ctypes.c_void_p(conn.pgconn_ptr)
        self._buf = ctypes.POINTER(ctypes.c_char)()
        self._ref = ctypes.byref(self._buf)

    def _error(self) -> WireError:
        return WireError((self.lib.PQerrorMessage(self.ptr) or b"connection lost").decode(errors="replace").strip())

    def read(self) -> bytes | None:
        """The next CopyData message, or None when none is available right now (never blocks)."""
        lib, ptr = self.lib, self.ptr
        n = lib.PQgetCopyData(ptr, self._ref, 1)
        if n == 0:
            if not lib.PQconsumeInput(ptr):
                raise self._error()
            n = lib.PQgetCopyData(ptr, self._ref, 1)
            if n == 0:
                return None
        if n > 0:
            data = ctypes.string_at(self._buf, n)
            lib.PQfreemem(self._buf)
            return data
        if n == -1:
            raise self._end_of_copy()
        raise self._error()

    def _end_of_copy(self) -> WireError:
        """The server ended the stream: report its error (with SQLSTATE) if it sent one."""
        lib, ptr = self.lib, self.ptr
        err = WireError("replication stream ended by the server")
        while True:
            res = lib.PQgetResult(ptr)
            if not res:
                return err
            msg = lib.PQresultErrorMessage(res)
            state = lib.PQresultErrorField(res, ord("C"))
            if msg:
                err = WireError(msg.decode(errors="replace").strip(), state.decode() if state else None)
            lib.PQclear(res)

    def status(self, write: int, flush: int = 0, reply: bool = False) -> None:
        now_us = int((time.time() - PG_EPOCH_S) * 1_000_000)
        msg = _STATUS(b"r", write, flush, 0, now_us, 1 if reply else 0)
        if self.send.PQputCopyData(self.ptr, msg, len(msg)) != 1 or self.send.PQflush(self.ptr) != 0:
            raise self._error()


def parse_xlogdata(data: bytes) -> tuple[int, int]:
    """(data_start, wal_end) of a 'w' message; the payload starts at offset 25."""
    return _Q(data, 1)[0], _Q(data, 9)[0]


def parse_keepalive(data: bytes) -> tuple[int, bool]:
    """(wal_end, reply requested) of a 'k' message."""
    return _Q(data, 1)[0], bool(data[17])
