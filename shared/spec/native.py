"""Native processors' options (CONTRACT section 5) beyond what the types say.

`native_errors` checks them when a spec is loaded, every problem with its field path
(`spec.processors[1].where[0].regex: invalid regex: ...`); the worker compiles the same
options with the same pure helpers (paths, globs, bounds, route templates), so a spec that
loads is one the worker can compile, and nothing is parsed per event.

Imports: stdlib + msgspec + shared.spec.model.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from msgspec import UNSET

from shared.spec.model import FilterProcessorSpec, MaskProcessorSpec, OutboxProcessorSpec

Error = tuple[str, str]  # (path, message)

OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "regex", "changed")
ORDERED = ("gt", "gte", "lt", "lte")
IMAGES = ("before", "after")
_ATTR = {"in": "in_"}
_COLUMN_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def operators(cond: Any) -> list[str]:
    """The operators a `where` item uses (its fields that are set), in contract order."""
    return [op for op in OPERATORS if getattr(cond, _ATTR.get(op, op)) is not UNSET]


def operand(cond: Any, op: str) -> Any:
    return getattr(cond, _ATTR.get(op, op))


def split_path(path: str) -> tuple[str, ...]:
    """`after.status` -> ("after", "status"); ValueError for an empty part."""
    parts = tuple(path.split("."))
    if any(not p for p in parts):
        raise ValueError(f"invalid path {path!r}: a dotted path of field names (after.status)")
    return parts


def glob_regex(glob: str) -> re.Pattern[str]:
    """A glob with `*` (any run of characters) and `?` (one character) as a full-match regex."""
    if "[" in glob or "]" in glob:
        raise ValueError(f"invalid glob {glob!r}: only * and ? are wildcards")
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(body, re.S)


def table_glob(glob: str) -> re.Pattern[str]:
    """A `db.table` glob (`shop.order*`, `*.*`)."""
    db, dot, table = glob.partition(".")
    if not dot or not db or not table or "." in table:
        raise ValueError(f"invalid table glob {glob!r}: must be db.table (wildcards * and ?; *.* for every table)")
    return glob_regex(glob)


def has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def time_ms(text: str) -> float | None:
    """An ISO 8601 date or timestamp as epoch milliseconds (no offset: UTC); None if it is not one."""
    if len(text) < 10 or not text[:4].isdigit() or text[4] != "-":
        return None
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return (t - _EPOCH).total_seconds() * 1000.0


def bound(value: Any) -> tuple[str, float]:
    """An ordering operand: ("number", n) or ("time", epoch ms); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a number or an ISO 8601 timestamp, got a boolean")
    if isinstance(value, (int, float)):
        return "number", value
    ms = time_ms(value)
    if ms is None:
        raise ValueError(f"expected a number or an ISO 8601 timestamp, got {value!r}")
    return "time", ms


def route_parts(template: str) -> list[str | tuple[str]]:
    """A template over columns (`orders.${aggregate_type}`): literal strings and (column,) refs."""
    parts: list[str | tuple[str]] = []
    pos = 0
    for m in _COLUMN_REF.finditer(template):
        if m.start() > pos:
            parts.append(template[pos : m.start()])
        parts.append((m.group(1),))
        pos = m.end()
    if pos < len(template):
        parts.append(template[pos:])
    for p in parts:
        if isinstance(p, str) and "${" in p:
            raise ValueError(f"invalid template {template!r}: write ${{column}} with a column name")
    return parts


def _check(errs: list[Error], path: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ValueError as exc:
        errs.append((path, str(exc)))
    except re.error as exc:
        errs.append((path, f"invalid regex: {exc}"))
    except RecursionError:
        errs.append((path, "invalid regex: nested too deeply"))
    except OverflowError as exc:
        errs.append((path, f"invalid regex: {exc}"))
    return None


def _filter_errors(p: FilterProcessorSpec, at: str, errs: list[Error]) -> None:
    for j, t in enumerate(p.tables or []):
        _check(errs, f"{at}.tables[{j}]", table_glob, t)
    for j, c in enumerate(p.where):
        w = f"{at}.where[{j}]"
        ops = operators(c)
        if len(ops) != 1:
            what = "needs one operator" if not ops else f"has several operators ({', '.join(ops)}): give one per item"
            errs.append((w, f"{what} (one of: {', '.join(OPERATORS)})"))
        parts = _check(errs, f"{w}.path", split_path, c.path)
        if c.unknown_changed is not UNSET and c.changed is UNSET:
            errs.append((f"{w}.unknown_changed", "only allowed with changed"))
        if c.changed is not UNSET and parts is not None and (len(parts) < 2 or parts[0] not in IMAGES):
            errs.append((f"{w}.path", f"with changed, a path into the row images (after.<column>), got {c.path!r}"))
        if c.regex is not UNSET:
            _check(errs, f"{w}.regex", re.compile, c.regex)
        for op in ORDERED:
            if operand(c, op) is not UNSET:
                _check(errs, f"{w}.{op}", bound, operand(c, op))


def _mask_errors(p: MaskProcessorSpec, at: str, errs: list[Error]) -> None:
    for j, f in enumerate(p.fields):
        parts = _check(errs, f"{at}.fields[{j}]", split_path, f)
        if parts is None:
            continue
        if any(has_wildcard(x) for x in parts[:-1]):
            errs.append((f"{at}.fields[{j}]", f"only the last part of {f!r} may be a glob"))
        else:
            _check(errs, f"{at}.fields[{j}]", glob_regex, parts[-1])
    for field, action in (("key", "hash"), ("length", "truncate")):
        given = getattr(p, field) is not None
        if p.action == action and not given:
            errs.append((f"{at}.{field}", f"required when action is {action}"))
        elif p.action != action and given:
            errs.append((f"{at}.{field}", f"only allowed when action is {action}"))


def _outbox_errors(p: OutboxProcessorSpec, at: str, errs: list[Error]) -> None:
    for j, t in enumerate(p.tables):
        _check(errs, f"{at}.tables[{j}]", table_glob, t)
    _check(errs, f"{at}.route", route_parts, p.route)


def native_errors(processors: list[Any]) -> list[Error]:
    errs: list[Error] = []
    for i, p in enumerate(processors):
        at = f"spec.processors[{i}]"
        if isinstance(p, FilterProcessorSpec):
            _filter_errors(p, at, errs)
        elif isinstance(p, MaskProcessorSpec):
            _mask_errors(p, at, errs)
        elif isinstance(p, OutboxProcessorSpec):
            _outbox_errors(p, at, errs)
    return errs
