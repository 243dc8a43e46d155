"""Per-pipeline leases in the shared (Postgres) state store: which pipelines this
supervisor runs when several share one `--state-url`.

Every stored pipeline (whatever its desired state) has at most one live owner
node. This node renews the leases it holds every TTL/3 (publishing each
pipeline's status and ops into its lease row, for the other nodes' API) and, in
the same tick, takes the leases that are free or expired. A pipeline created
through this node's API is leased to it at creation. A renewal that finds a
lease taken (or its token changed) loses that pipeline at once; a renewal that
errors is retried at the next tick, and once a whole TTL has passed without a
successful one every lease counts as lost (another node may hold them by now).
The worker of a lost pipeline is killed; its checkpoint writes are fenced by
the lease token anyway (`shared.store.postgres`).

`ForeignView` is what this node shows of a pipeline it does not own.
Database calls run on a thread (own connection), never on the loop. The
manager's side of leases is `supervisor.coordinator`.
Imports: stdlib + shared + supervisor.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.spec.load import decode_spec
from shared.spec.model import PipelineSpec
from shared.states import initial_status_of

if TYPE_CHECKING:  # psycopg2 is imported only for a state URL (shared.store.open_store)
    from shared.store.postgres import PgStore
    from shared.store.postgres_leases import LeaseRow
    from shared.store.sqlite import PipelineRow

LEASE_TTL_S = float(os.environ.get("TIDEGATE_LEASE_TTL_S", "15"))


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def api_url(api_addr: str) -> str:
    """The address other nodes (and their 409 answers) give for this node's API."""
    host, _, port = api_addr.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = socket.gethostname()
    return f"http://{host}:{port}"


class LeaseKeeper:
    def __init__(self, store: PgStore, node: str, api_addr: str, ttl_s: float = LEASE_TTL_S) -> None:
        self.store = store  # its own connection: used from a thread
        self.node = node
        self.api_addr = api_url(api_addr)
        self.ttl_s = ttl_s
        self.held: dict[str, int] = {}  # pipeline -> fencing token
        self.until: dict[str, float] = {}  # pipeline -> when its lease surely ends (monotonic, taken before the call)
        self.lock = asyncio.Lock()  # one lease operation at a time (claims, ticks, deletes)

    @property
    def renew_every_s(self) -> float:
        return self.ttl_s / 3

    def fence(self, name: str) -> tuple[str, int] | None:
        token = self.held.get(name)
        return None if token is None else (self.node, token)

    def forget(self, name: str) -> None:
        self.held.pop(name, None)
        self.until.pop(name, None)

    def _took(self, got: dict[str, int], t0: float) -> None:
        self.held.update(got)
        self.until.update({n: t0 + self.ttl_s for n in got})

    async def claim(self, name: str) -> int | None:
        """Lease one pipeline to this node now (creation, or a control request for a
        pipeline nobody holds); None when a live node holds it (or we already do)."""
        if name in self.held:
            return None
        t0 = time.monotonic()
        got = await asyncio.to_thread(self.store.acquire, self.node, self.api_addr, self.ttl_s, [name])
        self._took(got, t0)
        return got.get(name)

    async def acquire_free(self) -> dict[str, int]:
        t0 = time.monotonic()
        got = await asyncio.to_thread(self.store.acquire, self.node, self.api_addr, self.ttl_s, None, list(self.held))
        self._took(got, t0)
        return got

    async def renew(self, published: dict[str, tuple[str, str]]) -> set[str]:
        """Renew every held lease; return the names lost (taken, or token changed)."""
        t0 = time.monotonic()
        snap = dict(self.held)
        ok = await asyncio.to_thread(self.store.renew, self.node, self.ttl_s, snap, published)
        self.until.update({n: t0 + self.ttl_s for n in ok if self.held.get(n) == snap[n]})
        lost = {n for n in snap if n not in ok and self.held.get(n) == snap[n]}
        for n in lost:
            self.forget(n)
        return lost

    def overdue(self) -> list[str]:
        """Held leases whose TTL has passed since their last successful renewal (the
        database was unreachable): they may be someone else's now."""
        now = time.monotonic()
        return [n for n in self.held if self.until.get(n, 0.0) <= now]

    async def release_all(self) -> None:
        names = list(self.held)
        self.held, self.until = {}, {}
        await asyncio.to_thread(self.store.release, self.node, names)


@dataclass
class ForeignView:
    name: str
    status: str
    spec: PipelineSpec
    ops: dict[str, Any]


_IDLE_OPS: dict[str, Any] = {
    "pid": None,
    "restarts": 0,
    "uptime_s": 0.0,
    "last_error": None,
    "events_in": 0,
    "events_out": 0,
    "batches": 0,
    "inflight": 0,
    "lag_ms": None,
    "sink_errors": {},
    "source": {},
    "sink_lag": {},
}


def foreign_view(row: PipelineRow, lease: LeaseRow | None, store: Any) -> ForeignView:
    """A pipeline this node does not own, from the store: the status and ops its
    owner published at its last renewal (at most TTL/3 old), checkpoints and gaps
    as stored now. With no live owner: the status its desired state leads to once
    a node takes it (`starting` for a running one)."""
    ops = dict(_IDLE_OPS)
    status = initial_status_of(row.desired).value
    if lease is not None and lease.live and lease.status:
        status = lease.status
        ops.update({k: v for k, v in (lease.ops or {}).items() if k in _IDLE_OPS})
    if ops["last_error"] is None:
        ops["last_error"] = row.last_error
    ops["checkpoints"] = {
        sid: {"position": pos, "updated_at": at} for sid, (pos, at) in store.checkpoints(row.name).items()
    }
    ops["sink_gaps"] = store.gaps(row.name)
    ops["owner"] = None if lease is None else {"node": lease.owner, "api_addr": lease.api_addr, "live": lease.live}
    return ForeignView(row.name, status, decode_spec(row.spec), ops)
