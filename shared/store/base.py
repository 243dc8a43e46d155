"""The StateStore protocol: what the supervisor and its workers may ask of a state store.

`shared.store.sqlite.SqliteStore` and `shared.store.postgres.PgStore` both satisfy it
(checked by mypy); code that may get either names this Protocol, never one class. Leases
are PgStore's alone and are not part of it. Imports: stdlib + shared.store.sqlite
(PipelineRow) + shared.store.dlq.
"""

from __future__ import annotations

from typing import Protocol

from shared.store.dlq import DlqEntry, DlqNew
from shared.store.sqlite import PipelineRow


class StateStore(Protocol):
    # ------------------------------------------------------------ lifecycle
    def open(self) -> StateStore: ...

    def close(self) -> None: ...

    # ------------------------------------------------------------ pipelines
    def list_pipelines(self) -> list[PipelineRow]: ...

    def get_pipeline(self, name: str) -> PipelineRow | None: ...

    def put_pipeline(self, name: str, spec: bytes, desired: str) -> None:
        """Create (with a fresh epoch) or update (keeping it) a pipeline."""
        ...

    def epoch(self, name: str) -> str:
        """Changes when the pipeline starts over as new (created again, checkpoints deleted)."""
        ...

    def generation(self, name: str) -> int:
        """The spec's version: 1 when created, +1 at every change of it (0: no such pipeline)."""
        ...

    def set_desired(self, name: str, desired: str, last_error: str | None = None) -> None: ...

    def delete_pipeline(self, name: str) -> None: ...

    # ---------------------------------------------------------- checkpoints
    def checkpoints(self, pipeline: str) -> dict[str, tuple[str, str]]:
        """sink id -> (position, updated_at)."""
        ...

    def heads(self, pipeline: str) -> dict[str, str]:
        """sink id -> the first event a best-effort sink was given and has not acknowledged."""
        ...

    def save_checkpoints(
        self, pipeline: str, positions: dict[str, str], heads: dict[str, str | None] | None = None
    ) -> str:
        """Durably store several sinks' checkpoints (and heads; None drops one) in one
        transaction; return the timestamp."""
        ...

    def clear_checkpoints(self, pipeline: str) -> None: ...

    def drop_sink_checkpoints(self, pipeline: str, keep: set[str]) -> None: ...

    # ------------------------------------------------------------ snapshots
    def save_snapshot(self, pipeline: str, snap_id: str, doc: str) -> None:
        """Store an incremental snapshot's state document (JSON, CONTRACT section 13)."""
        ...

    def snapshots(self, pipeline: str) -> list[str]:
        """The pipeline's incremental snapshots' documents, oldest first."""
        ...

    # ----------------------------------------------------------------- gaps
    def add_gap(self, pipeline: str, sink_id: str, from_pos: str, to_pos: str) -> None: ...

    def extend_gap(self, pipeline: str, sink_id: str, to_pos: str) -> None: ...

    def gaps(self, pipeline: str) -> dict[str, list[dict[str, str]]]: ...

    # ------------------------------------------------------------------ dlq
    def dlq_add(self, pipeline: str, new: list[DlqNew], max_events: int, max_bytes: int, now: str) -> int:
        """Park events (idempotent per stage, position and event); DlqFull when over the bounds."""
        ...

    def dlq_list(
        self, pipeline: str, stage: str | None = None, limit: int = 100, after: str | None = None
    ) -> tuple[list[DlqEntry], str | None]: ...

    def dlq_get(self, pipeline: str, entry_id: str) -> DlqEntry | None: ...

    def dlq_delete(self, pipeline: str, ids: list[str] | None = None, stage: str | None = None) -> int: ...

    def dlq_failed(self, pipeline: str, entry_id: str, error: str, now: str) -> None: ...

    def dlq_counts(self, pipeline: str) -> dict[str, int]: ...
