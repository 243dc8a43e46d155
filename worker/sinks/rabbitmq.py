"""RabbitMQ sink (CONTRACT section 6): aio-pika with publisher confirms.

Each event is one persistent message (`delivery_mode=2`, `message_id` = its
idempotency key, `content_type: application/json`; a message event's headers as
AMQP headers) published to `exchange`
with `routing_key` (a routing template is allowed; default `${source.table}`).
The whole batch is published at once and `write` returns when the broker has
confirmed every message. An exchange the broker already has is used as it is
(checked passively first: its type and arguments are the broker's business, the
built-in `amq.*` exchanges included); only a missing one is declared, with
`exchange_type` (durable), when `declare` is true. `""` is the default exchange.
Messages are published with mandatory=false: an exchange with no bound queue
accepts (and drops) them, as plain AMQP publishers expect.

Imports: shared, worker.envelope/routing (through base) and aio-pika/aiormq.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import aiormq.exceptions as aexc
from aio_pika import DeliveryMode, Message

from shared.errors import SinkError
from shared.spec.model import RabbitmqSinkConfig
from shared.where import amqp_where
from worker.envelope import message_headers, messages
from worker.routing import compile_template
from worker.sinks.base import Sink, SinkBatch, SinkContext

CONNECT_TIMEOUT_S = 5.0
CONFIRM_TIMEOUT_S = 30.0  # a whole batch's confirms (plus 1 s per CONFIRMS_PER_S_FLOOR messages)
CONFIRMS_PER_S_FLOOR = 500


def _headers(msgs: list[dict[str, Any] | None] | None, i: int) -> Any:
    m = msgs[i] if msgs is not None else None
    return message_headers(m) if m is not None else None


class RabbitmqSink(Sink[RabbitmqSinkConfig]):
    def __init__(self, config: Any, ctx: SinkContext) -> None:
        super().__init__(config, ctx)
        self._where = amqp_where(config.url)
        self._rk_of = compile_template(config.routing_key)
        self._static_rk = config.routing_key if "${" not in config.routing_key else None
        self._conn: Any = None
        self._channel: Any = None
        self._exchange: Any = None

    def _err(self, msg: str, retryable: bool) -> SinkError:
        return SinkError(self.id, f"rabbitmq {self._where} {msg}", retryable=retryable)

    def classify(self, exc: BaseException) -> SinkError:
        if isinstance(exc, SinkError):
            return exc
        ex = self.config.exchange
        if isinstance(exc, (aexc.ProbableAuthenticationError, aexc.AuthenticationError)):
            return self._err(f"rejected the credentials ({exc}); fix the user/password in `url`", False)
        if isinstance(exc, aexc.ConnectionNotAllowed):
            return self._err(f"refused access ({exc}); check the vhost and the user's permissions", False)
        if isinstance(exc, aexc.ChannelNotFoundEntity):
            return self._err(f"exchange {ex!r} does not exist ({exc}); create it or set declare: true", False)
        if isinstance(exc, aexc.ChannelAccessRefused):
            return self._err(f"refused access to exchange {ex!r} ({exc}); grant the user write permission", False)
        if isinstance(exc, aexc.ChannelPreconditionFailed):
            return self._err(f"refused the request on exchange {ex!r}: {exc}", False)
        if isinstance(exc, aexc.DeliveryError):
            return self._err(f"did not accept a message (nack: {exc}); will retry", True)
        if isinstance(exc, asyncio.TimeoutError):
            return self._err("did not confirm in time (broker down or blocked?); will retry", True)
        if isinstance(exc, (aexc.AMQPConnectionError, ConnectionError, OSError)):
            return self._err(f"connection lost or refused ({exc.__class__.__name__}: {exc}); will reconnect", True)
        if isinstance(exc, (aexc.AMQPError, aexc.ChannelInvalidStateError, RuntimeError)):
            return self._err(f"channel failed ({exc.__class__.__name__}: {exc}); will reopen", True)
        return self._err(f"{exc.__class__.__name__}: {exc}", True)

    def _usable(self) -> bool:
        return (
            self._conn is not None
            and not self._conn.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def _connect(self) -> None:
        await self._drop()
        cfg = self.config
        try:
            self._conn = await aio_pika.connect(
                cfg.url,
                timeout=CONNECT_TIMEOUT_S,
                client_properties={"connection_name": f"tidegate {self.ctx.pipeline}/{self.id}"},
            )
            self._channel = await self._conn.channel(publisher_confirms=True)
            self._exchange = await self._find_exchange()
        except Exception as exc:  # noqa: BLE001 - classified
            err = self.classify(exc)
            await self._drop()
            raise err from exc

    async def _find_exchange(self) -> Any:
        """The exchange as the broker has it; declared (configured type) only when missing."""
        cfg = self.config
        if cfg.exchange == "":
            return self._channel.default_exchange
        try:
            return await self._channel.get_exchange(cfg.exchange, ensure=True)  # passive declare
        except aexc.ChannelNotFoundEntity:
            if not cfg.declare:
                raise
        # the failed passive declare closed the channel: declare on a fresh one
        self._channel = await self._conn.channel(publisher_confirms=True)
        return await self._channel.declare_exchange(cfg.exchange, type=cfg.exchange_type, durable=True)

    async def _drop(self) -> None:
        conn, self._conn, self._channel, self._exchange = self._conn, None, None, None
        if conn is not None and not conn.is_closed:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    async def open(self) -> str | None:
        await self._connect()
        return None

    async def write(self, batch: SinkBatch) -> None:
        events = batch.events
        if not events:
            return
        if not self._usable():
            await self._connect()
        keys = self.encoder.keys(events)
        bodies = self.encoder.encode_all(events, batch.native, keys)
        msgs = messages(events) if batch.native is None else None
        publish = self._exchange.publish
        static = self._static_rk
        rk_of = self._rk_of
        persistent = DeliveryMode.PERSISTENT
        futs = [
            publish(
                Message(
                    body,
                    delivery_mode=persistent,
                    message_id=key,
                    content_type="application/json",
                    headers=_headers(msgs, i),
                ),
                routing_key=static if static is not None else rk_of(ev),
                mandatory=False,
            )
            for i, (ev, body, key) in enumerate(zip(events, bodies, keys))
        ]
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*futs, return_exceptions=True), CONFIRM_TIMEOUT_S + len(futs) / CONFIRMS_PER_S_FLOOR
            )
        except Exception as exc:  # noqa: BLE001 - classified
            await self._drop()
            raise self.classify(exc) from exc
        for r in results:
            if isinstance(r, BaseException):
                err = self.classify(r)
                if err.retryable:
                    await self._drop()  # a channel or connection error leaves it unusable
                raise err from r

    async def close(self) -> None:
        await self._drop()
