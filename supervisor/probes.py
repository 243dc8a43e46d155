"""Source health of the pipelines no worker runs (CONTRACT section 8: `ops.source` is
reported for stopped and failed pipelines too: a stopped pipeline's slot still pins
WAL). Every PROBE_INTERVAL_S, each stopped or failed pipeline with a database source
gets one short-lived worker process in probe mode (worker.probe), one at a time, that
sends back a SourceProbed reading; a probe that does not answer in time is killed and
its pipeline's `ops.source.errors` says so. Loop thread only.
Imports: stdlib + structlog + shared + supervisor (never worker).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import structlog

from shared.protocol import SourceProbed
from shared.spec.model import type_tag
from shared.states import Status
from supervisor.managed import Managed, Registry
from supervisor.workers import WorkerConfig, run_once

PROBE_INTERVAL_S = float(os.environ.get("TIDEGATE_PROBE_INTERVAL_S", "10"))
PROBE_TIMEOUT_S = 20.0
PROBED = {"postgres", "mysql"}


class SourceProbes:
    def __init__(self, registry: Registry, config: Any) -> None:
        self.registry = registry
        self.config: WorkerConfig = config
        self.log = structlog.get_logger().bind(component="probes")

    def due(self) -> list[Managed]:
        return [
            m
            for m in self.registry.values()
            if m.handle is None
            and m.status in (Status.STOPPED, Status.FAILED)
            and type_tag(m.spec.spec.source) in PROBED
        ]

    async def loop(self) -> None:
        while True:
            for m in self.due():
                try:
                    await self.probe(m)
                except Exception as exc:  # noqa: BLE001 - a probe never stops the loop
                    self.log.warning("source_probe_failed", pipeline=m.name, error=repr(exc))
            await asyncio.sleep(PROBE_INTERVAL_S)

    async def probe(self, m: Managed) -> None:
        got: list[dict[str, Any]] = []
        spec = m.spec

        def on_report(msg: Any) -> None:
            if isinstance(msg, SourceProbed):
                got.append(dict(msg.source))

        if not await run_once(m, self.config, "probe", PROBE_TIMEOUT_S, on_report):
            got.append({"errors": {"probe": f"no answer from the source within {PROBE_TIMEOUT_S:.0f}s"}})
        current = self.registry.get(m.name)
        if got and current is m and m.handle is None and m.spec is spec:  # nothing started meanwhile
            m.source = got[-1]
            self.registry.changed(m)
