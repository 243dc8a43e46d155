"""A real `tidegate serve` subprocess for tests, driven over HTTP.

with Supervisor(tmp_path) as sup:
    sup.create(spec) ; sup.wait_status("p", "running") ; sup.kill() ; sup.start()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
TIDEGATE = [sys.executable, "-m", "supervisor.cli"]


class Supervisor:
    def __init__(
        self,
        tmp: Path,
        *,
        configs: list[str] | None = None,
        env: dict[str, str] | None = None,
        token: str | None = None,
        port: int | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.tmp / "state"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.configs = configs or []
        self.args = args or []  # more `serve` options (--state-url ..., --node-id ...)
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        if token:
            self.env["TIDEGATE_API_TOKEN"] = token
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=self.url, timeout=30.0, headers=headers)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.tmp / "supervisor.log"
        self._log: Any = None

    # ------------------------------------------------------------- process
    def start(self, wait_ready: bool = True) -> Supervisor:
        args = [
            *TIDEGATE,
            "serve",
            "--state-dir",
            str(self.state_dir),
            "--api-addr",
            f"127.0.0.1:{self.port}",
            "--log-format",
            "json",
            "--log-level",
            "info",
        ]
        for c in self.configs:
            args += ["--config", c]
        args += self.args
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if wait_ready:
            wait_until(self._ready, timeout=30, message=lambda: f"supervisor ready; log:\n{self.log_tail()}")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"supervisor exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return self.client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._close_log()
        return code

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log:
            self._log.close()
            self._log = None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> Supervisor:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.client.close()
        self._close_log()

    # ----------------------------------------------------------------- api
    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post("/pipelines", json=spec)
        assert r.status_code == 201, f"create failed: {r.status_code} {r.text}"
        return r.json()

    def info(self, name: str) -> dict[str, Any]:
        r = self.client.get(f"/pipelines/{name}")
        assert r.status_code == 200, f"GET {name}: {r.status_code} {r.text}"
        return r.json()

    def action(self, name: str, op: str) -> dict[str, Any]:
        r = self.client.post(f"/pipelines/{name}/{op}")
        assert r.status_code == 200, f"{op} {name}: {r.status_code} {r.text}"
        return r.json()

    def wait_status(self, name: str, status: str, timeout: float = 30) -> dict[str, Any]:
        box: dict[str, Any] = {}

        def ok() -> bool:
            box["info"] = self.info(name)
            return box["info"]["status"] == status

        wait_until(
            ok,
            timeout=timeout,
            message=lambda: (
                f"{name} status {status} (now {box.get('info', {}).get('status')}, "
                f"ops {box.get('info', {}).get('ops')})"
            ),
        )
        return box["info"]

    def worker_pid(self, name: str, timeout: float = 30) -> int:
        return int(wait_until(lambda: self.info(name)["ops"]["pid"], timeout=timeout, message=f"{name} worker pid"))

    def wait_position(self, name: str, sink: str, at_least: int, timeout: float = 60) -> None:
        """Generator pipelines: wait until a sink's checkpoint reaches `at_least`."""

        def ok() -> bool:
            ck = self.info(name)["ops"]["checkpoints"].get(sink)
            return ck is not None and int(ck["position"]) >= at_least

        wait_until(ok, timeout=timeout, message=f"{name}/{sink} checkpoint >= {at_least}")


def generator_spec(name: str, sinks: list[dict[str, Any]], **source: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"source": {"type": "generator", "config": source}, "sinks": sinks}}


def file_sink(sid: str, path: Path | str, **extra: Any) -> dict[str, Any]:
    return {"type": "file", "config": {"id": sid, "path": str(path), **extra}}


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    import json

    out = []
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def ids_in(path: Path) -> set[int]:
    """The `after.id`s of a file sink's complete lines of generator events."""
    out: set[int] = set()
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                # fast path: the generator's lines contain `"after":{"id":N,`
                i = line.index(b'"after":{"id":') + 14
                out.add(int(line[i : line.index(b",", i)]))
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_pid_gone(pid: int, timeout: float = 5) -> float:
    t0 = time.monotonic()
    wait_until(lambda: not pid_alive(pid), timeout=timeout, message=f"pid {pid} to exit")
    return time.monotonic() - t0
