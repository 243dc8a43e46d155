"""A throwaway PostgreSQL cluster of the machine's own server binaries, on a free port, run as
user postgres when the tests run as root. For tests that must restart a server or give it a
setting no shared server may get (e.g. `max_slot_wal_keep_size`). May import: tests.support,
the standard library.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile

from tests.support import free_port


class PrivateCluster:
    """A throwaway PostgreSQL cluster on a free port, so restarting it disturbs nobody else."""

    def __init__(self, wal_level: str = "logical", extra: str = "") -> None:
        ver = sorted(os.listdir("/etc/postgresql"))[-1] if os.path.isdir("/etc/postgresql") else None
        self.bin = f"/usr/lib/postgresql/{ver}/bin" if ver else os.path.dirname(shutil.which("pg_ctl") or "")
        assert os.path.exists(f"{self.bin}/pg_ctl"), "PostgreSQL server binaries (pg_ctl, initdb) not found"
        self.dir = tempfile.mkdtemp(prefix="tg_pg_cluster_")
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.opts = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
            f"-c wal_level={wal_level} -c max_replication_slots=4 -c max_wal_senders=4 -c fsync=off {extra}"
        ).rstrip()

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = " ".join(shlex.quote(a) for a in args)
        if os.geteuid() == 0:  # the server refuses to run as root
            subprocess.run(
                ["su", "postgres", "-s", "/bin/sh", "-c", cmd], check=True, timeout=timeout, capture_output=True
            )
        else:
            subprocess.run(args, check=True, timeout=timeout, capture_output=True)

    def start(self) -> PrivateCluster:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(f"{self.bin}/initdb", "-D", f"{self.dir}/data", "-A", "trust", "-U", "postgres", "--no-sync")
        self._run(
            f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-o", self.opts, "-l", f"{self.dir}/log", "-w", "start"
        )
        return self

    def restart(self) -> None:
        """Fast shutdown (waits for walsenders to be answered), then start: 20 s is an ample bound."""
        self._run(
            f"{self.bin}/pg_ctl",
            "-D",
            f"{self.dir}/data",
            "-o",
            self.opts,
            "-l",
            f"{self.dir}/log",
            "-m",
            "fast",
            "-w",
            "-t",
            "20",
            "restart",
            timeout=40,
        )

    def close(self) -> None:
        try:
            self._run(f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
