"""A pipeline's health: the one object every part reports to (the source side, the
processor chain, each sink runner, the committer) and the status report reads
(`ops.last_error`, `ops.sink_errors`, the counters; gaps go to the state store).

Imports: stdlib + shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.errors import ErrorInfo
from shared.protocol import Counters

GapStore = Callable[[str, str, str, bool], None]


class Health:
    def __init__(self, log: Any, store_gap: GapStore) -> None:
        self.log = log
        self._store_gap = store_gap  # (sink id, from, to, extend): queued off the loop
        self.counters = Counters()
        self.last_error: ErrorInfo | None = None
        self.sink_errors: dict[str, str] = {}  # sink id -> why it is not delivering now

    def error(self, info: ErrorInfo) -> None:
        """Something went wrong and is being retried (or ends the pipeline): ops.last_error."""
        self.last_error = info

    def clear_error(self, kind: str) -> None:
        """What held (a full DLQ) is over: ops.last_error no longer says so."""
        if self.last_error is not None and self.last_error.kind == kind:
            self.last_error = None

    def parked(self, stage: str) -> None:
        c = self.counters.dlq_parked
        c[stage] = c.get(stage, 0) + 1

    def skipped(self, events: int) -> None:
        self.counters.skipped += events

    def sink_error(self, sink_id: str, message: str | None) -> None:
        """A sink failed to open or write (`message`), or delivers again (None)."""
        if message is None:
            self.sink_errors.pop(sink_id, None)
            return
        self.sink_errors[sink_id] = message
        self.last_error = ErrorInfo(kind="sink", message=message, retryable=True)
        c = self.counters.sink_error_count
        c[sink_id] = c.get(sink_id, 0) + 1

    def sink_failed(self, sink_id: str, message: str) -> None:
        """A sink refused for good: the pipeline fails with this reason."""
        self.sink_errors[sink_id] = message

    def gap(self, sink_id: str, from_pos: str, to_pos: str, extend: bool) -> None:
        """A best-effort sink skipped [from_pos, to_pos] (or grew its latest gap to to_pos)."""
        self.log.warning("sink_gap", sink=sink_id, from_position=from_pos, to_position=to_pos)
        self._store_gap(sink_id, from_pos, to_pos, extend)

    def delivered(self, sink_id: str, events: int) -> None:
        self.counters.sink_events[sink_id] = events


def gap_writer(store: Any, pool: Any, pipeline: str) -> GapStore:
    """A GapStore that records gaps in the state store, on its one thread (off the loop)."""

    def write(sink_id: str, from_pos: str, to_pos: str, extend: bool) -> None:
        if extend:
            store.extend_gap(pipeline, sink_id, to_pos)
        else:
            store.add_gap(pipeline, sink_id, from_pos, to_pos)

    return lambda *gap: pool.submit(write, *gap) and None
