"""Replaying DLQ entries (CONTRACT section 12), in the worker, on a Replay command.

The pipeline's deliveries are held meanwhile (its gate is closed once no sink is busy;
a batch held by a full DLQ may wait, it uses no sink), so a sink is never written by
two at once. Each entry, oldest first: a processor entry runs through every current
processor and goes to every sink; a sink entry goes as it is to that sink alone. A
sink is given the entry with its own checkpoint as the batch's position (a sink that
stores its checkpoint with the data never goes back). Delivered everywhere: the entry
is deleted. A processor entry that some sinks refused becomes one sink entry per such
sink (never again to the sinks that have it); any other failure keeps the entry with
its error, attempts and last_seen updated. A crash in the middle may deliver an entry
again, never lose one (it is deleted only after its delivery).
Imports: stdlib + msgspec + shared + worker.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec

from shared.errors import ProcessorError, SinkError
from shared.store.dlq import DlqEntry
from shared.store.sqlite import now_iso
from worker.sinks.base import SinkBatch

if TYPE_CHECKING:
    from worker.pipeline import Pipeline

_decode = msgspec.json.Decoder().decode
PAGE = 500


async def _entries(p: Pipeline, ids: list[str] | None, stage: str | None) -> list[DlqEntry]:
    store = p.wiring.run_store
    if ids is not None:
        got = [await store(p.store.dlq_get, p.name, i) for i in ids]
        return sorted((e for e in got if e is not None), key=lambda e: int(e.id))
    out: list[DlqEntry] = []
    after: str | None = None
    while True:
        page, after = await store(p.store.dlq_list, p.name, stage, PAGE, after)
        out += page
        if after is None:
            return out


async def _deliver(runner: Any, events: list[dict[str, Any]], position: str) -> str | None:
    """None when the sink acknowledged, else why not."""
    if not events:
        return None
    why = runner.sink.can_replay()
    if why is not None:
        return why
    batch = SinkBatch(seq=0, events=events, last_position=runner.checkpoint or position, replay=True)
    try:
        await runner.sink.write(batch)
    except SinkError as exc:
        return exc.message
    except Exception as exc:  # noqa: BLE001 - a client error: the entry stays, with it
        return f"sink '{runner.id}': {exc.__class__.__name__}: {exc}"
    return None


async def _one(p: Pipeline, e: DlqEntry) -> bool:
    """Replay one entry; True when it left the DLQ (delivered wherever it was due)."""
    parts, store = p.p, p.wiring.run_store
    event = _decode(e.event)
    kind, _, sid = e.stage.partition(":")
    runners = {r.id: r for r in parts.runners}
    if kind == "sink":
        runner = runners.get(sid)
        err = (
            f"sink '{sid}' is no longer in the pipeline"
            if runner is None
            else await _deliver(runner, [event], e.position)
        )
        if err is None:
            await store(p.store.dlq_delete, p.name, [e.id])
            return True
        await store(p.store.dlq_failed, p.name, e.id, err, now_iso())
        return False
    try:
        out = await asyncio.get_running_loop().run_in_executor(parts.chain.pool, parts.chain.run_one, e.event, event)
    except ProcessorError as exc:
        await store(p.store.dlq_failed, p.name, e.id, exc.message, now_iso())
        return False
    refused: list[tuple[str, str]] = []
    for r in parts.runners:
        err = await _deliver(r, out, e.position)
        if err is not None:
            refused.append((r.id, err))
    if refused and len(refused) == len(parts.runners):
        await store(p.store.dlq_failed, p.name, e.id, refused[0][1], now_iso())
        return False
    if refused:  # the sinks that have it never get it again: one entry per sink that refused
        parker = parts.parker
        await parker.park([parker.entry(f"sink:{sid}", err, ev) for sid, err in refused for ev in out])
    await store(p.store.dlq_delete, p.name, [e.id])
    return not refused


async def replay(p: Pipeline, ids: list[str] | None, stage: str | None) -> tuple[int, int, int]:
    """(replayed, failed, remaining in the DLQ)."""
    entries = await _entries(p, ids, stage)
    was_running = p.gate.is_set()
    p.gate.clear()
    try:
        while any(r.busy for r in p.p.runners):
            await asyncio.sleep(0.01)
        done = failed = 0
        for e in entries:
            if await _one(p, e):
                done += 1
            else:
                failed += 1
    finally:
        if was_running and not p.pause_requested:
            p.gate.set()
    counts = await p.wiring.run_store(p.store.dlq_counts, p.name)
    return done, failed, sum(counts.values())
