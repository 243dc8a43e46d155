"""`type: flatten`: nested objects in `before`/`after` become `parent<separator>child`
keys (CONTRACT section 5): `{"addr": {"city": "Oslo"}}` -> `{"addr__city": "Oslo"}`.

- `max_depth` (default unlimited): how many levels are joined; deeper objects stay
  objects (`max_depth: 1`: `{"a": {"b": {"c": 1}}}` -> `{"a__b": {"c": 1}}`).
- `lists`: `keep` (default) leaves arrays as they are; `index` makes their items keys
  `parent<separator>0`, `...1` (objects in them flattened further, a level each); `json`
  writes each array as its compact JSON text.
- An empty object (or, with `index`, an empty array) stays a value: nothing disappears.
- Two values that land on one key (`{"a__b": 1, "a": {"b": 2}}`) are a processor error
  naming the key, the image and the event's position: never a silent overwrite.

Other fields of the event are left as they are; an image with nothing nested is reused
as it is. Imports: stdlib + msgspec + shared + worker.processors.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.errors import ProcessorError
from worker.processors._paths import position
from worker.processors.base import NativeProcessor

_encode = msgspec.json.Encoder().encode


class Collision(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class Flattener:
    def __init__(self, separator: str, max_depth: int | None, lists: str) -> None:
        self.sep = separator
        self.max_depth = max_depth if max_depth is not None else 1 << 30
        self.lists = lists

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        """`row` flattened; `row` itself when nothing in it is nested."""
        touch_lists = self.lists != "keep"
        for v in row.values():
            c = v.__class__
            if (c is dict and v) or (c is list and touch_lists):
                break
        else:
            return row
        out: dict[str, Any] = {}
        self._into(out, "", row, 0)
        return out

    def _put(self, out: dict[str, Any], key: str, value: Any) -> None:
        if key in out:
            raise Collision(key)
        out[key] = value

    def _into(self, out: dict[str, Any], prefix: str, obj: dict[str, Any], depth: int) -> None:
        for k, v in obj.items():
            self._value(out, prefix + k, v, depth)

    def _value(self, out: dict[str, Any], key: str, v: Any, depth: int) -> None:
        c = v.__class__
        if c is dict and v and depth < self.max_depth:
            self._into(out, key + self.sep, v, depth + 1)
        elif c is list and self.lists == "json":
            self._put(out, key, _encode(v).decode())
        elif c is list and self.lists == "index" and v and depth < self.max_depth:
            head = key + self.sep
            for i, item in enumerate(v):
                self._value(out, f"{head}{i}", item, depth + 1)
        else:
            self._put(out, key, v)


class FlattenProcessor(NativeProcessor):
    def open(self) -> None:
        s = self.spec
        self.flat = Flattener(s.separator, s.max_depth, s.lists)

    def apply(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        row = self.flat.row
        out: list[dict[str, Any]] = []
        append = out.append
        for e in events:
            before, after = e.get("before"), e.get("after")
            image = "before"
            try:
                nb = row(before) if before.__class__ is dict else before
                image = "after"
                na = row(after) if after.__class__ is dict else after
            except Collision as exc:
                raise ProcessorError(
                    self.id,
                    f"event at position {position(e)}: flattening {image} gives key {exc.key!r} twice "
                    f"(a column already has that name; choose another separator)",
                ) from None
            if nb is before and na is after:
                append(e)
            else:
                e = e.copy()
                e["before"], e["after"] = nb, na
                append(e)
        return out
