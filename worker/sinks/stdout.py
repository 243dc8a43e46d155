"""Stdout sink: JSON Lines on the worker's standard output (demos, debugging).

Imports: stdlib + worker.sinks.base.
"""

from __future__ import annotations

import sys

from shared.spec.model import StdoutSinkConfig
from worker.sinks.base import Sink, SinkBatch


class StdoutSink(Sink[StdoutSinkConfig]):
    async def write(self, batch: SinkBatch) -> None:
        if not batch.events:
            return
        out = sys.stdout.buffer
        out.write(b"\n".join(self.encoder.encode_all(batch.events, batch.native)) + b"\n")
        out.flush()
