"""Test helpers: polling with a deadline, real-service checks, free ports.

Never sleep where a poll with a deadline works; a missing server fails the test
with its name (never a silent skip).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_until(
    pred: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition",
) -> Any:
    """Poll `pred` until it returns a truthy value; return that value or fail."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except AssertionError as exc:  # let predicates assert
            last_exc = exc
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            extra = f" (last: {last_exc})" if last_exc else ""
            pytest.fail(f"timed out after {timeout}s waiting for {text}{extra}")
        time.sleep(interval)


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Fail (not skip) when a real server the test needs is not reachable."""
    if not port_open(host, port):
        pytest.fail(f"{name} is not reachable at {host}:{port}; `make services` starts it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
