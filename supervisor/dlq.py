"""The DLQ operations of the API and CLI (CONTRACT sections 8 and 12): list, get and purge
read and write the state store; replay is done by the pipeline's worker (it holds the
processors and the sinks), asked with a Replay command and answered with ReplayDone.
Imports: stdlib + msgspec + shared + supervisor.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import msgspec

from shared.protocol import Replay, ReplayDone
from supervisor.managed import Conflict, Managed, NotFound

REPLAY_TIMEOUT_S = 300.0
_decode = msgspec.json.Decoder().decode
_requests = itertools.count(1)
_waiting: dict[int, asyncio.Future[ReplayDone]] = {}


class BadRequest(ValueError):
    """A body or query the DLQ routes cannot use (422)."""


def _known(mgr: Any, name: str) -> None:
    if name not in mgr.pipelines:
        mgr.foreign(name)  # NotFound unless another node owns it


def entries(mgr: Any, name: str, stage: str | None, limit: int, after: str | None) -> dict[str, Any]:
    _known(mgr, name)
    got, nxt = mgr.store.dlq_list(name, stage, limit, after)
    return {"entries": [e.document(_decode) for e in got], "next": nxt}


def entry(mgr: Any, name: str, entry_id: str) -> dict[str, Any]:
    _known(mgr, name)
    e = mgr.store.dlq_get(name, entry_id)
    if e is None:
        raise NotFound(f"pipeline {name!r} has no DLQ entry {entry_id!r}")
    return e.document(_decode)


def selection(body: Any) -> tuple[list[str] | None, str | None, bool]:
    """(ids, stage, all) of a replay body: exactly one of them."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be an object")
    keys = {k for k in ("ids", "stage", "all") if k in body}
    extra = set(body) - {"ids", "stage", "all"}
    if len(keys) != 1 or extra:
        raise BadRequest('give exactly one of {"ids": [...]}, {"stage": "..."} or {"all": true}')
    ids, stage = body.get("ids"), body.get("stage")
    if "ids" in keys and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise BadRequest("ids must be a list of entry ids (strings)")
    if "stage" in keys and not isinstance(stage, str):
        raise BadRequest("stage must be a string")
    if "all" in keys and body["all"] is not True:
        raise BadRequest("all must be true")
    return (None if ids is None else [str(i) for i in ids]), stage, "all" in keys


def purge(mgr: Any, name: str, stage: str | None, ids: list[str] | None = None) -> dict[str, int]:
    _known(mgr, name)
    return {"purged": mgr.store.dlq_delete(name, ids, stage)}


def on_done(msg: ReplayDone) -> None:
    fut = _waiting.pop(msg.request, None)
    if fut is not None and not fut.done():
        fut.set_result(msg)


async def replay(mgr: Any, name: str, body: Any) -> dict[str, int]:
    ids, stage, everything = selection(body)
    m: Managed = await mgr.owned(name)
    if m.handle is None or m.ready_at is None:
        raise Conflict(f"pipeline {name!r} is {m.status.value}; its worker replays: resume or restart it first")
    req = next(_requests)
    fut: asyncio.Future[ReplayDone] = asyncio.get_running_loop().create_future()
    _waiting[req] = fut
    if not m.handle.send(Replay(request=req, ids=ids, stage=stage, all=everything)):
        _waiting.pop(req, None)
        raise Conflict(f"pipeline {name!r}: its worker is gone; try again")
    gone: asyncio.Future[Any] = asyncio.ensure_future(m.handle.exited.wait())
    waits: set[asyncio.Future[Any]] = {fut, gone}
    try:
        await asyncio.wait(waits, timeout=REPLAY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        _waiting.pop(req, None)
    if not fut.done():
        # the worker exited (or took too long): what it delivered has left the DLQ, the rest stays
        raise Conflict(f"pipeline {name!r}: the worker did not finish the replay; the entries not replayed stay")
    done = fut.result()
    if done.error is not None:
        raise Conflict(f"pipeline {name!r}: replay failed: {done.error}")
    return {"replayed": done.replayed, "failed": done.failed, "remaining": done.remaining}
