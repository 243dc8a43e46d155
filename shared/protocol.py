"""THE supervisor <-> worker control protocol.

Every message is a msgspec Struct, tagged, sent as msgpack over the pipe (see
`shared.channel`). Commands flow supervisor -> worker, reports worker ->
supervisor. Pipes carry control and status, never event data. Each side handles
its union with one `match` ending in `assert_never`.
Imports: stdlib + msgspec + shared.errors.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.errors import ErrorInfo


class _Msg(msgspec.Struct, tag=True, frozen=True):
    """Every message is tagged and frozen (each subclass repeats `frozen=True` for the type
    checker, which does not see msgspec's inherited struct options)."""


# ----------------------------------------------------------------- commands
class Pause(_Msg, frozen=True):
    pass


class Resume(_Msg, frozen=True):
    pass


class Stop(_Msg, frozen=True):
    """Drain in-flight batches, checkpoint, exit 0."""

    drop_source_state: bool = False  # DELETE: also drop the slot etc. the source created


class Replay(_Msg, frozen=True):
    """Replay DLQ entries (CONTRACT section 12): these ids, or this stage's, or all; answered
    by a ReplayDone with the same `request`."""

    request: int
    ids: list[str] | None = None
    stage: str | None = None
    all: bool = False


class SnapshotCommand(_Msg, frozen=True):
    """An incremental snapshot request (CONTRACT section 13); answered by a SnapshotReply
    carrying the same `request`. action: start | pause | resume | cancel."""

    request: str
    action: str
    id: str
    tables: list[str] = []
    chunk_rows: int = 10000


Command = Pause | Resume | Stop | Replay | SnapshotCommand


# ------------------------------------------------------------------ reports
class SinkCheckpoint(msgspec.Struct, frozen=True):
    position: str
    updated_at: str


class Gap(msgspec.Struct, frozen=True):
    from_: str = msgspec.field(name="from")
    to: str = ""


# Fixed histogram buckets (upper bounds) for batch size (events) and batch
# latency (ms from the batch's first event to its commit).
BATCH_SIZE_BUCKETS = (1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000)
BATCH_MS_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class Counters(msgspec.Struct):
    events_in: int = 0
    events_out: int = 0
    batches: int = 0
    inflight: int = 0
    lag_ms: int | None = None
    processor_ms: float = 0.0  # total time spent in processors (the sum of processor_ms_by_id)
    processor_ms_by_id: dict[str, float] = {}  # processor id -> time spent in it
    batch_events_sum: int = 0
    batch_ms_sum: float = 0.0
    rss_bytes: int = 0
    sink_events: dict[str, int] = {}
    sink_error_count: dict[str, int] = {}
    # per sink, now: events read and not yet acknowledged, and the age of the oldest of them
    sink_lag_events: dict[str, int] = {}
    sink_lag_ms: dict[str, int] = {}
    skipped: int = 0  # bad events dropped by `on_error: skip`
    dlq_parked: dict[str, int] = {}  # stage -> events parked by this worker
    # per-bucket counts (not cumulative); the last slot counts what is above every bound
    batch_size_hist: list[int] = msgspec.field(default_factory=lambda: [0] * (len(BATCH_SIZE_BUCKETS) + 1))
    batch_ms_hist: list[int] = msgspec.field(default_factory=lambda: [0] * (len(BATCH_MS_BUCKETS) + 1))


class Ready(_Msg, frozen=True):
    """The worker built its pipeline and is running (or paused)."""

    pid: int
    paused: bool = False


class Heartbeat(_Msg, frozen=True):
    """The worker's view, sent periodically and on changes (its absence marks a hung worker)."""

    state: str  # a shared.states.Status value: starting | running | paused | stopping | stopped
    counters: Counters
    last_error: ErrorInfo | None = None
    sink_errors: dict[str, str] = {}
    source: dict[str, Any] = {}  # source.stats(), e.g. snapshot progress (plain JSON-like values)


class Paused(_Msg, frozen=True):
    pass


class Resumed(_Msg, frozen=True):
    pass


class Failed(_Msg, frozen=True):
    """The pipeline cannot go on (retries exhausted, fatal config): the worker exits."""

    error: ErrorInfo


class Stopped(_Msg, frozen=True):
    """Drained and checkpointed; the worker exits right after."""

    pass


class ReplayDone(_Msg, frozen=True):
    request: int
    replayed: int = 0
    failed: int = 0
    remaining: int = 0
    error: str | None = None  # the replay could not run (the state store failed...)


class SnapshotReply(_Msg, frozen=True):
    """The answer to a SnapshotCommand: `code` is the HTTP status the API answers with
    (202/200 done, 404, 409, 422), `snapshot` the Snapshot object."""

    request: str
    code: int
    message: str = ""
    snapshot: dict[str, Any] = {}


class SourceProbed(_Msg, frozen=True):
    """A probe-mode worker's one reading of the source's health (no worker runs the pipeline)."""

    source: dict[str, Any] = {}


Report = Ready | Heartbeat | Paused | Resumed | Failed | Stopped | ReplayDone | SnapshotReply | SourceProbed

# Named exit codes (gunicorn-style) so a boot error is not restarted forever.
EXIT_OK = 0
EXIT_CRASH = 1  # an unexpected error, the state store unreachable, a failed drop: restarted with backoff
EXIT_FAILED = 3  # pipeline failed for good: do not restart (status failed)
EXIT_CONFIG = 4  # could not build the pipeline from its spec: failed
EXIT_PARENT_GONE = 5  # the supervisor went away
EXIT_LEASE_LOST = 6  # shared state store: another node holds this pipeline's lease now
