"""API response and request types (msgspec Structs). The OpenAPI document is
generated from these same types. Imports: stdlib + msgspec + shared.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from shared.spec.model import PipelineSpec
from shared.states import StatusName  # the status names, from Status

ErrorCode = Literal[
    "bad_request",
    "invalid_spec",
    "not_found",
    "conflict",
    "unauthorized",
    "payload_too_large",
    "unsupported_media_type",
    "internal",
]


class Checkpoint(msgspec.Struct):
    position: str
    updated_at: str


class SinkLag(msgspec.Struct):
    events: int  # read from the source, not yet acknowledged by the sink
    ms: int  # source age of the oldest of them (0 when the sink has everything)


class GapRange(msgspec.Struct):
    from_: str = msgspec.field(name="from")
    to: str = ""


class Owner(msgspec.Struct):
    """Shared state store (`--state-url`) only: the supervisor node leasing the pipeline."""

    node: str
    api_addr: str
    live: bool


class Snapshot(msgspec.Struct):
    """An incremental snapshot (CONTRACT section 13)."""

    id: str
    tables: list[str]
    status: Literal["running", "paused", "done", "cancelled", "failed"]
    rows_read: int
    rows_total_estimate: int
    table: str | None
    last_key: dict[str, str] | None
    started_at: str
    finished_at: str | None
    error: str | None


class Ops(msgspec.Struct):
    pid: int | None
    restarts: int
    uptime_s: float
    last_error: str | None
    events_in: int
    events_out: int
    batches: int
    inflight: int
    lag_ms: int | None
    sink_errors: dict[str, str]
    sink_gaps: dict[str, list[GapRange]]
    checkpoints: dict[str, Checkpoint]
    source: dict[str, Any] = {}
    owner: Owner | None = None
    skipped: int = 0  # bad events dropped by `on_error: skip`
    dlq: dict[str, int] = {}  # DLQ entries per stage
    snapshots: list[Snapshot] = []  # incremental snapshots (CONTRACT section 13)
    sink_lag: dict[str, SinkLag] = {}  # per sink, while a worker runs


class DlqEntry(msgspec.Struct):
    id: str
    stage: str  # processor:<id> | sink:<id>
    error: str
    position: str
    event: dict[str, Any]
    attempts: int
    first_seen: str
    last_seen: str
    generation: int


class DlqPage(msgspec.Struct):
    entries: list[DlqEntry]
    next: str | None


class DlqReplayResult(msgspec.Struct):
    replayed: int
    failed: int
    remaining: int


class DlqPurgeResult(msgspec.Struct):
    purged: int


class SnapshotRequest(msgspec.Struct):
    tables: Annotated[list[Annotated[str, msgspec.Meta(min_length=1)]], msgspec.Meta(min_length=1)]
    chunk_rows: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10000


class PipeInfo(msgspec.Struct):
    name: str
    status: StatusName
    spec: PipelineSpec
    ops: Ops


class ErrorDetail(msgspec.Struct):
    path: str
    message: str


class ErrorBody(msgspec.Struct):
    code: ErrorCode
    message: str
    details: list[ErrorDetail] = []


class ErrorResponse(msgspec.Struct):
    error: ErrorBody


class Health(msgspec.Struct):
    status: Literal["ok"]


class ReadyPipeline(msgspec.Struct):
    name: str
    status: StatusName


class Readiness(msgspec.Struct):
    status: Literal["ready", "starting"]
    pipelines: list[ReadyPipeline]
