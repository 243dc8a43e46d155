"""The bounded hand-off from a source's reader thread to the event loop (postgres and mysql sources).

Imports: stdlib + worker.sources.base. The reader thread owns every blocking client call; it hands
events over in pieces and the loop's ``read()`` takes them, several pieces at once when they fit in
one chunk. Both directions are cheap when nobody waits: the thread wakes the loop only when
``get()`` is waiting for events, and the loop wakes the thread (a pipe it can ``select`` on beside
its socket) only when the thread is blocked on a full hand-off, or when ``wake_thread()`` is asked
for (a commit the thread should confirm upstream, or ``stop()``).

Thread side: ``put`` (never blocks: a thread that must keep answering its server checks ``full``
itself), ``send`` (blocks while full; raises ``Stopped`` when the source closes), ``wait_room``,
``fail`` (the error surfaces from ``get()`` after the pieces handed over before it), ``sleep``.
``published``/``published_key`` and ``last_position`` say what was handed over last: where a
reader resumes after a reconnect, so nothing handed over is read twice and nothing is skipped.
Loop side: ``bind`` (once, on the loop), ``get``, ``stop``, ``close``.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
from collections import deque
from typing import Any

from worker.sources.base import Chunk


class Stopped(Exception):
    """The source is closing: the reader thread unwinds."""


class Handoff:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # events waiting at most (put may overshoot by one piece)
        self.lock = threading.Lock()
        self.pieces: deque[tuple[list[dict[str, Any]], bool]] = deque()
        self.count = 0  # events waiting
        self.handed = 0  # events handed over so far
        self.published: Any = None  # the position object of the last event handed over (as given)
        self.published_key: Any = None
        self.last_position: str | None = None  # its `source.position`
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.loop_waiting = False
        self.thread_blocked = False
        self._ready: asyncio.Event | None = None
        self._notify = lambda: None  # wakes get(); set by bind()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    # ------------------------------------------------------------ thread side
    @property
    def full(self) -> bool:
        return self.count >= self.limit

    def put(self, events: list[dict[str, Any]], tx_end: bool, position: Any = None, key: Any = None) -> None:
        """Hand a piece over (never blocks). `tx_end`: its last event ends a source transaction."""
        with self.lock:
            self.pieces.append((events, tx_end))
            self.count += len(events)
            self.handed += len(events)
            self.published, self.published_key = position, key
            self.last_position = events[-1]["source"]["position"] if events else self.last_position
            wake, self.loop_waiting = self.loop_waiting, False
        if wake:
            self._notify()

    def send(self, events: list[dict[str, Any]], tx_end: bool, position: Any = None, key: Any = None) -> None:
        """`put`, after waiting for room. Raises Stopped when the source is closing."""
        if (self.count >= self.limit and not self.wait_room()) or self.stopping.is_set():
            raise Stopped()
        self.put(events, tx_end, position, key)

    def wait_room(self, below: int | None = None) -> bool:
        """Block while `below` (default: the limit) events or more wait; False when stopping."""
        limit = self.limit if below is None else below
        while self.count >= limit and not self.stopping.is_set():
            self.thread_blocked = True
            self.wait_wake(0.5)
        self.thread_blocked = False
        return not self.stopping.is_set()

    def wait_wake(self, timeout: float, fd: int | None = None) -> None:
        """Sleep until woken (room, a wake_thread(), stop()) or `fd` is readable, at most `timeout` s."""
        select.select([self.wake_r] if fd is None else [fd, self.wake_r], [], [], timeout)
        self.drain_wake()

    def drain_wake(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def fail(self, error: BaseException) -> None:
        """The thread gave up: get() raises `error` once the pieces handed over before it are taken."""
        with self.lock:
            self.error = error
        self._notify()

    def sleep(self, seconds: float) -> None:
        """Sleep on the thread unless stopping. Raises Stopped."""
        if self.stopping.wait(seconds):
            raise Stopped()

    # -------------------------------------------------------------- loop side
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        ready = self._ready = asyncio.Event()

        def notify() -> None:
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # loop closed
                pass

        self._notify = notify

    def take(self, max_events: int) -> tuple[list[dict[str, Any]], bool, bool] | None:
        """The waiting pieces (several joined while they fit in `max_events`), their last
        piece's tx_end, and whether nothing is left waiting; or None."""
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
            empty = not self.pieces
        if wake:
            self.wake_thread()
        return events, tx_end, empty

    async def get(self, max_events: int, timeout: float) -> Chunk | None:
        """The next chunk, or None when nothing arrived within `timeout`. Raises the thread's error."""
        got = self.take(max_events)
        if got is None:
            ready = self._ready
            assert ready is not None, "Handoff.get() before bind()"
            ready.clear()
            self.loop_waiting = True
            got = self.take(max_events)
            if got is None:
                if self.error is None:
                    try:
                        await asyncio.wait_for(ready.wait(), timeout)
                    except TimeoutError:
                        pass
                got = self.take(max_events)
                if got is None:
                    if self.error is not None:
                        raise self.error
                    return None
        return Chunk(events=got[0], tx_end=got[1], caught_up=got[2])

    def wake_thread(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass

    def stop(self) -> None:
        """The source is closing: the thread's next wait or send ends (Stopped)."""
        self.stopping.set()
        self.wake_thread()

    def close(self) -> None:
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
