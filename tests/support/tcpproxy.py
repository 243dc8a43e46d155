"""A loopback TCP proxy for fault injection: put it between tidegate and a server, then cut
(close every connection and refuse new ones), stall (hold every byte, connections stay open)
or slow (delay each chunk) the traffic, and heal it again.

    proxy = TcpProxy(6379).start() ; url = f"redis://127.0.0.1:{proxy.port}/0"
    proxy.cut() ; ... ; proxy.heal()

May import: tests.support, the standard library.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.support import free_port


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.mode = "pass"  # pass | cut | stall | slow
        self.delay_s = 0.0
        self.accepted = 0
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listener: socket.socket | None = None

    # ------------------------------------------------------------------ control
    def start(self) -> TcpProxy:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        ls.settimeout(0.2)
        self._listener = ls
        threading.Thread(target=self._accept_loop, daemon=True, name=f"proxy-{self.port}").start()
        return self

    def cut(self) -> None:
        """Close every open connection (both sides) and refuse new ones until `heal`."""
        self.mode = "cut"
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            _close(s)

    def stall(self) -> None:
        """Forward nothing (connections stay open, bytes wait) until `heal`."""
        self.mode = "stall"

    def slow(self, delay_s: float) -> None:
        self.delay_s, self.mode = delay_s, "slow"

    def heal(self) -> None:
        self.mode = "pass"

    def close(self) -> None:
        self._closed.set()
        self.cut()
        if self._listener is not None:
            _close(self._listener)

    # ------------------------------------------------------------------ plumbing
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "cut":
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            self.accepted += 1
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.2)
        try:
            while not self._closed.is_set():
                while self.mode == "stall" and not self._closed.is_set():
                    time.sleep(0.05)
                if self.mode == "cut":
                    break
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if self.mode == "slow":
                    time.sleep(self.delay_s)
                while self.mode == "stall" and not self._closed.is_set():
                    time.sleep(0.05)  # a chunk read as the stall began waits too
                if self.mode == "cut":
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns -= {src, dst}
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
