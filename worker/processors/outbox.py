"""`type: outbox`: the transactional outbox pattern, as Debezium's outbox event router
defines it (CONTRACT section 5).

An insert (or update, or snapshot read) of one of the outbox `tables` becomes a *message
event*, the shape every sink delivers as a message rather than as a change event:

    {"op": "c", "ts_ms": ..., "source": {...the row's source...},
     "route": "<route>",
     "message": {"key": "<key>" | null, "headers": {"<column>": "<text>"}, "body": <payload>}}

- `message.body`: the `payload_column` (default `payload`): json/jsonb arrive parsed; a
  string is parsed as JSON text, and a string that is not JSON stays a JSON string (as
  Debezium does when it cannot expand a payload); null stays null.
- `route`: the `route` template over the row's columns (default `${aggregate_type}`); the
  sinks' routing templates see it as `${route}` (`topic: "outbox.${route}"`).
- `message.key`: the `key_column` (default `aggregate_id`) as text (null: no key).
- `message.headers`: the `header_columns` as text (strings as they are, other values as
  their JSON; a null column gives no header).
A deleted outbox row is dropped (an outbox is typically cleaned up right after the insert);
events of other tables pass unchanged. A row without the payload, key, a header or a route
column is a processor error naming the column and the event's position (a spec that does
not fit the table, retried and then failed like any processor error).

Imports: stdlib + msgspec + shared + worker.processors.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.errors import ProcessorError
from shared.spec.native import route_parts
from worker.processors._paths import MISSING, TableMatcher, position
from worker.processors.base import NativeProcessor

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


_JSON_FIRST = frozenset('{["-0123456789tfn \t\r\n')  # what JSON text can start with


def body_of(payload: Any) -> Any:
    """The message body: JSON text parsed, anything else as it is."""
    if payload.__class__ is not str or payload[:1] not in _JSON_FIRST:
        return payload  # (a string that cannot be JSON is not even tried)
    try:
        return _decode(payload)
    except msgspec.DecodeError:
        return payload


def text_of(value: Any) -> str:
    return value if value.__class__ is str else _encode(value).decode()


class OutboxProcessor(NativeProcessor):
    def open(self) -> None:
        s = self.spec
        self.is_outbox = TableMatcher(list(s.tables))
        self.route = route_parts(s.route)
        self.payload_column = s.payload_column
        self.key_column = s.key_column
        self.header_columns = list(s.header_columns)

    def _column(self, event: dict[str, Any], row: dict[str, Any], column: str, what: str) -> Any:
        v = row.get(column, MISSING)
        if v is MISSING:
            raise ProcessorError(
                self.id,
                f"event at position {position(event)}: the outbox row has no {what} column {column!r} "
                f"(columns: {', '.join(row)})",
            )
        return v

    def _route(self, event: dict[str, Any], row: dict[str, Any]) -> str:
        out: list[str] = []
        for p in self.route:
            if p.__class__ is str:
                out.append(p)
                continue
            v = self._column(event, row, p[0], "route")
            if v is None:
                raise ProcessorError(self.id, f"event at position {position(event)}: route column {p[0]!r} is null")
            out.append(text_of(v))
        return "".join(out)

    def message(self, event: dict[str, Any]) -> dict[str, Any]:
        row = event.get("after")
        if row.__class__ is not dict:
            raise ProcessorError(self.id, f"event at position {position(event)}: an outbox event without a row image")
        key = self._column(event, row, self.key_column, "key")
        headers: dict[str, str] = {}
        for c in self.header_columns:
            v = self._column(event, row, c, "header")
            if v is not None:
                headers[c] = text_of(v)
        return {
            "op": event.get("op"),
            "ts_ms": event.get("ts_ms"),
            "source": event.get("source"),
            "route": self._route(event, row),
            "message": {
                "key": None if key is None else text_of(key),
                "headers": headers,
                "body": body_of(self._column(event, row, self.payload_column, "payload")),
            },
        }

    def apply(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        is_outbox = self.is_outbox
        out: list[dict[str, Any]] = []
        for e in events:
            if not is_outbox(e):
                out.append(e)
            elif e.get("op") != "d":
                out.append(self.message(e))
        return out
