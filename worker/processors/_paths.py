"""Pieces the native processors share: dotted-path getters, table matching, an event's
position for error messages. Everything is built once (at open), then called per event.

Imports: stdlib + shared.spec.native.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.spec.native import table_glob

MISSING: Any = type("Missing", (), {"__repr__": lambda _self: "MISSING"})()
_CACHE_MAX = 10000

Getter = Callable[[Any], Any]


def getter(parts: tuple[str, ...]) -> Getter:
    """obj -> the value at `parts` (dicts all the way down), or MISSING."""
    if len(parts) == 1:
        (k,) = parts
        return lambda obj: obj.get(k, MISSING) if obj.__class__ is dict else MISSING
    if len(parts) == 2:
        a, b = parts

        def two(obj: Any) -> Any:
            v = obj.get(a) if obj.__class__ is dict else None
            return v.get(b, MISSING) if v.__class__ is dict else MISSING

        return two

    def many(obj: Any) -> Any:
        for k in parts:
            if obj.__class__ is not dict:
                return MISSING
            obj = obj.get(k, MISSING)
        return obj

    return many


class TableMatcher:
    """Does an event's table match one of the `db.table` globs? `source.db` + `source.table`,
    and for a source with schemas (PostgreSQL) `source.schema` + `source.table` too; the answer
    is cached per table."""

    def __init__(self, globs: list[str]) -> None:
        self.patterns = [table_glob(g) for g in globs]
        self.cache: dict[tuple[Any, Any, Any], bool] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        src = event.get("source")
        if src.__class__ is not dict:
            return False
        k = (src.get("db"), src.get("schema"), src.get("table"))
        hit = self.cache.get(k)
        if hit is None:
            hit = self._decide(*k)
            if len(self.cache) >= _CACHE_MAX:
                self.cache.clear()
            self.cache[k] = hit
        return hit

    def _decide(self, db: Any, schema: Any, table: Any) -> bool:
        if table is None:
            return False
        names = [f"{q}.{table}" for q in (db, schema) if q is not None]
        return any(p.fullmatch(n) for p in self.patterns for n in names)


def position(event: Any) -> str:
    """`source.position` of an event, for messages ("event at position 0/16B3748")."""
    src = event.get("source") if event.__class__ is dict else None
    pos = src.get("position") if src.__class__ is dict else None
    return "?" if pos is None else str(pos)
