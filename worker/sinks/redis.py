"""Redis Streams sink (CONTRACT section 6): XADD per event, pipelined per batch.

Each entry has the fields `event` (the body in the sink's envelope) and
`idempotency_key` (`<pipeline>:<sink id>:<source.position>`) so consumers can
drop the duplicates that an at-least-once replay may produce. `stream` may be a
routing template (`${source.table}`...). `maxlen` trims approximately (`~`).
A batch is one round trip: its XADDs are packed here as RESP and sent on one
pooled redis-py connection (redis-py owns connecting, AUTH, SELECT, TLS); the
replies are counted and the first error reply raised. `fast = False` uses
redis-py's own pipeline instead (same commands, ~5x the CPU per event).

Imports: shared, worker.envelope/routing (through base) and redis-py asyncio.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc

from shared.errors import SinkError
from shared.spec.model import RedisSinkConfig
from shared.where import redis_where
from worker.routing import compile_template
from worker.sinks.base import Sink, SinkBatch, SinkContext

CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 30.0
_FATAL_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM", "WRONGTYPE", "ERR max", "ERR Protocol", "ERR string exceeds")


async def read_replies(reader: asyncio.StreamReader, n: int) -> str | None:
    """Read `n` XADD replies (RESP bulk strings, or errors); return the first error text, if any."""
    buf, pos, got, err = b"", 0, 0, None
    while got < n:
        chunk = await reader.read(1 << 16)
        if not chunk:
            raise rexc.ConnectionError("Connection closed by server.")
        buf = buf[pos:] + chunk if pos < len(buf) else chunk
        pos = 0
        while got < n:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            kind = buf[pos]
            if kind == 36:  # $<len> bulk string (the entry id); $-1 nil
                size = int(buf[pos + 1 : end])
                nxt = end + 2 + (size + 2 if size >= 0 else 0)
                if nxt > len(buf):
                    break
                pos = nxt
            else:  # -error, or a one-line reply (+, :, _)
                if kind == 45 and err is None:
                    err = buf[pos + 1 : end].decode(errors="replace")
                pos = end + 2
            got += 1
    return err


def classify(sink_id: str, where: str, exc: BaseException) -> SinkError:
    """Sort a redis-py exception into a retryable or fatal SinkError with a clear message."""
    if isinstance(exc, SinkError):
        return exc
    if isinstance(exc, rexc.AuthenticationError) or isinstance(exc, rexc.AuthorizationError):
        return SinkError(
            sink_id, f"redis {where} rejected the credentials ({exc}); fix the user/password in `url`", retryable=False
        )
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
        reply = text.split("caused error: ")[-1].lstrip("('\"")  # redis-py's pipeline wrapping
        if reply.startswith(_FATAL_REPLIES):
            return SinkError(sink_id, f"redis {where} refused the write: {text}", retryable=False)
        # OOM, LOADING, MASTERDOWN, TRYAGAIN, CLUSTERDOWN...: the server may recover
        return SinkError(sink_id, f"redis {where} error: {text}", retryable=True)
    return SinkError(sink_id, f"redis {where}: {exc.__class__.__name__}: {exc}", retryable=True)


class RedisSink(Sink[RedisSinkConfig]):
    def __init__(self, config: Any, ctx: SinkContext) -> None:
        super().__init__(config, ctx)
        self._where = redis_where(config.url)
        self._stream_of = compile_template(config.stream)
        self._static_stream = config.stream if "${" not in config.stream else None
        self._maxlen: int | None = config.maxlen
        self._client: aioredis.Redis | None = None
        # pack the batch ourselves (True) or use redis-py's pipeline; both one round trip per batch
        self.fast = hasattr(aioredis.connection.AbstractConnection, "send_packed_command")

    def _connect(self) -> aioredis.Redis:
        try:
            return aioredis.from_url(
                self.config.url,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=SOCKET_TIMEOUT_S,
                health_check_interval=30,
                retry_on_timeout=False,
            )
        except ValueError as exc:
            raise SinkError(self.id, f"invalid redis url: {exc}", retryable=False) from None

    async def open(self) -> str | None:
        await self.close()  # open() is retried after a retryable failure
        self._client = self._connect()
        try:
            await self._client.ping()
            if self._static_stream is not None:
                kind = await self._client.type(self._static_stream)
                kind = kind.decode() if isinstance(kind, bytes) else kind
                if kind not in ("none", "stream"):
                    raise SinkError(
                        self.id,
                        f"redis {self._where} key {self._static_stream!r} holds a "
                        f"{kind}, not a stream; pick another `stream`",
                        retryable=False,
                    )
        except Exception as exc:  # noqa: BLE001 - classified
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
        try:
            if self.fast:
                await self._write_packed(events, bodies, keys)
            else:
                await self._write_pipeline(events, bodies, keys)
        except Exception as exc:  # noqa: BLE001 - classified
            raise classify(self.id, self._where, exc) from exc

    def _pack(self, events: list[dict[str, Any]], bodies: list[bytes], keys: list[str]) -> bytes:
        """`XADD <stream> [MAXLEN ~ n] * event <body> idempotency_key <key>` per event, as RESP."""
        trim = (
            b""
            if self._maxlen is None
            else b"$6\r\nMAXLEN\r\n$1\r\n~\r\n$%d\r\n%d\r\n" % (len(str(self._maxlen)), self._maxlen)
        )
        head = b"*10\r\n" if trim else b"*7\r\n"
        tail = b"$1\r\n*\r\n$5\r\nevent\r\n"

        def prefix(stream: str) -> bytes:
            name = stream.encode()
            return b"%s$4\r\nXADD\r\n$%d\r\n%s\r\n%s%s" % (head, len(name), name, trim, tail)

        fmt = b"%s$%d\r\n%s\r\n$15\r\nidempotency_key\r\n$%d\r\n%s\r\n"
        if self._static_stream is not None:
            pre = prefix(self._static_stream)
            return b"".join(
                [fmt % (pre, len(body), body, len(kb), kb) for body, kb in zip(bodies, [k.encode() for k in keys])]
            )
        stream_of = self._stream_of
        cache: dict[str, bytes] = {}
        out = []
        for ev, body, key in zip(events, bodies, keys):
            st = stream_of(ev)
            cached = cache.get(st)
            if cached is None:
                cached = cache[st] = prefix(st)
            kb = key.encode()
            out.append(fmt % (cached, len(body), body, len(kb), kb))
        return b"".join(out)

    async def _write_packed(self, events: list[dict[str, Any]], bodies: list[bytes], keys: list[str]) -> None:
        """One round trip: the batch's XADDs packed here, sent and answered on one pooled redis-py
        connection (redis-py's per-command packing and per-reply reads cost ~5x more CPU)."""
        assert self._client is not None
        buf = self._pack(events, bodies, keys)
        pool = self._client.connection_pool
        conn = await pool.get_connection()
        ok = False
        try:
            await conn.send_packed_command(buf)
            reader = getattr(conn, "_reader", None)
            if reader is None:
                raise rexc.ConnectionError("connection has no reader")
            err = await asyncio.wait_for(read_replies(reader, len(bodies)), SOCKET_TIMEOUT_S)
            ok = True
        finally:
            if not ok:
                await conn.disconnect(nowait=True)
            await pool.release(conn)
        if err is not None:
            raise rexc.ResponseError(err)

    async def _write_pipeline(self, events: list[dict[str, Any]], bodies: list[bytes], keys: list[str]) -> None:
        """The same batch through redis-py's own pipeline (used when `fast` is off)."""
        assert self._client is not None
        maxlen = self._maxlen
        approx = maxlen is not None
        stream_of = self._stream_of
        async with self._client.pipeline(transaction=False) as pipe:
            for ev, body, key in zip(events, bodies, keys):
                pipe.xadd(stream_of(ev), {"event": body, "idempotency_key": key}, maxlen=maxlen, approximate=approx)
            await pipe.execute(raise_on_error=True)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
