"""The event of CONTRACT section 3.

Imports: stdlib + msgspec. On the data path an event is a plain ``dict`` (the
JSON object processors and sinks see: a processor may add any field, so the
shape after a processor is open). `Event` is the strict form, used to document
and to check the shape in tests and sources; `make_event` builds the dict.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Op = Literal["c", "u", "d", "r"]


class SourceInfo(msgspec.Struct, forbid_unknown_fields=False):
    connector: str
    db: str | None
    schema: str | None
    table: str | None
    position: str
    tx_id: str | None
    ts_ms: int


class Event(msgspec.Struct, forbid_unknown_fields=False):
    op: Op
    ts_ms: int
    source: SourceInfo
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def make_event(
    op: str,
    ts_ms: int,
    *,
    connector: str,
    db: str | None,
    schema: str | None,
    table: str | None,
    position: str,
    tx_id: str | None,
    source_ts_ms: int,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    **extra_source: Any,
) -> dict[str, Any]:
    """Build an event dict in the contract's field order."""
    source: dict[str, Any] = {
        "connector": connector,
        "db": db,
        "schema": schema,
        "table": table,
        "position": position,
        "tx_id": tx_id,
        "ts_ms": source_ts_ms,
    }
    if extra_source:
        source.update(extra_source)
    return {"op": op, "ts_ms": ts_ms, "source": source, "before": before, "after": after}


def position_of(event: dict[str, Any]) -> str | None:
    src = event.get("source")
    if isinstance(src, dict):
        pos = src.get("position")
        return pos if isinstance(pos, str) else None
    return None
