"""JSON Lines file sink: one event per line, fsync per batch (or never).

On open, a torn last line (a crash mid-write, never acknowledged) is cut off so
that appended lines stay parseable. Writes run on the sink's own thread.
Imports: stdlib + shared + worker.sinks.base.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.errors import SinkError
from shared.spec.model import FileSinkConfig
from worker.sinks.base import Sink, SinkBatch, SinkContext


class FileSink(Sink[FileSinkConfig]):
    def __init__(self, config: Any, ctx: SinkContext) -> None:
        super().__init__(config, ctx)
        self._fd: int | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"sink-{self.id}")

    def _open(self) -> None:
        path = self.config.path
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        size = os.fstat(fd).st_size
        if size:
            tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            if not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                keep = (size - len(tail)) + cut + 1 if cut >= 0 else (0 if size <= len(tail) else size)
                os.ftruncate(fd, keep)
                os.fsync(fd)
        self._fd = fd

    async def open(self) -> str | None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._open)
        except OSError as exc:
            raise SinkError(self.id, f"cannot open {self.config.path}: {exc.strerror}", retryable=False) from exc
        return None

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self.config.fsync == "batch":
            os.fsync(self._fd)

    async def write(self, batch: SinkBatch) -> None:
        if not batch.events:
            return
        bodies = self.encoder.encode_all(batch.events, batch.native)
        data = b"\n".join([*bodies, b""])  # one copy, trailing newline included
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._write, data)
        except OSError as exc:
            raise SinkError(
                self.id, f"write to {self.config.path} failed: {exc.strerror}", retryable=exc.errno not in (13, 30)
            ) from exc

    async def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass
        self._pool.shutdown(wait=False)
