"""`type: filter`: keep (or drop, `action: drop`) the events that match all of `ops`,
`tables` and `where` (CONTRACT section 5). A condition the spec does not give matches
every event.

`where` items, each `{path, <operator>: value}` with `path` dotted into the event:
- `eq` / `ne`: JSON equality (`1 == 1.0`; a boolean never equals a number); a missing
  path equals nothing, so `ne` and `not_in` match it.
- `in` / `not_in`: equal to one of / none of the listed values.
- `gt` `gte` `lt` `lte`: against a number, a number or a numeric string (PostgreSQL
  `numeric` arrives as "129.90") compares; against an ISO 8601 timestamp, an ISO string
  compares as a time (no offset: UTC), and a number as epoch milliseconds (`ts_ms`).
  Anything else (missing, null, not comparable) does not match.
- `exists: true | false`: the path holds a value that is not null.
- `regex`: a string value where the (Python) regex matches somewhere (`re.search`; anchor
  it with ^...$ for the whole value).
- `changed: true | false`: `before` and `after` differ at the path (`after.status` and
  `before.status` are compared). Without both images holding that column (an insert, an
  update with no before image or a before image of key columns only) it is unknown, and
  `unknown_changed` (default true) decides whether unknown counts as changed.

Everything is compiled in `open`; per event the step only reads. Imports: stdlib + shared +
worker.processors.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from shared.spec.native import bound, operand, operators, split_path, time_ms
from worker.processors._paths import MISSING, TableMatcher, getter
from worker.processors.base import NativeProcessor

Test = Callable[[Any], bool]
Match = Callable[[dict[str, Any]], bool]
_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def same(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    return a == b and (a.__class__ is bool) == (b.__class__ is bool)


def _eq(x: Any) -> Test:
    if x is None or x.__class__ is bool:
        return lambda v: v is x
    if x.__class__ is str:
        return lambda v: v == x
    return lambda v: v is not MISSING and same(v, x)


def _in(values: list[Any]) -> Test:
    strs = frozenset(v for v in values if v.__class__ is str)
    others = [_eq(v) for v in values if v.__class__ is not str]
    if not others:
        return lambda v: v.__class__ is str and v in strs
    return lambda v: (v.__class__ is str and v in strs) or any(t(v) for t in others)


def _ordered(op: str, x: Any) -> Test:
    kind, b = bound(x)
    cmp = _ORDER[op]
    if kind == "number":

        def number(v: Any) -> bool:
            c = v.__class__
            if c is int or c is float:
                return cmp(v, b)
            if c is str:
                try:
                    return cmp(float(v), b)
                except ValueError:
                    return False
            return False

        return number

    def moment(v: Any) -> bool:
        c = v.__class__
        if c is str:
            ms = time_ms(v)
            return ms is not None and cmp(ms, b)
        return (c is int or c is float) and cmp(v, b)

    return moment


def _regex(pattern: str) -> Test:
    search = re.compile(pattern).search
    return lambda v: v.__class__ is str and search(v) is not None


def _test(op: str, x: Any) -> Test:
    if op == "eq":
        return _eq(x)
    if op == "ne":
        eq = _eq(x)
        return lambda v: not eq(v)
    if op == "in":
        return _in(x)
    if op == "not_in":
        isin = _in(x)
        return lambda v: not isin(v)
    if op in _ORDER:
        return _ordered(op, x)
    if op == "exists":
        return lambda v: (v is not MISSING and v is not None) is x
    if op == "regex":
        return _regex(x)
    raise ValueError(f"unknown operator {op!r}")  # validation lets none through


def _changed(column: tuple[str, ...], want: bool, unknown: bool) -> Match:
    get = getter(column)

    def changed(e: dict[str, Any]) -> bool:
        before, after = e.get("before"), e.get("after")
        result = unknown
        if before.__class__ is dict and after.__class__ is dict:
            b, a = get(before), get(after)
            if b is not MISSING and a is not MISSING:
                result = not same(b, a)
        return result is want

    return changed


def compile_condition(cond: Any) -> Match:
    """One `where` item as event -> bool."""
    (op,) = operators(cond)
    parts = split_path(cond.path)
    if op == "changed":
        # unknown_changed not given (UNSET) means true
        return _changed(parts[1:], bool(cond.changed), cond.unknown_changed is not False)
    test = _test(op, operand(cond, op))
    get = getter(parts)
    return lambda e: test(get(e))


def _all(checks: list[Match]) -> Match:
    if not checks:
        return lambda _e: True
    if len(checks) == 1:
        return checks[0]

    def every(e: dict[str, Any]) -> bool:
        for c in checks:
            if not c(e):
                return False
        return True

    return every


class FilterProcessor(NativeProcessor):
    def open(self) -> None:
        s = self.spec
        checks: list[Match] = []
        if s.ops is not None:
            ops = frozenset(s.ops)
            checks.append(lambda e: e.get("op") in ops)
        if s.tables is not None:
            checks.append(TableMatcher(list(s.tables)))
        checks.extend(compile_condition(c) for c in s.where)
        self.match = _all(checks)
        self.keep = s.action == "keep"

    def apply(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        m = self.match
        if self.keep:
            return [e for e in events if m(e)]
        return [e for e in events if not m(e)]
