"""supervisor.systemd against real unix datagram sockets (path and abstract)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import systemd


@pytest.fixture
def sock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "n.sock"))
    s.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n.sock"))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield s
    finally:
        s.close()


def recv_all(s: socket.socket) -> list[str]:
    out = []
    s.setblocking(False)
    try:
        while True:
            out.append(s.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        s.settimeout(2)
    return out


def test_notify_path_socket(sock: socket.socket) -> None:
    assert systemd.notify("READY=1\nSTATUS=hello")
    assert sock.recv(4096) == b"READY=1\nSTATUS=hello"


def test_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"tg-ops-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("WATCHDOG=1")
        assert s.recv(4096) == b"WATCHDOG=1"


def test_notify_without_or_with_dead_socket_is_a_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert systemd.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert systemd.notify("READY=1") is False


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert systemd.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    for bad in ("0", "-5", "abc", ""):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert systemd.watchdog_interval() is None


def test_status_notifier_sends_changes_only(sock: socket.socket) -> None:
    state = {"s": "pipelines: 1 starting"}
    n = systemd.StatusNotifier(lambda: state["s"])
    n.update()
    n.update()
    n.ready()
    n.ready()
    state["s"] = "pipelines: 1 running"
    n.update()
    n.update()
    n.stopping("stopping: draining 1 pipelines")
    n.update()
    n.stopping()
    assert recv_all(sock) == [
        "STATUS=pipelines: 1 starting",
        "READY=1",
        "STATUS=pipelines: 1 running",
        "STOPPING=1\nSTATUS=stopping: draining 1 pipelines",
    ]


def test_watchdog_loop_pings_while_healthy(sock: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 50 ms
    healthy = {"ok": True}

    async def main() -> list[str]:
        task = asyncio.create_task(systemd.watchdog_loop(lambda: healthy["ok"]))
        got: list[str] = []
        loop = asyncio.get_running_loop()
        while got.count("WATCHDOG=1") < 3:
            got.append((await loop.sock_recv(sock, 4096)).decode())
        healthy["ok"] = False  # an unhealthy supervisor stops pinging, so systemd restarts it
        recv_all(sock)
        await asyncio.sleep(0.2)
        got_after = recv_all(sock)
        task.cancel()
        return got + ["|"] + got_after

    sock.setblocking(False)
    out = asyncio.run(main())
    assert out[: out.index("|")].count("WATCHDOG=1") == 3
    assert "WATCHDOG=1" not in out[out.index("|") + 1 :]
