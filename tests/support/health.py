"""Test doubles for the worker's parts: a pipeline Health that remembers every report in order
(sink runners, the committer, the processor chain report to it), and a Batch factory."""

from __future__ import annotations

from typing import Any

import structlog

from worker.health import Health


class Recording(Health):
    def __init__(
        self, errors: list[Any] | None = None, gaps: list[Any] | None = None, infos: list[Any] | None = None
    ) -> None:
        super().__init__(structlog.get_logger(), lambda *a: None)
        self.errors = [] if errors is None else errors  # sink error messages (None: recovered)
        self.gaps = [] if gaps is None else gaps  # (sink id, from, to, extend)
        self.infos = [] if infos is None else infos  # ErrorInfo of error() reports

    def error(self, info: Any) -> None:
        self.infos.append(info)
        super().error(info)

    def sink_error(self, sink_id: str, message: str | None) -> None:
        self.errors.append(message)
        super().sink_error(sink_id, message)

    def gap(self, *a: Any) -> None:
        self.gaps.append(a)


def batch(seq: int, size: int = 3) -> Any:
    """A worker Batch of `size` events with positions (seq - 1) * size + 1 .. seq * size."""
    import time

    from worker.batcher import Batch

    first = (seq - 1) * size + 1
    evs = [{"op": "c", "source": {"position": str(n)}, "after": {"id": n}} for n in range(first, first + size)]
    return Batch(
        seq=seq,
        events=evs,
        encoded=[b"{}"] * size,
        first_position=str(first),
        last_position=str(first + size - 1),
        nbytes=2 * size,
        opened_at=time.monotonic(),
    )
