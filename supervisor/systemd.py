"""sd_notify protocol: READY=1, STATUS=..., STOPPING=1, WATCHDOG=1.

Speaks to $NOTIFY_SOCKET (a unix datagram socket, abstract when it starts
with '@'); every call is a no-op when it is unset, so the supervisor behaves the
same outside systemd. `StatusNotifier` sends STATUS= only when the one-line
summary changes; `watchdog_loop` pings WATCHDOG=1 at half of WATCHDOG_USEC while
the supervisor's loop runs and its health check passes. Imports: stdlib only.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable


def notify(message: str) -> bool:
    """Send one datagram to $NOTIFY_SOCKET; False when unset or unreachable (never raises)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        addr = "\0" + path[1:]
    elif path.startswith("/"):
        addr = path
    else:  # vsock: and other transports are not for us
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(message.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC in seconds, when the watchdog is on for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2 / 1_000_000


class StatusNotifier:
    """READY=1 / STATUS= / STOPPING=1 with the last STATUS remembered, so that a
    status is sent only when it changes (the manager calls `update` on every report)."""

    def __init__(self, summary: Callable[[], str]) -> None:
        self.summary = summary
        self.last: str | None = None
        self.ready_sent = False
        self.stopping_sent = False

    def update(self) -> None:
        if self.stopping_sent:
            return
        s = self.summary()
        if s != self.last:
            self.last = s
            notify(f"STATUS={s}")

    def ready(self) -> None:
        if self.ready_sent:
            return
        self.ready_sent = True
        s = self.summary()
        if s == self.last:  # already announced by `update`: never repeat a STATUS
            notify("READY=1")
            return
        self.last = s
        notify(f"READY=1\nSTATUS={s}")

    def stopping(self, status: str = "stopping: draining pipelines") -> None:
        if self.stopping_sent:
            return
        self.stopping_sent = True
        self.last = status
        notify(f"STOPPING=1\nSTATUS={status}")


async def watchdog_loop(healthy: Callable[[], bool], status: Callable[[], str] | None = None) -> None:
    """WATCHDOG=1 at half of WATCHDOG_USEC while `healthy()` holds; a missed ping
    lets systemd restart a supervisor whose loop is stuck or whose monitor died.
    `status` (optional) is polled each round as a fallback for STATUS= updates."""
    interval = watchdog_interval()
    last_status = ""
    while True:
        if status is not None:
            s = status()
            if s != last_status:
                notify(f"STATUS={s}")
                last_status = s
        if interval is not None and healthy():
            notify("WATCHDOG=1")
        await asyncio.sleep(interval if interval is not None else 5.0)
