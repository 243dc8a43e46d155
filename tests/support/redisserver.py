"""A private, throwaway redis-server on a free loopback port (append-only file, fsync always, so
an acknowledged XADD survives a restart), which a test may restart without disturbing anyone.

May import: tests.support, the standard library.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile

from tests.support import free_port, port_open, wait_until


class PrivateRedis:
    def __init__(self) -> None:
        self.bin = shutil.which("redis-server")
        assert self.bin, "redis-server not found (Debian's redis-server package)"
        self.dir = tempfile.mkdtemp(prefix="tg_redis_")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        args = [
            str(self.bin),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--protected-mode",
            "no",
        ]
        log = open(f"{self.dir}/log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_until(lambda: port_open("127.0.0.1", self.port, 0.2), timeout=20, message="private redis-server up")
        return self

    def stop(self) -> None:
        """SIGTERM (redis flushes its append-only file) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
