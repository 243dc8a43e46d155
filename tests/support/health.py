"""A pipeline Health that remembers every report in order, for unit tests of the parts that
report to it (sink runners, the committer, the processor chain)."""

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
