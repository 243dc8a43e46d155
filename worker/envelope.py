"""Message bodies per sink envelope (CONTRACT section 6) and idempotency keys.

Imports: stdlib + msgspec. One Encoder per sink; encoding is msgspec JSON.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import msgspec

_enc = msgspec.json.Encoder()
encode = _enc.encode


def idempotency_keys(pipeline: str, sink_id: str, events: list[dict[str, Any]]) -> list[str]:
    """`<pipeline>:<sink id>:<source.position>`; a position repeated inside one
    batch (a processor fanned one event out) gets `#k` on its k-th repeat."""
    prefix = f"{pipeline}:{sink_id}:"
    keys: list[str] = []
    seen: dict[str, int] = {}
    for ev in events:
        src = ev.get("source")
        pos = src.get("position") if isinstance(src, dict) else None
        pos = str(pos) if pos is not None else ""
        k = seen.get(pos)
        if k is None:
            seen[pos] = 0
            keys.append(prefix + pos)
        else:
            seen[pos] = k + 1
            keys.append(f"{prefix}{pos}#{k + 1}")
    return keys


def _iso(ts_ms: Any) -> str:
    try:
        t = _dt.datetime.fromtimestamp(int(ts_ms) / 1000, tz=_dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        t = _dt.datetime.now(tz=_dt.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Encoder:
    def __init__(self, envelope: str, pipeline: str, sink_id: str) -> None:
        self.envelope = envelope
        self.pipeline = pipeline
        self.sink_id = sink_id

    def wrap(self, event: dict[str, Any], key: str | None = None) -> Any:
        """The envelope object for one event (before JSON encoding)."""
        if self.envelope == "native":
            return event
        if self.envelope == "debezium":
            return {
                "schema": None,
                "payload": {
                    "before": event.get("before"),
                    "after": event.get("after"),
                    "source": event.get("source"),
                    "op": event.get("op"),
                    "ts_ms": event.get("ts_ms"),
                },
            }
        src: Any = event.get("source") if isinstance(event.get("source"), dict) else {}
        if key is None:
            key = idempotency_keys(self.pipeline, self.sink_id, [event])[0]
        return {
            "specversion": "1.0",
            "id": key,
            "source": f"tidegate/{self.pipeline}",
            "type": f"io.tidegate.change.{event.get('op')}",
            "subject": f"{src.get('db')}.{src.get('table')}",
            "time": _iso(event.get("ts_ms")),
            "datacontenttype": "application/json",
            "data": event,
        }

    def encode_all(
        self, events: list[dict[str, Any]], native: list[bytes] | None = None, keys: list[str] | None = None
    ) -> list[bytes]:
        """One body per event. `native` (pre-encoded events) is reused when it fits."""
        if self.envelope == "native":
            return native if native is not None else [encode(e) for e in events]
        if self.envelope == "cloudevents":
            if keys is None:
                keys = idempotency_keys(self.pipeline, self.sink_id, events)
            return [encode(self.wrap(e, k)) for e, k in zip(events, keys)]
        return [encode(self.wrap(e)) for e in events]

    def keys(self, events: list[dict[str, Any]]) -> list[str]:
        return idempotency_keys(self.pipeline, self.sink_id, events)
