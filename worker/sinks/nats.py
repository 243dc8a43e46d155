"""NATS JetStream sink (CONTRACT section 6).

Every event is published to `subject` (a routing template is allowed) with the
header `Nats-Msg-Id` = its idempotency key, so a replayed batch is dropped by
the server's duplicate window (a message event's headers go beside it). A batch is published all at once (publish_async)
and `write` returns once every PubAck is in. A stream that captures the subject
must exist (`stream` names it, else it is looked up by subject); with
`create_stream: true` a missing one is created (subjects: the subject with each
templated token as `*`; name: `stream` or `TIDEGATE_<pipeline>_<sink id>`).

Imports: shared, worker.envelope/routing (through base) and nats-py.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from nats import errors as nerr
from nats.aio.client import Client as NATS
from nats.js import errors as jerr

from shared.errors import SinkError
from shared.spec.model import NatsSinkConfig
from shared.where import nats_where
from worker.envelope import message_headers, messages
from worker.routing import compile_template
from worker.sinks.base import Sink, SinkBatch, SinkContext

CONNECT_TIMEOUT_S = 5
ACK_TIMEOUT_S = 15.0  # a whole batch's acks (plus 1 s per ACKS_PER_S_FLOOR events: big transactions)
ACKS_PER_S_FLOOR = 1000
RECONNECT_ATTEMPTS = 5  # client-side reconnects before the connection closes (write then reconnects)
RECONNECT_WAIT_S = 0.5
MAX_PENDING = 1 << 20  # publish_async in flight; the batch is the real bound
_BAD_STREAM_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_TEMPLATE = re.compile(r"\$\{[^}]*\}")


def wildcard_subject(subject: str) -> str:
    """The subject with each token that holds a routing template replaced by `*`."""
    marked = _TEMPLATE.sub("\0", subject)
    return ".".join("*" if "\0" in tok else tok for tok in marked.split("."))


def _is_auth_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, nerr.AuthorizationError) or "authorization violation" in text or "authentication" in text


def default_stream_name(pipeline: str, sink_id: str) -> str:
    return _BAD_STREAM_CHARS.sub("_", f"TIDEGATE_{pipeline}_{sink_id}")


class NatsSink(Sink[NatsSinkConfig]):
    def __init__(self, config: Any, ctx: SinkContext) -> None:
        super().__init__(config, ctx)
        self._where = nats_where(config.url)
        self._subject_of = compile_template(config.subject)
        self._static_subject = config.subject if "${" not in config.subject else None
        self._filter = wildcard_subject(config.subject)
        self._stream: str | None = config.stream
        self._nc: Any = None
        self._js: Any = None
        self._last_err: BaseException | None = None
        self._inflight: list[asyncio.Future[Any]] = []

    # ---------------------------------------------------------------- helpers
    def _err(self, msg: str, retryable: bool) -> SinkError:
        return SinkError(self.id, f"nats {self._where} {msg}", retryable=retryable)

    def classify(self, exc: BaseException) -> SinkError:
        if isinstance(exc, SinkError):
            return exc
        if _is_auth_error(exc) or (self._last_err is not None and _is_auth_error(self._last_err)):
            return self._err(
                "rejected the credentials (Authorization Violation); fix the user/password or token in `url`", False
            )
        if isinstance(exc, nerr.MaxPayloadError):
            return self._err(
                "refused a message larger than the server's max_payload; raise max_payload "
                "on the server or shrink the events",
                False,
            )
        if isinstance(exc, jerr.ServiceUnavailableError):
            return self._err(f"JetStream unavailable ({exc.description}); will retry", True)
        if isinstance(exc, jerr.APIError):
            # 5xx: server trouble (retry); 4xx: the request cannot succeed (e.g. wrong expected stream)
            fatal = exc.code is not None and 400 <= exc.code < 500
            return self._err(
                f"JetStream refused the publish: code={exc.code} err_code={exc.err_code} {exc.description}", not fatal
            )
        if isinstance(exc, (asyncio.TimeoutError, nerr.TimeoutError)):
            return self._err("did not acknowledge in time (server down or restarting?)", True)
        if isinstance(exc, (nerr.NoServersError, ConnectionRefusedError)):
            cause = self._last_err if isinstance(exc, nerr.NoServersError) else exc
            return self._err(f"refused connection or is unreachable{f': {cause}' if cause else ''}", True)
        if isinstance(
            exc,
            (
                nerr.ConnectionClosedError,
                nerr.OutboundBufferLimitError,
                nerr.StaleConnectionError,
                nerr.ConnectionReconnectingError,
                OSError,
            ),
        ):
            return self._err(f"connection lost ({exc.__class__.__name__}); will reconnect", True)
        return self._err(f"{exc.__class__.__name__}: {exc}", True)

    async def _on_error(self, exc: Exception) -> None:
        self._last_err = exc

    async def _on_disconnect(self) -> None:
        """Acks of messages sent before a disconnect never come: fail the write now, not at the timeout."""
        for f in self._inflight:
            if not f.done():
                f.set_exception(nerr.ConnectionClosedError())

    async def _connect(self) -> None:
        await self._drop()
        self._last_err = None
        try:
            # the first connect fails fast (the runtime backs off); after it the client rides out
            # short outages itself, and write() reconnects once it has given up
            nc = NATS()
            self._nc = nc
            await nc.connect(
                self.config.url,
                name=f"tidegate {self.ctx.pipeline}/{self.id}",
                connect_timeout=CONNECT_TIMEOUT_S,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=RECONNECT_WAIT_S,  # type: ignore[arg-type]  # annotated int; a float sleeps
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnect,
            )
        except Exception as exc:  # noqa: BLE001 - classified
            self._nc = None
            err = self.classify(exc)
            try:  # release the half-open transport of the failed attempt
                if nc._transport is not None:
                    nc._transport.close()
                    await nc._transport.wait_closed()
            except Exception:  # noqa: BLE001
                pass
            raise err from exc
        self._nc.options["allow_reconnect"] = True
        self._nc.options["max_reconnect_attempts"] = RECONNECT_ATTEMPTS
        self._js = self._nc.jetstream(timeout=CONNECT_TIMEOUT_S, publish_async_max_pending=MAX_PENDING)

    async def _drop(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    async def _find_stream(self) -> str | None:
        """The stream that captures our subject(s), or None when there is none."""
        try:
            if self._stream is not None:
                await self._js.stream_info(self._stream)
                return self._stream
            return await self._js.find_stream_name_by_subject(self._filter)
        except jerr.NotFoundError:
            return None
        except nerr.NoRespondersError:
            raise self._err("has no JetStream API (start nats-server with -js)", True) from None

    # --------------------------------------------------------------- contract
    async def open(self) -> str | None:
        await self._connect()
        try:
            found = await self._find_stream()
            if found is None:
                if not self.config.create_stream:
                    what = (
                        f"stream {self._stream!r} does not exist"
                        if self._stream
                        else f"no JetStream stream captures subject {self._filter!r}"
                    )
                    raise self._err(f"{what}; create it (nats stream add) or set create_stream: true", False)
                name = self._stream or default_stream_name(self.ctx.pipeline, self.id)
                await self._js.add_stream(name=name, subjects=[self._filter])
                self.ctx.log.info("nats_stream_created", sink=self.id, stream=name, subjects=[self._filter])
                found = name
            self._stream = found
        except Exception as exc:  # noqa: BLE001 - classified
            raise self.classify(exc) from exc
        return None

    async def write(self, batch: SinkBatch) -> None:
        events = batch.events
        if not events:
            return
        if self._nc is None or self._nc.is_closed:
            await self._connect()
        keys = self.encoder.keys(events)
        bodies = self.encoder.encode_all(events, batch.native, keys)
        msgs = messages(events) if batch.native is None else None
        futs: list[asyncio.Future[Any]] = []
        self._inflight = futs
        try:
            await asyncio.wait_for(
                self._publish(events, bodies, keys, futs, msgs), ACK_TIMEOUT_S + len(events) / ACKS_PER_S_FLOOR
            )
        except Exception as exc:  # noqa: BLE001 - classified below
            for f in futs:
                f.cancel()
            if isinstance(exc, jerr.NoStreamResponseError):
                raise await self._no_stream(getattr(exc, "subject", None)) from exc
            raise self.classify(exc) from exc
        finally:
            self._inflight = []

    async def _publish(
        self,
        events: list[dict[str, Any]],
        bodies: list[bytes],
        keys: list[str],
        futs: list[asyncio.Future[Any]],
        msgs: list[dict[str, Any] | None] | None,
    ) -> None:
        pub = self._js.publish_async
        static = self._static_subject
        subject_of = self._subject_of
        for i, (ev, body, key) in enumerate(zip(events, bodies, keys)):
            subject = static if static is not None else subject_of(ev)
            m = msgs[i] if msgs is not None else None
            headers = {"Nats-Msg-Id": key} if m is None else {**message_headers(m), "Nats-Msg-Id": key}
            futs.append(await pub(subject, body, headers=headers))
        results = await asyncio.gather(*futs, return_exceptions=True)
        for i, r in enumerate(results):
            if isinstance(r, BaseException):
                if isinstance(r, jerr.NoStreamResponseError):
                    r.subject = static if static is not None else subject_of(events[i])  # type: ignore[attr-defined]
                raise r

    async def _no_stream(self, subject: str | None) -> SinkError:
        """No stream answered a publish: fatal if none captures the subject, else (server starting) retry."""
        subject = subject or self._filter
        try:
            found = await self._js.find_stream_name_by_subject(subject)
        except jerr.NotFoundError:
            found = None
        except Exception as exc:  # noqa: BLE001
            return self.classify(exc)
        if found is None and self.config.create_stream and self._filter_covers(subject):
            try:  # our stream was deleted under us: create it again and let the runtime retry
                name = self._stream or default_stream_name(self.ctx.pipeline, self.id)
                await self._js.add_stream(name=name, subjects=[self._filter])
            except Exception as exc:  # noqa: BLE001
                return self.classify(exc)
            return self._err(f"stream {name!r} was missing and has been created again; will retry", True)
        if found is None:
            return self._err(
                f"no JetStream stream captures subject {subject!r} (stream {self._stream!r} "
                "deleted or its subjects do not cover it); create it or fix `subject`",
                False,
            )
        return self._err(f"stream {found!r} did not answer (JetStream starting?); will retry", True)

    def _filter_covers(self, subject: str) -> bool:
        """Whether the stream subject we would create (`a.*.c`) covers this concrete subject."""
        want, got = self._filter.split("."), subject.split(".")
        return len(want) == len(got) and all(w in ("*", g) for w, g in zip(want, got))

    async def close(self) -> None:
        nc = self._nc
        if nc is not None and not nc.is_closed:
            try:
                await nc.flush(timeout=2)
            except Exception:  # noqa: BLE001
                pass
        await self._drop()
