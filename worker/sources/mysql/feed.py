"""The hand-off from the mysql source's reader thread to the asyncio loop, with back-pressure.

Imports: stdlib + worker.sources.base. The thread `put`s chunks; at most `max_chunks` chunks wait for
the loop (a semaphore), so a slow pipeline stops the binlog read (and the server holds the rest).
`last_position` is the position of the last event handed over: where the reader resumes after a
reconnect, so nothing handed over is read twice and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from worker.sources.base import Chunk


class Stopped(Exception):
    """The source is closing: the reader thread unwinds."""


class Feed:
    def __init__(self, loop: asyncio.AbstractEventLoop, max_chunks: int = 8) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.slots = threading.Semaphore(max_chunks)
        self.stop = threading.Event()
        self.last_position: str | None = None
        self.events_out = 0

    def put(self, chunk: Chunk) -> None:
        """Hand a chunk to the loop; blocks while `max_chunks` are waiting. Raises Stopped."""
        while not self.slots.acquire(timeout=0.1):
            if self.stop.is_set():
                raise Stopped()
        if self.stop.is_set():
            self.slots.release()
            raise Stopped()
        self.last_position = chunk.events[-1]["source"]["position"]
        self.events_out += len(chunk.events)
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, chunk)
        except RuntimeError:  # loop closed
            raise Stopped() from None

    def fail(self, exc: BaseException) -> None:
        """Hand an error to the loop: read() raises it after the chunks before it."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, exc)
        except RuntimeError:
            pass

    async def get(self, timeout: float) -> Chunk | None:
        q = self.queue
        if q.empty():
            try:
                item = await asyncio.wait_for(q.get(), timeout)
            except TimeoutError:
                return None
        else:
            item = q.get_nowait()
        if isinstance(item, BaseException):
            raise item
        self.slots.release()
        return item

    def wait(self, seconds: float) -> None:
        """Sleep on the thread unless stopping. Raises Stopped."""
        if self.stop.wait(seconds):
            raise Stopped()
