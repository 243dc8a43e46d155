"""The replication guard (issue #14): what the source's slow health poll (`ops.source`) means
for the pipeline, checked every GUARD_INTERVAL_S while it runs, paused or not.

- The source reports a permanent problem (`Source.failed()`; postgres: the server invalidated
  the slot, wal_status `lost`): the pipeline fails with it (status `failed`, never restarted).
- `source.config.max_retained_wal`: while the slot retains more WAL than that, `ops.last_error`
  says so (kind `source`, retryable) until it falls back below. `on_retained_wal:
  pause_best_effort` also detaches the best-effort sinks that hold the committed position back
  (`Committer.detach_holders`): their backlog is dropped, the gap recorded in `ops.sink_gaps`,
  and the committed position (which is all the source confirms upstream) moves on. Under the
  `required` and `all` policies no best-effort sink holds it (CONTRACT 7): what holds the slot
  there is a waited-for sink, a pause, or a stop, and the guard can only warn.

`assess` is the pure decision. Imports: stdlib + shared + worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.errors import ErrorInfo, PipelineFailed, describe
from shared.spec.sizes import format_bytes, parse_bytes
from worker.backoff import sleep_or_stop
from worker.sources.base import Source

GUARD_INTERVAL_S = 1.0  # reads the poller's last values only: no query of its own


@dataclass(frozen=True)
class Verdict:
    over: bool  # the slot retains more WAL than allowed
    warning: ErrorInfo | None  # what ops.last_error says while it does


def assess(values: dict[str, Any], limit: int | None, action: str = "warn") -> Verdict:
    """What the retained WAL in `values` (ops.source) means against `limit` bytes (None: no limit)."""
    retained = values.get("retained_wal_bytes")
    if limit is None or not isinstance(retained, int) or retained <= limit:
        return Verdict(False, None)
    slot = values.get("slot") or "?"
    then = (
        "best-effort sinks that hold the slot back are detached (on_retained_wal: pause_best_effort)"
        if action == "pause_best_effort"
        else "the slot is held by the pipeline's committed position: a waited-for sink down or slow, a pause, "
        "or a stop (on_retained_wal: warn)"
    )
    message = (
        f"replication slot {slot} retains {format_bytes(retained)} of WAL ({retained} bytes), over "
        f"source.config.max_retained_wal {format_bytes(limit)} ({limit} bytes): {then}"
    )
    return Verdict(True, ErrorInfo(kind="source", message=message, retryable=True))


class WalGuard:
    def __init__(self, spec: Any, parts: Any, health: Any, log: Any) -> None:
        config = getattr(spec.spec.source, "config", None)
        raw = getattr(config, "max_retained_wal", None)
        self.limit = parse_bytes(raw) if raw is not None else None  # validated at spec load
        self.action = getattr(config, "on_retained_wal", "warn")
        self.parts, self.health, self.log = parts, health, log
        self._warning: ErrorInfo | None = None  # ours, while it is the last error

    async def run(self, stopping: Any) -> None:
        if self.limit is None and type(self.parts.source.current).failed is Source.failed:
            return  # nothing to guard (a generator...): an idle pipeline wakes no more for it
        while not await sleep_or_stop(stopping, GUARD_INTERVAL_S):
            self.check()

    def check(self) -> None:
        """Fail the pipeline (PipelineFailed) on a permanent source problem; else warn and detach."""
        source = self.parts.source.current
        lost = source.failed()
        if lost is not None:
            self.log.error("source_lost", error=str(lost))
            raise PipelineFailed(describe(lost))
        if self.limit is None:
            return
        verdict = assess(self.parts.source.stats(), self.limit, self.action)
        if not verdict.over:
            if self._warning is not None and self.health.last_error is self._warning:
                self.health.last_error = None
            self._warning = None
            return
        warning = verdict.warning
        assert warning is not None
        if self._warning is None:
            self.log.warning("retained_wal_over_limit", error=warning.message)
        self._warning = warning
        self.health.error(warning)
        if self.action == "pause_best_effort":
            detached = self.parts.commits.detach_holders()
            if detached:
                self.log.warning("sinks_detached", sinks=detached, reason="retained WAL over max_retained_wal")
