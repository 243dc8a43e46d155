"""sd_notify against a real `tidegate serve`: the test binds the unix datagram
socket systemd would (NOTIFY_SOCKET), sets WATCHDOG_USEC, and checks READY=1,
repeated WATCHDOG=1, STATUS= updates and STOPPING=1 at SIGTERM, in that order."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import wait_until
from tests.support.supervisor import Supervisor, file_sink, generator_spec


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []  # (monotonic time, one KEY=VALUE line)

    def drain(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            now = time.monotonic()
            self.messages.extend((now, line) for line in data.decode().splitlines())
        return [m for _, m in self.messages]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    ns = NotifySocket(tmp_path / "notify.sock")
    try:
        yield ns
    finally:
        ns.close()


def test_ready_watchdog_status_stopping_in_order(tmp_path: Path, notify_socket: NotifySocket) -> None:
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "a.json").write_text(
        json.dumps(generator_spec("sd-a", [file_sink("out", tmp_path / "a.jsonl")], rate=200))
    )
    sup = Supervisor(
        tmp_path, configs=[str(spec_dir)], env={"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"}
    )
    sup.start(wait_ready=False)
    try:
        wait_until(
            lambda: "READY=1" in notify_socket.drain(),
            timeout=30,
            message=lambda: f"READY=1 (got {notify_socket.drain()}); log:\n{sup.log_tail()}",
        )
        # READY=1 means the API answers and the stored pipeline was started
        assert sup.client.get("/readyz").status_code == 200
        assert sup.info("sd-a")["status"] in ("starting", "running")
        ready_at = next(t for t, m in notify_socket.messages if m == "READY=1")
        wait_until(
            lambda: (
                notify_socket.drain() is not None
                and sum(1 for t, m in notify_socket.messages if m == "WATCHDOG=1" and t > ready_at) >= 3
            ),
            timeout=10,
            message="3 WATCHDOG=1 after READY=1",
        )
        # STATUS= follows changes: a pipeline paused through the API shows up
        sup.wait_status("sd-a", "running")
        sup.action("sd-a", "pause")
        wait_until(
            lambda: any(m.startswith("STATUS=") and "1 paused" in m for m in notify_socket.drain()),
            timeout=10,
            message=lambda: f"STATUS= with '1 paused' (got {notify_socket.drain()})",
        )
        assert sup.stop() == 0
    finally:
        sup.close()
    msgs = notify_socket.drain()
    kinds = [m for m in msgs if m in ("READY=1", "WATCHDOG=1", "STOPPING=1")]
    assert kinds.count("READY=1") == 1 and kinds.count("STOPPING=1") == 1, kinds
    i_ready, i_stop = kinds.index("READY=1"), kinds.index("STOPPING=1")
    assert i_ready < i_stop
    assert kinds[i_ready + 1 : i_stop].count("WATCHDOG=1") >= 3, kinds
    # watchdog pings at half of WATCHDOG_USEC (1 s -> every 0.5 s), not faster or much slower
    pings = [t for t, m in notify_socket.messages if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert gaps and 0.3 <= min(gaps) and sorted(gaps)[len(gaps) // 2] <= 0.8, gaps
    statuses = [m for m in msgs if m.startswith("STATUS=")]
    assert statuses[-1].startswith("STATUS=stopping"), statuses
    assert all(a != b for a, b in zip(statuses, statuses[1:])), f"STATUS= repeated unchanged: {statuses}"


def test_no_notify_socket_no_problem(tmp_path: Path) -> None:
    """Outside systemd (no NOTIFY_SOCKET) the supervisor serves and stops as usual."""
    sup = Supervisor(tmp_path, env={"NOTIFY_SOCKET": "", "WATCHDOG_USEC": "1000000"})
    with sup:
        assert sup.client.get("/healthz").json() == {"status": "ok"}
    assert sup.proc is not None and sup.proc.returncode == 0
