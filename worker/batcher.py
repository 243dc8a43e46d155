"""Pure batch cutting (CONTRACT section 7), with an injected clock.

A batch closes as soon as it holds `max_events` events, or the compact JSON of
its events adds up to `max_bytes` or more, or `max_ms` has passed since its
first event. With `respect_source_tx` a batch closes only at a transaction
boundary (it grows past the thresholds to finish a transaction). Imports:
stdlib + msgspec + worker.sources.base (Chunk).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import msgspec

from worker.sources.base import Chunk

_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Batch:
    seq: int
    events: list[dict[str, Any]]
    encoded: list[bytes]  # compact JSON (native) of each source event
    first_position: str
    last_position: str
    nbytes: int
    opened_at: float
    source_ts_ms: int | None = None  # source time of the last event (lag)
    out_events: list[dict[str, Any]] | None = None  # after processors (None: unchanged)
    out_native: list[bytes] | None = None  # encodings of out_events when each is a source event as it was


def _pos(ev: dict[str, Any]) -> str:
    return str(ev["source"]["position"])


def _tx(ev: dict[str, Any]) -> Any:
    src = ev.get("source")
    return src.get("tx_id") if isinstance(src, dict) else None


def _fitting(cum: list[int], i: int, n: int, room: int, reach: int) -> int:
    """How many events from i fit: at most `room` (max_events), up to and including the first
    x >= i whose cumulative size `cum[x]` reaches `reach` (max_bytes)."""
    return max(0, min(room, n - i, bisect_left(cum, reach, i) - i + 1))


class Batcher:
    def __init__(
        self,
        max_events: int,
        max_bytes: int,
        max_ms: int,
        respect_source_tx: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_s = max_ms / 1000.0
        self.respect_tx = respect_source_tx
        self.clock = clock
        self.seq = 0
        self._events: list[dict[str, Any]] = []
        self._encoded: list[bytes] = []
        self._bytes = 0
        self._opened: float | None = None
        self._at_boundary = True

    # ----------------------------------------------------------------- state
    @property
    def pending(self) -> int:
        return len(self._events)

    def deadline(self) -> float | None:
        """Clock time at which the open batch is due by `max_ms` (None: no batch open)."""
        return None if self._opened is None else self._opened + self.max_s

    def _close(self) -> Batch:
        self.seq += 1
        evs, enc = self._events, self._encoded
        last = evs[-1]
        src = last.get("source") or {}
        b = Batch(
            seq=self.seq,
            events=evs,
            encoded=enc,
            first_position=_pos(evs[0]),
            last_position=_pos(last),
            nbytes=self._bytes,
            opened_at=self._opened or self.clock(),
            source_ts_ms=src.get("ts_ms") if isinstance(src, dict) else None,
        )
        self._events, self._encoded, self._bytes, self._opened = [], [], 0, None
        return b

    # ------------------------------------------------------------------- add
    def add(self, chunk: Chunk) -> list[Batch]:
        """Append a chunk; return the batches it closed (by count or bytes, or a due max_ms)."""
        events = chunk.events
        if not events:
            if chunk.tx_end and self._events:
                self._at_boundary = True
            return self._due_at_boundary()
        encoded = chunk.encoded if chunk.encoded is not None else [_encode(e) for e in events]
        out: list[Batch] = []
        n = len(events)
        i = 0
        if self._opened is None:
            self._opened = self.clock()
        respect = self.respect_tx
        cum = list(accumulate(map(len, encoded)))  # cum[x]: bytes of events[0..x]
        limit = self.max_bytes
        while i < n:
            # take as many events as fit under the thresholds in one slice
            room = self.max_events - len(self._events)
            base = cum[i - 1] if i else 0
            b0 = self._bytes
            take = _fitting(cum, i, n, room, limit - b0 + base) if b0 < limit else 0
            j = i + take
            room -= take
            b = b0 + (cum[j - 1] - base if take else 0)
            if j > i:
                self._events.extend(events[i:j])
                self._encoded.extend(encoded[i:j])
                self._bytes = b
            full = room <= 0 or b >= limit
            if not full:
                i = j
                break
            # thresholds met at event j-1: close at the next transaction boundary
            if respect:
                k = j
                tx = _tx(events[j - 1] if j > 0 else self._events[-1])
                while k < n and _tx(events[k]) == tx:
                    k += 1
                if k >= n and not chunk.tx_end:
                    # the transaction goes on in a later chunk: take the rest and wait
                    self._extend(events[j:], encoded[j:])
                    self._at_boundary = False
                    return out
                self._extend(events[j:k], encoded[j:k])
                j = k
            out.append(self._close())
            i = j
            if i < n:
                self._opened = self.clock()
        self._at_boundary = chunk.tx_end or not respect
        if not self._events:
            self._opened = None
        out.extend(self._due_at_boundary())
        return out

    def _extend(self, evs: list[dict[str, Any]], enc: list[bytes]) -> None:
        if evs:
            self._events.extend(evs)
            self._encoded.extend(enc)
            self._bytes += sum(map(len, enc))

    def _due_at_boundary(self) -> list[Batch]:
        if self._events and self._at_boundary:
            if len(self._events) >= self.max_events or self._bytes >= self.max_bytes:
                return [self._close()]
            if self._opened is not None and self.clock() - self._opened >= self.max_s:
                return [self._close()]
        return []

    def due(self) -> Batch | None:
        """The open batch if `max_ms` has passed and it ends at a transaction boundary."""
        if (
            self._events
            and self._at_boundary
            and self._opened is not None
            and self.clock() - self._opened >= self.max_s
        ):
            return self._close()
        return None

    def flush(self) -> Batch | None:
        """Close what is pending, if it ends at a transaction boundary (shutdown)."""
        if self._events and self._at_boundary:
            return self._close()
        return None

    def discard(self) -> None:
        """Forget pending events (the source will be reopened at the committed position)."""
        self._events, self._encoded, self._bytes, self._opened = [], [], 0, None
        self._at_boundary = True
