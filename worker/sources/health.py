"""Replication health read from the source's database on a slow timer (CONTRACT
section 8, `ops.source`): its own daemon thread and connection, never the data
path. A refused or failed query never fails the pipeline: the probe's fields are
null and the reason is in `errors`. Imports: stdlib only.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

INTERVAL_S = 5.0


class Probe(Protocol):
    fields: tuple[str, ...]

    def read(self) -> dict[str, Any]:
        """The fields' values (blocking; a value the server refused is None, its reason under `errors`)."""
        ...

    def close(self) -> None: ...


class HealthPoller:
    """Runs `probe.read()` at once and then every `interval` seconds until stopped."""

    def __init__(self, probe: Probe, name: str, interval: float = INTERVAL_S, log: Any = None) -> None:
        self.probe, self.interval, self.log = probe, interval, log
        self._values: dict[str, Any] = {f: None for f in probe.fields}
        self._values["errors"] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source-health-{name}", daemon=True)

    def start(self) -> HealthPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def values(self) -> dict[str, Any]:
        v = dict(self._values)
        v["errors"] = dict(v["errors"])
        return v

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._once()
                self._stop.wait(self.interval)
        finally:
            self.probe.close()

    def _once(self) -> None:
        try:
            got = self.probe.read()
        except Exception as exc:  # a refused query says why; it never stops the pipeline
            got = {f: None for f in self.probe.fields}
            got["errors"] = {"query": f"{exc.__class__.__name__}: {str(exc).strip()}"}
        got.setdefault("errors", {})
        self._values = {**{f: None for f in self.probe.fields}, **got}
