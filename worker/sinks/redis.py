"""Redis Streams sink (CONTRACT section 6): XADD per event, pipelined per batch.

Each entry has the fields `event` (the body in the sink's envelope) and
`idempotency_key` (`<pipeline>:<sink id>:<source.position>`) so consumers can
drop the duplicates that an at-least-once replay may produce. `stream` may be a
routing template (`${source.table}`...). `maxlen` trims approximately (`~`).

Imports: shared, worker.envelope/routing (through base) and redis-py asyncio.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import exceptions as rexc

from shared.errors import SinkError
from worker.routing import compile_template
from worker.sinks.base import Sink, SinkBatch, SinkContext

CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 30.0
_FATAL_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM", "WRONGTYPE", "ERR max", "ERR Protocol", "ERR string exceeds")


def redis_where(url: str) -> str:
    """`host:port` of a redis URL, for error messages (never the password)."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
    except ValueError:
        return "<invalid url>"


def classify(sink_id: str, where: str, exc: BaseException) -> SinkError:
    """Sort a redis-py exception into a retryable or fatal SinkError with a clear message."""
    if isinstance(exc, SinkError):
        return exc
    if isinstance(exc, rexc.AuthenticationError) or isinstance(exc, rexc.AuthorizationError):
        return SinkError(sink_id, f"redis {where} rejected the credentials ({exc}); fix the user/password "
                         "in `url`", retryable=False)
    if isinstance(exc, rexc.BusyLoadingError):
        return SinkError(sink_id, f"redis {where} is loading its dataset; will retry", retryable=True)
    if isinstance(exc, (rexc.TimeoutError, TimeoutError)):
        return SinkError(sink_id, f"redis {where} timed out: {exc or 'no reply'}", retryable=True)
    if isinstance(exc, (rexc.ConnectionError, ConnectionError, OSError)):
        return SinkError(sink_id, f"redis {where} connection failed: {exc}", retryable=True)
    if isinstance(exc, rexc.DataError):
        return SinkError(sink_id, f"redis {where}: invalid command data: {exc}", retryable=False)
    if isinstance(exc, rexc.ResponseError):
        text = str(exc)
        if text.startswith(_FATAL_REPLIES):
            return SinkError(sink_id, f"redis {where} refused the write: {text}", retryable=False)
        # OOM, LOADING, MASTERDOWN, TRYAGAIN, CLUSTERDOWN...: the server may recover
        return SinkError(sink_id, f"redis {where} error: {text}", retryable=True)
    return SinkError(sink_id, f"redis {where}: {exc.__class__.__name__}: {exc}", retryable=True)


class RedisSink(Sink):
    def __init__(self, config: Any, ctx: SinkContext) -> None:
        super().__init__(config, ctx)
        self._where = redis_where(config.url)
        self._stream_of = compile_template(config.stream)
        self._static_stream = config.stream if "${" not in config.stream else None
        self._maxlen: int | None = config.maxlen
        self._client: aioredis.Redis | None = None

    def _connect(self) -> aioredis.Redis:
        try:
            return aioredis.from_url(
                self.config.url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=SOCKET_TIMEOUT_S, health_check_interval=30, retry_on_timeout=False)
        except ValueError as exc:
            raise SinkError(self.id, f"invalid redis url: {exc}", retryable=False) from None

    async def open(self) -> str | None:
        await self.close()           # open() is retried after a retryable failure
        self._client = self._connect()
        try:
            await self._client.ping()
            if self._static_stream is not None:
                kind = await self._client.type(self._static_stream)
                kind = kind.decode() if isinstance(kind, bytes) else kind
                if kind not in ("none", "stream"):
                    raise SinkError(self.id, f"redis {self._where} key {self._static_stream!r} holds a "
                                    f"{kind}, not a stream; pick another `stream`", retryable=False)
        except Exception as exc:   # noqa: BLE001 - classified
            raise classify(self.id, self._where, exc) from exc
        return None

    async def write(self, batch: SinkBatch) -> None:
        events = batch.events
        if not events:
            return
        if self._client is None:
            self._client = self._connect()
        keys = self.encoder.keys(events)
        bodies = self.encoder.encode_all(events, batch.native, keys)
        maxlen = self._maxlen
        approx = maxlen is not None
        pipe = self._client.pipeline(transaction=False)
        xadd = pipe.xadd
        if self._static_stream is not None:
            stream = self._static_stream
            for body, key in zip(bodies, keys):
                xadd(stream, {"event": body, "idempotency_key": key}, maxlen=maxlen, approximate=approx)
        else:
            stream_of = self._stream_of
            for ev, body, key in zip(events, bodies, keys):
                xadd(stream_of(ev), {"event": body, "idempotency_key": key},
                     maxlen=maxlen, approximate=approx)
        try:
            # one round trip; redis-py reconnects a dropped pooled connection on the next call
            await pipe.execute(raise_on_error=True)
        except Exception as exc:   # noqa: BLE001 - classified
            raise classify(self.id, self._where, exc) from exc
        finally:
            await pipe.reset()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:   # noqa: BLE001 - closing a broken connection
                pass
