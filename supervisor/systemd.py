"""sd_notify protocol: READY=1, STATUS=..., STOPPING=1, WATCHDOG=1.

Speaks to $NOTIFY_SOCKET (a unix datagram socket, abstract when it starts
with '@'); a no-op when it is unset. Imports: stdlib only.
"""
from __future__ import annotations

import asyncio
import os
import socket
from typing import Callable


def notify(message: str) -> bool:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    addr = "\0" + path[1:] if path.startswith("@") else path
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


async def watchdog_loop(healthy: Callable[[], bool], status: Callable[[], str]) -> None:
    """WATCHDOG=1 at half of WATCHDOG_USEC while the loop answers; STATUS= with a summary."""
    interval = watchdog_interval()
    last_status = ""
    while True:
        s = status()
        if s != last_status:
            notify(f"STATUS={s}")
            last_status = s
        if interval is not None and healthy():
            notify("WATCHDOG=1")
        await asyncio.sleep(interval if interval is not None else 5.0)
