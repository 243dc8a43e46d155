"""Synthetic, deterministic, resumable source (the embedded default).

The N-th event (1-based): op "c", after.id = N, after.payload a string of
`payload_bytes` characters derived from `seed` and N, source.position = "N",
source.table taking `tables` in turn, source.tx_id = str(ceil(N / tx_size)).
`rate` throttles (events/s, 0 = unthrottled); `count` stops after N events.
Imports: stdlib + msgspec + worker.sources.base.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import msgspec

from shared.spec.model import GeneratorSourceConfig
from worker.sources.base import Chunk, Source, SourceContext

CHUNK = 250
_enc = msgspec.json.Encoder()


class GeneratorSource(Source[GeneratorSourceConfig]):
    def __init__(self, config: Any, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        self.next_n = 1
        self._tables: list[tuple[str | None, str]] = []
        self._pool = ""
        self._t0 = 0.0
        self._n0 = 1

    async def open(self, position: str | None) -> None:
        c = self.config
        self.next_n = int(position) + 1 if position else 1
        for t in c.tables:
            db, _, table = t.rpartition(".")
            self._tables.append((db or None, table))
        rnd = random.Random(c.seed)
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        self._pool = "".join(rnd.choice(alphabet) for _ in range(c.payload_bytes + 97))
        self._t0 = time.monotonic()
        self._n0 = self.next_n

    @staticmethod
    def position_key(position: str) -> int:
        return int(position)

    @staticmethod
    def position_after(position: str | None) -> str | None:
        return str(int(position) + 1) if position else "1"

    def _budget(self) -> int:
        c = self.config
        n = CHUNK
        if c.count:
            n = min(n, c.count - self.next_n + 1)
        if c.rate:
            allowed = int((time.monotonic() - self._t0) * c.rate) + 1 - (self.next_n - self._n0)
            n = min(n, allowed, max(1, int(c.rate // 20) or 1))
        if c.tx_size > 1 and n > 0:
            # end chunks on transaction boundaries when we can (not required, but tidy)
            end = self.next_n + n - 1
            rem = end % c.tx_size
            if rem and n > rem:
                n -= rem
        return max(n, 0)

    async def read(self) -> Chunk | None:
        c = self.config
        if c.count and self.next_n > c.count:
            await asyncio.sleep(0.5)  # done: nothing more ever (a stop cancels this read)
            return None
        n = self._budget()
        if n <= 0:
            # sleep until the next event is due, not a fixed tick: an idle pipeline wakes rarely
            due = self._t0 + (self.next_n - self._n0) / c.rate if c.rate else 0.0
            await asyncio.sleep(min(0.5, max(0.001, due - time.monotonic())))
            return None
        events, encoded = self._make(self.next_n, n)
        self.next_n += n
        last = self.next_n - 1
        tx_end = c.tx_size == 1 or last % c.tx_size == 0 or (bool(c.count) and last == c.count)
        # fewer than a full chunk: the rate (or the count) allows no more right now
        return Chunk(events=events, tx_end=tx_end, encoded=encoded, caught_up=n < CHUNK)

    def _make(self, first: int, n: int) -> tuple[list[dict[str, Any]], list[bytes]]:
        c = self.config
        pool, size, tables, ntab, txs = self._pool, c.payload_bytes, self._tables, len(self._tables), c.tx_size
        ts = int(time.time() * 1000)
        enc = _enc.encode
        events: list[dict[str, Any]] = []
        encoded: list[bytes] = []
        ap, ape = events.append, encoded.append
        for num in range(first, first + n):
            db, table = tables[(num - 1) % ntab]
            off = (num * 31) % 97
            ev = {
                "op": "c",
                "ts_ms": ts,
                "source": {
                    "connector": "generator",
                    "db": db,
                    "schema": None,
                    "table": table,
                    "position": str(num),
                    "tx_id": str((num + txs - 1) // txs),
                    "ts_ms": ts,
                },
                "before": None,
                "after": {"id": num, "payload": pool[off : off + size]},
            }
            ap(ev)
            ape(enc(ev))
        return events, encoded
