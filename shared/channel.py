"""msgpack over a multiprocessing Connection (send_bytes/recv_bytes).

One reused Encoder and Decoder per side. Imports: stdlib + msgspec + shared.protocol.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from shared.protocol import Command, Report

T = TypeVar("T")


class Channel(Generic[T]):
    def __init__(self, conn: Any, incoming: Any) -> None:
        self.conn = conn
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(incoming)

    def send(self, msg: Any) -> None:
        self.conn.send_bytes(self._enc.encode(msg))

    def recv(self) -> T:
        """Blocking; raises EOFError when the other side is gone."""
        msg: T = self._dec.decode(self.conn.recv_bytes())
        return msg

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(self.conn.poll(timeout))

    def fileno(self) -> int:
        return int(self.conn.fileno())

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass


def supervisor_channel(conn: Any) -> Channel[Report]:
    return Channel(conn, Report)


def worker_channel(conn: Any) -> Channel[Command]:
    return Channel(conn, Command)
