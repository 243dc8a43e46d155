"""Parking and skipping bad events (CONTRACT section 12), for the processor chain and the
sink runners alike. `Parker.park` stores entries in the state store's DLQ and returns
only once they are durable (the caller moves the checkpoint past them after that): a
full DLQ or an unreachable store holds, with `ops.last_error` saying why, until there is
room or a stop (then CancelledError: the batch is not committed and is read again).
Parking is idempotent (shared.store.dlq), so a batch read again never parks twice.
`skip` drops events: counted in `ops.skipped` and logged with their positions.
Imports: stdlib + msgspec + shared + worker.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from shared.errors import ErrorInfo, StoreUnavailable
from shared.store.dlq import DlqFull, DlqNew
from shared.store.sqlite import now_iso
from worker.backoff import backoff, sleep_or_stop
from worker.health import Health

_encode = msgspec.json.Encoder().encode


def position_of(event: dict[str, Any]) -> str:
    return str((event.get("source") or {}).get("position"))


class Parker:
    def __init__(
        self,
        pipeline: str,
        store: Any,
        store_pool: ThreadPoolExecutor,
        limits: Any,  # spec.dlq
        health: Health,
        log: Any,
        stopping: asyncio.Event,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.store_pool = store_pool
        self.limits = limits
        self.health = health
        self.log = log
        self.stopping = stopping
        self.generation = 0  # set once read from the store

    def entry(self, stage: str, error: str, event: dict[str, Any], encoded: bytes | None = None) -> DlqNew:
        data = encoded if encoded is not None else _encode(event)
        return DlqNew(stage, error, position_of(event), data, self.generation)

    async def park(self, entries: list[DlqNew]) -> None:
        if not entries:
            return
        run = asyncio.get_running_loop().run_in_executor
        lim = self.limits
        attempt = 0
        while True:
            try:
                await run(
                    self.store_pool,
                    self.store.dlq_add,
                    self.pipeline,
                    entries,
                    lim.max_events,
                    lim.max_bytes,
                    now_iso(),
                )
                break
            except DlqFull as exc:
                info = ErrorInfo(kind="dlq", message=exc.message, retryable=True)
            except (sqlite3.Error, StoreUnavailable) as exc:
                info = ErrorInfo(kind="state", message=f"state store: cannot park events: {exc}", retryable=True)
            self.health.error(info)
            if attempt % 10 == 0:
                self.log.warning("dlq_park_held", error=info.message, events=len(entries), attempt=attempt + 1)
            if await sleep_or_stop(self.stopping, backoff(attempt)):
                raise asyncio.CancelledError
            attempt += 1
        if attempt:
            self.health.clear_error(info.kind)
        for e in entries:
            self.health.parked(e.stage)
        self.log.warning(
            "events_parked",
            stages=sorted({e.stage for e in entries}),
            positions=[e.position for e in entries][:100],
            errors=[e.error for e in entries][:3],
        )

    def skip(self, stage: str, positions: list[str], error: str) -> None:
        self.health.skipped(len(positions))
        self.log.warning("events_skipped", stage=stage, positions=positions[:100], count=len(positions), error=error)


async def park_poison(parker: Parker, chain: Any, batch: Any, poison: list[Any]) -> None:
    """Park (durably, before the batch can be checkpointed) or skip a batch's poison events,
    each as its processor's `on_error` says."""
    park = [p for p in poison if chain.policy(p.processor_id) == "dlq"]
    await parker.park(
        [
            parker.entry(f"processor:{p.processor_id}", p.error, batch.events[p.index], batch.encoded[p.index])
            for p in park
        ]
    )
    skipped: dict[str, list[Any]] = {}
    for p in poison:
        if chain.policy(p.processor_id) == "skip":
            skipped.setdefault(f"processor:{p.processor_id}", []).append(p)
    for stage, ps in skipped.items():
        parker.skip(stage, [position_of(batch.events[p.index]) for p in ps], ps[0].error)
