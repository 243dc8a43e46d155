"""HTTP sink: POST a batch as a JSON array (`mode: batch`) or one request per
event (`mode: event`, where a message event's headers are request headers).
2xx acknowledges; 5xx, 408, 429, connection errors and timeouts are retryable;
any other status is fatal (retrying cannot help).
`url` may hold routing templates (`${source.table}`): events are grouped by
URL in order. Imports: stdlib + httpx + shared + worker.
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.errors import SinkError
from shared.spec.model import HttpSinkConfig
from shared.spec.redact import redact_text
from worker.envelope import message_headers, messages
from worker.routing import compile_template, is_template
from worker.sinks.base import Sink, SinkBatch, SinkContext

RETRYABLE = {408, 425, 429}


class HttpSink(Sink[HttpSinkConfig]):
    def __init__(self, config: Any, ctx: SinkContext) -> None:
        super().__init__(config, ctx)
        self._client: httpx.AsyncClient | None = None
        self._url = compile_template(config.url)
        self._templated = is_template(config.url)
        self._headers = {"content-type": "application/json", "user-agent": "tidegate/0.1", **config.headers}

    async def open(self) -> str | None:
        t = self.config.timeout_ms / 1000
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(t), headers=self._headers)
        return None

    async def _post(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        assert self._client is not None
        shown = redact_text(url)
        try:
            r = await self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise SinkError(self.id, f"POST {shown} timed out ({exc.__class__.__name__})") from exc
        except httpx.HTTPError as exc:
            raise SinkError(self.id, f"POST {shown} failed: {exc.__class__.__name__}: {exc}") from exc
        if 200 <= r.status_code < 300:
            return
        retry = r.status_code >= 500 or r.status_code in RETRYABLE
        text = r.text[:200].replace("\n", " ")
        raise SinkError(self.id, f"POST {shown} returned {r.status_code}: {text}", retryable=retry)

    async def write(self, batch: SinkBatch) -> None:
        events = batch.events
        if not events:
            return
        bodies = self.encoder.encode_all(events, batch.native)
        if self.config.mode == "event":
            msgs = messages(events) if batch.native is None else None
            for i, (ev, body) in enumerate(zip(events, bodies)):
                m = msgs[i] if msgs is not None else None
                await self._post(self._url(ev), body, message_headers(m) if m is not None else None)
            return
        if not self._templated:
            await self._post(self.config.url, b"[" + b",".join(bodies) + b"]")
            return
        groups: dict[str, list[bytes]] = {}
        for ev, body in zip(events, bodies):
            groups.setdefault(self._url(ev), []).append(body)
        for url, group in groups.items():
            await self._post(url, b"[" + b",".join(group) + b"]")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
