"""Native processors built from their spec documents, as the worker builds them, and events
of the CONTRACT section 3 shape for their tests."""

from __future__ import annotations

from typing import Any

import msgspec

from shared.spec.model import ProcessorSpec, type_tag
from worker import plugins
from worker.processors.base import NativeProcessor, ProcessorContext


def native(doc: dict[str, Any]) -> NativeProcessor:
    """`{"type": "filter", "id": "f", ...}` -> the opened processor."""
    spec = msgspec.convert({"id": doc.get("id", "p"), **doc}, ProcessorSpec)
    proc = plugins.resolve(plugins.PROCESSORS, type_tag(spec))(spec, ProcessorContext(pipeline="t"))
    proc.open()
    return proc


def event(
    n: int = 1,
    op: str = "c",
    *,
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    table: str = "orders",
    db: str = "shop",
    schema: str | None = "public",
    ts_ms: int = 1732800000000,
) -> dict[str, Any]:
    return {
        "op": op,
        "ts_ms": ts_ms,
        "source": {"connector": "postgres", "db": db, "schema": schema, "table": table, "position": str(n)},
        "before": before,
        "after": after,
    }
