"""Bounded hand-off between the postgres source's stream thread and the event loop.

Imports: stdlib + shared.errors + worker.sources.postgres.position. The thread ``put``s pieces of
events (with the position of their last event); ``read()`` on the loop ``take``s them. The
buffer also carries what the loop tells the thread: the committed position (``committed_key``)
and the flush LSN to confirm (``flush_target``), plus a wake-up pipe for the thread.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Any

from shared.errors import SourceError
from worker.sources.postgres.position import SnapshotPos, StreamPos


class Buffer:
    """Bounded hand-off from the stream thread to the event loop; also carries commit/flush state."""

    def __init__(self, limit: int) -> None:
        self.lock = threading.Lock()
        self.pieces: deque[tuple[list[dict[str, Any]], bool]] = deque()
        self.count = 0
        self.limit = limit
        self.published: SnapshotPos | StreamPos | None = None
        self.published_key: tuple[int, ...] | None = None
        self.committed_key: tuple[int, ...] | None = None
        self.flush_target = 0
        self.error: SourceError | None = None
        self.notify = lambda: None  # wakes read(); set by the source
        self.loop_waiting = False
        self.thread_blocked = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def put(
        self, events: list[dict[str, Any]], tx_end: bool, pos: SnapshotPos | StreamPos, key: tuple[int, ...]
    ) -> None:
        with self.lock:
            self.pieces.append((events, tx_end))
            self.count += len(events)
            self.published, self.published_key = pos, key
            wake, self.loop_waiting = self.loop_waiting, False
        if wake:
            self.notify()

    def take(self, max_events: int) -> tuple[list[dict[str, Any]], bool] | None:
        with self.lock:
            if not self.pieces:
                return None
            events, tx_end = self.pieces.popleft()
            if self.pieces and len(events) < max_events:
                events = list(events)
                while self.pieces and len(events) + len(self.pieces[0][0]) <= max_events:
                    more, tx_end = self.pieces.popleft()
                    events.extend(more)
            self.count -= len(events)
            wake = self.thread_blocked and self.count < self.limit // 2
        if wake:
            self.wake_thread()
        return events, tx_end

    def fail(self, error: SourceError) -> None:
        self.error = error
        self.notify()

    def wake_thread(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass

    def drain_wake(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
