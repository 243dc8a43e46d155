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
  it with ^...$ for the whole value). It runs in the worker, holding its GIL: a pattern
  with catastrophic backtracking stalls the worker until the supervisor restarts it as hung.
- `changed: true | false`: `before` and `after` differ at the path (`after.status` and
  `before.status` are compared). Without both images holding that column (an insert, an
  update with no before image or a before image of key columns only) it is unknown, and
  `unknown_changed` (default true) decides whether unknown counts as changed.

Everything is compiled in `open` into one generated function (`_Source`); per event the
step only reads. Imports: stdlib + shared +
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


class _Source:
    """The filter as the source of one Python function, `apply(events) -> kept events`: one
    list comprehension whose condition reads every path inline (`.get` chains) and inlines
    the simple tests; regexes, sets, bounds and tables are constants or closures beside it.
    Built once when the processor opens; per event nothing is looked up but the event."""

    def __init__(self) -> None:
        self.names: dict[str, Any] = {"MISSING": MISSING}
        self.terms: list[str] = []
        self.images: dict[str, str] = {}  # first path part -> the name it is read into, once

    def const(self, value: Any) -> str:
        name = f"K{len(self.names)}"
        self.names[name] = value
        return name

    def path(self, parts: tuple[str, ...], missing: str = "MISSING") -> str:
        """The value at `parts`, or `missing`. A two-part path reads its first part into a name
        the first time (`after.id` then `after.payload`: `e.get('after')` once): every condition
        reads its path before anything else and conditions are `and`-ed, so a later one only
        runs after the one that bound the name."""
        if len(parts) == 1:
            return f"e.get({parts[0]!r}, {missing})" if missing != "None" else f"e.get({parts[0]!r})"
        if len(parts) == 2:
            head = parts[0]
            if head in self.images:
                y = self.images[head]
                read = y
            else:
                y = self.images[head] = self.const(None)  # a fresh name for the walrus target
                read = f"({y} := e.get({head!r}))"
            tail = f"{parts[1]!r}, {missing}" if missing != "None" else repr(parts[1])
            return f"({y}.get({tail}) if {read}.__class__ is dict else {missing})"
        return f"{self.const(getter(parts))}(e)"

    def condition(self, cond: Any) -> str:
        (op,) = operators(cond)
        parts = split_path(cond.path)
        if op == "changed":  # unknown_changed not given (UNSET) means true
            return f"{self.const(_changed(parts[1:], bool(cond.changed), cond.unknown_changed is not False))}(e)"
        value = operand(cond, op)
        if op == "exists" and len(parts) <= 2:  # null or missing: None
            return f"{self.path(parts, 'None')} {'is not' if value else 'is'} None"
        x, path = self.const(None), self.path(parts)
        if op in ("eq", "ne") and (value is None or value.__class__ in (bool, str)):
            if value.__class__ is str:
                return f"{path} {'==' if op == 'eq' else '!='} {self.const(value)}"
            return f"{path} {'is' if op == 'eq' else 'is not'} {self.const(value)}"
        if op == "exists":
            return f"(({x} := {path}) is not MISSING and {x} is not None) is {value}"
        if op == "regex":
            return f"(({x} := {path}).__class__ is str and {self.const(re.compile(value).search)}({x}) is not None)"
        if op in _ORDER and bound(value)[0] == "number":
            c, sym = self.const(None), {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
            slow = self.const(_ordered(op, value))
            return (  # the test (with the walrus) runs first in `a if test else b`
                f"{x} {sym} {self.const(value)} if ({c} := ({x} := {path}).__class__) is int or {c} is float"
                f" else {c} is str and {slow}({x})"
            )
        return f"{self.const(_test(op, value))}({path})"

    def build(self, spec: Any) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
        if spec.ops is not None:
            self.terms.append(f"e.get('op') in {self.const(frozenset(spec.ops))}")
        if spec.tables is not None:  # the matcher's cache read inline; the matcher itself on a miss
            m = TableMatcher(list(spec.tables))
            slow, cache, src, hit = self.const(m), self.const(m.cache), self.const(None), self.const(None)
            self.terms.append(
                f"{slow}(e) if ({src} := e.get('source')).__class__ is not dict or ({hit} := {cache}.get(("
                f"{src}.get('db'), {src}.get('schema'), {src}.get('table')))) is None else {hit}"
            )
        self.terms.extend(self.condition(c) for c in spec.where)
        cond = " and ".join(f"({t})" for t in self.terms) or "True"
        if spec.action == "drop":
            cond = f"not ({cond})"
        code = f"def apply(events):\n    return [e for e in events if {cond}]\n"
        exec(compile(code, f"<filter {spec.id}>", "exec"), self.names)  # noqa: S102 - our own source
        fn: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = self.names["apply"]
        fn.source = code  # type: ignore[attr-defined]  # for tests and debugging
        return fn


class FilterProcessor(NativeProcessor):
    def open(self) -> None:
        self.run = _Source().build(self.spec)

    def apply(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.run(events)
